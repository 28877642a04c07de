"""SOC targets and limits: charge target, per-slot targets, reserve, cut-off, EMS export targets."""

from __future__ import annotations

import functools

from givbridge.commands import devices as dev
from givbridge.commands.schemas import (
    ChargeTargetPayload,
    CutoffPayload,
    EmsChargeTargetPayload,
    EmsDischargeTargetPayload,
    ExportTargetPayload,
    ReservePayload,
    SlotChargeTargetPayload,
    SlotDischargeTargetPayload,
)
from givbridge.commands.spec import Command, PlanInput, Planned, unsupported
from givbridge.devices.context import DeviceContext
from givbridge.plant import registers as reg
from givbridge.plant.writes import WritePlan

GROUP = "Targets and limits"

#: GivTCP raises a reserve or cut-off below this to it; the inverter refuses lower values.
MIN_SOC = 4


def charge_target_writes(device: DeviceContext, percent: int) -> list[tuple[int, int]]:
    """The charge target, and HR20 on when it is below 100 %: the inverter ignores the target while
    HR20 is off, so a target alone never stopped a charge (batpred #4141)."""
    pairs = [(dev.charge_target_register(device), percent)]
    if percent < 100:
        pairs.append((reg.ENABLE_CHARGE_TARGET, 1))
    return pairs


def plan_charge_target(payload: ChargeTargetPayload, given: PlanInput) -> Planned:
    pairs = charge_target_writes(given.device, payload.chargeToPercent)
    return Planned(WritePlan.of(pairs, f"charge target {payload.chargeToPercent} %"))


def _slot_target(given: PlanInput, kind: dev.SlotKind, slot: int, percent: int) -> Planned:
    register = dev.slot_target_register(given.device, kind, slot)
    if register is None:
        raise unsupported(
            f"{given.device.family.display} has no writable {kind} target for slot {slot} "
            "(per-slot targets exist on 10-slot firmware and the EMS only)"
        )
    return Planned(WritePlan.of([(register, percent)], f"{kind} target {slot} = {percent} %"))


def plan_slot_charge_target(payload: SlotChargeTargetPayload, given: PlanInput) -> Planned:
    return _slot_target(given, "charge", payload.slot, payload.chargeToPercent)


def plan_slot_discharge_target(payload: SlotDischargeTargetPayload, given: PlanInput) -> Planned:
    return _slot_target(given, "discharge", payload.slot, payload.dischargeToPercent)


def plan_export_target(payload: ExportTargetPayload, given: PlanInput) -> Planned:
    return _slot_target(given, "export", payload.slot, payload.exportToPercent)


def plan_ems_charge_target(payload: EmsChargeTargetPayload, given: PlanInput) -> Planned:
    return _slot_target(given, "charge", payload.slot, payload.chargeToPercent)


def plan_ems_discharge_target(payload: EmsDischargeTargetPayload, given: PlanInput) -> Planned:
    return _slot_target(given, "discharge", payload.slot, payload.dischargeToPercent)


def plan_reserve(payload: ReservePayload, given: PlanInput) -> Planned:
    percent = max(payload.reservePercent, MIN_SOC)
    return Planned(WritePlan.of([(dev.reserve_register(given.device), percent)], f"reserve {percent} %"))


def plan_cutoff(payload: CutoffPayload, given: PlanInput) -> Planned:
    percent = max(payload.dischargeToPercent, MIN_SOC)
    return Planned(WritePlan.of([(dev.cutoff_register(given.device), percent)], f"cut-off {percent} %"))


_target = functools.partial(Command, group=GROUP)

_SLOT_TARGET_NOTE = (
    "Only where the model has per-slot targets (10-slot firmware: HR242 + 3(n-1) for charge, "
    "HR272 + 3(n-1) for discharge; the EMS has setEMSChargeTarget/setEMSDischargeTarget). "
    "Gen1, Gen2 and AC units acknowledge HR272 but ignore it (batpred #4517), so givbridge answers "
    "unsupported there instead of a false success."
)


def _charge_target_n(slot: int) -> Command:
    return _target(
        name=f"setChargeTarget{slot}",
        summary=f"Charge slot {slot}'s SOC target.",
        payload=SlotChargeTargetPayload,
        raw_field="chargeToPercent",
        fixed={"slot": slot},
        plan=plan_slot_charge_target,
        updates=("Control/Charge_Target_SOC_{slot}",),
        applies=dev.applies("10-slot firmware", battery=True, when=dev.needs_slot_target("charge", slot)),
        notes=_SLOT_TARGET_NOTE,
    )


def _discharge_target_n(slot: int) -> Command:
    return _target(
        name=f"setDischargeTarget{slot}",
        summary=f"Discharge slot {slot}'s SOC target (the export floor).",
        payload=SlotDischargeTargetPayload,
        raw_field="dischargeToPercent",
        fixed={"slot": slot},
        plan=plan_slot_discharge_target,
        updates=("Control/Discharge_Target_SOC_{slot}",),
        applies=dev.applies("10-slot firmware", battery=True, when=dev.needs_slot_target("discharge", slot)),
        notes=_SLOT_TARGET_NOTE,
    )


