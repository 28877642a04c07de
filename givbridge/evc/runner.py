"""The EV charger's device runner: one Modbus TCP connection, polling, writes with read-back, availability.

It is built on the same core as :class:`givbridge.devices.inverter.InverterRunner`
(:class:`~givbridge.devices.core.RunnerCore`: connection loop, job queue, availability, the one
write path and the snapshot pipeline), so the MQTT layer publishes, discovers and marks it
available with the machinery the inverters use:

* the charger is read every ``evc.poll_interval`` seconds, in GivTCP's two blocks
  (:data:`~givbridge.evc.registers.READ_BLOCKS`), into a :class:`~givbridge.plant.snapshot.Snapshot`
  of GivTCP-named values under ``Charger/`` (plus the bridge-side mode settings and a few
  ``Stats``), cleaned by the same hygiene rules as an inverter's (bounds, a meter that only
  counts up);
* a write (:meth:`~givbridge.devices.core.RunnerCore.apply`) runs between polls, never during one; every register of
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
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog

from givbridge.clock import Clock
from givbridge.config import EvcSettings, Settings
from givbridge.devices.core import READ_PRIORITY, RunnerCore
from givbridge.devices.outcome import Unreachable, WriteOutcome
from givbridge.entities import load_catalogue
from givbridge.evc import registers as reg
from givbridge.log import get_logger
from givbridge.plant.hygiene import SampleGuard
from givbridge.plant.snapshot import DeviceInfo, Snapshot
from givbridge.plant.writes import RegisterWrite, WritePlan
from givbridge.store import JsonStore

if TYPE_CHECKING:
    from pymodbus.client import AsyncModbusTcpClient

# pymodbus is imported only once a charger is configured (about 1.5 MB of a process's memory
# that a bridge without one never uses), so its names are fetched where they are needed.

log = get_logger(__name__)

ClientFactory = Callable[[str, int, float, int], "AsyncModbusTcpClient"]


def _default_client(host: str, port: int, timeout: float, retries: int) -> AsyncModbusTcpClient:
    from pymodbus.client import AsyncModbusTcpClient

    # No automatic reconnection: the runner rebuilds the connection itself, with backoff and
    # availability bookkeeping.
    return AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=retries, reconnect_delay=0)


def _link_errors() -> tuple[type[Exception], ...]:
    """What a lost connection or a silent charger raises (pymodbus's own, timeouts, sockets')."""
    from pymodbus.exceptions import ModbusException

    return (TimeoutError, OSError, ModbusException)


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


class ChargerRunner(RunnerCore):
    """Owns the EV charger: connection, polling, writes, availability."""

    noun = "charger"
    session_enders = (_Lost,)
    config: EvcSettings

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
        self.config = settings.evc
        self.label = f"EV charger {self.config.host}:{self.config.port}"
        super().__init__(settings, clock=clock, store=store, prefix=reg.PREFIX)
        self._client_factory = client_factory or _default_client
        self._client: AsyncModbusTcpClient | None = None
        self._registers: dict[int, int] = {}
        self._serial: str | None = None
        self._next_poll = 0.0
        self.log = log.bind(charger=self.label)

    # ----------------------------------------------------------------- public API

    @property
    def serial(self) -> str | None:
        return self._serial or self.config.serial

    async def refresh(self) -> Snapshot:
        """Read the charger now and publish the result."""

        async def fresh() -> Snapshot:
            snapshot = await self._poll()
            if snapshot is None:
                raise Unreachable(self.health.last_error or f"{self.label} did not answer")
            return snapshot

        return await self._submit(READ_PRIORITY, fresh)  # type: ignore[no-any-return]

    async def republish(self) -> None:
        """Publish the last values again with fresh bridge-side extras (a mode setting changed)."""
        if self.health.connected:
            with contextlib.suppress(Unreachable):  # dropped meanwhile: nothing else runs now
                await self._submit(READ_PRIORITY, self._republish_now)
                return
        await self._republish_now()

    async def _republish_now(self) -> None:
        if not self._registers or self._serial is None:
            return
        snapshot = self._build()
        if snapshot is not None:
            await self.publish(snapshot)

    # ----------------------------------------------------------------- the core's hooks

    async def _before_run(self) -> None:
        structlog.contextvars.bind_contextvars(charger=self.label)

    async def _session_failed(self, exc: Exception) -> None:
        if isinstance(exc, _Lost):
            if not exc.counted:
                await self._record_failure(str(exc))
        else:
            await super()._session_failed(exc)

    def _check_session(self) -> None:
        if self._client is None:
            raise _Lost("the connection was dropped", counted=True)

    def _next_poll_at(self) -> float:
        return self._next_poll

    async def _scheduled_poll(self) -> None:
        client = self._client
        await self._poll()
        if self._client is not client:
            raise _Lost("the connection was dropped", counted=True)
        if self.health.consecutive_failures >= self.settings.polling.offline_after:
            raise _Lost("too many failed polls", counted=True)
        self._next_poll = self.clock.monotonic() + self._poll_interval()

    def _writable(self) -> frozenset[int]:
        return reg.WRITABLE

    async def _write_now(self, plan: WritePlan) -> WriteOutcome:
        """Send ``plan`` in as few requests as it has contiguous runs, then read its registers back."""
        client = self._require_client()
        written: list[RegisterWrite] = []
        rejected: list[int] = []
        for first, values in contiguous_runs(plan.writes):
            response = await self._exchange(
                functools.partial(client.write_registers, first, values, device_id=reg.DEVICE_ID)
            )
            if response.isError():
                rejected.extend(range(first, first + len(values)))
                self.log.warning(
                    "charger refused a write",
                    register=first,
                    values=values,
                    exception_code=getattr(response, "exception_code", None),
                )
                break  # later writes of the plan depend on this one
            written.extend(w for w in plan.writes if first <= w.register < first + len(values))
        readback = await self._read_registers(sorted(plan.registers))
        outcome = WriteOutcome.judge(plan, readback, written=written, rejected=rejected)
        self.log.info(
            "charger write confirmed" if outcome.ok else "charger write not confirmed",
            plan=plan.description,
            status=outcome.status.value,
            written=[(w.register, w.value) for w in written],
            mismatches=[(m.register, m.wanted, m.actual) for m in outcome.mismatches],
        )
        return outcome

    async def _rebuild(self) -> Snapshot | None:
        # The state follows what the charger holds now, never the intent: read all of it again.
        return await self._read_and_build()

    # ----------------------------------------------------------------- connection and polling

    async def _connect(self) -> None:
        polling = self.settings.polling
        self.health.reconnects += 1
        client = self._client_factory(self.config.host, self.config.port, polling.timeout, polling.retries)
        try:
            async with asyncio.timeout(polling.timeout + 5.0):
                connected = await client.connect()
        except _link_errors() as exc:
            client.close()
            raise _Lost(f"cannot connect to {self.label}: {exc}") from exc
        if not connected:
            client.close()
            raise _Lost(f"cannot connect to {self.label}")
        self._client = client
        self.health.connected = True
        self._next_poll = 0.0  # read it at once
        self.log.info("connected to the charger")

    def _poll_interval(self) -> float:
        return self.config.poll_interval

    async def _answers(self) -> bool:
        # The cheapest request there is: one register of the first bank the charger is read in.
        polling = self.settings.polling
        client = self._client_factory(self.config.host, self.config.port, polling.timeout, 0)
        base, _count = reg.READ_BLOCKS[0]
        try:
            async with asyncio.timeout(polling.timeout + 5.0):
                if not await client.connect():
                    return False
                response = await client.read_holding_registers(base, count=1, device_id=reg.DEVICE_ID)
            return not response.isError()
        except _link_errors():  # refused, unreachable, silent: not back yet
            return False
        finally:
            client.close()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _require_client(self) -> AsyncModbusTcpClient:
        if self._client is None or not self.health.connected:
            raise Unreachable(f"{self.label} is not connected")
        return self._client

    async def _exchange(self, request: Callable[[], Awaitable[Any]]) -> Any:
        """One request's response; a lost connection or silence becomes :class:`Unreachable`."""
        try:
            return await request()  # pymodbus raises at once, not when awaited, on a dropped connection
        except _link_errors() as exc:
            # pymodbus reports both a dead link and a silent charger as ModbusIOException /
            # ConnectionException; either way the connection is rebuilt.
            client, self._client = self._client, None
            self.health.connected = False
            if client is not None:
                client.close()
            self._wake.set()  # the serving loop notices at once and reconnects
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

    async def _poll(self) -> Snapshot | None:
        """One full read, published; None when it failed (already counted)."""
        snapshot = await self._read_and_build()
        return None if snapshot is None else await self.publish(snapshot)

    async def _read_and_build(self) -> Snapshot | None:
        """Read every block and build a cleaned snapshot from it; None when that failed (already counted)."""
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
            self.log = log.bind(charger=self.label, serial=serial)
            await self._hygiene.start(serial, SampleGuard(load_catalogue(), self.tz))
        self.health.last_poll_seconds = round(self.clock.monotonic() - started, 3)
        snapshot = self._build()
        if snapshot is None:
            await self._record_failure("sample rejected")
            return None
        await self._record_success()
        return snapshot

    def _build(self) -> Snapshot | None:
        assert self._serial is not None and self._hygiene.guard is not None
        taken_at = self.clock.now()
        values = reg.decode(self._registers, self.tz)
        values.update(self._extra_values())
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
            self.log.warning("charger sample rejected", reason=cleaned.sample_rejected)
            return None
        if cleaned.rejected:
            self.log.info("charger readings rejected", rejected=cleaned.rejected)
        info = DeviceInfo(serial=self._serial, model=reg.CHARGER_MODEL, family=reg.CHARGER_FAMILY)
        return Snapshot(info=info, taken_at=taken_at, values=cleaned.values)
