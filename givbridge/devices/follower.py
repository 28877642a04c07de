"""``follow_serial``: find an inverter again after DHCP has given it another address."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from givbridge.clock import Clock
from givbridge.config import InverterSettings, Settings
from givbridge.runtime.health import Health
from givbridge.scan import find_serial
from givbridge.store import JsonStore


class FollowedRunner(Protocol):
    """What the follower needs of the inverter runner it moves."""

    @property
    def config(self) -> InverterSettings: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def store(self) -> JsonStore: ...
    @property
    def health(self) -> Health: ...
    @property
    def peers(self) -> Sequence[FollowedRunner]: ...
    @property
    def log(self) -> structlog.stdlib.BoundLogger: ...

    def move_to(self, host: str, why: str) -> None: ...


class SerialFollower:
    """``follow_serial``: find a runner's inverter again after DHCP has given it another address.

    Once the inverter has not answered for ``lost_after`` seconds, the old address's /24 (or
    the configured ``search_network``) is searched for its serial, skipping addresses other
    runners are connected to (one connection per dongle), and again every ``search_every``
    seconds while it stays lost. A find moves the runner there and is remembered in the data
    dir, so a restart starts at the new address; a changed ``host`` in the settings wins
    over the remembered one.
    """

    LOST_AFTER = 120.0
    SEARCH_EVERY = 600.0

    def __init__(self, runner: FollowedRunner) -> None:
        assert runner.config.serial is not None
        self.runner = runner
        self.serial = runner.config.serial
        self.configured_host = runner.config.host
        self.lost_after = self.LOST_AFTER
        self.search_every = self.SEARCH_EVERY
        self._started = runner.clock.now()
        self._next_search: datetime | None = None

    @property
    def document(self) -> str:
        return f"address-{self.serial}"

    def network(self) -> ipaddress.IPv4Network:
        configured = self.runner.config.search_network
        if configured is not None:
            return configured
        return ipaddress.IPv4Interface(f"{self.configured_host}/24").network

    async def restore(self) -> None:
        """Start where the serial was last found, if the settings still name the address it moved from."""
        stored = await asyncio.to_thread(self.runner.store.load, self.document)
        host = stored.get("host")
        if stored.get("configured_host") != self.configured_host or not isinstance(host, str) or not host:
            return  # nothing remembered, or the settings have been changed since
        if host != self.runner.config.host:
            self.runner.move_to(host, "remembered from the last search")

    async def search_if_lost(self) -> bool:
        """Search if the inverter has been lost long enough; True when it was found somewhere else."""
        runner = self.runner
        if runner.health.consecutive_failures == 0:
            return False
        now = runner.clock.now()
        lost_since = runner.health.last_success or self._started
        if (now - lost_since).total_seconds() < self.lost_after:
            return False
        if self._next_search is not None and now < self._next_search:
            return False
        self._next_search = now + timedelta(seconds=self.search_every)
        network = self.network()
        busy = {peer.config.host for peer in runner.peers if peer is not runner and peer.health.connected}
        runner.log.info("inverter lost; searching for its serial", serial=self.serial, network=str(network))
        found = await find_serial(
            self.serial, [network], port=runner.config.port, wait=runner.settings.polling.timeout, exclude=busy
        )
        if found is None:
            runner.log.warning("serial not found; searching again later", serial=self.serial, network=str(network))
            return False
        if found.host == runner.config.host:
            return False  # back where it was; the normal reconnect takes over
        runner.move_to(found.host, f"found by searching {network}")
        record = {"configured_host": self.configured_host, "host": found.host, "found": now.isoformat()}
        try:
            await asyncio.to_thread(runner.store.save, self.document, record)
        except OSError as exc:
            runner.log.warning("could not remember the new address", error=str(exc))
        return True
