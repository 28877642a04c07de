"""The shape of a command definition and what its planner or action is given.

A :class:`Command` is data: its name, payload model, the devices it applies to, and either
a *planner* or an *action*:

* a planner is a pure function ``(payload, PlanInput) -> Planned``: from the parsed payload,
  the latest snapshot, the device's identity and a little remembered state it returns the
  register writes. The executor writes them through the device runner, which reads them back;
  the command's ``updates`` leaves of the resulting snapshot are the answer's ``data``;
* an action is a coroutine for the few commands that are not one register plan (reboot,
  restart, reading data, saving settings) or that are not available yet.

Planners raise :class:`~givbridge.commands.results.CommandFailed` (use :func:`unsupported`
and :func:`invalid`) when the payload cannot be carried out on this device.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from givbridge.commands.access import Clearance
from givbridge.commands.results import CommandFailed, ErrorCode
from givbridge.commands.schemas import Payload
from givbridge.devices.context import DeviceContext
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.writes import WritePlan

if TYPE_CHECKING:
    from givbridge.clock import Clock
    from givbridge.config import Settings
    from givbridge.devices.inverter import InverterRunner
    from givbridge.devices.supervisor import Bridge
    from givbridge.evc.charger import EvCharger
    from givbridge.store import JsonStore

Target = Literal["inverter", "bridge", "evc"]
"""What a command addresses: one inverter (the default), the bridge itself, or an EV charger."""
Method = Literal["GET", "POST"]
Status = Literal["ready", "dead"]
"""ready: implemented; dead: advertised by GivTCP but never implemented there, answered
``unsupported`` for good."""


@dataclass(frozen=True, slots=True)
class Applicability:
    """Which devices a command applies to: a predicate returning the reason when it does not."""

    describe: str  # for people: "hybrids with the battery pause registers (HR318-320)"
    check: Callable[[DeviceContext], str | None]

    def reason(self, device: DeviceContext) -> str | None:
        return self.check(device)


@dataclass(frozen=True, slots=True)
class PlanInput:
    """Everything a planner may look at. All of it is plain data, so planners are pure."""

    device: DeviceContext
    snapshot: Snapshot  # the latest values, as read from the inverter
    memory: Mapping[str, int]  # per device, across restarts; kept up to date by the registry's observers
    now: datetime  # the bridge's time, in the inverter's zone


ReadbackCheck = Callable[[Mapping[int, int], datetime], str | None]
"""Extra confirmation of a read-back: (register values, the time now) -> a problem, or None."""


@dataclass(frozen=True, slots=True)
class Planned:
    """A planner's answer: the writes, and optionally a check the read-back must also pass."""

    plan: WritePlan
    # For registers that cannot be compared exactly (a running clock): run after the runner
    # has confirmed ``plan.expected``.
    check: ReadbackCheck | None = None


Until = Callable[[Callable[[], bool], float], Awaitable[bool]]
"""``await until(condition, seconds)``: whether ``condition`` held by the time a device runner
next reported (a snapshot or an availability change) within ``seconds`` of clock time."""


class TimedService(Protocol):
    """What the timed-action commands ask of the scheduler that runs them (commands/scheduler.py)."""

    async def begin(self, name: str, minutes: int, runner: InverterRunner) -> dict[str, Any]: ...

    async def cancel(self, name: str, runner: InverterRunner) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action may use: the addressed runner (if any) and the bridge's services."""

    runner: InverterRunner | None
    bridge: Bridge
    settings: Settings
    clock: Clock
    store: JsonStore
    until: Until
    timed: TimedService | None = None  # the timed actions' scheduler, when the application runs one
    charger: EvCharger | None = None  # the EV charger, when one is configured (settings.evc)
    clearance: Clearance = Clearance.NONE  # how far the caller is trusted (access-widening settings need TOKEN)


Planner = Callable[[Any, PlanInput], Planned]
Action = Callable[[Any, ActionContext], Awaitable[Mapping[str, Any]]]


def _any_device(device: DeviceContext) -> str | None:
    return None


EVERY_DEVICE = Applicability("every model", _any_device)


@dataclass(frozen=True, slots=True)
class Command:
    """One command: everything the MQTT topic, the HTTP route, validation and the docs need."""

    name: str
    summary: str
    group: str  # documentation section
    payload: type[Payload]
    raw_field: str | None = None  # the field a bare (non-JSON) payload fills; None: JSON only
    fixed: Mapping[str, Any] = field(default_factory=dict)  # fields the name implies (setChargeTarget3: slot 3)
    applies: Applicability = EVERY_DEVICE
    plan: Planner | None = None
    action: Action | None = None
    updates: tuple[str, ...] = ()  # snapshot paths reported as data; {field} and {serial} are filled in
    method: Method = "POST"  # for the HTTP shim, as GivTCP's api.json
    aliases: tuple[str, ...] = ()
    target: Target = "inverter"
    writes: bool = True  # changes something: refused in read-only mode, one at a time per device
    status: Status = "ready"
    notes: str = ""  # how it differs from GivTCP, and why

    def __post_init__(self) -> None:
        if (self.plan is None) == (self.action is None):
            raise ValueError(f"command {self.name} needs exactly one of plan and action")
        if self.raw_field is not None and self.raw_field not in self.payload.model_fields:
            raise ValueError(f"command {self.name}: raw_field {self.raw_field!r} is not a payload field")
        for key in self.fixed:
            if key not in self.payload.model_fields:
                raise ValueError(f"command {self.name}: fixed field {key!r} is not a payload field")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def unsupported(message: str) -> CommandFailed:
    """The error a planner raises when this device cannot do what was asked."""
    return CommandFailed(ErrorCode.UNSUPPORTED, message)


def invalid(message: str) -> CommandFailed:
    """The error a planner raises for a value that is valid in general but not here."""
    return CommandFailed(ErrorCode.INVALID_PAYLOAD, message)
