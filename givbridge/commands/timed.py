"""Timed actions: forceCharge, forceExport, tempPauseCharge, tempPauseDischarge.

Each one changes a few registers for N minutes (1-1440) and then puts them back. This module
is the pure part: which registers each action writes on a device and to what, and the
command definitions. :mod:`givbridge.commands.scheduler` runs them: it reads the baseline,
writes, persists, counts down and reverts.

What each action writes (the same as GivTCP, with the differences noted on the commands):

=====================  ======================================================================
forceCharge            charge rate to the maximum, charge target 100 % (and charge slot 1's own
                       target on 10-slot firmware), pause mode off, charge slot 1 = now..end
                       on the inverter's clock, then the charge schedule on. Three-phase: the
                       AC charge limit 100 %, force discharge off, force and AC charge on.
forceExport            discharge rate to the maximum, reserve 4 % (and discharge slot 1's own
                       target), pause mode off, discharge slot 1 = now..end, then Timed Export
                       (eco off, discharge schedule on). Three-phase: AC discharge limit 100 %,
                       force charge off, force discharge on.
tempPauseCharge        the charge rate to 0 (three-phase: 1 %, the lowest the firmware takes)
tempPauseDischarge     the discharge rate to 0 (three-phase: 1 %)
=====================  ======================================================================

The baseline is exactly those registers, read from the inverter when the action starts, and
the revert writes back, in the reverse order (the enables first, so a forced charge stops
before its slot and target are restored), those the action changed and that still hold what
it wrote.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from givbridge.commands import devices as dev
from givbridge.commands import rates
from givbridge.commands.results import CommandFailed
from givbridge.commands.schemas import DurationPayload
from givbridge.commands.slots import hhmm
from givbridge.commands.spec import ActionContext, Applicability, Command, unsupported
from givbridge.commands.targets import MIN_SOC, charge_target_writes
from givbridge.commands.values import CANCEL
from givbridge.devices.context import DeviceContext
from givbridge.plant import registers as reg
from givbridge.plant.derive import RATE_REGISTER_MAX

if TYPE_CHECKING:
    from givbridge.plant.snapshot import Scalar

GROUP = "Timed actions"

#: The select's states, as GivTCP publishes them.
NORMAL = "Normal"
RUNNING = "Running"
#: The select's options: the two states, Cancel, and durations in minutes. GivTCP's list
#: (2-180) plus longer ones, which GivTCP could not do (#142 asked for 360).
SELECT_OPTIONS: tuple[str, ...] = (
    NORMAL,
    RUNNING,
    CANCEL,
    *(str(m) for m in (2, 5, 10, 15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 165, 180)),
    *(str(m) for m in (240, 360, 480, 720, 1440)),
)

#: The longest window a charge or discharge slot can express: one minute short of a day
#: (a slot whose start equals its end is empty on the inverter).
_LONGEST_SLOT = timedelta(minutes=24 * 60 - 1)

#: The lowest three-phase AC limit the firmware accepts (HR1108/1110 take 1-100 %).
THREE_PHASE_MIN_RATE = 1


Writes = list[tuple[int, int]]


def slot_window(inverter_now: datetime, minutes: int) -> tuple[int, int]:
    """A slot covering ``minutes`` from ``inverter_now`` on the inverter's clock, as HHMM start and end.

    The start is the current minute, the end is rounded up to a whole minute so the slot
    lasts at least as long as the action (the revert ends it on time); past midnight it wraps
    (23:50 for 30 minutes is 23:50-00:20), and a full day stops a minute short of the start.
    """
    start = inverter_now.replace(second=0, microsecond=0)
    end = inverter_now + timedelta(minutes=minutes)
    if end != end.replace(second=0, microsecond=0):
        end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = start + min(end - start, _LONGEST_SLOT)
    return hhmm(start.time()), hhmm(end.time())


def minutes_left(ends: datetime, now: datetime) -> int:
    """Whole minutes until ``ends``, rounded up (what the ``*_Num`` entity shows); 0 once it has passed."""
    return max(0, math.ceil((ends - now).total_seconds() / 60))


def next_change(ends: datetime, now: datetime) -> datetime:
    """When the minutes shown by :func:`minutes_left` next drop by one (the last drop is ``ends`` itself)."""
    return ends - timedelta(minutes=max(0, minutes_left(ends, now) - 1))


def _pause_off(device: DeviceContext) -> Writes:
    """GivTCP turns the battery pause mode off for a forced charge or export where the model has one."""
    if reg.has_pause_registers(device.family) and reg.PAUSE_MODE in device.writable:
        return [(reg.PAUSE_MODE, 0)]
    return []


def _full_rate(device: DeviceContext, *, discharge: bool) -> Writes:
    """The battery rate at its maximum: HR111/112 = 50 (C/2), or the three-phase AC limit at 100 %."""
    return [
        (rates.rate_register(device, discharge=discharge), 100 if dev.is_three_phase(device) else RATE_REGISTER_MAX)
    ]


def _slot(device: DeviceContext, kind: dev.SlotKind, inverter_now: datetime, minutes: int) -> Writes:
    start_register, end_register = dev.slot_window(device, kind, 1)
    start, end = slot_window(inverter_now, minutes)
    return [(start_register, start), (end_register, end)]


def _slot_target(device: DeviceContext, kind: dev.SlotKind, percent: int) -> Writes:
    register = dev.slot_target_register(device, kind, 1)
    return [(register, percent)] if register is not None else []


def force_charge_writes(device: DeviceContext, inverter_now: datetime, minutes: int) -> Writes:
    writes = [
        *_full_rate(device, discharge=False),
        *charge_target_writes(device, 100),
        *_slot_target(device, "charge", 100),
        *_pause_off(device),
    ]
    if dev.is_three_phase(device):
        writes.append((reg.TPH_FORCE_DISCHARGE_ENABLE, 0))
    writes += _slot(device, "charge", inverter_now, minutes)
    writes += [(register, 1) for register in dev.charge_enable_registers(device)]
    return writes


def force_export_writes(device: DeviceContext, inverter_now: datetime, minutes: int) -> Writes:
    writes = [
        *_full_rate(device, discharge=True),
        (dev.reserve_register(device), MIN_SOC),
        *_slot_target(device, "discharge", MIN_SOC),
        *_pause_off(device),
    ]
    if dev.is_three_phase(device):
        writes.append((reg.TPH_FORCE_CHARGE_ENABLE, 0))
    writes += _slot(device, "discharge", inverter_now, minutes)
    # Timed Export, as setBatteryMode writes it (HR59 on three-phase units too, as GivTCP).
    writes += [(reg.ECO_MODE, 0), (reg.ENABLE_DISCHARGE, 1)]
    if dev.is_three_phase(device):
        writes.append((reg.TPH_FORCE_DISCHARGE_ENABLE, 1))
    return writes


def _paused_rate(device: DeviceContext, *, discharge: bool) -> Writes:
    """The rate at its lowest: 0, or the 1 % a three-phase AC limit cannot go below (GivTCP failed there, #487)."""
    lowest = THREE_PHASE_MIN_RATE if dev.is_three_phase(device) else 0
    return [(rates.rate_register(device, discharge=discharge), lowest)]


def pause_charge_writes(device: DeviceContext, inverter_now: datetime, minutes: int) -> Writes:
    return _paused_rate(device, discharge=False)


def pause_discharge_writes(device: DeviceContext, inverter_now: datetime, minutes: int) -> Writes:
    return _paused_rate(device, discharge=True)


# Any time will do to find out which registers an action writes: only the slot values depend on it.
_ANY_TIME = datetime(2000, 1, 1, 12, 0)


@dataclass(frozen=True, slots=True)
class TimedKind:
    """One timed action: its command, its state leaves and what it writes."""

    name: str  # the command
    leaf: str  # the select's leaf; the minutes-remaining number is <leaf>_Num
    summary: str
    plan: Callable[[DeviceContext, datetime, int], Writes]  # (device, inverter's time now, minutes)
    rate: str  # the rate command whose applicability this action shares (it writes that rate)
    reported: tuple[str, ...]  # snapshot paths of the registers it writes, reported as read back
    # Actions that cannot run alongside this one even where their registers do not overlap.
    excludes: frozenset[str] = frozenset()

    @property
    def select_path(self) -> str:
        return f"Control/{self.leaf}"

    @property
    def number_path(self) -> str:
        return f"Control/{self.leaf}_Num"

    def writes(self, device: DeviceContext, inverter_now: datetime, minutes: int) -> Writes:
        return self.plan(device, inverter_now, minutes)

    def registers(self, device: DeviceContext) -> tuple[int, ...]:
        """Every register this action writes on ``device``, in writing order: its baseline."""
        return tuple(dict.fromkeys(register for register, _ in self.plan(device, _ANY_TIME, 1)))

    def conflicts_with(self, other: TimedKind, device: DeviceContext) -> bool:
        """Whether ``other`` must be reverted before this one starts on ``device``."""
        if other.name == self.name:
            return False
        if other.name in self.excludes or self.name in other.excludes:
            return True
        return bool(set(self.registers(device)) & set(other.registers(device)))

    def state(self, ends: datetime | None, now: datetime) -> dict[str, Scalar]:
        """The select and number values: Running and the minutes left, or Normal and 0."""
        if ends is None:
            return {self.select_path: NORMAL, self.number_path: 0}
        return {self.select_path: RUNNING, self.number_path: minutes_left(ends, now)}


FORCE_CHARGE = TimedKind(
    name="forceCharge",
    leaf="Force_Charge",
    summary="Charge the battery from the grid at full rate for N minutes, then restore the settings.",
    plan=force_charge_writes,
    rate="setChargeRate",
    reported=(
        "Control/Target_SOC",
        "Control/Charge_Target_SOC_1",
        "Control/Enable_Charge_Schedule",
        "Control/Battery_Charge_Rate",
        "Control/Battery_pause_mode",
        "Timeslots/Charge_start_time_slot_1",
        "Timeslots/Charge_end_time_slot_1",
    ),
    excludes=frozenset({"forceExport"}),
)
FORCE_EXPORT = TimedKind(
    name="forceExport",
    leaf="Force_Export",
    summary="Discharge at full power for N minutes, then restore the settings.",
    plan=force_export_writes,
    rate="setDischargeRate",
    reported=(
        "Control/Mode",
        "Control/Battery_Power_Reserve",
        "Control/Discharge_Target_SOC_1",
        "Control/Enable_Discharge_Schedule",
        "Control/Battery_Discharge_Rate",
        "Control/Battery_pause_mode",
        "Timeslots/Discharge_start_time_slot_1",
        "Timeslots/Discharge_end_time_slot_1",
    ),
    excludes=frozenset({"forceCharge"}),
)
TEMP_PAUSE_CHARGE = TimedKind(
    name="tempPauseCharge",
    leaf="Temp_Pause_Charge",
    summary="Set the charge rate to 0 W for N minutes, then restore it.",
    plan=pause_charge_writes,
    rate="setChargeRate",
    reported=("Control/Battery_Charge_Rate", "Control/Battery_Charge_Rate_AC"),
)
TEMP_PAUSE_DISCHARGE = TimedKind(
    name="tempPauseDischarge",
    leaf="Temp_Pause_Discharge",
    summary="Set the discharge rate to 0 W for N minutes, then restore it.",
    plan=pause_discharge_writes,
    rate="setDischargeRate",
    reported=("Control/Battery_Discharge_Rate", "Control/Battery_Discharge_Rate_AC"),
)

KINDS: Mapping[str, TimedKind] = {
    k.name: k for k in (FORCE_CHARGE, FORCE_EXPORT, TEMP_PAUSE_CHARGE, TEMP_PAUSE_DISCHARGE)
}


def _rate_applicability(kind: TimedKind) -> Applicability:
    """The rate command this action shares a register with: where that cannot be set, neither can this run."""
    return next(command.applies for command in rates.COMMANDS if command.name == kind.rate)


def _can_plan(kind: TimedKind) -> Callable[[DeviceContext], str | None]:
    def check(device: DeviceContext) -> str | None:
        if reason := _rate_applicability(kind).reason(device):
            return reason
        try:
            kind.registers(device)
        except CommandFailed as failure:  # no slot 1 of that kind on this model
            return failure.message
        return None

    return check


def applicability(kind: TimedKind) -> Applicability:
    return dev.applies(
        "inverters with a battery",
        battery=True,
        when=_can_plan(kind),
        registers=lambda device: kind.registers(device),
    )


def applies_to(kind: TimedKind, device: DeviceContext) -> bool:
    return applicability(kind).reason(device) is None


def kinds_for(device: DeviceContext) -> Iterable[TimedKind]:
    """The timed actions ``device`` can run (and whose state entities it publishes)."""
    return (kind for kind in KINDS.values() if applies_to(kind, device))


def _action(kind: TimedKind) -> Callable[[DurationPayload, ActionContext], Awaitable[Mapping[str, Any]]]:
    async def run(payload: DurationPayload, context: ActionContext) -> Mapping[str, Any]:
        if context.timed is None or context.runner is None:
            raise unsupported("timed actions need the running bridge (its scheduler carries out the revert)")
        if payload.duration == CANCEL:
            return await context.timed.cancel(kind.name, context.runner)
        assert isinstance(payload.duration, int)
        return await context.timed.begin(kind.name, payload.duration, context.runner)

    run.__qualname__ = f"{kind.name}_action"
    return run


_NOTES = (
    "Minutes 1-1440 (GivTCP stops at 180 in its select, 240 in its number); Cancel, Normal or 0 reverts now. "
    "The registers it writes are read from the inverter first (not from a cache, and judged as a poll's "
    "read is: a dropout or corrupt answer is read again; if no answer can be believed the command fails "
    "with unreachable and writes nothing) and kept in the data directory with the end time and the values "
    "it writes before anything is written, so the revert survives a crash or restart: at the end time the "
    "bridge writes back only the registers the action changed, reads them back, publishes the state and a "
    "result on this command's response topic (restored: what was written back); if the bridge was down "
    "then, it reverts as soon as it starts; if the inverter does not answer, it keeps trying and says the "
    "revert is pending. A register someone else changed while the action ran (it no longer holds what the "
    "action wrote) is never overwritten: the revert leaves it alone and names it, with its value, under "
    "left_alone. Sent again while running: "
    "runs N minutes from now and keeps the original baseline. An action that writes a register another "
    "running action wrote (or forceCharge and forceExport) reverts that one first."
)
_SLOT_NOTE = (
    " The slot is set on the inverter's own clock (read with the baseline), so an inverter whose clock is "
    "off still charges now (#378); the revert restores slot 1, the target and the schedule switch, so no "
    "100 % target or programmed slot is left behind (#120, #121, #487)."
)

_timed = functools.partial(Command, group=GROUP, payload=DurationPayload, raw_field="duration")

COMMANDS: tuple[Command, ...] = tuple(
    _timed(
        name=kind.name,
        summary=kind.summary,
        action=_action(kind),
        updates=(kind.select_path, kind.number_path, *kind.reported),
        applies=applicability(kind),
        notes=_NOTES
        + (_SLOT_NOTE if kind in (FORCE_CHARGE, FORCE_EXPORT) else "")
        + (
            " Three-phase units: 1 %, the lowest AC limit their firmware takes (GivTCP's 0 W failed there)."
            if kind in (TEMP_PAUSE_CHARGE, TEMP_PAUSE_DISCHARGE)
            else ""
        ),
    )
    for kind in KINDS.values()
)
