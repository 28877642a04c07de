"""Running timed actions: the baseline, the countdown and a revert that always happens.

:class:`TimedActions` carries out the four timed commands of :mod:`givbridge.commands.timed`
inside the bridge's own process; nothing depends on Redis, pickle files or a second process
(GivTCP ran its reverts as RQ jobs, which a restart could lose and nothing checked).

Starting an action (the command's handler holds the device's command lock):

1. every action on the device it cannot run alongside is reverted first;
2. the registers it will write are read from the inverter (not from a cache), together with
   the inverter's clock, which places a slot. The read is judged as a poll's is (a dropout or
   corrupt bank is read again); if it cannot be believed the action is refused and nothing
   is written, not even the revert of a conflicting action;
3. the baseline, the end time (on the bridge's clock) and the state are saved to the data
   directory (JSON, atomic replace) *before* anything is written, so a crash at any moment
   after this leaves a revert behind;
4. the registers are written and read back; only then does the command answer ``ok``. If
   the write fails, whatever may have been written is put back at once.

Sent again while it runs, an action runs N minutes from now and keeps its first baseline.

The revert, at the end time, on ``Cancel`` or when another action replaces it, writes back
only the registers the action changed (a register whose baseline already held the action's
value is not written), and of those only the ones that still hold what the action wrote: a
register someone changed while it ran is left alone and named under ``left_alone`` in the
result. It reads them cleanly first, writes the baseline back (enables first) and reads it
back; it takes the device's command lock, so it never interleaves with a command. At the
end time it publishes a result on the command's response topic (through
:attr:`TimedActions.on_result`). If the inverter cannot be reached, or its answers cannot be
believed, it says the revert is pending (once) and keeps trying with backoff, and at once
when the inverter reports again. A register the inverter refuses to take back is left out
and named in the result. After a restart, actions whose end has passed are reverted as soon
as their inverter is connected; the others count down where they were.

The state entities (``Force_Charge`` = Normal/Running, ``Force_Charge_Num`` = minutes left,
rounded up) are part of every snapshot (runner extras) and are also published between polls
through :attr:`TimedActions.on_state` whenever they change: when an action starts or ends,
and every minute while it runs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from givbridge.clock import Clock
from givbridge.commands import devices as dev
from givbridge.commands.results import CommandFailed, CommandResult, ErrorCode
from givbridge.commands.timed import KINDS, TimedKind, kinds_for, next_change
from givbridge.commands.timed_record import DOCUMENT, RECORD_FORMAT, Action, Key, Phase, inverter_time
from givbridge.commands.timed_results import (
    Reverted,
    problem_of,
    read_back,
    refusal,
    register_values,
    result_names,
    revert_result,
)
from givbridge.commands.writing import carry_out, confirm
from givbridge.devices.context import DeviceContext
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.outcome import NotWritable, UncleanRead, Unreachable, WriteStatus
from givbridge.devices.supervisor import Bridge
from givbridge.log import get_logger
from givbridge.plant import registers as reg
from givbridge.plant.snapshot import Scalar
from givbridge.plant.writes import WritePlan
from givbridge.runtime.backoff import Backoff
from givbridge.runtime.signal import Signal
from givbridge.store import JsonStore

log = get_logger(__name__)


class TimedActions:
    """Starts, counts down, persists and reverts the timed actions of every device runner."""

    #: Backoff between revert attempts, in clock seconds.
    RETRY_MIN = 5.0
    RETRY_MAX = 300.0
    #: How long (clock seconds) a due revert waits for its inverter to be connected at all
    #: (a restart) before it says the revert is pending.
    CONNECT_GRACE = 60.0

    def __init__(self, bridge: Bridge, *, clock: Clock | None = None, store: JsonStore | None = None) -> None:
        self.bridge = bridge
        self.clock = clock if clock is not None else bridge.clock
        self.store = store if store is not None else bridge.store
        self._actions: dict[Key, Action] = {}
        self._reverts: dict[Key, asyncio.Task[None]] = {}
        self._shown: dict[Key, dict[str, Scalar]] = {}  # the state last announced per action
        self._kinds: dict[str, tuple[DeviceContext, tuple[TimedKind, ...]]] = {}  # see _kinds_for
        self._changed = asyncio.Event()  # wakes the countdown: an action started, ended or moved
        self._reported = asyncio.Event()  # pulsed on every snapshot: some inverter answers again
        self._save_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        #: A revert's result (ok, pending or failed), for ``<root>/<serial>/response/<command>``.
        self.on_result: Signal[CommandResult] = Signal("timed action result")
        #: (serial, snapshot path -> value): the state entities changed between polls.
        self.on_state: Signal[tuple[str, Mapping[str, Scalar]]] = Signal("timed action state")
        for runner in bridge.runners:
            runner.add_extras(functools.partial(self.state_of, runner))
            runner.on_snapshot.connect(self._on_snapshot)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the actions a previous run left and start counting down (reverting those already due)."""
        stored = await asyncio.to_thread(self.store.load, DOCUMENT)
        now = self.clock.now()
        for record in stored.get("actions", []) if isinstance(stored.get("actions"), list) else []:
            try:
                action = Action.from_record(record)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("ignoring an unreadable timed action in the data directory", record=record, error=str(exc))
                continue
            if action.phase is Phase.RUNNING and action.ends <= now:
                action.reason = "ended while givbridge was not running"
            self._actions[action.key] = action
            log.info(
                "timed action resumed",
                action=action.kind,
                serial=action.serial,
                ends=action.ends.isoformat(),
                due=action.ends <= now or action.phase is Phase.PENDING,
            )
        self._task = asyncio.create_task(self._countdown(), name="timed actions")

    async def stop(self) -> None:
        """Stop counting down; what is running stays in the data directory for the next start."""
        tasks = [task for task in (self._task, *self._reverts.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._reverts.clear()

    # ------------------------------------------------------------------ what is running

    def running(self, serial: str) -> dict[str, Action]:
        """The actions on the inverter ``serial``, by command name (copies)."""
        return {kind: replace(action) for (owner, kind), action in self._actions.items() if owner == serial}

    def state_of(self, runner: InverterRunner) -> dict[str, Scalar]:
        """The state entities of ``runner``'s device (a snapshot extras provider)."""
        context = runner.context
        if context is None:
            return {}
        now = self.clock.now()
        values: dict[str, Scalar] = {}
        for kind in self._kinds_for(context):
            action = self._actions.get((context.serial, kind.name))
            values.update(kind.state(action.ends if action else None, now))
        return values

    def _kinds_for(self, context: DeviceContext) -> tuple[TimedKind, ...]:
        """The timed actions the device of ``context`` can run, worked out once per detected device.

        Which actions apply depends on the context alone (model, capabilities, write
        allowlist), and a runner keeps one context until it detects its device again; planning
        every action on every poll to find out was most of this snapshot extra's cost.
        """
        known = self._kinds.get(context.serial)
        if known is None or known[0] is not context:
            known = self._kinds[context.serial] = (context, tuple(kinds_for(context)))
        return known[1]

    # ------------------------------------------------------------------ commands (device lock held)

    async def begin(self, name: str, minutes: int, runner: InverterRunner) -> dict[str, Any]:
        """Start the timed action ``name`` for ``minutes`` on ``runner``'s inverter (from now, if it runs)."""
        self._require_running()
        kind = KINDS[name]
        context = runner.context
        assert context is not None, "the executor checks the device has been read"
        serial = context.serial
        registers = kind.registers(context)
        conflicting = [a for a in self._actions.values() if a.serial == serial and a.kind != kind.name]
        conflicting = [a for a in conflicting if kind.conflicts_with(KINDS[a.kind], context)]
        if conflicting:
            # Before reverting anything: refuse now, with nothing written, if the baseline
            # cannot be read cleanly at all.
            await self._read_baseline(kind, runner, registers)
        for other in conflicting:
            await self._revert_now(other, runner, reason=f"replaced by {kind.name}", announce=True)
        values = await self._read_baseline(kind, runner, registers)
        now = self.clock.now()
        clock = inverter_time(values)
        if clock is None:
            log.warning("the inverter clock does not hold a date; placing the slot on the bridge's", serial=serial)
            clock = now.astimezone(runner.tz).replace(tzinfo=None)
        plan = WritePlan.of(kind.writes(context, clock, minutes), f"{kind.name} {minutes} min")
        written = tuple((w.register, w.value) for w in plan.expected)
        ends = now + timedelta(minutes=minutes)
        key = (serial, kind.name)
        existing = self._actions.get(key)
        if existing is not None:
            self._stop_revert(key)  # due or pending: the registers are still forced, the baseline holds
            before = replace(existing)
            action = existing
            action.ends, action.minutes, action.phase, action.attempts, action.error, action.written = (
                ends,
                minutes,
                Phase.RUNNING,
                0,
                None,
                written,
            )
            action.reason = "ended"
        else:
            before = None
            baseline = tuple((register, values[register]) for register in registers)
            action = Action(kind.name, serial, baseline, started=now, ends=ends, minutes=minutes, written=written)
            self._actions[key] = action
        await self._save()  # before anything is written: from here on a crash still reverts
        try:
            applied = await carry_out(runner, plan, clock=self.clock)
        except Exception as exc:
            if before is not None:  # the extension failed: it keeps running as it was
                self._actions[key] = before
                await self._save()
                outcome = "it keeps running as it was"
            else:
                await self._undo_start(action, runner)
                pending = self._actions.get(key) is action
                outcome = "what it wrote is being put back (pending)" if pending else "what it wrote was put back"
            self._changed.set()
            if isinstance(exc, Unreachable):  # unconfirmed, not refused: say what became of it
                raise CommandFailed(ErrorCode.UNREACHABLE, f"{kind.name} was not started: {exc}; {outcome}") from None
            raise
        self._changed.set()
        log.info("timed action started", action=kind.name, serial=serial, minutes=minutes, ends=ends.isoformat())
        await self._announce(serial, kind)
        return {
            **read_back(kind, applied.snapshot),
            **result_names(kind.state(action.ends, self.clock.now())),
            "state": Phase.RUNNING.value,
            "ends": action.ends.astimezone(runner.tz),
            "baseline": register_values(action.baseline),
        }

    @staticmethod
    async def _read_baseline(kind: TimedKind, runner: InverterRunner, registers: Sequence[int]) -> dict[int, int]:
        """``registers`` (what ``kind`` will change) and the clock, read cleanly; else refused, nothing written.

        A value the register cannot legitimately hold (a slot time of 25:99, a flag of 7) is not a
        baseline: writing it back at the end would be writing something nobody asked for.
        """
        try:
            values = await runner.read_holding([*registers, *reg.CLOCK])
        except UncleanRead as exc:
            raise CommandFailed(
                ErrorCode.UNREACHABLE,
                f"{kind.name} was not started and nothing was written: the inverter's current settings "
                f"could not be read reliably ({exc})",
            ) from None
        assert runner.context is not None
        three_phase = dev.is_three_phase(runner.context)
        impossible = [why for r in registers if (why := reg.holds_valid(r, values[r], three_phase=three_phase))]
        if impossible:
            raise CommandFailed(
                ErrorCode.UNSUPPORTED,
                f"{kind.name} was not started and nothing was written: the inverter holds values that could "
                f"not be given back at its end ({'; '.join(impossible)})",
            )
        return values

    async def cancel(self, name: str, runner: InverterRunner) -> dict[str, Any]:
        """Revert the timed action ``name`` on ``runner``'s inverter now (``Cancel``, ``Normal`` or ``0``)."""
        self._require_running()
        kind = KINDS[name]
        context = runner.context
        assert context is not None
        action = self._actions.get((context.serial, kind.name))
        if action is None:
            return {**result_names(kind.state(None, self.clock.now())), "state": "not running"}
        self._stop_revert(action.key)
        reverted = await self._revert_now(action, runner, reason="cancelled", announce=False)
        return reverted.data

    # ------------------------------------------------------------------ reverting

    async def _revert_now(self, action: Action, runner: InverterRunner, *, reason: str, announce: bool) -> Reverted:
        """Revert ``action`` now (lock held). On failure it is left pending for the countdown to retry."""
        try:
            reverted = await self._revert_locked(action, runner, reason=reason)
        except (Unreachable, CommandFailed, PermissionError) as exc:
            code, message = problem_of(exc)
            await self._mark_pending(action, reason, message)
            raise CommandFailed(
                code, f"could not revert {action.kind}: {message}; the revert is pending and givbridge keeps trying"
            ) from None
        if announce:
            await self.on_result.emit(revert_result(action, reverted))
        if reverted.refused:
            raise CommandFailed(ErrorCode.REJECTED, refusal(action, reverted), reverted.data)
        return reverted

    async def _undo_start(self, action: Action, runner: InverterRunner) -> None:
        """A start that failed part-way: put back whatever may have been written."""
        try:
            await self._revert_locked(action, runner, reason=f"{action.kind} could not be started")
        except (Unreachable, CommandFailed, PermissionError) as exc:
            await self._mark_pending(action, f"{action.kind} could not be started", problem_of(exc)[1])

    async def _mark_pending(self, action: Action, reason: str, problem: str) -> None:
        action.phase, action.reason, action.error = Phase.PENDING, reason, problem
        action.attempts += 1
        await self._save()
        self._changed.set()  # the countdown starts retrying it

    async def _revert_locked(self, action: Action, runner: InverterRunner, *, reason: str) -> Reverted:
        """Write ``action``'s baseline back and read it back; the caller holds the device's command lock."""
        if runner.context is None:
            raise Unreachable(f"inverter {action.serial} is not connected")
        kind = KINDS[action.kind]
        changed = action.changed()
        # What the registers hold now, read cleanly (an unclean read leaves the revert pending).
        current = await runner.read_holding([register for register, _ in changed]) if changed else {}
        restore, left_alone = action.revert_plan(current)
        if left_alone:
            log.warning(
                "timed action revert leaves registers someone changed since",
                action=action.kind,
                serial=action.serial,
                registers=left_alone,
            )
        remaining = list(reversed(restore))  # the enables were written last: undo them first
        refused: list[tuple[int, int]] = []
        latest = runner.snapshot  # what the answer reports when nothing is written back
        while remaining:
            try:
                applied = await runner.apply(WritePlan.of(remaining, f"revert {action.kind}"))
            except NotWritable as exc:  # the model changed under us (a firmware update): skip those
                refused += [pair for pair in remaining if pair[0] in exc.registers]
                remaining = [pair for pair in remaining if pair[0] not in exc.registers]
                continue
            outcome = applied.outcome
            if applied.snapshot is not None:
                latest = applied.snapshot
            if outcome.status is WriteStatus.REJECTED:
                # The inverter will not take that value back; restore the rest (a refusal stops a plan).
                refused += [pair for pair in remaining if pair[0] in outcome.rejected]
                remaining = [pair for pair in remaining if pair[0] not in outcome.rejected]
                continue
            confirm(outcome)
            break
        self._actions.pop(action.key, None)
        await self._save()
        self._changed.set()
        log.info(
            "timed action reverted",
            action=action.kind,
            serial=action.serial,
            reason=reason,
            refused=[register for register, _ in refused] or None,
        )
        await self._announce(action.serial, kind)
        data: dict[str, Any] = {
            **read_back(kind, latest),
            **result_names(kind.state(None, self.clock.now())),
            "state": "reverted",
            "reason": reason,
            "restored": register_values(pair for pair in restore if pair not in refused),
        }
        if left_alone:
            data["left_alone"] = register_values(left_alone.items())
        if refused:
            data["not_restored"] = register_values(refused)
        return Reverted(data, tuple(refused))

    def _stop_revert(self, key: Key) -> None:
        task = self._reverts.pop(key, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _expire(self, action: Action) -> None:
        """Revert a due action, retrying with backoff until it is done (or cancelled, or extended)."""
        key = action.key
        backoff = Backoff(self.RETRY_MIN, self.RETRY_MAX)
        waiting_since = self.clock.now()
        said_pending = False
        try:
            while self._actions.get(key) is action:
                runner = self.bridge.runner_for(action.serial)
                try:
                    if runner is None or runner.context is None or not runner.health.connected:
                        raise Unreachable(f"inverter {action.serial} is not connected")
                    async with runner.command_lock:
                        if self._actions.get(key) is not action:
                            return  # cancelled or replaced while this waited for the lock
                        if action.phase is Phase.RUNNING and action.ends > self.clock.now():
                            return  # sent again while this waited: the countdown starts over
                        reverted = await self._revert_locked(action, runner, reason=action.reason)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # every failure is retried; a bug is also logged loudly
                    if not isinstance(exc, (Unreachable, CommandFailed, PermissionError)):
                        log.exception("timed action revert failed unexpectedly", action=action.kind)
                    code, message = problem_of(exc)
                    action.phase, action.error = Phase.PENDING, message
                    action.attempts += 1
                    await self._save()
                    seen = runner is not None and runner.snapshot is not None
                    if not said_pending and (seen or self._elapsed(waiting_since) >= self.CONNECT_GRACE):
                        said_pending = True
                        log.warning(
                            "timed action revert pending", action=action.kind, serial=action.serial, error=message
                        )
                        details = {"state": Phase.PENDING.value, "reason": action.reason, "attempts": action.attempts}
                        failure = CommandFailed(
                            code, f"the revert of {action.kind} is pending: {message}; givbridge keeps trying", details
                        )
                        await self.on_result.emit(CommandResult.failure(action.kind, None, action.serial, failure))
                    await self._pause(backoff.next(), wake_on_report=code is ErrorCode.UNREACHABLE)
                    continue
                await self.on_result.emit(revert_result(action, reverted))
                return
        finally:
            if self._reverts.get(key) is asyncio.current_task():
                del self._reverts[key]

    def _elapsed(self, since: datetime) -> float:
        return (self.clock.now() - since).total_seconds()

    async def _pause(self, seconds: float, *, wake_on_report: bool) -> None:
        """Sleep ``seconds`` of clock time; with ``wake_on_report``, wake early when any inverter reports."""
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.clock.sleep(seconds))}
        if wake_on_report:
            waits.add(asyncio.ensure_future(self._reported.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _on_snapshot(self, _snapshot: object) -> None:
        self._reported.set()  # wakes every revert waiting for an inverter
        self._reported.clear()

    # ------------------------------------------------------------------ the countdown

    async def _countdown(self) -> None:
        """Start due reverts, announce the minutes left, sleep until the next of either."""
        while True:
            self._changed.clear()
            now = self.clock.now()
            wake = now + timedelta(seconds=60)
            try:
                for key, action in list(self._actions.items()):
                    if action.phase is Phase.PENDING or action.ends <= now:
                        if key not in self._reverts:
                            self._reverts[key] = asyncio.create_task(self._expire(action), name=f"revert {key}")
                        continue
                    wake = min(wake, next_change(action.ends, now))
                for serial, kind_name in list(self._actions):
                    await self._announce(serial, KINDS[kind_name])
            except Exception:  # a bug: say so loudly, and keep counting down
                log.exception("timed action countdown failed; trying again in a minute")
            delay = max(0.0, (wake - self.clock.now()).total_seconds())
            sleeper = asyncio.ensure_future(self.clock.sleep(delay))
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                changed.cancel()

    async def _announce(self, serial: str, kind: TimedKind) -> None:
        """Publish ``kind``'s state entities on ``serial`` if they changed since last announced."""
        runner = self.bridge.runner_for(serial)
        if runner is None or runner.context is None:
            return
        action = self._actions.get((serial, kind.name))
        values = kind.state(action.ends if action else None, self.clock.now())
        key = (serial, kind.name)
        if self._shown.get(key) == values:
            return
        if action is None:
            self._shown.pop(key, None)
        else:
            self._shown[key] = values
        await self.on_state.emit((serial, values))

    # ------------------------------------------------------------------ persistence

    async def _save(self) -> None:
        """Write every action to the data directory; shielded, so a cancelled caller cannot tear the order."""
        await asyncio.shield(self._write())

    async def _write(self) -> None:
        async with self._save_lock:
            document = {"format": RECORD_FORMAT, "actions": [action.record() for action in self._actions.values()]}
            try:
                await asyncio.to_thread(self.store.save, DOCUMENT, document)
            except OSError as exc:
                log.error("could not save the timed actions; a restart would lose their revert", error=str(exc))

    def _require_running(self) -> None:
        if self._task is None or self._task.done():
            raise CommandFailed(ErrorCode.UNSUPPORTED, "the timed-action scheduler is not running")
