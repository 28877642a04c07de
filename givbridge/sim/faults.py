"""Failure modes of one simulated dongle and inverter, switchable while the server runs.

Each :class:`~givbridge.sim.server.SimulatorServer` owns one :class:`Faults` (one server is
one dongle), reachable as ``server.faults``. Link faults (latency, silence, dropped or
refused connections, corrupted frames, zeroed banks) act on the server; plant faults
(frozen values, unpersisted writes, clock jumps) act on the plant behind it. Link timings
are real seconds, because they are measured against real client timeouts; the plant's own
times (its clock, a reboot) are simulated seconds.

Every fault is either a plain attribute or a method, so tests and ``givbridge simulate
--faults`` can script them. A new fault is a new attribute or method here plus the one
place in the server or plant that honours it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from givbridge.sim.plant import RegisterKind, SimulatedPlant

#: What :meth:`Faults.inject_garbage` puts in front of a frame unless told otherwise: line
#: noise the library's framer must skip (it contains no frame marker).
DEFAULT_GARBAGE = bytes.fromhex("00ff13fe5900a5")


class Faults:
    """The switchable misbehaviour of one simulated dongle (see the module docstring)."""

    def __init__(self, plant: SimulatedPlant, drop_connections: Callable[[], None]) -> None:
        self._plant = plant
        self._drop_connections = drop_connections
        #: Seconds added to every request's latency, and the extra random spread on top.
        self.extra_latency = 0.0
        self.extra_jitter = 0.0
        #: New connections are reset as soon as they are accepted (the dongle's sockets are used up).
        self.refuse_connections = False
        #: Banks answered with all-zero values: (device address, "HR" or "IR", base register).
        self.zeroed_banks: set[tuple[int, RegisterKind, int]] = set()
        self._silent_until = 0.0
        self._corrupt_crc_left = 0
        self._garbage_left = 0
        self._garbage = DEFAULT_GARBAGE

    # -- link faults ---------------------------------------------------------------

    def silence(self, seconds: float) -> None:
        """Stop answering requests for ``seconds``; connections stay open and heartbeats go on."""
        self._silent_until = time.monotonic() + seconds

    def end_silence(self) -> None:
        self._silent_until = 0.0

    @property
    def silent(self) -> bool:
        return time.monotonic() < self._silent_until

    def drop_connections(self) -> None:
        """Close every open connection now, as a dongle that reboots or reaps its sockets does."""
        self._drop_connections()

    def corrupt_crc(self, responses: int = 1) -> None:
        """Send the next ``responses`` responses with a wrong CRC."""
        self._corrupt_crc_left += responses

    def inject_garbage(self, responses: int = 1, garbage: bytes = DEFAULT_GARBAGE) -> None:
        """Put ``garbage`` on the wire in front of each of the next ``responses`` responses."""
        if bytes.fromhex("59590001") in garbage:
            raise ValueError("garbage must not contain the frame marker 59590001")
        self._garbage_left += responses
        self._garbage = garbage

    def zero_bank(self, address: int, kind: RegisterKind, base: int) -> None:
        """Answer reads of one bank with all zeros (the transient dropout the library guards against)."""
        self.zeroed_banks.add((address, kind, base))

    # -- plant faults --------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        """Measurements stop changing (a stuck inverter/BMS cache); settings and the clock still work."""
        return self._plant.frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        self._plant.frozen = value

    @property
    def writes_not_persisted(self) -> bool:
        """Writes are echoed as if accepted, but nothing changes."""
        return not self._plant.persist_writes

    @writes_not_persisted.setter
    def writes_not_persisted(self, value: bool) -> None:
        self._plant.persist_writes = not value

    def jump_clock(self, seconds: float) -> None:
        """Jump the inverter's real-time clock by ``seconds`` (negative goes back)."""
        self._plant.shift_clock(seconds)

    def clear(self) -> None:
        """Back to a healthy dongle and plant (a clock jump already made stays)."""
        self.extra_latency = self.extra_jitter = 0.0
        self.refuse_connections = False
        self.zeroed_banks.clear()
        self._silent_until = 0.0
        self._corrupt_crc_left = self._garbage_left = 0
        self.frozen = False
        self.writes_not_persisted = False

    # -- consumed by the server ----------------------------------------------------

    def take_crc_corruption(self) -> bool:
        """Whether the response being sent now gets a bad CRC (uses one up)."""
        if self._corrupt_crc_left <= 0:
            return False
        self._corrupt_crc_left -= 1
        return True

    def take_garbage(self) -> bytes:
        """Bytes to send before the response going out now (uses one up), or nothing."""
        if self._garbage_left <= 0:
            return b""
        self._garbage_left -= 1
        return self._garbage
