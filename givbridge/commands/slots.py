"""Time slots: charge, discharge, pause, and the EMS's export, charge and discharge slots.

A slot boundary is written as HHMM (16:30 is 1630). Which registers hold slot *n* depends on
the model (two slots on older single-phase firmware, ten on the newer, the three-phase
layout, the EMS's three): :func:`givbridge.commands.devices.slot_window` knows, and answers
``unsupported`` for a slot the model does not have.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import time

from givbridge.commands import devices as dev
from givbridge.commands.schemas import (
    ChargeSlotPayload,
    DischargeSlotPayload,
    ExportSlotPayload,
    PauseEndPayload,
    PauseStartPayload,
    SlotEndPayload,
    SlotStartPayload,
    WindowPayload,
)
from givbridge.commands.spec import Command, PlanInput, Planned
from givbridge.commands.targets import MIN_SOC, charge_target_writes
from givbridge.devices.context import DeviceContext
from givbridge.plant import registers as reg
from givbridge.plant.writes import WritePlan

GROUP = "Time slots"

_SLOT_2 = reg.TEN_SLOT_CHARGE_2  # charge slot 2 on 10-slot firmware
_PAUSE_START, _PAUSE_END = reg.PAUSE_SLOT


def hhmm(moment: time) -> int:
    """A slot boundary as the inverter stores it: hours x 100 + minutes."""
    return moment.hour * 100 + moment.minute


def _window_writes(given: PlanInput, kind: dev.SlotKind, slot: int, start: time, end: time) -> list[tuple[int, int]]:
    start_register, end_register = dev.slot_window(given.device, kind, slot)
    return [(start_register, hhmm(start)), (end_register, hhmm(end))]


def plan_charge_slot(payload: ChargeSlotPayload, given: PlanInput) -> Planned:
    pairs = _window_writes(given, "charge", payload.slot, payload.start, payload.finish)
    if payload.chargeToPercent is not None:
        # The slot's own target where the model has one; else the global target, as GivTCP does.
        register = dev.slot_target_register(given.device, "charge", payload.slot)
        if register is not None:
            pairs.append((register, payload.chargeToPercent))
        else:
            pairs.extend(charge_target_writes(given.device, payload.chargeToPercent))
    return Planned(WritePlan.of(pairs, f"charge slot {payload.slot} {payload.start:%H:%M}-{payload.finish:%H:%M}"))


def plan_discharge_slot(payload: DischargeSlotPayload, given: PlanInput) -> Planned:
    pairs = _window_writes(given, "discharge", payload.slot, payload.start, payload.finish)
    if payload.dischargeToPercent is not None:
        # The slot's own target where the model has one; else the reserve, as GivTCP does.
        register = dev.slot_target_register(given.device, "discharge", payload.slot)
        if register is None:
            register = dev.reserve_register(given.device)
        pairs.append((register, max(payload.dischargeToPercent, MIN_SOC)))
    return Planned(WritePlan.of(pairs, f"discharge slot {payload.slot} {payload.start:%H:%M}-{payload.finish:%H:%M}"))


def plan_export_slot(payload: ExportSlotPayload, given: PlanInput) -> Planned:
    pairs = _window_writes(given, "export", payload.slot, payload.start, payload.finish)
    return Planned(WritePlan.of(pairs, f"export slot {payload.slot} {payload.start:%H:%M}-{payload.finish:%H:%M}"))


def _edge_planner(kind: dev.SlotKind, edge: int) -> functools.partial[Planned]:
    return functools.partial(_plan_edge, kind=kind, edge=edge)


def _plan_edge(
    payload: SlotStartPayload | SlotEndPayload, given: PlanInput, *, kind: dev.SlotKind, edge: int
) -> Planned:
    moment = payload.start if isinstance(payload, SlotStartPayload) else payload.finish
    register = dev.slot_window(given.device, kind, payload.slot)[edge]
    which = "start" if edge == 0 else "end"
    return Planned(WritePlan.of([(register, hhmm(moment))], f"{kind} slot {payload.slot} {which} {moment:%H:%M}"))


def plan_pause_slot(payload: WindowPayload, given: PlanInput) -> Planned:
    pairs = [(reg.PAUSE_SLOT[0], hhmm(payload.start)), (reg.PAUSE_SLOT[1], hhmm(payload.finish))]
    return Planned(WritePlan.of(pairs, f"pause slot {payload.start:%H:%M}-{payload.finish:%H:%M}"))


def plan_pause_start(payload: PauseStartPayload, given: PlanInput) -> Planned:
    return Planned(WritePlan.of([(reg.PAUSE_SLOT[0], hhmm(payload.start))], f"pause start {payload.start:%H:%M}"))


def plan_pause_end(payload: PauseEndPayload, given: PlanInput) -> Planned:
    return Planned(WritePlan.of([(reg.PAUSE_SLOT[1], hhmm(payload.finish))], f"pause end {payload.finish:%H:%M}"))


_slot = functools.partial(Command, group=GROUP)

_LEAF = {"charge": "Charge", "discharge": "Discharge", "export": "Export"}


def _leaves(kind: dev.SlotKind, *, ems: bool = False) -> tuple[str, str]:
    prefix = f"EMS_{_LEAF[kind]}" if ems else _LEAF[kind]
    return (f"Timeslots/{prefix}_start_time_slot_{{slot}}", f"Timeslots/{prefix}_end_time_slot_{{slot}}")


def _slot_check(kind: dev.SlotKind, slot: int, *, ems: bool) -> Callable[[DeviceContext], str | None]:
    has_slot = dev.needs_slot(kind, slot)
    if not ems:
        return has_slot
    return lambda device: dev.needs_ems(device) or has_slot(device)


def _edges(kind: dev.SlotKind, count: int, *, prefix: str, ems: bool, summary: str) -> tuple[Command, ...]:
    """set<prefix>Start<n> / set<prefix>End<n> for n = 1..count: one boundary each, HH:MM."""
    start_leaf, end_leaf = _leaves(kind, ems=ems)
    commands = []
    for n in range(1, count + 1):
        for edge, name, model, field, leaf in (
            (0, f"set{prefix}Start{n}", SlotStartPayload, "start", start_leaf),
            (1, f"set{prefix}End{n}", SlotEndPayload, "finish", end_leaf),
        ):
            commands.append(
                _slot(
                    name=name,
                    summary=f"{summary} slot {n} {'start' if edge == 0 else 'end'} time.",
                    payload=model,
                    raw_field=field,
                    fixed={"slot": n},
                    plan=_edge_planner(kind, edge),
                    updates=(leaf,),
                    applies=dev.applies(
                        f"models with {summary.lower()} slot {n}", inverter=False, when=_slot_check(kind, n, ems=ems)
                    ),
                )
            )
    return tuple(commands)


def _charge_slot(slot: int | None) -> Command:
    return _slot(
        name=f"setChargeSlot{slot or ''}",
        summary=f"Charge slot {slot}'s window and optional target." if slot else "A charge slot's window and target.",
        payload=ChargeSlotPayload,
        fixed={"slot": slot} if slot else {},
        plan=plan_charge_slot,
        updates=(
            *_leaves("charge"),
            *_leaves("charge", ems=True),
            "Control/Charge_Target_SOC_{slot}",
            "Control/EMS_Charge_Target_SOC_{slot}",
            "Control/Target_SOC",
            "Control/Enable_Charge_Target",
        ),
        applies=dev.applies(
            f"models with charge slot {slot}" if slot else "models with charge slots",
            inverter=False,
            when=dev.needs_slot("charge", slot or 1),
        ),
        notes="chargeToPercent goes to the slot's own target where the model has one (10-slot firmware, EMS); "
        "elsewhere to the charge target HR116 as GivTCP does, with HR20 switched on below 100 % like "
        f"setChargeTarget. Charge slot 2 on 10-slot firmware is HR{_SLOT_2[0]}/{_SLOT_2[1]} (as GivTCP and the "
        "published state); "
        "on 2-slot firmware HR31/32, where GivTCP wrote registers the unit does not have.",
    )


def _discharge_slot(slot: int | None) -> Command:
    return _slot(
        name=f"setDischargeSlot{slot or ''}",
        summary=f"Discharge slot {slot}'s window and optional target." if slot else "A discharge slot's window.",
        payload=DischargeSlotPayload,
        fixed={"slot": slot} if slot else {},
        plan=plan_discharge_slot,
        updates=(
            *_leaves("discharge"),
            *_leaves("discharge", ems=True),
            "Control/Discharge_Target_SOC_{slot}",
            "Control/EMS_Discharge_Target_SOC_{slot}",
            "Control/Battery_Power_Reserve",
        ),
        applies=dev.applies(
            f"models with discharge slot {slot}" if slot else "models with discharge slots",
            inverter=False,
            when=dev.needs_slot("discharge", slot or 1),
        ),
        notes="dischargeToPercent goes to the slot's own target where the model has one (10-slot firmware, EMS); "
        "elsewhere to the battery reserve, as GivTCP does (raised to 4 % at least).",
    )


def _export_slot(slot: int) -> Command:
    return _slot(
        name=f"setExportSlot{slot}",
        summary=f"EMS export slot {slot}'s window.",
        payload=ExportSlotPayload,
        fixed={"slot": slot},
        plan=plan_export_slot,
        updates=_leaves("export"),
        applies=dev.applies(f"EMS export slot {slot}", inverter=False, when=dev.needs_slot("export", slot)),
    )


_PAUSE = dev.applies(
    "hybrids with the pause registers (not Gen1 or AC)",
    battery=True,
    when=dev.needs_pause,
    registers=dev.fixed_registers(*reg.PAUSE_SLOT),
)
_PAUSE_LEAVES = ("Timeslots/Battery_pause_start_time_slot", "Timeslots/Battery_pause_end_time_slot")

COMMANDS: tuple[Command, ...] = (
    _charge_slot(None),
    *(_charge_slot(n) for n in range(1, 4)),
    *_edges("charge", 10, prefix="Charge", ems=False, summary="Charge"),
    _discharge_slot(None),
    *(_discharge_slot(n) for n in range(1, 4)),
    *_edges("discharge", 10, prefix="Discharge", ems=False, summary="Discharge"),
    _slot(
        name="setPauseSlot",
        summary=f"The battery pause window (HR{_PAUSE_START}/{_PAUSE_END}) that the pause mode applies to.",
        payload=WindowPayload,
        plan=plan_pause_slot,
        updates=_PAUSE_LEAVES,
        applies=_PAUSE,
    ),
    _slot(
        name="setPauseStart",
        summary=f"The battery pause window's start (HR{_PAUSE_START}).",
        payload=PauseStartPayload,
        raw_field="start",
        plan=plan_pause_start,
        updates=_PAUSE_LEAVES[:1],
        applies=_PAUSE,
    ),
    _slot(
        name="setPauseEnd",
        summary=f"The battery pause window's end (HR{_PAUSE_END}).",
        payload=PauseEndPayload,
        raw_field="finish",
        plan=plan_pause_end,
        updates=_PAUSE_LEAVES[1:],
        applies=_PAUSE,
    ),
    *(_export_slot(n) for n in range(1, 4)),
    *_edges("export", 3, prefix="Export", ems=False, summary="EMS export"),
    *_edges("charge", 3, prefix="EMSCharge", ems=True, summary="EMS charge"),
    *_edges("discharge", 3, prefix="EMSDischarge", ems=True, summary="EMS discharge"),
)
