"""One device-runner contract: the :class:`DeviceRunner` Protocol and the core both runners share.

A device runner owns the only connection to one device (an inverter, the EV charger).
Everything else in givbridge that needs "a device" (the MQTT publishers, discovery, the
command executor, health, the charger's modes) uses it through :class:`DeviceRunner`.

:class:`RunnerCore` is what every runner does the same way, so it is written once:

* the connection loop: connect, serve, and on any failure disconnect, count it and try again
  after an exponential :class:`~givbridge.runtime.backoff.Backoff`, cut short when a probe at
  poll cadence finds the device answering again; a stop request is never lost
  (:func:`~givbridge.runtime.tasks.honour_cancellation`);
* one job queue: everything that talks to the device runs as a job, one at a time, writes
  ahead of reads, and a poll runs whenever none is waiting and one is due; a poll that is
  a sequence of requests lets a waiting write run between two of them
  (:meth:`RunnerCore._serve_waiting_writes`) and then carries on where it stopped;
* availability bookkeeping (:class:`~givbridge.runtime.health.Health`, ``on_availability``);
* the one write path, :meth:`RunnerCore.apply`: the read-only and allowlist checks, the
  device's own write and read-back, and the snapshot rebuilt from what was read back, returned
  together with the outcome (:class:`~givbridge.devices.outcome.Applied`);
* the snapshot pipeline, explicit and ordered: a runner reads and builds a snapshot (with the
  bridge-side ``extras``), its hygiene cleans it, then :meth:`RunnerCore.publish` runs the
  enrichers in the order they were added (tariffs, ...) on that cleaned snapshot (what they
  add meets the hygiene's bounds too) and emits the result once on ``on_snapshot``. Whatever
  listens there sees the final snapshot; nothing depends on the order listeners were connected in.

A runner supplies the device's own steps: ``_connect``, ``_close``, ``_answers``, ``_scheduled_poll``,
``_write_now`` (send a plan and read it back), ``_rebuild`` (a snapshot from what the
read-back left) and ``_session_failed`` (what a failure of a session means).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any, Protocol

import structlog

from givbridge.clock import Clock, SystemClock, local_zone
from givbridge.config import EvcSettings, InverterSettings, Settings
from givbridge.devices.guard import GuardMemory
from givbridge.devices.outcome import Applied, NotWritable, Unreachable, WriteOutcome
from givbridge.log import get_logger
from givbridge.plant.snapshot import Scalar, Snapshot
from givbridge.plant.writes import WritePlan, unwritable
from givbridge.runtime.backoff import Backoff
from givbridge.runtime.health import Health
from givbridge.runtime.signal import Signal
from givbridge.runtime.tasks import honour_cancellation
from givbridge.store import JsonStore

log = get_logger(__name__)

Extras = Callable[[], Mapping[str, Scalar]]
"""Bridge-side values a runner adds to every snapshot it builds (timed actions, mode settings)."""
Enricher = Callable[[Snapshot], Awaitable[Mapping[str, Scalar]]]
"""A pipeline stage after hygiene: values computed from the cleaned snapshot (tariffs from its counters)."""


class DeviceRunner(Protocol):
    """What anything that needs "a device" may use of its runner, whichever kind of device it is."""

    prefix: str
    tz: tzinfo
    health: Health
    snapshot: Snapshot | None
    on_snapshot: Signal[Snapshot]
    on_availability: Signal[DeviceRunner]

    @property
    def label(self) -> str: ...

    @property
    def config(self) -> InverterSettings | EvcSettings: ...

    @property
    def serial(self) -> str | None: ...

    def add_extras(self, provider: Extras) -> None: ...

    def add_enricher(self, enricher: Enricher) -> None: ...

    async def apply(self, plan: WritePlan) -> Applied: ...

    async def run(self) -> None: ...


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    run: Callable[[], Awaitable[Any]] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)


WRITE_PRIORITY = 0
READ_PRIORITY = 1


class RunnerCore(ABC):
    """The shared core of a device runner; see the module docstring."""

    #: Exceptions a job may raise that end the session (the connection is rebuilt).
    session_enders: tuple[type[BaseException], ...] = ()
    #: How the logs name this kind of device ("device", "charger").
    noun = "device"
    #: The device's settings, and how logs and errors name it (both change when an inverter moves).
    config: InverterSettings | EvcSettings
    label: str

    def __init__(self, settings: Settings, *, clock: Clock | None, store: JsonStore | None, prefix: str) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.store = store or JsonStore(settings.data_dir)
        self.tz: tzinfo = local_zone(settings.timezone)
        self.prefix = prefix
        self.health = Health()
        self.snapshot: Snapshot | None = None
        self.on_snapshot: Signal[Snapshot] = Signal(f"{self.noun} snapshot")
        self.on_availability: Signal[DeviceRunner] = Signal(f"{self.noun} availability")
        # Data hygiene, per device (see plant/hygiene.py), and its counters kept in the data dir.
        self._hygiene = GuardMemory(self.store, self.clock)
        self._backoff = Backoff(settings.polling.backoff_min, settings.polling.backoff_max)
        self._extras: list[Extras] = []
        self._enrichers: list[Enricher] = []
        self._jobs: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._seq = 0
        self._write_waiting = asyncio.Event()  # a write job is queued (a running poll lets it go first)
        self._wake = asyncio.Event()  # something the serving loop must look at now (a restart, a lost link)
        self.log: structlog.stdlib.BoundLogger = log

    # ----------------------------------------------------------------- the contract

    @property
    @abstractmethod
    def serial(self) -> str | None: ...

    def add_extras(self, provider: Extras) -> None:
        """Contribute bridge-side values to every snapshot this runner builds (before hygiene)."""
        self._extras.append(provider)

    def add_enricher(self, enricher: Enricher) -> None:
        """Add a stage that adds values computed from each cleaned snapshot, run in the order added."""
        self._enrichers.append(enricher)

    async def apply(self, plan: WritePlan) -> Applied:
        """Carry out ``plan`` ahead of any waiting poll and judge it by reading it back.

        Refused before anything is sent in read-only mode (PermissionError) or when the plan
        touches a register outside the device's write allowlist (NotWritable). The answer holds
        the outcome and the snapshot rebuilt from the read-back (None when its sample was
        rejected: the state stays as it was, never the intent).
        """
        if self.settings.read_only:
            raise PermissionError("givbridge is in read-only mode")

        async def job() -> Applied:
            refused = unwritable(plan, self._writable())
            if refused:
                raise NotWritable(refused)
            outcome = await self._write_now(plan)
            return Applied(outcome, await self._publish_readback())

        return await self._submit(WRITE_PRIORITY, job)  # type: ignore[no-any-return]

    async def run(self) -> None:
        """Connect, poll and serve jobs until cancelled; never returns on its own."""
        await self._before_run()
        while True:
            self._wake.clear()
            try:
                await self._connect()
                await self._serve()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._session_failed(exc)
            finally:
                await self._disconnect()
            honour_cancellation()
            if await self._reconnect_at_once():
                self._backoff.reset()
                continue
            await self._wait_to_reconnect(self._backoff.next())

    async def _wait_to_reconnect(self, delay: float) -> None:
        """Wait ``delay`` before the next connection, cut short by a probe that finds the device answering.

        The backoff spares a device that refuses or hangs, but grown long it would also keep a
        returned device waiting (a minute, where polls come every 15 s). So while waiting, the
        device is probed (:meth:`_answers`) once per poll interval, the cadence it was polled at
        when up, never more often: a probe that is refused or goes unanswered changes nothing,
        one that is answered ends the wait at once. No probe is sent when the reconnect itself
        is due within a poll interval.
        """
        interval = self._poll_interval()
        deadline = self.clock.monotonic() + delay
        while deadline - self.clock.monotonic() > interval:
            await self.clock.sleep(interval)
            if await self._answers():
                self.log.info(f"{self.noun} answers again; reconnecting now")
                return
        await self.clock.sleep(max(0.0, deadline - self.clock.monotonic()))

    # ----------------------------------------------------------------- what each device does

    async def _before_run(self) -> None:
        """Once, before the first connection."""
        return None

    @abstractmethod
    async def _connect(self) -> None: ...

    async def _disconnect(self) -> None:
        """After a session: keep the hygiene's memory, fail what waits for the device, close the link."""
        await self._hygiene.save(force=True)
        self.health.connected = False
        self._fail_pending(Unreachable(f"lost the connection to {self.label}"))
        await self._close()

    @abstractmethod
    async def _close(self) -> None:
        """Close the connection (if any) and forget it; never raises."""

    @abstractmethod
    async def _scheduled_poll(self) -> None:
        """The poll that is due now (failures are counted; raise to end the session)."""

    @abstractmethod
    def _next_poll_at(self) -> float:
        """When (``clock.monotonic()``) the next poll is due."""

    def _check_session(self) -> None:
        """Raise to end the session (asked to restart, the link was lost); called whenever the loop wakes."""
        return None

    async def _session_failed(self, exc: Exception) -> None:
        """A session ended by ``exc``; the default treats it as a bug, loudly, and keeps the runner alive."""
        self.log.exception(f"{self.noun} runner error")
        await self._record_failure(f"internal error: {exc!r}")

    async def _reconnect_at_once(self) -> bool:
        """Whether to reconnect without waiting for the backoff (a restart, a moved device)."""
        return False

    def _poll_interval(self) -> float:
        """Seconds between this device's polls (the inverters' ``polling.poll_interval`` unless it has its own)."""
        return self.settings.polling.poll_interval

    @abstractmethod
    async def _answers(self) -> bool:
        """Whether the device answers its cheapest request on a connection of its own, closed after; never raises.

        Sent while the runner waits to reconnect (see :meth:`_wait_to_reconnect`): an answer, not
        an accepted connection, is what says the device is back (a dongle whose sockets are used
        up accepts and drops; a hung one accepts and stays silent).
        """

    @abstractmethod
    def _writable(self) -> frozenset[int]: ...

    @abstractmethod
    async def _write_now(self, plan: WritePlan) -> WriteOutcome: ...

    @abstractmethod
    async def _rebuild(self) -> Snapshot | None:
        """A cleaned snapshot of what the device holds now (after a write), or None when rejected."""

    # ----------------------------------------------------------------- job queue

    async def _submit(self, priority: int, run: Callable[[], Awaitable[Any]]) -> Any:
        if not self.health.connected:
            raise Unreachable(f"{self.label} is not connected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._seq += 1
        await self._jobs.put(_Job(priority, self._seq, run, future))
        if priority == WRITE_PRIORITY:
            self._write_waiting.set()
        return await future

    def _fail_pending(self, exc: Exception) -> None:
        while not self._jobs.empty():
            job = self._jobs.get_nowait()
            if not job.future.done():
                job.future.set_exception(exc)

    async def _serve(self) -> None:
        while True:
            self._check_session()
            job = await self._next_job()
            if job is None:
                await self._scheduled_poll()
                continue
            await self._run_job(job)

    async def _run_job(self, job: _Job) -> None:
        """Carry out ``job`` and settle its future; a session ender is re-raised after."""
        if job.future.cancelled():
            return  # its command was cut off or its caller left: nobody wants it carried out now
        try:
            result = await job.run()
        except self.session_enders as exc:
            if not job.future.done():
                job.future.set_exception(Unreachable(str(exc)))
            raise
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
        else:
            if not job.future.done():
                job.future.set_result(result)

    async def _serve_waiting_writes(self) -> None:
        """Run every queued write job now (from inside a poll, between two of its requests).

        Reads stay queued for after the poll. A write cannot tell a paused poll from none: the
        poll's requests already sent were sent before the write, so their answers reach the
        plant before the write's own acknowledgement; none of its requests is sent until the
        write and its read-back are done.
        """
        self._write_waiting.clear()
        later: list[_Job] = []
        try:
            while not self._jobs.empty():
                job = self._jobs.get_nowait()
                if job.priority == WRITE_PRIORITY:
                    await self._run_job(job)
                else:
                    later.append(job)
        finally:
            for job in later:  # back in the queue (failed with it if the session ends)
                self._jobs.put_nowait(job)

    async def _next_job(self) -> _Job | None:
        """The next queued job, or None when a poll is due first."""
        if not self._jobs.empty():
            self._write_waiting.clear()  # served here, in queue order, not by a poll
            return self._jobs.get_nowait()
        delay = self._next_poll_at() - self.clock.monotonic()
        if delay <= 0:
            return None
        getter = asyncio.ensure_future(self._jobs.get())
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({getter, sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()
            getter.cancel()
        if getter.done() and not getter.cancelled():
            self._write_waiting.clear()
            return getter.result()
        self._check_session()
        self._wake.clear()
        return None

    # ----------------------------------------------------------------- snapshot pipeline

    def _extra_values(self) -> dict[str, Scalar]:
        values: dict[str, Scalar] = {}
        for provider in self._extras:
            values.update(provider())
        return values

    async def publish(self, cleaned: Snapshot, *, fresh: bool = True) -> Snapshot:
        """The pipeline's last stages: enrich the cleaned snapshot, then emit it, once.

        ``fresh`` is False for a write's read-back, whose measurements are the last poll's again.
        """
        snapshot = cleaned
        guard = self._hygiene.guard
        for enricher in self._enrichers:
            added = await enricher(snapshot)
            if added and guard is not None:  # what a stage adds meets the same bounds as what was read
                checked = guard.clean(added, taken_at=snapshot.taken_at, serial=snapshot.serial, fresh=fresh)
                if checked.rejected:
                    self.log.info("readings rejected", rejected=checked.rejected)
                added = checked.values
            if added:
                snapshot = replace(snapshot, values={**snapshot.values, **added})
        self.snapshot = snapshot
        await self.on_snapshot.emit(snapshot)
        await self._hygiene.save()
        return snapshot

    async def _publish_readback(self) -> Snapshot | None:
        """After a write: the state follows what was read back, never the intent."""
        cleaned = await self._rebuild()
        if cleaned is None:
            self.log.warning("read-back sample rejected; keeping the previous state")
            return None
        return await self.publish(cleaned, fresh=False)

    # ----------------------------------------------------------------- availability

    async def _record_success(self, partial: bool = False) -> None:
        self._backoff.reset()
        if self.health.succeeded(self.clock.now(), partial=partial):
            self.log.info(f"{self.noun} available")
            await self.on_availability.emit(self)

    async def _record_failure(self, reason: str) -> None:
        health = self.health
        went_offline = health.failed(reason, self.settings.polling.offline_after)
        self.log.warning(f"{self.noun} poll failed", reason=reason, consecutive=health.consecutive_failures)
        if went_offline:
            self.log.warning(f"{self.noun} offline", after=health.consecutive_failures)
            await self.on_availability.emit(self)
