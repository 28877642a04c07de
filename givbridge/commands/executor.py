"""Carrying out a command, whatever transport it came from.

:meth:`CommandExecutor.execute` takes a command name, a payload (raw text, bytes or an
already parsed JSON object) and optionally a serial, and always returns exactly one
:class:`~givbridge.commands.results.CommandResult`; it never raises. In order:

1. decode the payload (size, UTF-8, JSON) and take out its ``transaction``;
2. find the command (``unknown_command``), ask the access policy whether the caller may run
   it (``unauthorized`` / ``forbidden``; a ``runAll`` it may not run serves the last poll), then
   find the device (``unknown_inverter``);
3. validate the payload against the command's model (``invalid_payload``);
4. refuse writes in read-only mode (``read_only``);
5. for a device: wait for its previous command to finish (one command at a time per device,
   so plans never interleave and each plans from the state the last one left; a bounded,
   expiring wait: ``busy``, ``expired``, see :mod:`givbridge.commands.queue`), check the
   device has been read (``unreachable``), that it is not controlled by a Gateway or EMS this
   bridge also polls (a change goes to that controller: ``unsupported``, naming it) and that
   the command applies to it (``unsupported``);
6. plan, check every register is in the model's write allowlist, write through the device
   runner, which reads the registers back; answer ``ok`` with the read-back values of the
   command's ``updates`` leaves, or ``not_persisted`` / ``rejected`` / ``unreachable``.

Commands to different devices run concurrently. :meth:`CommandExecutor.close` answers every
command still waiting or running when givbridge stops (``cancelled``). The executor also keeps each device's small
remembered state (the reserve to restore after "Eco (Paused)"), updated from every snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from givbridge.clock import Clock
from givbridge.commands import docs
from givbridge.commands.access import CACHED_READ, LOCAL, TOKEN_KEY, AccessPolicy, Caller, Clearance, Transport
from givbridge.commands.decoding import Message, UnreadablePayload, decode
from givbridge.commands.queue import CommandQueue
from givbridge.commands.registry import REGISTRY, Registry
from givbridge.commands.results import CommandFailed, CommandResult, ErrorCode, Transaction
from givbridge.commands.schemas import NoPayload, Payload
from givbridge.commands.spec import ActionContext, Command, PlanInput, Planned
from givbridge.commands.writing import carry_out, device_errors
from givbridge.config import Settings
from givbridge.devices.core import DeviceRunner
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.supervisor import Bridge
from givbridge.log import get_logger
from givbridge.plant.snapshot import Snapshot
from givbridge.runtime.signal import Signal
from givbridge.store import JsonStore

if TYPE_CHECKING:
    from givbridge.commands.scheduler import TimedActions
    from givbridge.evc.charger import EvCharger

log = get_logger(__name__)


class CommandExecutor:
    """Validates, plans, writes, confirms and answers commands for the bridge's devices."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        store: JsonStore | None = None,
        registry: Registry = REGISTRY,
        timed: TimedActions | None = None,
        charger: EvCharger | None = None,
    ) -> None:
        self.bridge = bridge
        self.charger = charger  # the EV charger (settings.evc), target of the "evc" commands
        self.settings = settings if settings is not None else bridge.settings
        self.clock = clock if clock is not None else bridge.clock
        self.store = store if store is not None else bridge.store
        self.registry = registry
        self.timed = timed  # runs the timed actions (forceCharge...) and their reverts
        self.policy = AccessPolicy.from_settings(self.settings)
        self.queue = CommandQueue(self.settings.control, self.clock)  # each device's bounded, expiring wait
        self._memory: dict[str, dict[str, int]] = {}
        # Every answer, as it is given (metrics count them): the one place all commands end.
        self.on_answered: Signal[CommandResult] = Signal("command answered")
        # Notified whenever a runner reports, so actions wait for device state without polling it.
        self._reported = asyncio.Condition()
        for runner in bridge.runners:
            runner.on_snapshot.connect(self._observe)
            runner.on_availability.connect(self._on_availability)

    # ------------------------------------------------------------------ public API

    async def execute(
        self,
        name: str,
        payload: bytes | str | Mapping[str, Any] | None,
        *,
        serial: str | None = None,
        caller: Caller = LOCAL,
    ) -> CommandResult:
        """Run one command to its single result; see the module docstring for the steps.

        ``caller`` says who asks (each transport passes its own); the default is the bridge itself.
        """
        started = time.monotonic()
        transaction: Transaction = None
        answered_for = serial
        try:
            message = decode(payload)
            transaction = message.transaction
            command, clearance = self._permitted(self._command(name), message, caller)
            runner = self._resolve(command, serial)
            if runner is not None:
                answered_for = runner.serial or serial
            elif command.target == "evc" and self.charger is not None:
                answered_for = self.charger.serial or serial
            model = parse_payload(command, message)
            if command.writes and self.settings.read_only:
                raise CommandFailed(ErrorCode.READ_ONLY, "givbridge runs with read_only: true, so nothing is changed")
            data = await self.queue.run(self._run(command, model, runner, clearance))
            result = CommandResult.success(name, transaction, answered_for, data)
        except CommandFailed as failure:
            if isinstance(failure, UnreadablePayload):
                transaction = failure.transaction
            result = CommandResult.failure(name, transaction, answered_for, failure)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: answer it, keep the traceback for the log
            log.exception("command failed unexpectedly", command=name, serial=answered_for)
            result = CommandResult.failure(
                name, transaction, answered_for, CommandFailed(ErrorCode.INTERNAL, f"internal error: {exc!r}")
            )
        log.info(
            "command answered",
            command=name,
            serial=answered_for,
            status="ok" if result.ok else result.code,
            message=result.error.message if result.error else None,
            transaction=transaction,
            seconds=round(time.monotonic() - started, 3),
        )
        await self.on_answered.emit(result)
        return result

    async def close(self, grace: float) -> None:
        """At shutdown: answer waiting commands ``cancelled`` now and running ones within ``grace`` seconds."""
        await self.queue.close(grace)

    async def memory(self, serial: str) -> Mapping[str, int]:
        """What is remembered for the device ``serial`` (loaded from the data directory on first use)."""
        return dict(await self._remembered(serial))

    # ------------------------------------------------------------------ steps

    def _command(self, name: str) -> Command:
        command = self.registry.get(name)
        if command is None:
            raise CommandFailed(
                ErrorCode.UNKNOWN_COMMAND,
                f"no command {name!r}; `givbridge commands` lists them (names are case-sensitive)",
            )
        return command

    def _permitted(self, command: Command, message: Message, caller: Caller) -> tuple[Command, Clearance]:
        """The command to run for ``caller`` (a full read it may not make: the cached read) and its clearance.

        An MQTT payload's ``token`` is taken out here, so it is never validated, stored or logged.
        """
        given = message.object.pop(TOKEN_KEY, None) if message.object is not None else None
        if caller.transport is Transport.MQTT:
            caller = replace(caller, token=given if isinstance(given, str) else None)
        decision = self.policy.decide(command, caller)
        if decision.refusal is not None:
            log.warning("command refused", command=command.name, caller=caller.transport.value, peer=caller.peer)
            raise CommandFailed(ErrorCode(decision.refusal.code), decision.refusal.message)
        if decision.cached:
            return self._command(CACHED_READ), decision.clearance
        return command, decision.clearance

    def _resolve(self, command: Command, serial: str | None) -> InverterRunner | None:
        """The device runner a command addresses: by serial, or the only one configured."""
        if command.target == "evc":
            self._check_charger(serial)
            return None  # the charger's commands are actions; they find it in their context
        runners = self.bridge.runners
        if serial is not None:
            wanted = serial.upper()
            for runner in runners:
                if runner.serial is not None and runner.serial.upper() == wanted:
                    return runner
            known = ", ".join(r.serial for r in runners if r.serial) or "none detected yet"
            raise CommandFailed(ErrorCode.UNKNOWN_INVERTER, f"no inverter with serial {serial} (known: {known})")
        if command.target == "bridge":
            return None
        if len(runners) == 1:
            return runners[0]
        if not runners:
            raise CommandFailed(ErrorCode.UNKNOWN_INVERTER, "no inverters are configured")
        raise CommandFailed(
            ErrorCode.UNKNOWN_INVERTER,
            f"{len(runners)} inverters are configured: address one as control/<serial>/{command.name}",
        )

    def _check_charger(self, serial: str | None) -> None:
        """An EV charger command must find the configured charger (by serial, when one is given)."""
        if self.charger is None:
            raise CommandFailed(ErrorCode.UNKNOWN_INVERTER, "no EV charger is configured (settings: evc)")
        known = self.charger.serial
        if serial is None or (known is not None and known.upper() == serial.upper()):
            return
        if known is None:
            raise CommandFailed(ErrorCode.UNREACHABLE, "the EV charger has not been read yet, so its serial is unknown")
        raise CommandFailed(ErrorCode.UNKNOWN_INVERTER, f"no EV charger with serial {serial} (the charger is {known})")

    async def _run(
        self, command: Command, model: Payload, runner: InverterRunner | None, clearance: Clearance
    ) -> Mapping[str, Any]:
        if runner is None or command.target != "inverter":
            assert command.action is not None, f"{command.name} addresses no inverter, so it must be an action"
            # One charger command at a time, from its first read (a limit's clamp) to its last save.
            charger = self.charger if command.target == "evc" and command.writes else None
            async with (
                self.queue.turn(charger.command_lock, "the EV charger")
                if charger is not None
                else contextlib.nullcontext()
            ):
                with device_errors():
                    return await command.action(model, self._action_context(runner, clearance))
        # One command at a time per device: the runner's lock, which timed actions' reverts also take.
        device = f"inverter {runner.serial or runner.label}"
        async with self.queue.turn(runner.command_lock, device) if command.writes else contextlib.nullcontext():
            context, snapshot = runner.context, runner.snapshot
            if context is None or snapshot is None:
                raise CommandFailed(ErrorCode.UNREACHABLE, f"{runner.label} has not been read yet")
            owner = self.bridge.topology.owner_of(context.serial)
            if command.writes and owner is not None:  # a Gateway's All-in-One, an EMS's inverter
                raise CommandFailed(
                    ErrorCode.UNSUPPORTED,
                    f"{command.name} does not apply here: {owner.refusal(context.serial, command.name)}",
                )
            reason = command.applies.reason(context)
            if reason is not None:
                raise CommandFailed(ErrorCode.UNSUPPORTED, f"{command.name} does not apply here: {reason}")
            with device_errors():
                if command.action is not None:
                    return await command.action(model, self._action_context(runner, clearance))
                assert command.plan is not None
                memory = await self._remembered(context.serial)
                given = PlanInput(context, snapshot, dict(memory), self._now(runner))
                planned = command.plan(model, given)
                return await self._write(command, model, runner, planned)

    async def _write(
        self, command: Command, model: Payload, runner: InverterRunner, planned: Planned
    ) -> Mapping[str, Any]:
        applied = await carry_out(runner, planned.plan, clock=self.clock, check=planned.check)
        snapshot = applied.snapshot  # rebuilt by the runner from the read-back
        if snapshot is None:
            # The registers were confirmed, but the runner kept its previous values (its hygiene
            # rejected the read-back sample): report nothing rather than values from before the write.
            log.warning("no fresh values after a confirmed write", command=command.name)
            return {}
        return report(command, model, snapshot)

    # ------------------------------------------------------------------ helpers

    def _action_context(self, runner: InverterRunner | None, clearance: Clearance) -> ActionContext:
        return ActionContext(
            runner=runner,
            bridge=self.bridge,
            settings=self.settings,
            clock=self.clock,
            store=self.store,
            until=self._until,
            timed=self.timed,
            charger=self.charger,
            clearance=clearance,
        )

    async def _until(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Whether ``condition`` holds now or after a runner's report within ``seconds`` (clock time)."""

        async def reported() -> None:
            async with self._reported:
                await self._reported.wait_for(condition)

        waiter = asyncio.ensure_future(reported())
        deadline = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({waiter, deadline}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            deadline.cancel()
        return condition()

    async def _notify(self) -> None:
        async with self._reported:
            self._reported.notify_all()

    async def _on_availability(self, runner: DeviceRunner) -> None:
        await self._notify()

    def _now(self, runner: InverterRunner) -> datetime:
        return self.clock.now().astimezone(runner.tz)

    async def _remembered(self, serial: str) -> dict[str, int]:
        memory = self._memory.get(serial)
        if memory is None:
            stored = await asyncio.to_thread(self.store.load, _memory_document(serial))
            # Another task may have loaded it while this one waited for the disk.
            memory = self._memory.setdefault(
                serial, {k: v for k, v in stored.items() if isinstance(v, int) and not isinstance(v, bool)}
            )
        return memory

    async def _observe(self, snapshot: Snapshot) -> None:
        await self._notify()
        memory = await self._remembered(snapshot.serial)
        update: dict[str, int] = {}
        for observer in self.registry.observers:
            update.update(observer(snapshot))
        if any(memory.get(key) != value for key, value in update.items()):
            memory.update(update)
            await asyncio.to_thread(self.store.save, _memory_document(snapshot.serial), dict(memory))


def _memory_document(serial: str) -> str:
    return f"commands-{serial}"


def parse_payload(command: Command, message: Message) -> Payload:
    """The command's payload model from a decoded message, or ``invalid_payload`` saying what is accepted."""
    fields: dict[str, Any]
    if message.object is not None:
        fields = dict(message.object)
    elif message.raw:
        if command.raw_field is not None:
            fields = {command.raw_field: message.raw}
        elif issubclass(command.payload, NoPayload):
            fields = {}  # a button's "restart" or any other text: nothing to parse
        else:
            raise CommandFailed(
                ErrorCode.INVALID_PAYLOAD,
                f"{command.name} takes a JSON object, not a bare value; accepted: {docs.accepted_forms(command)}",
            )
    else:
        fields = {}
    for key, value in command.fixed.items():
        given = fields.get(key)
        if given is not None and str(given).strip() != str(value):
            raise CommandFailed(
                ErrorCode.INVALID_PAYLOAD,
                f"{command.name} is for {key} {value}, not {given!r}. Accepted: {docs.accepted_forms(command)}",
            )
        fields[key] = value
    try:
        return command.payload.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise CommandFailed(
            ErrorCode.INVALID_PAYLOAD, f"{problems}. Accepted: {docs.accepted_forms(command)}"
        ) from None


def _problem(error: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in error.get("loc", ())) or "payload"
    kind = error.get("type")
    if kind == "missing":
        return f"{field} is required"
    if kind == "extra_forbidden":
        return f"{field} is not a key this command takes"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    given = error.get("input")
    if "got" not in message and isinstance(given, str | int | float) and not isinstance(given, bool):
        message = f"{message} (got {given!r})"
    return f"{field}: {message}"


def report(command: Command, model: Payload, snapshot: Snapshot) -> dict[str, Any]:
    """The command's ``updates`` leaves as read back, keyed by GivTCP leaf name."""
    fields = {**model.model_dump(), "serial": snapshot.serial}
    data: dict[str, Any] = {}
    for template in command.updates:
        path = template.format_map(fields)
        if path in snapshot:
            data[path.rsplit("/", 1)[-1]] = snapshot[path]
    return data
