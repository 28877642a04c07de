"""Device runners and the supervisor that ties the layers together.

One :class:`InverterRunner` per configured inverter owns the only connection to its
dongle. Everything that touches the inverter goes through the runner's job queue and runs
one job at a time, so two commands never interleave their registers and a poll never lands
between a write and its read-back:

* polls are tiered: the measurement banks (input registers) every ``poll_interval``; the
  settings banks (holding registers) every ``settings_interval`` and right after a write;
  identity once per connection (``detect``);
* writes (:meth:`InverterRunner.write`) jump the queue, leave out values the inverter
  already holds, and are confirmed by re-reading the written banks from the inverter. The
  outcome says exactly which registers stuck, which the inverter refused and which it
  silently ignored;
* a failed poll counts towards availability; after ``offline_after`` consecutive failures
  the device is offline and the connection is rebuilt, with exponential backoff between
  attempts. A dropped connection is rebuilt at once.

Runners publish through :class:`Signal` callbacks; they know nothing of MQTT or HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

import structlog
from givenergy_modbus.client.client import Client
from givenergy_modbus.exceptions import (
    CommunicationError,
    ConnectionLost,
    PlantTopologyMismatch,
    RefreshFailed,
    RefreshPartiallySucceeded,
)
from givenergy_modbus.model.plant import Plant, PlantCapabilities
from givenergy_modbus.model.register import HR, IR
from givenergy_modbus.pdu import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteHoldingRegisterResponse,
)
from pydantic import Field, PrivateAttr

from givbridge import __version__
from givbridge.clock import Clock, SystemClock, local_zone
from givbridge.config import InverterSettings, Settings
from givbridge.entities import load_catalogue
from givbridge.log import get_logger
from givbridge.plant.build import build_snapshot, supported_families
from givbridge.plant.families import Family, UnknownModel, family_for
from givbridge.plant.hygiene import SampleGuard
from givbridge.plant.snapshot import Scalar, Snapshot
from givbridge.plant.topology import PlantTopology
from givbridge.plant.writes import (
    RegisterWrite,
    RegisterWriteRequest,
    WritePlan,
    blocks_for,
    has_pause_registers,
    unwritable,
    writable_registers,
)
from givbridge.scan import find_serial
from givbridge.store import JsonStore, ThrottledSave
from givbridge.tariffs import Tariffs

log = get_logger(__name__)

T = TypeVar("T")

# GivTCP reports its own version here and Predbat reads it: a value starting with "3" means
# "v3 semantics" (watts for rates, the v3 REST shapes), which is what givbridge serves.
GIVTCP_COMPAT_VERSION = f"3.5 (givbridge {__version__})"

# An inverter clock further than this from ours is worth a warning: timed slots would run
# at the wrong time (Predbat warns at 30 minutes; GivTCP 3.6 at 5).
CLOCK_SKEW_WARNING = 300.0
# After a write, the whole settings bank set is re-read this many seconds later, unless the
# next scheduled settings read comes sooner.
SETTLE_AFTER_WRITE = 10.0
# A read answered with a bank the poll path would not believe is read again this many times
# more than ``polling.retries`` (such an answer costs a round trip, not a timeout).
UNCLEAN_READ_RETRIES = 2
# A bank too short for the library's dropout judgement, read all zero where it held data, is
# believed only when this many answers in a row agree.
ZERO_CONFIRMATIONS = 3
# How often the hygiene's counter memory is written to disk (and always on disconnect):
# often enough to survive a crash, rarely enough to spare SD cards.
COUNTER_SAVE_INTERVAL = 60.0

# GivTCP's list of registers whose writes do not wear EEPROM while Real Time Control is on;
# writes to them then count as "safe" (Safe_Write_Count) rather than Write_Count.
RTC_SAFE_REGISTERS = frozenset(
    {20, 27, 50, 56, 57, 59, 94, 95, 96, 110, 111, 112, 116, 318, 319, 320}
    | {1002, 1108, 1110, 1111, 1112, 1114, 1118, 1119, 1122, 1123, 1141}
)


class Signal(Generic[T]):
    """An awaitable fan-out of values to async listeners; a failing listener is logged, not fatal."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[[T], Awaitable[None]]] = []

    def connect(self, listener: Callable[[T], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def emit(self, value: T) -> None:
        for listener in list(self._listeners):
            try:
                await listener(value)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("listener failed", signal=self.name, listener=getattr(listener, "__qualname__", None))


class Unreachable(Exception):
    """The inverter is not connected or did not answer."""


class UncleanRead(Unreachable):
    """The inverter answered a read of a bank only with data the poll path would not believe.

    A dropout page, a spliced or incoherent bank (refused by the library, as on every poll), or
    a short bank read all-zero over one that held data and not confirmed by reading it again.
    Nothing may be planned or judged from such a read: it is retried, then this is raised.
    """


class NotWritable(Exception):
    """The plan touches registers this model does not allow givbridge to write."""

    def __init__(self, registers: list[int]) -> None:
        super().__init__(f"registers {registers} are not writable on this model")
        self.registers = registers


class WriteStatus(StrEnum):
    OK = "ok"  # every expected value read back
    NOT_PERSISTED = "not_persisted"  # acknowledged, but the read-back shows another value
    REJECTED = "rejected"  # the inverter answered the write with an error


@dataclass(frozen=True, slots=True)
class Mismatch:
    register: int
    wanted: int
    actual: int | None


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What happened to a :class:`WritePlan`, established by reading the registers back."""

    status: WriteStatus
    written: tuple[RegisterWrite, ...]  # writes that went on the wire
    skipped: tuple[RegisterWrite, ...]  # already held, not re-written
    readback: Mapping[int, int]  # register -> value read back afterwards
    mismatches: tuple[Mismatch, ...] = ()
    rejected: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is WriteStatus.OK

    @classmethod
    def judge(
        cls,
        plan: WritePlan,
        readback: Mapping[int, int],
        *,
        written: Sequence[RegisterWrite],
        skipped: Sequence[RegisterWrite] = (),
        rejected: Sequence[int] = (),
    ) -> WriteOutcome:
        """The outcome of ``plan`` from what was read back: a refusal first, then any value not held."""
        mismatches = tuple(
            Mismatch(w.register, w.value, readback.get(w.register))
            for w in plan.expected
            if readback.get(w.register) != w.value
        )
        if rejected:
            status = WriteStatus.REJECTED
        elif mismatches:
            status = WriteStatus.NOT_PERSISTED
        else:
            status = WriteStatus.OK
        return cls(status, tuple(written), tuple(skipped), readback, mismatches, tuple(rejected))


@dataclass
class Health:
    """Connection and polling health of one device, published as diagnostics."""

    connected: bool = False
    available: bool = False
    consecutive_failures: int = 0
    polls_ok: int = 0
    polls_partial: int = 0
    polls_failed: int = 0
    reconnects: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    last_poll_seconds: float | None = None  # wall time of the last successful poll
    last_poll_full: bool = False  # whether it also read the settings banks

    def succeeded(self, at: datetime, *, partial: bool = False) -> bool:
        """Count a successful poll; True when it makes the device available again."""
        if partial:
            self.polls_partial += 1
        else:
            self.polls_ok += 1
        self.consecutive_failures = 0
        self.last_error = None
        self.last_success = at
        became = not self.available
        self.available = True
        return became

    def failed(self, reason: str, offline_after: int) -> bool:
        """Count a failed poll; True when it makes the device unavailable (``offline_after`` in a row)."""
        self.polls_failed += 1
        self.consecutive_failures += 1
        self.last_error = reason
        went = self.available and self.consecutive_failures >= offline_after
        if went:
            self.available = False
        return went


@dataclass(frozen=True)
class DeviceContext:
    """What a command planner may know about the device besides its values."""

    serial: str
    family: Family
    capabilities: PlantCapabilities
    writable: frozenset[int]

    @property
    def model(self) -> Any:
        return self.capabilities.device_type

    @property
    def arm_firmware(self) -> int | None:
        firmware = self.capabilities.arm_firmware_version
        return int(firmware) if firmware is not None else None


class ReadVerdict(StrEnum):
    """How a register read answered the runner may be used (see :meth:`ObservedPlant.verdict`)."""

    CLEAN = "clean"  # the library committed it, as a poll would
    REFUSED = "refused"  # the library refused it: a dropout, a splice, an incoherent or corrupt bank
    # A bank too short for the library to judge (under 60 registers), read all zero where it held
    # data: believable only if reading it again agrees.
    UNCONFIRMED_ZERO = "unconfirmed_zero"


class ObservedPlant(Plant):  # type: ignore[misc]  # untyped library base
    """The library's Plant, also noting error responses to writes and the banks it refuses.

    The library's request path retries an error response and finally reports a timeout, so
    on its own a refused write looks like a silent inverter. Noting the error frames as they
    are decoded lets the runner tell "the inverter refused HR(x)" from "no answer".

    The library refuses, without saying so to the caller, the pages a dongle serves in place
    of data: a full bank of zeros over a bank that held data, its known substituted page, a
    spliced or incoherent bank. Its verdict on every read answer is noted here (whether it
    committed the bank), so the runner's own reads judge exactly as the poll path does, and
    ``dropouts`` counts the dropout pages for ``Stats/Dropout_Banks_Rejected``. CRC-failed
    frames never reach a caller: the library drops them and the request times out and retries.
    """

    _refused: dict[int, int] = PrivateAttr(default_factory=dict)
    _verdicts: dict[tuple[int, str, int, int], tuple[Any, ReadVerdict]] = PrivateAttr(default_factory=dict)
    dropouts: int = Field(default=0, exclude=True)

    def update(self, pdu: Any, *, received_at: datetime | None = None) -> None:
        if isinstance(pdu, WriteHoldingRegisterResponse) and pdu.error:
            self._refused[pdu.register] = self._refused.get(pdu.register, 0) + 1
        key = _bank_key(pdu)
        if key is None:
            super().update(pdu, received_at=received_at)
            return
        stamped = self.register_block_updated_at.get(key)
        zero_over_data = self._zero_over_data(pdu)
        super().update(pdu, received_at=received_at)
        restamped = self.register_block_updated_at.get(key)
        if restamped is None or restamped is stamped:  # the library committed nothing
            verdict = ReadVerdict.REFUSED
            if zero_over_data or (isinstance(pdu, ReadInputRegistersResponse) and pdu.is_suspicious()):
                self.dropouts += 1
        elif zero_over_data:  # committed only because it is too short for the library to judge
            verdict = ReadVerdict.UNCONFIRMED_ZERO
        else:
            verdict = ReadVerdict.CLEAN
        self._verdicts[key] = (pdu, verdict)

    def _zero_over_data(self, pdu: Any) -> bool:
        """An answer of all zeros for registers the cache holds data in (the library's Pattern B, any size)."""
        values: dict[int, int] = pdu.to_dict()
        if not values or any(values.values()):
            return False
        kind = HR if isinstance(pdu, ReadHoldingRegistersResponse) else IR
        cache = self.register_caches.get(pdu.device_address, {})
        return any(cache.get(kind(register)) for register in values)

    def verdict(self, pdu: Any) -> ReadVerdict:
        """What the library made of the read answer ``pdu`` (REFUSED for one it never saw)."""
        key = _bank_key(pdu)
        noted = self._verdicts.get(key) if key is not None else None
        if noted is None or noted[0] is not pdu:
            return ReadVerdict.REFUSED
        return noted[1]

    def take_refusal(self, register: int) -> bool:
        return self._refused.pop(register, 0) > 0


def _bank_key(pdu: Any) -> tuple[int, str, int, int] | None:
    """The library's key for the bank a read answer carries (as in ``register_block_updated_at``)."""
    if isinstance(pdu, ReadHoldingRegistersResponse):
        kind = "HR"
    elif isinstance(pdu, ReadInputRegistersResponse):
        kind = "IR"
    else:
        return None
    if pdu.error or getattr(pdu, "crc_failed", False):
        return None
    return (pdu.device_address, kind, pdu.base_register, pdu.register_count)


class _Stop(Exception):
    """Internal: the connection must be rebuilt."""


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    run: Callable[[], Awaitable[Any]] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)


_WRITE_PRIORITY = 0
_READ_PRIORITY = 1


class GuardMemory:
    """A device's :class:`SampleGuard`, with its last good values kept in the data dir.

    Restored when the device is identified and saved at most every
    :data:`COUNTER_SAVE_INTERVAL` (at once when forced, as on a disconnect), so a restart
    cannot publish a spike either. Both kinds of device runner keep one.
    """

    def __init__(self, store: JsonStore, clock: Clock) -> None:
        self.store = store
        self.guard: SampleGuard | None = None
        self._serial: str | None = None
        self._saver = ThrottledSave(store, clock, COUNTER_SAVE_INTERVAL, "the counter history")

    @staticmethod
    def document(serial: str) -> str:
        return f"counters-{serial}"

    async def start(self, serial: str, guard: SampleGuard) -> None:
        """Guard ``serial``'s values with ``guard``, restored from what was last saved for it."""
        guard.restore(await asyncio.to_thread(self.store.load, self.document(serial)))
        self.guard, self._serial = guard, serial
        self._saver.reset()

    async def save(self, *, force: bool = False) -> None:
        if self.guard is None or self._serial is None:
            return
        await self._saver.save(self.document(self._serial), self.guard.state, force=force)


def honour_cancellation() -> None:
    """Raise CancelledError if this task was asked to stop but the request got lost on the way.

    Python 3.11 lets a cancellation vanish when the awaited thing finishes in the same instant
    (``asyncio.wait_for`` returning its result; a library catching CancelledError). A runner's
    loop calls this between attempts, so stopping it never waits for a backoff and a reconnect.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def is_library_orphan(context: Mapping[str, Any]) -> bool:
    """An event-loop error report that is a known givenergy-modbus 2.13 leak, not a fault.

    When the dongle drops the connection while a request is still queued for sending, the
    library's ``_abort_connection`` fails both of that request's futures with ConnectionLost;
    the sender gets it from one and then ``cancel()``s the other, which is already done, so
    nobody retrieves its exception and asyncio reports it when the future is collected.
    """
    return context.get("message") == "Future exception was never retrieved" and isinstance(
        context.get("exception"), ConnectionLost
    )


def quiet_library_orphans(loop: asyncio.AbstractEventLoop) -> None:
    """Log :func:`is_library_orphan` reports at debug level instead of as errors with a traceback.

    Without this, every dropped dongle connection ends in an ERROR "Future exception was never
    retrieved" with a ConnectionLost traceback, though the runner already counted the drop and
    reconnects. Every other report still goes to the loop's previous handler. Idempotent.
    """
    previous = loop.get_exception_handler()
    if not isinstance(previous, _OrphanFilter):
        loop.set_exception_handler(_OrphanFilter(previous))


@dataclass(frozen=True, slots=True)
class _OrphanFilter:
    """The loop exception handler :func:`quiet_library_orphans` installs in front of ``previous``."""

    previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_library_orphan(context):
            log.debug("unanswered request of a dropped connection", error=str(context["exception"]))
        elif self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


class Backoff:
    """Exponential reconnect delay with jitter, reset after a success."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next(self) -> float:
        base = min(self.maximum, self.minimum * 2.0**self._attempt)
        self._attempt += 1
        # Up to 20 % jitter so several bridges restarting together do not hit a dongle in step.
        return min(self.maximum, base * (1 + 0.2 * self._rng.random()))


class InverterRunner:
    """Owns one inverter: connection, polling, writes, availability."""

    def __init__(
        self,
        settings: Settings,
        index: int,
        *,
        clock: Clock | None = None,
        store: JsonStore | None = None,
        client_factory: Callable[[str, int, Plant, float], Client] | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.config: InverterSettings = settings.inverters[index]
        self.clock = clock or SystemClock()
        self.store = store or JsonStore(settings.data_dir)
        self.tz = local_zone(settings.timezone)
        self.prefix = settings.prefix_for(index)
        self._client_factory = client_factory or _default_client
        self._plant = ObservedPlant()
        self._client: Client | None = None
        self._jobs: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._seq = 0
        self._backoff = Backoff(settings.polling.backoff_min, settings.polling.backoff_max)
        self._next_fast = 0.0
        self._next_full = 0.0
        self._last_snapshot_at: datetime | None = None
        self._clock_read_at: datetime | None = None  # when HR(0,60), with the inverter clock, was read
        # Data hygiene, per device (see plant/hygiene.py), and its counters kept in the data dir.
        self._hygiene = GuardMemory(self.store, self.clock)
        self._skew_warned = False
        self._unconfirmed: set[int] = set()  # written registers whose read-back failed
        self._extras: list[Callable[[], Mapping[str, Scalar]]] = []
        self._restart = asyncio.Event()
        # Held by whoever carries out a change on this device (a command, a timed action's
        # revert), so two changes never interleave and each plans from the state the last left.
        self.command_lock = asyncio.Lock()
        self.health = Health()
        self.context: DeviceContext | None = None
        self.snapshot: Snapshot | None = None
        self.on_snapshot: Signal[Snapshot] = Signal("snapshot")
        self.on_availability: Signal[InverterRunner] = Signal("availability")
        self.label = f"{self.config.host}:{self.config.port}"
        self._log = log.bind(inverter=self.label)
        self._counters: dict[str, int] = {"write_count": 0, "safe_write_count": 0}
        # follow_serial: the other runners (set by Bridge), whose connected addresses a search skips.
        self.peers: Sequence[InverterRunner] = ()
        self.follower = SerialFollower(self) if self.config.follow_serial and self.config.serial else None

    # ----------------------------------------------------------------- public API

    @property
    def serial(self) -> str | None:
        return self.context.serial if self.context else self.config.serial

    def add_extras(self, provider: Callable[[], Mapping[str, Scalar]]) -> None:
        """Contribute bridge-side values (timed actions, tariffs, ...) to every snapshot."""
        self._extras.append(provider)

    async def write(self, plan: WritePlan) -> WriteOutcome:
        """Execute ``plan`` ahead of any waiting poll; confirm it by reading it back."""
        if self.settings.read_only:
            raise PermissionError("givbridge is in read-only mode")
        return await self._submit(_WRITE_PRIORITY, lambda: self._do_write(plan))  # type: ignore[no-any-return]

    async def read_holding(self, registers: Iterable[int]) -> dict[int, int]:
        """Fresh values of ``registers`` read from the inverter now (not from any cache)."""
        wanted = sorted(set(registers))
        return await self._submit(_READ_PRIORITY, lambda: self._read_blocks(wanted))  # type: ignore[no-any-return]

    #: The full read in flight for ``refresh_all``, shared by everyone who asks while it runs.
    _full_read: asyncio.Future[Snapshot] | None = None

    async def refresh_all(self) -> Snapshot:
        """Read every bank now and publish the result (GivTCP's runAll, done for real).

        Single-flight: callers arriving while a full read is queued or running share its result,
        so a burst of requests costs the dongle one read, not one each.
        """

        async def fresh() -> Snapshot:
            snapshot = await self._poll(full=True)
            if snapshot is None:
                raise Unreachable(self.health.last_error or f"{self.label} did not answer")
            return snapshot

        if self._full_read is None or self._full_read.done():
            self._full_read = asyncio.ensure_future(self._submit(_READ_PRIORITY, fresh))
            # Retrieve the outcome even if every caller has given up waiting (no "never retrieved").
            self._full_read.add_done_callback(lambda done: done.cancelled() or done.exception())
        # One caller giving up (a closed HTTP request) must not cancel the read the others await.
        return await asyncio.shield(self._full_read)

    def move_to(self, host: str, why: str) -> None:
        """Talk to the inverter at ``host`` from the next connection on (``follow_serial``)."""
        self._log.warning("inverter moved", serial=self.config.serial, old=self.config.host, new=host, why=why)
        self.config = self.config.model_copy(update={"host": host})
        self.label = f"{self.config.host}:{self.config.port}"
        self._log = log.bind(inverter=self.label)
        structlog.contextvars.bind_contextvars(inverter=self.label)

    def request_restart(self) -> None:
        """Drop the connection and start over (the ``restart`` command)."""
        self._restart.set()

    async def run(self) -> None:
        """Connect, poll and serve jobs until cancelled; never returns on its own."""
        if self.follower is not None:
            await self.follower.restore()
        structlog.contextvars.bind_contextvars(inverter=self.label)
        while True:
            try:
                await self._connect()
                await self._serve()
            except asyncio.CancelledError:
                raise
            except _Stop as stop:
                self._log.info("reconnecting", reason=str(stop))
            except (CommunicationError, TimeoutError, OSError) as exc:
                await self._record_failure(f"{type(exc).__name__}: {exc}")
            except _IdentityError as exc:
                self._log.error("refusing device", error=str(exc))
                await self._record_failure(str(exc))
            except Exception as exc:  # a bug: log it loudly, keep the device alive
                self._log.exception("device runner error")
                await self._record_failure(f"internal error: {exc!r}")
            finally:
                await self._disconnect()
            honour_cancellation()
            if self._restart.is_set():
                self._restart.clear()
                self._backoff.reset()
                continue
            if self.follower is not None and await self.follower.search_if_lost():
                self._backoff.reset()
                continue  # found at a new address: connect there at once
            await self.clock.sleep(self._backoff.next())

    # ----------------------------------------------------------------- connection

    async def _connect(self) -> None:
        polling = self.settings.polling
        self.health.reconnects += 1
        client = self._client_factory(self.config.host, self.config.port, self._plant, polling.request_gap)
        self._client = client
        self._log.info("connecting")
        await client.connect()
        caps = await self._detect(client)
        cache = self._plant.register_caches.get(caps.inverter_address, {})
        dtc = cache.get(HR(0))
        try:
            family = family_for(int(dtc or 0), int(cache.get(HR(21)) or 0))
        except UnknownModel as exc:
            raise _IdentityError(str(exc)) from exc
        if family.key not in supported_families():
            raise _IdentityError(f"{family.display} detected, but givbridge does not know its registers yet")
        serial = self._plant.inverter_serial
        if self.config.serial and serial != self.config.serial:
            raise _IdentityError(f"expected serial {self.config.serial} at {self.label} but found {serial}")
        self.context = DeviceContext(
            serial=serial,
            family=family,
            capabilities=caps,
            writable=writable_registers(caps.device_type, caps.arm_firmware_version, family),
        )
        self._counters = await asyncio.to_thread(self._load_counters, serial)
        if self._hygiene.guard is None:
            await self._hygiene.start(serial, SampleGuard(load_catalogue(), self.tz, phases=family.phases))
        self.health.connected = True
        self._log = log.bind(inverter=self.label, serial=serial)
        structlog.contextvars.bind_contextvars(serial=serial)
        self._log.info("connected", model=family.display, firmware=caps.arm_firmware_version)
        self._next_fast = self._next_full = self.clock.monotonic()

    async def _detect(self, client: Client) -> PlantCapabilities:
        """The device's layout: a fast check of the remembered one, else a full probe.

        A full detect probes every possible battery and meter address, most of which stay
        silent until the probe times out; remembering what was found (in memory across
        reconnects, on disk across restarts) turns later detects into a quick confirmation.
        """
        polling = self.settings.polling
        document = self._layout_doc()
        prior = self._plant.capabilities
        if prior is None:
            stored = (await asyncio.to_thread(self.store.load, document)).get("capabilities")
            if isinstance(stored, dict):
                try:
                    prior = PlantCapabilities.from_dict(stored)
                except Exception as exc:  # a stale or hand-edited file: detect afresh
                    self._log.info("ignoring the remembered device layout", error=str(exc))
        kwargs = {
            "timeout": polling.timeout,
            "retries": polling.retries + 2,
            "probe_timeout": polling.probe_timeout,
        }
        caps: PlantCapabilities
        if prior is not None:
            try:
                caps = await client.detect(prior=prior, **kwargs)
            except PlantTopologyMismatch:
                self._log.info("device layout changed since it was last seen; detecting afresh")
                caps = await client.detect(**kwargs)
        else:
            caps = await client.detect(**kwargs)
        await asyncio.to_thread(self.store.save, document, {"capabilities": caps.to_dict()})
        return caps

    def _layout_doc(self) -> str:
        return f"layout-{self.config.host}_{self.config.port}".replace(":", "_")

    async def _disconnect(self) -> None:
        await self._hygiene.save(force=True)
        self.health.connected = False
        client, self._client = self._client, None
        self._fail_pending(Unreachable(f"lost the connection to {self.label}"))
        if client is not None:
            try:
                async with asyncio.timeout(5.0):
                    await client.close()
            except Exception as exc:  # a failed close must not wedge the runner
                self._log.warning("closing the connection failed", error=repr(exc))

    def _fail_pending(self, exc: Exception) -> None:
        while not self._jobs.empty():
            job = self._jobs.get_nowait()
            if not job.future.done():
                job.future.set_exception(exc)

    # ----------------------------------------------------------------- job loop

    async def _submit(self, priority: int, run: Callable[[], Awaitable[Any]]) -> Any:
        if self._client is None or not self.health.connected:
            raise Unreachable(f"{self.label} is not connected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._seq += 1
        await self._jobs.put(_Job(priority, self._seq, run, future))
        return await future

    async def _serve(self) -> None:
        while True:
            if self._restart.is_set():
                raise _Stop("restart requested")
            job = await self._next_job()
            if job is None:
                full = self._next_full <= self.clock.monotonic()
                await self._poll(full=full)
                continue
            if job.future.cancelled():
                continue  # its command was cut off or its caller left: nobody wants it carried out now
            try:
                result = await job.run()
            except (ConnectionLost, _Stop) as exc:
                if not job.future.done():
                    job.future.set_exception(Unreachable(str(exc)))
                raise
            except Exception as exc:
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                if not job.future.done():
                    job.future.set_result(result)

    async def _next_job(self) -> _Job | None:
        """The next queued job, or None when a poll is due first."""
        if not self._jobs.empty():
            return self._jobs.get_nowait()
        delay = min(self._next_fast, self._next_full) - self.clock.monotonic()
        if delay <= 0:
            return None
        getter = asyncio.ensure_future(self._jobs.get())
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        restart = asyncio.ensure_future(self._restart.wait())
        try:
            await asyncio.wait({getter, sleeper, restart}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            restart.cancel()
            getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        if self._restart.is_set():
            raise _Stop("restart requested")
        return None

    # ----------------------------------------------------------------- polling

    async def _poll(self, *, full: bool) -> Snapshot | None:
        """One poll; None if it failed (already counted). Raises _Stop to rebuild the connection."""
        client = self._require_client()
        polling = self.settings.polling
        now = self.clock.monotonic()
        self._next_fast = now + polling.poll_interval
        if full:
            self._next_full = now + polling.settings_interval
        partial = False
        started = self.clock.monotonic()
        try:
            if full:
                try:
                    await client.load_config(timeout=polling.timeout, retries=polling.retries)
                except RefreshPartiallySucceeded:
                    partial = True
                else:
                    self._clock_read_at = self.clock.now()
                await self._read_extra_settings()
            try:
                await client.refresh(timeout=polling.timeout, retries=polling.retries)
            except RefreshPartiallySucceeded:
                partial = True
        except ConnectionLost:
            raise  # the run loop counts it and reconnects
        except (RefreshFailed, TimeoutError, CommunicationError) as exc:
            if not client.connected:
                # The library folds a dropped connection into RefreshFailed; polling a dead
                # socket again would only fail again (and flap availability): reconnect now.
                raise ConnectionLost(f"connection lost during a poll: {exc}") from exc
            await self._failed_poll(f"poll failed: {exc}")
            return None
        self.health.last_poll_seconds = round(self.clock.monotonic() - started, 3)
        self.health.last_poll_full = full
        snapshot, problem = self._build()
        if snapshot is None:
            # Read fine, but not believable: no better than no answer.
            await self._failed_poll(f"sample rejected: {problem}")
            return None
        await self._record_success(partial)
        await self._emit(snapshot)
        return snapshot

    async def _failed_poll(self, reason: str) -> None:
        await self._record_failure(reason)
        if self.health.consecutive_failures >= self.settings.polling.offline_after:
            raise _Stop("too many failed polls")

    async def _read_extra_settings(self) -> None:
        """Holding registers the library does not poll for this model but givbridge needs.

        The library only reads HR(300-359) on AC-coupled units and the All-in-One, but Gen2+
        hybrids keep the battery pause mode and slot there (HR318-320).
        """
        assert self.context is not None
        caps = self.context.capabilities
        if has_pause_registers(self.context.family) and not caps.has_ac_config_block:
            with contextlib.suppress(TimeoutError, UncleanRead):  # the poll keeps the last good bank
                await self._read_block(300, 60)

    async def _record_success(self, partial: bool) -> None:
        self._backoff.reset()
        if self.health.succeeded(self.clock.now(), partial=partial):
            self._log.info("device available")
            await self.on_availability.emit(self)

    async def _emit(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        await self.on_snapshot.emit(snapshot)
        await self._hygiene.save()

    async def _publish_readback(self) -> None:
        """After a write: the state follows what was read back, never the intent."""
        snapshot, problem = self._build(fresh=False)  # measurements are the last poll's
        if snapshot is None:
            self._log.warning("read-back sample rejected; keeping the previous state", reason=problem)
            return
        await self._emit(snapshot)

    async def _record_failure(self, reason: str) -> None:
        health = self.health
        went_offline = health.failed(reason, self.settings.polling.offline_after)
        self._log.warning("device poll failed", reason=reason, consecutive=health.consecutive_failures)
        if went_offline:
            self._log.warning("device offline", after=health.consecutive_failures)
            await self.on_availability.emit(self)

    def _build(self, *, fresh: bool = True) -> tuple[Snapshot | None, str | None]:
        """A snapshot of what the library holds now, cleaned; or None and why it was rejected.

        ``fresh``: whether the measurements were just read (not after a write's read-back).
        """
        assert self.context is not None and self._hygiene.guard is not None
        taken_at = self.clock.now()
        previous = self._last_snapshot_at
        self._last_snapshot_at = taken_at
        plant = self._plant
        extras: dict[str, Scalar] = {
            "Stats/Last_Updated_Time": taken_at.astimezone(self.tz),
            "Stats/status": "online",
            "Stats/Time_Since_Last_Update": round((taken_at - previous).total_seconds(), 1) if previous else 0.0,
            "Stats/GivTCP_Version": GIVTCP_COMPAT_VERSION,
            "Stats/Write_Count": self._counters["write_count"],
            "Stats/Safe_Write_Count": self._counters["safe_write_count"],
            "Stats/Poll_Failures": self.health.polls_failed,
            "Stats/Reconnects": max(0, self.health.reconnects - 1),
            # The library's own hygiene: frames it refused before they reached us.
            "Stats/CRC_Errors": sum(plant.crc_failure_count.values()),
            "Stats/Battery_Splices_Rejected": sum(plant.splice_reject_count.values()),
            "Stats/Read_Retries": sum(plant.retry_count.values()),
            "Stats/Dropout_Banks_Rejected": plant.dropouts,
            "Stats/Battery_Data_Unchanged": self._battery_unchanged_seconds(),
            "Stats/Poll_Duration": self.health.last_poll_seconds,
        }
        for provider in self._extras:
            extras.update(provider())
        built = build_snapshot(
            plant,
            family=self.context.family,
            taken_at=taken_at,
            tz=self.tz,
            extras=extras,
            clock_read_at=self._clock_read_at,
        )
        cleaned = self._hygiene.guard.clean(built.values, taken_at=taken_at, serial=built.serial, fresh=fresh)
        if cleaned.sample_rejected is not None:
            self._log.warning("sample rejected", reason=cleaned.sample_rejected)
            return None, cleaned.sample_rejected
        if cleaned.rejected:
            self._log.info("readings rejected", rejected=cleaned.rejected)
        values = dict(cleaned.values)
        values["Stats/Rejected_Values"] = self._hygiene.guard.rejected_values
        values["Stats/Rejected_Samples"] = self._hygiene.guard.rejected_samples
        values["Stats/Counter_Resets"] = self._hygiene.guard.counter_resets
        skew = self._clock_skew(values.get(f"{built.serial}/Invertor_Time"), taken_at)
        if skew is not None:
            values["Stats/Clock_Skew"] = skew
        return Snapshot(info=built.info, taken_at=taken_at, values=values, raw=built.raw), None

    def _clock_skew(self, inverter_time: Scalar, taken_at: datetime) -> float | None:
        """Seconds the inverter's clock is ahead of ours (negative: behind); warns once per excursion."""
        if not isinstance(inverter_time, datetime):
            return None
        skew = round((inverter_time - taken_at).total_seconds())
        if abs(skew) > CLOCK_SKEW_WARNING and not self._skew_warned:
            self._log.warning("inverter clock is off", skew_seconds=skew, inverter_time=inverter_time.isoformat())
        self._skew_warned = abs(skew) > CLOCK_SKEW_WARNING
        return float(skew)

    def _battery_unchanged_seconds(self) -> float | None:
        """How long the LV packs' data has read byte-identical (the longest of them), in seconds.

        A frozen BMS cache reads the same for hours, but so can a healthy idle pack between
        the dongle's refreshes: this is a number to watch, not a verdict (the library makes
        none either). Measured on the library's own clock, which stamped the banks.
        """
        if self.context is None:
            return None
        ages = [
            self._plant.content_unchanged_seconds(address, "IR", 60, 60)
            for address in self.context.capabilities.lv_battery_addresses
        ]
        known = [age for age in ages if age is not None]
        return float(round(max(known))) if known else None

    # ----------------------------------------------------------------- reads and writes

    def _require_client(self) -> Client:
        if self._client is None:
            raise Unreachable(f"{self.label} is not connected")
        return self._client

    async def _read_block(self, base: int, count: int) -> dict[int, int]:
        """HR(base, count) as the poll path would believe it, read again while it is not.

        An answer the library refuses is read again, up to ``polling.retries`` +
        :data:`UNCLEAN_READ_RETRIES` times (each attempt itself retries a silence or a bad CRC
        as a poll does). A short bank read all zero over data is believed only when
        :data:`ZERO_CONFIRMATIONS` answers in a row agree. Raises :class:`UncleanRead`
        when no answer could be believed.
        """
        client = self._require_client()
        polling = self.settings.polling
        assert self.context is not None
        request = ReadHoldingRegistersRequest(
            base_register=base, register_count=count, device_address=self.context.capabilities.inverter_address
        )
        zeros = 0
        verdict = ReadVerdict.REFUSED
        for _ in range(polling.retries + UNCLEAN_READ_RETRIES + 1):
            response = await client.send_request_and_await_response(
                request, timeout=polling.timeout, retries=polling.retries
            )
            if not isinstance(response, ReadHoldingRegistersResponse):
                raise Unreachable(f"unexpected answer to a read of HR({base},{count}): {response}")
            values: dict[int, int] = response.to_dict()
            verdict = self._plant.verdict(response)
            if verdict is ReadVerdict.REFUSED:
                zeros = 0
                continue
            if verdict is ReadVerdict.UNCONFIRMED_ZERO or (zeros and not any(values.values())):
                zeros += 1
                if zeros < ZERO_CONFIRMATIONS:
                    continue
            if base == 0:
                self._clock_read_at = self.clock.now()
            return values
        self._log.warning("no believable answer to a read", bank=f"HR({base},{count})", last=verdict.value)
        raise UncleanRead(
            f"{self.label} answered every read of HR({base},{count}) with data that cannot be believed "
            f"(last: {'a dropout or corrupt bank' if verdict is ReadVerdict.REFUSED else 'unconfirmed zeros'})"
        )

    async def _read_blocks(self, registers: list[int]) -> dict[int, int]:
        """Read the banks holding ``registers`` (whole banks, so each can be judged), all in flight together."""
        values: dict[int, int] = {}
        try:
            reads = [self._read_block(base, count) for base, count in blocks_for(registers)]
            for block in await asyncio.gather(*reads):
                values.update(block)
        except TimeoutError as exc:
            raise Unreachable(f"{self.label} did not answer a read of HR{registers}") from exc
        return {r: values[r] for r in registers}

    async def _do_write(self, plan: WritePlan) -> WriteOutcome:
        assert self.context is not None
        refused = unwritable(plan, self.context.writable)
        if refused:
            raise NotWritable(refused)
        client = self._require_client()
        polling = self.settings.polling
        cache = self._plant.register_caches.get(self.context.capabilities.inverter_address, {})
        written: list[RegisterWrite] = []
        skipped: list[RegisterWrite] = []
        rejected: list[int] = []
        for write in plan.writes:
            held = cache.get(HR(write.register))
            if plan.skip_unchanged and held == write.value and write.register not in self._unconfirmed:
                skipped.append(write)
                continue
            request = RegisterWriteRequest(
                write.register, write.value, device_address=self.context.capabilities.inverter_address
            )
            try:
                await client.send_request_and_await_response(request, timeout=polling.timeout, retries=polling.retries)
            except ConnectionLost:
                raise
            except TimeoutError as exc:
                self._unconfirmed.add(write.register)
                if self._plant.take_refusal(write.register):
                    rejected.append(write.register)
                    break  # later writes of the plan depend on this one
                raise Unreachable(f"{self.label} did not acknowledge HR({write.register})") from exc
            written.append(write)
            await self._count_write(write.register)
        try:
            readback = await self._read_blocks(sorted(plan.registers))
        except Unreachable as exc:
            # Sent but not confirmed: never "not persisted" from a read that cannot be believed,
            # and never skipped as "already held" next time on the strength of the echo alone.
            self._unconfirmed.update(w.register for w in written)
            raise type(exc)(f"wrote {plan.description or 'the registers'} but could not read it back: {exc}") from exc
        for register in plan.registers:
            self._unconfirmed.discard(register)
        outcome = WriteOutcome.judge(plan, readback, written=written, skipped=skipped, rejected=rejected)
        self._log.info(
            "write confirmed" if outcome.ok else "write not confirmed",
            plan=plan.description,
            status=outcome.status.value,
            written=[(w.register, w.value) for w in written],
            skipped=len(skipped),
            mismatches=[(m.register, m.wanted, m.actual) for m in outcome.mismatches],
        )
        # The rest of the settings may have moved with this write (modes couple registers):
        # read them all soon, but not between the commands of a burst (Predbat sends several
        # in a row; each would otherwise wait behind a full poll).
        self._next_full = min(self._next_full, self.clock.monotonic() + SETTLE_AFTER_WRITE)
        await self._publish_readback()
        return outcome

    # ----------------------------------------------------------------- write counters

    @staticmethod
    def _counters_doc(serial: str) -> str:
        return f"writes-{serial}"

    def _load_counters(self, serial: str) -> dict[str, int]:
        stored = self.store.load(self._counters_doc(serial))
        return {key: int(stored.get(key, 0)) for key in ("write_count", "safe_write_count")}

    async def _count_write(self, register: int) -> None:
        """Count a register write the way GivTCP does, persistently (EEPROM wear tracking)."""
        assert self.context is not None
        caps = self.context.capabilities
        rtc_on = bool(self._plant.register_caches.get(caps.inverter_address, {}).get(HR(166)))
        key = "safe_write_count" if rtc_on and register in RTC_SAFE_REGISTERS else "write_count"
        self._counters[key] += 1
        await asyncio.to_thread(self.store.save, self._counters_doc(self.context.serial), dict(self._counters))


class _IdentityError(Exception):
    """The device at the configured address is not the one expected, or not a known model."""


def _default_client(host: str, port: int, plant: Plant, request_gap: float) -> Client:
    # The library's jitter on top of the gap spreads bursts; it scales with the gap so a
    # small gap (a local simulator) is not dominated by it.
    return Client(
        host, port, connect_timeout=5.0, plant=plant, tx_message_wait=request_gap, tx_jitter=request_gap * 0.4
    )


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

    def __init__(self, runner: InverterRunner) -> None:
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
        runner._log.info("inverter lost; searching for its serial", serial=self.serial, network=str(network))
        found = await find_serial(
            self.serial, [network], port=runner.config.port, wait=runner.settings.polling.timeout, exclude=busy
        )
        if found is None:
            runner._log.warning("serial not found; searching again later", serial=self.serial, network=str(network))
            return False
        if found.host == runner.config.host:
            return False  # back where it was; the normal reconnect takes over
        runner.move_to(found.host, f"found by searching {network}")
        record = {"configured_host": self.configured_host, "host": found.host, "found": now.isoformat()}
        try:
            await asyncio.to_thread(runner.store.save, self.document, record)
        except OSError as exc:
            runner._log.warning("could not remember the new address", error=str(exc))
        return True


TOPOLOGY_DOCUMENT = "topology"


class Bridge:
    """Starts, supervises and stops every device runner.

    It also keeps the :class:`~givbridge.plant.topology.PlantTopology`: which runners'
    inverters are controlled by another runner's Gateway or EMS, learnt from the
    controllers' snapshots before anyone else sees them, and remembered in the data dir.
    """

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.store = JsonStore(settings.data_dir)
        self.runners = [
            InverterRunner(settings, i, clock=self.clock, store=self.store)
            for i, inverter in enumerate(settings.inverters)
            if inverter.enabled
        ]
        self.topology = PlantTopology.from_record(self.store.load(TOPOLOGY_DOCUMENT))
        for runner in self.runners:
            runner.peers = self.runners
            runner.on_snapshot.connect(self._learn_topology)  # first, so listeners see it up to date
        # What energy costs (tariffs:): each runner's Energy/Rates/* and the switchRate command's state.
        self.tariffs = (
            Tariffs(settings.tariffs, self.runners, clock=self.clock, store=self.store) if settings.tariffs else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def _learn_topology(self, snapshot: Snapshot) -> None:
        changed = self.topology.observe(snapshot.info)
        serials = [runner.serial for runner in self.runners]
        if all(serials):  # every runner identified: a controller not among them is no longer configured
            changed |= self.topology.retain(serial for serial in serials if serial)
        if not changed:
            return
        log.info(
            "plant topology",
            managed={unit: owner.serial for unit, owner in self.topology.owners.items()},
        )
        try:
            await asyncio.to_thread(self.store.save, TOPOLOGY_DOCUMENT, self.topology.record())
        except OSError as exc:
            log.warning("could not remember the plant topology", error=str(exc))

    def runner_for(self, serial: str) -> InverterRunner | None:
        for runner in self.runners:
            if runner.serial == serial:
                return runner
        return None

    async def start(self) -> None:
        quiet_library_orphans(asyncio.get_running_loop())
        for runner in self.runners:
            self._tasks.append(asyncio.create_task(runner.run(), name=f"runner {runner.label}"))

    async def stop(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109 (bounded shutdown is the contract)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        self._tasks.clear()
        if self.tariffs is not None:
            await self.tariffs.save_all()
