"""The EV charger's device runner: one Modbus TCP connection, polling, writes with read-back, availability.

It is the charger's counterpart of :class:`givbridge.devices.inverter.InverterRunner` and reports the same
way (``on_snapshot`` and ``on_availability`` signals, a :class:`~givbridge.runtime.health.Health`), so the
MQTT layer publishes, discovers and marks it available with the machinery the inverters use:

* the charger is read every ``evc.poll_interval`` seconds, in GivTCP's two blocks
  (:data:`~givbridge.evc.registers.READ_BLOCKS`), into a :class:`~givbridge.plant.snapshot.Snapshot`
  of GivTCP-named values under ``Charger/`` (plus the bridge-side mode settings and a few
  ``Stats``), cleaned by the same hygiene rules as an inverter's (bounds, a meter that only
  counts up);
* a write (:meth:`ChargerRunner.write`) runs between polls, never during one; every register of
  a plan goes out in as few Modbus requests as it has contiguous runs, then the plan's expected
  registers are read back from the charger and a fresh snapshot is published from the new
  values: the outcome says whether the values stuck, were refused, or were acknowledged and
  not kept;
* ``polling.offline_after`` failed polls in a row make the charger unavailable; a lost
  connection is rebuilt with the inverters' backoff. Requests use ``polling.timeout`` and
  ``polling.retries``.

Nothing here knows MQTT; the runner speaks pymodbus's ``AsyncModbusTcpClient`` at unit id 0, as
GivTCP does.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from givbridge.clock import Clock, SystemClock, local_zone
from givbridge.config import EvcSettings, Settings
from givbridge.devices.guard import GuardMemory
from givbridge.devices.outcome import Unreachable, WriteOutcome
from givbridge.entities import load_catalogue
from givbridge.evc import registers as reg
from givbridge.log import get_logger
from givbridge.plant.hygiene import SampleGuard
from givbridge.plant.snapshot import DeviceInfo, Scalar, Snapshot
from givbridge.plant.writes import RegisterWrite, WritePlan
from givbridge.runtime.backoff import Backoff
from givbridge.runtime.health import Health
from givbridge.runtime.signal import Signal
from givbridge.runtime.tasks import honour_cancellation
from givbridge.store import JsonStore

log = get_logger(__name__)

ClientFactory = Callable[[str, int, float, int], AsyncModbusTcpClient]


def _default_client(host: str, port: int, timeout: float, retries: int) -> AsyncModbusTcpClient:
    # No automatic reconnection: the runner rebuilds the connection itself, with backoff and
    # availability bookkeeping.
    return AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=retries, reconnect_delay=0)


class _Lost(Exception):
    """Internal: the connection must be rebuilt; ``counted`` when the failure is already recorded."""

    def __init__(self, reason: str, *, counted: bool = False) -> None:
        super().__init__(reason)
        self.counted = counted


def contiguous_runs(writes: Iterable[RegisterWrite]) -> list[tuple[int, list[int]]]:
    """The writes as (first register, values) runs of consecutive registers, in order."""
    runs: list[tuple[int, list[int]]] = []
    for write in writes:
        if runs and runs[-1][0] + len(runs[-1][1]) == write.register:
            runs[-1][1].append(write.value)
        else:
            runs.append((write.register, [write.value]))
    return runs


class ChargerRunner:
    """Owns the EV charger: connection, polling, writes, availability."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        store: JsonStore | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        if settings.evc is None:
            raise ValueError("settings have no evc section")
        self.settings = settings
        self.config: EvcSettings = settings.evc
        self.clock = clock or SystemClock()
        self.store = store or JsonStore(settings.data_dir)
        self.tz = local_zone(settings.timezone)
        self.prefix = reg.PREFIX
        self.label = f"EV charger {self.config.host}:{self.config.port}"
        self.health = Health()
        self.snapshot: Snapshot | None = None
        self.on_snapshot: Signal[Snapshot] = Signal("charger snapshot")
        self.on_availability: Signal[ChargerRunner] = Signal("charger availability")
        self._client_factory = client_factory or _default_client
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()  # one exchange at a time: a poll, or a write and its read-back
        self._backoff = Backoff(settings.polling.backoff_min, settings.polling.backoff_max)
        self._registers: dict[int, int] = {}
        self._serial: str | None = None
        self._extras: list[Callable[[], Mapping[str, Scalar]]] = []
        # Data hygiene, per device (see plant/hygiene.py), and its counters kept in the data dir.
        self._hygiene = GuardMemory(self.store, self.clock)
        self._poll_now = asyncio.Event()
        self._log = log.bind(charger=self.label)

    # ----------------------------------------------------------------- public API

    @property
    def serial(self) -> str | None:
        return self._serial or self.config.serial

    def add_extras(self, provider: Callable[[], Mapping[str, Scalar]]) -> None:
        """Contribute bridge-side values (the emulated modes' settings) to every snapshot."""
        self._extras.append(provider)

    async def write(self, plan: WritePlan) -> WriteOutcome:
        """Send ``plan``, read its expected registers back, publish the new values; see the module docstring."""
        if self.settings.read_only:
            raise PermissionError("givbridge is in read-only mode")
        async with self._lock:
            client = self._require_client()
            written: list[RegisterWrite] = []
            rejected: list[int] = []
            for first, values in contiguous_runs(plan.writes):
                response = await self._exchange(
                    functools.partial(client.write_registers, first, values, device_id=reg.DEVICE_ID)
                )
                if response.isError():
                    rejected.extend(range(first, first + len(values)))
                    self._log.warning(
                        "charger refused a write",
                        register=first,
                        values=values,
                        exception_code=getattr(response, "exception_code", None),
                    )
                    break  # later writes of the plan depend on this one
                written.extend(w for w in plan.writes if first <= w.register < first + len(values))
            readback = await self._read_registers(sorted(plan.registers))
            outcome = WriteOutcome.judge(plan, readback, written=written, rejected=rejected)
            self._log.info(
                "charger write confirmed" if outcome.ok else "charger write not confirmed",
                plan=plan.description,
                status=outcome.status.value,
                written=[(w.register, w.value) for w in written],
                mismatches=[(m.register, m.wanted, m.actual) for m in outcome.mismatches],
            )
            # The state follows what the charger holds now, never the intent.
            await self._poll_locked()
        return outcome

    async def refresh(self) -> Snapshot:
        """Read the charger now and publish the result."""
        async with self._lock:
            self._require_client()
            snapshot = await self._poll_locked()
        if snapshot is None:
            raise Unreachable(self.health.last_error or f"{self.label} did not answer")
        return snapshot

    async def republish(self) -> None:
        """Publish the last values again with fresh bridge-side extras (a mode setting changed)."""
        async with self._lock:
            if not self._registers or self._serial is None:
                return
            snapshot = self._build()
            if snapshot is not None:
                await self._emit(snapshot)

    async def run(self) -> None:
        """Connect, poll and reconnect until cancelled; never returns on its own."""
        structlog.contextvars.bind_contextvars(charger=self.label)
        while True:
            try:
                client = await self._connect()
                await self._serve(client)
            except asyncio.CancelledError:
                raise
            except _Lost as lost:
                if not lost.counted:
                    await self._record_failure(str(lost))
            except Exception as exc:  # a bug: log it loudly, keep the runner alive
                self._log.exception("charger runner error")
                await self._record_failure(f"internal error: {exc!r}")
            finally:
                await self._disconnect()
            honour_cancellation()
            await self.clock.sleep(self._backoff.next())

    # ----------------------------------------------------------------- connection and polling

    async def _connect(self) -> AsyncModbusTcpClient:
        polling = self.settings.polling
        self.health.reconnects += 1
        client = self._client_factory(self.config.host, self.config.port, polling.timeout, polling.retries)
        try:
            async with asyncio.timeout(polling.timeout + 5.0):
                connected = await client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            raise _Lost(f"cannot connect to {self.label}: {exc}") from exc
        if not connected:
            client.close()
            raise _Lost(f"cannot connect to {self.label}")
        self._client = client
        self.health.connected = True
        self._log.info("connected to the charger")
        return client

    async def _disconnect(self) -> None:
        await self._hygiene.save(force=True)
        self.health.connected = False
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _serve(self, client: AsyncModbusTcpClient) -> None:
        while True:
            async with self._lock:
                if self._client is not client:
                    raise _Lost("the connection was dropped", counted=True)
                await self._poll_locked()
            if self._client is not client:
                raise _Lost("the connection was dropped", counted=True)
            if self.health.consecutive_failures >= self.settings.polling.offline_after:
                raise _Lost("too many failed polls", counted=True)
            await self._wait_for_next_poll()

    async def _wait_for_next_poll(self) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(self.config.poll_interval))
        asked = asyncio.ensure_future(self._poll_now.wait())
        try:
            await asyncio.wait({sleeper, asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            asked.cancel()
        self._poll_now.clear()

    def _require_client(self) -> AsyncModbusTcpClient:
        if self._client is None or not self.health.connected:
            raise Unreachable(f"{self.label} is not connected")
        return self._client

    async def _exchange(self, request: Callable[[], Awaitable[Any]]) -> Any:
        """One request's response; a lost connection or silence becomes :class:`Unreachable`."""
        try:
            return await request()  # pymodbus raises at once, not when awaited, on a dropped connection
        except (ModbusException, OSError, TimeoutError) as exc:
            # pymodbus reports both a dead link and a silent charger as ModbusIOException /
            # ConnectionException; either way the connection is rebuilt.
            client, self._client = self._client, None
            self.health.connected = False
            if client is not None:
                client.close()
            self._poll_now.set()  # the serving loop notices at once and reconnects
            raise Unreachable(f"{self.label} did not answer: {exc}") from exc

    async def _read_registers(self, wanted: Iterable[int]) -> dict[int, int]:
        """Fresh values of ``wanted``, read in the blocks that hold them."""
        client = self._require_client()
        wanted = set(wanted)
        values: dict[int, int] = {}
        for base, count in reg.READ_BLOCKS:
            if not wanted & set(range(base, base + count)):
                continue
            response = await self._exchange(
                functools.partial(client.read_holding_registers, base, count=count, device_id=reg.DEVICE_ID)
            )
            if response.isError():
                raise Unreachable(f"{self.label} refused a read of HR({base},{count})")
            values.update(zip(range(base, base + count), response.registers, strict=False))
        self._registers.update(values)
        return {r: values[r] for r in sorted(wanted) if r in values}

    async def _poll_locked(self) -> Snapshot | None:
        """One full read (the caller holds the lock); None when it failed (already counted)."""
        started = self.clock.monotonic()
        try:
            await self._read_registers(r for base, count in reg.READ_BLOCKS for r in range(base, base + count))
        except Unreachable as exc:
            await self._record_failure(str(exc))
            return None
        serial = reg.serial_of(self._registers)
        if serial is None:
            await self._record_failure("the charger's serial registers are empty or garbled")
            return None
        if self.config.serial and serial != self.config.serial:
            await self._record_failure(f"expected charger {self.config.serial} at {self.label} but found {serial}")
            return None
        if self._serial != serial:
            self._serial = serial
            self._log = log.bind(charger=self.label, serial=serial)
            await self._hygiene.start(serial, SampleGuard(load_catalogue(), self.tz))
        self.health.last_poll_seconds = round(self.clock.monotonic() - started, 3)
        snapshot = self._build()
        if snapshot is None:
            await self._record_failure("sample rejected")
            return None
        await self._record_success()
        await self._emit(snapshot)
        return snapshot

    def _build(self) -> Snapshot | None:
        assert self._serial is not None and self._hygiene.guard is not None
        taken_at = self.clock.now()
        values = reg.decode(self._registers, self.tz)
        for provider in self._extras:
            values.update(provider())
        values.update(
            {
                "Stats/Last_Updated_Time": taken_at.astimezone(self.tz),
                "Stats/status": "online",
                "Stats/Poll_Failures": self.health.polls_failed,
                "Stats/Reconnects": max(0, self.health.reconnects - 1),
                "Stats/Poll_Duration": self.health.last_poll_seconds,
            }
        )
        cleaned = self._hygiene.guard.clean(values, taken_at=taken_at, serial=self._serial)
        if cleaned.sample_rejected is not None:
            self._log.warning("charger sample rejected", reason=cleaned.sample_rejected)
            return None
        if cleaned.rejected:
            self._log.info("charger readings rejected", rejected=cleaned.rejected)
        info = DeviceInfo(serial=self._serial, model=reg.CHARGER_MODEL, family=reg.CHARGER_FAMILY)
        return Snapshot(info=info, taken_at=taken_at, values=cleaned.values)

    async def _emit(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        await self.on_snapshot.emit(snapshot)
        await self._hygiene.save()

    # ----------------------------------------------------------------- health

    async def _record_success(self) -> None:
        self._backoff.reset()
        if self.health.succeeded(self.clock.now()):
            self._log.info("charger available")
            await self.on_availability.emit(self)

    async def _record_failure(self, reason: str) -> None:
        health = self.health
        went_offline = health.failed(reason, self.settings.polling.offline_after)
        self._log.warning("charger poll failed", reason=reason, consecutive=health.consecutive_failures)
        if went_offline:
            self._log.warning("charger offline", after=health.consecutive_failures)
            await self.on_availability.emit(self)
