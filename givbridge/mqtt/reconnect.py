"""How the MQTT client retries a broker, and what its connection has been through.

A broker that cannot be reached is tried again after 1 s, then 2 s, then every 3 s, so one
that returns is connected to within 3 s; a broker that answers and refuses the connection
(credentials, authorisation) backs off to once a minute. The first failed attempt since the
last success is a warning, the ones after it are debug lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

RECONNECT_MIN_DELAY = 1
RECONNECT_MAX_DELAY = 3
"""Seconds between attempts to reach a broker that is not there (doubling from the minimum).
Waiting for a restarting broker is the common case: a refused TCP connection costs nothing, and
the cap bounds how late a returning broker is noticed to 3 s, leaving the rest of the 5 s in
which the bridge promises its state back for the handshake and the republish (discovery's
documents are the bulk of it: hundreds of kB per inverter)."""
REFUSED_MAX_DELAY = 60
"""The cap instead while the broker answers and refuses us (bad credentials, not authorised):
retrying faster does not fix a configuration, and every attempt is a line in the broker's log."""


def reconnect_delays(*, refused: bool) -> tuple[int, int]:
    """The (minimum, cap) seconds between attempts, for a refusing broker or an absent one."""
    return RECONNECT_MIN_DELAY, REFUSED_MAX_DELAY if refused else RECONNECT_MAX_DELAY


@dataclass(frozen=True, slots=True)
class MqttStats:
    """Counters for diagnostics; a snapshot, not live."""

    connected: bool
    connected_since: datetime | None
    published: int
    """Messages handed to the broker connection."""
    dropped: int
    """Publishes refused because the client was not connected (or paho's queue was full)."""
    received: int
    reconnects: int
    """Successful connections after the first one."""
    connect_failures: int
    """Connection attempts that failed: broker unreachable, TLS failure or CONNACK refusal."""


@dataclass(slots=True)
class ConnectionRecord:
    """The connection attempts so far and their outcomes (event loop only)."""

    connected_since: datetime | None = None
    connects: int = 0
    connect_failures: int = 0
    failing_since_success: bool = False
    attempt_open: bool = False  # a connection attempt began and has no outcome yet

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def succeeded(self, now: datetime) -> None:
        self.connects += 1
        self.failing_since_success = False
        self.attempt_open = False
        self.connected_since = now

    def failed(self) -> None:
        self.attempt_open = False
        self.connect_failures += 1

    def failure_log_level(self) -> int:
        """WARNING for the first failed attempt since the last success, DEBUG for the ones after it."""
        level = logging.DEBUG if self.failing_since_success else logging.WARNING
        self.failing_since_success = True
        return level
