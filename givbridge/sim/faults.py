"""Failure modes of one simulated dongle and inverter, switchable while the server runs.

Each :class:`~givbridge.sim.server.SimulatorServer` owns one :class:`Faults` for the whole
device (one server is one dongle), reachable as ``server.faults``, and each open connection
has its own :class:`LinkFaults`, reachable as ``server.connections[n].faults``. Link faults
(latency, silence, dropped connections, corrupted CRCs, garbage bytes) exist at both levels:
set on the device they hit every connection, set on a connection only that one (a second
client of a dongle can be served while the bridge's connection is silent). Device faults
also refuse new connections and zero banks; plant faults (frozen values, unpersisted
writes, clock jumps) act on the plant behind it.

Link timings are real seconds, because they are measured against real client timeouts; the
plant's own times (its clock, a reboot) are simulated seconds. Random faults (a CRC error
rate, garbage or all-zero answers now and then) draw from the server's seeded generator, so
a run is repeatable.

Every fault is either a plain attribute or a method, so tests and ``givbridge simulate
--faults`` (see :mod:`givbridge.sim.fault_script`) can script them. A new fault is a new
attribute or method here plus the one place in the server or plant that honours it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from givbridge.sim.plant import RegisterKind, SimulatedPlant

#: What :meth:`LinkFaults.inject_garbage` puts in front of a frame unless told otherwise: line
#: noise the library's framer must skip (it contains no frame marker).
DEFAULT_GARBAGE = bytes.fromhex("00ff13fe5900a5")
FRAME_MARKER = bytes.fromhex("59590001")


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a probability between 0 and 1, not {value}")
    return value


class LinkFaults:
    """Misbehaviour of a link: the whole dongle's (as part of :class:`Faults`) or one connection's."""

    def __init__(self, drop_connections: Callable[[], None], rng: random.Random | None = None) -> None:
        self._drop_connections = drop_connections
        self._rng = rng or random.Random(0)
        #: Seconds added to every answer's latency, and the extra random spread on top.
        self.extra_latency = 0.0
        self.extra_jitter = 0.0
        self._crc_rate = 0.0
        self._garbage_rate = 0.0
        self._silent_until = 0.0
        self._corrupt_crc_left = 0
        self._garbage_left = 0
        self._garbage = DEFAULT_GARBAGE

    def silence(self, seconds: float = math.inf) -> None:
        """Stop answering requests for ``seconds`` (default: until :meth:`end_silence`).

        Connections stay open and heartbeats go on; requests that arrive meanwhile are lost.
        """
        self._silent_until = time.monotonic() + seconds

    def end_silence(self) -> None:
        self._silent_until = 0.0

    @property
    def silent(self) -> bool:
        return time.monotonic() < self._silent_until

    def drop_connections(self) -> None:
        """Close the connections now (all of the dongle's, or this one), as a rebooting dongle does."""
        self._drop_connections()

    def corrupt_crc(self, responses: int = 1) -> None:
        """Send the next ``responses`` responses with a wrong CRC."""
        self._corrupt_crc_left += responses

    @property
    def crc_rate(self) -> float:
        """Probability that any response goes out with a wrong CRC (line noise)."""
        return self._crc_rate

    @crc_rate.setter
    def crc_rate(self, value: float) -> None:
        self._crc_rate = _probability("crc_rate", value)

    def inject_garbage(self, responses: int = 1, garbage: bytes = DEFAULT_GARBAGE) -> None:
        """Put ``garbage`` on the wire in front of each of the next ``responses`` responses."""
        if FRAME_MARKER in garbage:
            raise ValueError("garbage must not contain the frame marker 59590001")
        self._garbage_left += responses
        self._garbage = garbage

    @property
    def garbage_rate(self) -> float:
        """Probability that any response is preceded by a burst of random non-frame bytes."""
        return self._garbage_rate

    @garbage_rate.setter
    def garbage_rate(self, value: float) -> None:
        self._garbage_rate = _probability("garbage_rate", value)

    def clear(self) -> None:
        """Back to a healthy link."""
        self.extra_latency = self.extra_jitter = 0.0
        self._crc_rate = self._garbage_rate = 0.0
        self._silent_until = 0.0
        self._corrupt_crc_left = self._garbage_left = 0

    # -- consumed by the server ----------------------------------------------------

    def take_crc_corruption(self) -> bool:
        """Whether the response being sent now gets a bad CRC (uses one up)."""
        if self._corrupt_crc_left > 0:
            self._corrupt_crc_left -= 1
            return True
        return self._crc_rate > 0 and self._rng.random() < self._crc_rate

    def take_garbage(self) -> bytes:
        """Bytes to send before the response going out now (uses one up), or nothing."""
        if self._garbage_left > 0:
            self._garbage_left -= 1
            return self._garbage
        if self._garbage_rate > 0 and self._rng.random() < self._garbage_rate:
            return self._noise()
        return b""

    def _noise(self) -> bytes:
        """1-40 random bytes without the frame marker, as a noisy serial link produces."""
        noise = self._rng.randbytes(self._rng.randint(1, 40))
        return noise.replace(b"\x59", b"\x58")


class Faults(LinkFaults):
    """The switchable misbehaviour of one simulated dongle and its inverter (see the module docstring)."""

    def __init__(
        self, plant: SimulatedPlant, drop_connections: Callable[[], None], rng: random.Random | None = None
    ) -> None:
        super().__init__(drop_connections, rng)
        self._plant = plant
        #: New connections are reset as soon as they are accepted (the dongle's sockets are used up).
        self.refuse_connections = False
        #: Banks answered with all-zero values: (device address, "HR" or "IR", base register).
        self.zeroed_banks: set[tuple[int, RegisterKind, int]] = set()
        self._zero_rate = 0.0

    # -- device faults -------------------------------------------------------------

    def zero_bank(self, address: int, kind: RegisterKind, base: int) -> None:
        """Answer reads of one bank with all zeros (the transient dropout the library guards against)."""
        self.zeroed_banks.add((address, kind, base))

    @property
    def zero_rate(self) -> float:
        """Probability that any read is answered with all zeros (transient dropouts, now and then)."""
        return self._zero_rate

    @zero_rate.setter
    def zero_rate(self, value: float) -> None:
        self._zero_rate = _probability("zero_rate", value)

    def take_zeroed(self, address: int, kind: RegisterKind, base: int) -> bool:
        """Whether the read of this bank being answered now comes back all zeros."""
        if (address, kind, base) in self.zeroed_banks:
            return True
        return self._zero_rate > 0 and self._rng.random() < self._zero_rate

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

    def misread_counters(self, keep: float, answers: int = 1) -> None:
        """The next ``answers`` reads of the device's input registers show its energy counters at
        ``keep`` (0-1) of their value, then true again: a glitch the library cannot tell from data."""
        if not 0 <= keep <= 1:
            raise ValueError(f"keep is a fraction from 0 to 1, not {keep}")
        self._plant.counter_misread_keep = keep
        self._plant.counter_misreads = answers

    def jump_clock(self, seconds: float) -> None:
        """Jump the inverter's real-time clock by ``seconds`` (negative goes back)."""
        self._plant.shift_clock(seconds)

    def clear(self) -> None:
        """Back to a healthy dongle and plant (a clock jump already made stays; connections' own faults too)."""
        super().clear()
        self.refuse_connections = False
        self.zeroed_banks.clear()
        self._zero_rate = 0.0
        self.frozen = False
        self.writes_not_persisted = False
        self._plant.counter_misreads = 0
