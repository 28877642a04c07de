"""The inverter runner: one per configured inverter, on the shared device-runner core.

One :class:`InverterRunner` per configured inverter owns the only connection to its
dongle. Everything that touches the inverter goes through the core's job queue
(:class:`~givbridge.devices.core.RunnerCore`) and runs one job at a time, so two commands
never interleave their registers and a poll never lands between a write and its read-back.
What is the inverter's own:

* polls are tiered: the measurement banks (input registers) every ``poll_interval``; the
  settings banks (holding registers) every ``settings_interval`` and soon after a write;
  identity once per connection (``detect``, with the layout remembered across restarts);
* a write (:meth:`~givbridge.devices.core.RunnerCore.apply`) leaves out values the inverter
  already holds and is confirmed by re-reading the written banks, judged exactly as a poll
  judges them (a dropout or spliced bank is read again, never believed). The outcome says
  which registers stuck, which the inverter refused and which it silently ignored;
* the snapshot is built from the library's Plant with the bridge's diagnostics (``Stats/*``)
  and cleaned by the device's hygiene before the core's enrichers and publish stage;
* after ``offline_after`` consecutive failed polls the connection is rebuilt; a dropped
  connection is rebuilt at once; ``follow_serial`` looks for a moved inverter.

Runners publish through :class:`~givbridge.runtime.signal.Signal` callbacks; they know nothing of MQTT or HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import structlog
from givenergy_modbus.client.client import Client
from givenergy_modbus.exceptions import (
    CommunicationError,
    ConnectionLost,
)
from givenergy_modbus.model.plant import Plant, PlantCapabilities
from givenergy_modbus.model.register import HR
from givenergy_modbus.pdu import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
)

from givbridge import __version__
from givbridge.clock import Clock
from givbridge.config import InverterSettings, Settings
from givbridge.devices.context import DeviceContext
from givbridge.devices.core import READ_PRIORITY, RunnerCore
from givbridge.devices.follower import SerialFollower
from givbridge.devices.library import (
    ObservedPlant,
    ReadVerdict,
    battery_unchanged_seconds,
    default_client,
    detect_remembered,
)
from givbridge.devices.outcome import UncleanRead, Unreachable, WriteOutcome
from givbridge.devices.sending import ask, poll_requests, read_bank, send_in_turn
from givbridge.devices.write_counters import WriteCounters
from givbridge.entities import load_catalogue
from givbridge.log import get_logger
from givbridge.plant import registers as reg
from givbridge.plant.build import build_snapshot, supported_families
from givbridge.plant.families import UnknownModel, family_for
from givbridge.plant.hygiene import SampleGuard
from givbridge.plant.snapshot import Scalar, Snapshot
from givbridge.plant.writes import (
    RegisterWrite,
    RegisterWriteRequest,
    WritePlan,
    blocks_for,
    holding_block,
    writable_registers,
)
from givbridge.store import JsonStore

log = get_logger(__name__)


# GivTCP reports its own version here and Predbat reads it: a value starting with "3" means
# "v3 semantics" (watts for rates, the v3 REST shapes), which is what givbridge serves.
GIVTCP_COMPAT_VERSION = f"3.5 (givbridge {__version__})"

# An inverter clock further than this from ours is worth a warning: timed slots would run
# at the wrong time (Predbat warns at 30 minutes; GivTCP 3.6 at 5).
CLOCK_SKEW_WARNING = 300.0
# After a write, the whole settings bank set is re-read this many seconds later, unless the
# next scheduled settings read comes sooner.
SETTLE_AFTER_WRITE = 10.0


class _Stop(Exception):
    """Internal: the connection must be rebuilt."""


class InverterRunner(RunnerCore):
    """Owns one inverter: connection, polling, writes, availability."""

    session_enders = (ConnectionLost, _Stop)
    config: InverterSettings

    def __init__(
        self,
        settings: Settings,
        index: int,
        *,
        clock: Clock | None = None,
        store: JsonStore | None = None,
        client_factory: Callable[[str, int, Plant, float], Client] | None = None,
    ) -> None:
        self.index = index
        self.config = settings.inverters[index]
        self.label = f"{self.config.host}:{self.config.port}"
        super().__init__(settings, clock=clock, store=store, prefix=settings.prefix_for(index))
        self._client_factory = client_factory or default_client
        self._plant = ObservedPlant()
        self._client: Client | None = None
        self._next_fast = 0.0
        self._next_full = 0.0
        self._last_snapshot_at: datetime | None = None
        self._clock_read_at: datetime | None = None  # when HR(0,60), with the inverter clock, was read
        self._skew_warned = False
        self._unconfirmed: set[int] = set()  # written registers whose read-back failed
        self._restart = asyncio.Event()
        self._wrong_device = False  # the last session found a device it refused (another serial or model)
        # Held by whoever carries out a change on this device (a command, a timed action's
        # revert), so two changes never interleave and each plans from the state the last left.
        self.command_lock = asyncio.Lock()
        self.context: DeviceContext | None = None
        self.log = log.bind(inverter=self.label)
        self._counters = WriteCounters(self.store)
        # follow_serial: the other runners (set by Bridge), whose connected addresses a search skips.
        self.peers: Sequence[InverterRunner] = ()
        self.follower = SerialFollower(self) if self.config.follow_serial and self.config.serial else None

    # ----------------------------------------------------------------- public API

    @property
    def serial(self) -> str | None:
        return self.context.serial if self.context else self.config.serial

    async def read_holding(self, registers: Iterable[int]) -> dict[int, int]:
        """Fresh values of ``registers`` read from the inverter now (not from any cache)."""
        wanted = sorted(set(registers))
        return await self._submit(READ_PRIORITY, lambda: self._read_blocks(wanted))  # type: ignore[no-any-return]

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
            self._full_read = asyncio.ensure_future(self._submit(READ_PRIORITY, fresh))
            # Retrieve the outcome even if every caller has given up waiting (no "never retrieved").
            self._full_read.add_done_callback(lambda done: done.cancelled() or done.exception())
        # One caller giving up (a closed HTTP request) must not cancel the read the others await.
        return await asyncio.shield(self._full_read)

    def move_to(self, host: str, why: str) -> None:
        """Talk to the inverter at ``host`` from the next connection on (``follow_serial``)."""
        self.log.warning("inverter moved", serial=self.config.serial, old=self.config.host, new=host, why=why)
        self.config = self.config.model_copy(update={"host": host})
        self.label = f"{self.config.host}:{self.config.port}"
        self.log = log.bind(inverter=self.label)
        structlog.contextvars.bind_contextvars(inverter=self.label)

    def request_restart(self) -> None:
        """Drop the connection and start over (the ``restart`` command)."""
        self._restart.set()
        self._wake.set()

    # ----------------------------------------------------------------- the core's hooks

    async def _before_run(self) -> None:
        if self.follower is not None:
            await self.follower.restore()
        structlog.contextvars.bind_contextvars(inverter=self.label)

    async def _session_failed(self, exc: Exception) -> None:
        self._wrong_device = isinstance(exc, _IdentityError)
        if isinstance(exc, _Stop):
            self.log.info("reconnecting", reason=str(exc))
        elif isinstance(exc, CommunicationError | TimeoutError | OSError):
            await self._record_failure(f"{type(exc).__name__}: {exc}")
        elif isinstance(exc, _IdentityError):
            self.log.error("refusing device", error=str(exc))
            await self._record_failure(str(exc))
        else:
            await super()._session_failed(exc)

    async def _reconnect_at_once(self) -> bool:
        if self._restart.is_set():
            self._restart.clear()
            return True
        # follow_serial: found at a new address: connect there at once
        return self.follower is not None and await self.follower.search_if_lost()

    def _check_session(self) -> None:
        if self._restart.is_set():
            raise _Stop("restart requested")

    def _next_poll_at(self) -> float:
        return min(self._next_fast, self._next_full)

    async def _scheduled_poll(self) -> None:
        await self._poll(full=self._next_full <= self.clock.monotonic())

    def _writable(self) -> frozenset[int]:
        assert self.context is not None
        return self.context.writable

    # ----------------------------------------------------------------- connection

    async def _connect(self) -> None:
        polling = self.settings.polling
        self.health.reconnects += 1
        client = self._client_factory(self.config.host, self.config.port, self._plant, polling.request_gap)
        self._client = client
        self.log.info("connecting")
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
        await self._counters.load(serial)
        if self._hygiene.guard is None:
            await self._hygiene.start(serial, SampleGuard(load_catalogue(), self.tz, phases=family.phases))
        self.health.connected = True
        self.log = log.bind(inverter=self.label, serial=serial)
        structlog.contextvars.bind_contextvars(serial=serial)
        self.log.info("connected", model=family.display, firmware=caps.arm_firmware_version)
        self._next_fast = self._next_full = self.clock.monotonic()

    async def _detect(self, client: Client) -> PlantCapabilities:
        """The device's layout, remembered in memory across reconnects and on disk across restarts."""
        prior = self._plant.capabilities
        return await detect_remembered(
            client, self._plant, prior, self.store, self._layout_doc(), self.settings.polling, log=self.log
        )

    async def _answers(self) -> bool:
        # The library's liveness gate: one read of HR(0,60), the identity bank detection starts
        # with, answered and believed. On a plant of its own, so nothing it reads reaches the state.
        if self._wrong_device:
            return False  # it answered, but it is not the device to talk to: only the backoff paces a retry
        polling = self.settings.polling
        client = self._client_factory(self.config.host, self.config.port, ObservedPlant(), polling.request_gap)
        try:
            await client.connect()
            alive: bool = await client.probe_alive(timeout=polling.timeout, retries=0)
            return alive
        except (CommunicationError, OSError):  # refused, unreachable, dropped at once: not back yet
            return False
        finally:
            with contextlib.suppress(Exception):  # a failed close of a probe must not wedge the wait
                await client.close()

    def _layout_doc(self) -> str:
        return f"layout-{self.config.host}_{self.config.port}".replace(":", "_")

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(5.0):
                    await client.close()
            except Exception as exc:  # a failed close must not wedge the runner
                self.log.warning("closing the connection failed", error=repr(exc))

    # ----------------------------------------------------------------- polling

    async def _poll(self, *, full: bool) -> Snapshot | None:
        """One poll; None if it failed (already counted). Raises _Stop to rebuild the connection.

        A full poll is the library's ``load_config`` reads, the extra settings bank and its
        ``refresh`` reads, sent as one pipelined sequence (:func:`~givbridge.devices.sending.send_in_turn`)
        rather than three stages one after another; a write may go between any two of them.

        Why a write in the middle cannot mislead the snapshot: the library's Plant is the one
        store every answer lands in, each bank judged on arrival exactly as before (dropouts,
        splices, CRC), and the snapshot is built from it once, after the last answer. A bank
        the poll read before the write is read back by the write itself when it is one the
        write touched, and any the poll reads after the write is read after it: so each
        setting in the snapshot is the newest the inverter answered, never a pre-write value
        over a post-write read-back. What the write did not touch may have moved with it
        (coupled modes); that is no different from a write between two polls, and is why a
        write brings the next full read forward (SETTLE_AFTER_WRITE). The read-back's own
        snapshot, published mid-poll, carries the banks this poll has read so far: each of
        them newer than the last snapshot's, so the hygiene judges a step forward in time as it
        would between two polls, and the poll's snapshot follows it with a later ``taken_at``.
        """
        client = self._require_client()
        polling = self.settings.polling
        now = self.clock.monotonic()
        self._next_fast = now + polling.poll_interval
        if full:
            self._next_full = now + polling.settings_interval
        started = self.clock.monotonic()
        settings, measurements = await poll_requests(self._plant)
        if not full:
            settings = []
        extra = self._extra_settings_request() if full else None
        requests = [*settings, *([extra] if extra is not None else []), *measurements]
        answers = await send_in_turn(
            client,
            requests,
            polling,
            write_waiting=self._write_waiting,
            serve_writes=self._serve_waiting_writes,
        )
        settings_answers = answers[: len(settings)]
        measurement_answers = answers[len(requests) - len(measurements) :]
        partial = False
        # The library's verdict on each of its batches: all failed is a failed poll, some a partial one.
        for batch in (settings_answers, measurement_answers):
            failed = sum(isinstance(answer, Exception) for answer in batch)
            if batch and failed == len(batch):
                if not client.connected:
                    # A dropped connection fails every request; polling a dead socket again
                    # would only fail again (and flap availability): reconnect now.
                    raise ConnectionLost("connection lost during a poll: every register read failed")
                await self._failed_poll(f"poll failed: all {len(batch)} register reads failed")
                return None
            partial = partial or failed > 0
        if partial:
            failed_reads = [str(r) for r, a in zip(requests, answers, strict=True) if isinstance(a, Exception)]
            self.log.warning("some register reads failed", failed=failed_reads)
        if full and not any(isinstance(answer, Exception) for answer in settings_answers):
            self._clock_read_at = self.clock.now()
        if extra is not None:
            await self._settle_extra_settings(answers[len(settings)])
        self.health.last_poll_seconds = round(self.clock.monotonic() - started, 3)
        self.health.last_poll_full = full
        snapshot, problem = self._build()
        if snapshot is None:
            # Read fine, but not believable: no better than no answer.
            await self._failed_poll(f"sample rejected: {problem}")
            return None
        await self._record_success(partial)
        return await self.publish(snapshot)

    async def _failed_poll(self, reason: str) -> None:
        await self._record_failure(reason)
        if self.health.consecutive_failures >= self.settings.polling.offline_after:
            raise _Stop("too many failed polls")

    def _extra_settings_request(self) -> ReadHoldingRegistersRequest | None:
        """The holding registers the library does not poll for this model but givbridge needs.

        The library only reads HR(300-359) on AC-coupled units and the All-in-One, but Gen2+
        hybrids keep the battery pause mode and slot there (HR318-320).
        """
        assert self.context is not None
        caps = self.context.capabilities
        if reg.has_pause_registers(self.context.family) and not caps.has_ac_config_block:
            base, count = holding_block(reg.PAUSE_MODE)
            return ReadHoldingRegistersRequest(
                base_register=base, register_count=count, device_address=caps.inverter_address
            )
        return None

    async def _settle_extra_settings(self, answer: object) -> None:
        """Read the extra settings bank again until believable, unless the poll's answer was.

        Its failure never fails the poll: the poll keeps the last good bank.
        """
        if isinstance(answer, ReadHoldingRegistersResponse) and self._plant.verdict(answer) is ReadVerdict.CLEAN:
            return
        with contextlib.suppress(TimeoutError, UncleanRead):
            await self._read_block(*holding_block(reg.PAUSE_MODE))

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
            "Stats/Write_Count": self._counters.write_count,
            "Stats/Safe_Write_Count": self._counters.safe_write_count,
            "Stats/Poll_Failures": self.health.polls_failed,
            "Stats/Reconnects": max(0, self.health.reconnects - 1),
            # The library's own hygiene: frames it refused before they reached us.
            "Stats/CRC_Errors": sum(plant.crc_failure_count.values()),
            "Stats/Battery_Splices_Rejected": sum(plant.splice_reject_count.values()),
            "Stats/Read_Retries": sum(plant.retry_count.values()),
            "Stats/Dropout_Banks_Rejected": plant.dropouts,
            "Stats/Battery_Data_Unchanged": battery_unchanged_seconds(plant, self.context.capabilities),
            "Stats/Poll_Duration": self.health.last_poll_seconds,
        }
        extras.update(self._extra_values())
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
            self.log.warning("sample rejected", reason=cleaned.sample_rejected)
            return None, cleaned.sample_rejected
        if cleaned.rejected:
            self.log.info("readings rejected", rejected=cleaned.rejected)
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
            self.log.warning("inverter clock is off", skew_seconds=skew, inverter_time=inverter_time.isoformat())
        self._skew_warned = abs(skew) > CLOCK_SKEW_WARNING
        return float(skew)

    # ----------------------------------------------------------------- reads and writes

    def _require_client(self) -> Client:
        if self._client is None:
            raise Unreachable(f"{self.label} is not connected")
        return self._client

    async def _read_block(self, base: int, count: int) -> dict[int, int]:
        """HR(base, count) as the poll path would believe it (see :func:`~givbridge.devices.sending.read_bank`)."""
        assert self.context is not None
        polling = self.settings.polling
        try:
            values = await read_bank(
                self._require_client(),
                self._plant,
                ReadHoldingRegistersRequest(
                    base_register=base, register_count=count, device_address=self.context.capabilities.inverter_address
                ),
                polling,
            )
        except UncleanRead as exc:
            self.log.warning("no believable answer to a read", bank=f"HR({base},{count})", last=str(exc))
            raise UncleanRead(f"{self.label} answered every read of HR({base},{count}) with {exc}") from None
        if base == 0:
            self._clock_read_at = self.clock.now()
        return values

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

    async def _write_now(self, plan: WritePlan) -> WriteOutcome:
        """Send ``plan`` (leaving out values already held) and judge it from the banks read back."""
        assert self.context is not None
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
                await ask(client, self._plant, request, polling)
            except ConnectionLost:
                raise
            except TimeoutError as exc:
                self._unconfirmed.add(write.register)
                if self._plant.take_refusal(write.register):
                    rejected.append(write.register)
                    break  # later writes of the plan depend on this one
                raise Unreachable(f"{self.label} did not acknowledge HR({write.register})") from exc
            written.append(write)
            await self._counters.count(write.register, rtc_on=self._rtc_on())
        # Only the banks of what the wire may have changed are read back. A skipped write needs
        # no read: it was skipped because the cache holds its value, and the cache holds only
        # what a believed read (a poll, an earlier read-back) found, never an echo or an intent
        # (a register whose read-back failed is never skipped). Reading it again could only catch
        # a change made behind the bridge's back since, which may equally come a second after any
        # read-back; the next settings read catches it either way. When a skipped register shares
        # a bank with a written one, the fresh value read there is the one judged.
        unsent = {w.register for w in skipped} - {w.register for w in written}
        banks = set(blocks_for(plan.registers - unsent))
        to_confirm = {r for r in plan.registers if holding_block(r) in banks}
        held = {w.register: w.value for w in skipped}
        try:
            fresh = await self._read_blocks(sorted(to_confirm)) if to_confirm else {}
        except Unreachable as exc:
            # Sent but not confirmed: never "not persisted" from a read that cannot be believed,
            # and never skipped as "already held" next time on the strength of the echo alone.
            self._unconfirmed.update(w.register for w in written)
            raise type(exc)(f"wrote {plan.description or 'the registers'} but could not read it back: {exc}") from exc
        for register in to_confirm:
            self._unconfirmed.discard(register)
        readback = {**held, **fresh}
        outcome = WriteOutcome.judge(plan, readback, written=written, skipped=skipped, rejected=rejected)
        self.log.info(
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
        return outcome

    def _rtc_on(self) -> bool:
        """Whether Real Time Control (HR166) is on, as last read."""
        assert self.context is not None
        return bool(self._plant.register_caches.get(self.context.capabilities.inverter_address, {}).get(HR(166)))

    async def _rebuild(self) -> Snapshot | None:
        snapshot, problem = self._build(fresh=False)  # measurements are the last poll's
        if snapshot is None:
            self.log.warning("read-back sample rejected", reason=problem)
        return snapshot


class _IdentityError(Exception):
    """The device at the configured address is not the one expected, or not a known model."""