def _export_target_n(slot: int) -> Command:
    return _target(
        name=f"setExportTarget{slot}",
        summary=f"EMS export slot {slot}'s SOC target.",
        payload=ExportTargetPayload,
        raw_field="exportToPercent",
        fixed={"slot": slot},
        plan=plan_export_target,
        updates=("Control/Export_Target_SOC_{slot}",),
        applies=dev.applies("EMS plant controllers", inverter=False, when=dev.needs_slot_target("export", slot)),
    )


def _ems_charge_target_n(slot: int) -> Command:
    return _target(
        name=f"setEMSChargeTarget{slot}",
        summary=f"EMS charge slot {slot}'s SOC target.",
        payload=EmsChargeTargetPayload,
        raw_field="chargeToPercent",
        fixed={"slot": slot},
        plan=plan_ems_charge_target,
        updates=("Control/EMS_Charge_Target_SOC_{slot}",),
        applies=dev.applies(
            "EMS plant controllers",
            inverter=False,
            when=lambda d: dev.needs_ems(d) or dev.needs_slot_target("charge", slot)(d),
        ),
    )


def _ems_discharge_target_n(slot: int) -> Command:
    return _target(
        name=f"setEMSDischargeTarget{slot}",
        summary=f"EMS discharge slot {slot}'s SOC target.",
        payload=EmsDischargeTargetPayload,
        raw_field="dischargeToPercent",
        fixed={"slot": slot},
        plan=plan_ems_discharge_target,
        updates=("Control/EMS_Discharge_Target_SOC_{slot}",),
        applies=dev.applies(
            "EMS plant controllers",
            inverter=False,
            when=lambda d: dev.needs_ems(d) or dev.needs_slot_target("discharge", slot)(d),
        ),
        notes="Advertised by GivTCP's discovery but with no MQTT handler there; implemented here.",
    )


COMMANDS: tuple[Command, ...] = (
    _target(
        name="setChargeTarget",
        summary="The SOC AC charging stops at (HR116; three-phase HR1111).",
        payload=ChargeTargetPayload,
        raw_field="chargeToPercent",
        plan=plan_charge_target,
        updates=("Control/Target_SOC", "Control/Enable_Charge_Target"),
        applies=dev.applies(
            "inverters with a battery",
            battery=True,
            registers=lambda d: (dev.charge_target_register(d), reg.ENABLE_CHARGE_TARGET),
        ),
        notes="Below 100 % givbridge also switches the charge target on (HR20 = 1): the inverter ignores the "
        "target otherwise (batpred #4141). GivTCP wrote the target alone.",
    ),
    *(_charge_target_n(n) for n in range(1, 11)),
    _target(
        name="setDischargeTarget",
        summary="A discharge slot's SOC target, slot given in the payload.",
        payload=SlotDischargeTargetPayload,
        plan=plan_slot_discharge_target,
        updates=("Control/Discharge_Target_SOC_{slot}",),
        applies=dev.applies("10-slot firmware", battery=True, when=dev.any_slot_target("discharge")),
        notes="GivTCP reads dischargeToPercent while its api.json documents exportToPercent (a KeyError there); "
        "both are accepted. " + _SLOT_TARGET_NOTE,
    ),
    *(_discharge_target_n(n) for n in range(1, 11)),
    _target(
        name="setBatteryReserve",
        summary="The SOC the battery stops discharging at (HR110; three-phase HR1109).",
        payload=ReservePayload,
        raw_field="reservePercent",
        plan=plan_reserve,
        updates=("Control/Battery_Power_Reserve", "Control/Mode"),
        applies=dev.applies("inverters with a battery", battery=True, registers=lambda d: (dev.reserve_register(d),)),
        notes="Values below 4 % are raised to 4 % as GivTCP does; the answer reports what was read back.",
    ),
    _target(
        name="setBatteryCutoff",
        summary="The battery discharge cut-off SOC (HR114; three-phase HR1078).",
        payload=CutoffPayload,
        raw_field="dischargeToPercent",
        plan=plan_cutoff,
        updates=("Control/Battery_Power_Cutoff",),
        applies=dev.applies("inverters with a battery", battery=True, registers=lambda d: (dev.cutoff_register(d),)),
        notes="Values below 4 % are raised to 4 %. Three-phase: GivTCP writes HR114 but reads HR1078; givbridge "
        "writes HR1078 so the read-back confirms the value that is published.",
    ),
    _target(
        name="setExportTarget",
        summary="An EMS export slot's SOC target, slot given in the payload.",
        payload=ExportTargetPayload,
        plan=plan_export_target,
        updates=("Control/Export_Target_SOC_{slot}",),
        applies=dev.applies("EMS plant controllers", inverter=False, when=dev.any_slot_target("export")),
    ),
    *(_export_target_n(n) for n in range(1, 4)),
    *(_ems_charge_target_n(n) for n in range(1, 4)),
    *(_ems_discharge_target_n(n) for n in range(1, 4)),
)
