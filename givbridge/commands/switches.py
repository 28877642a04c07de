"""On/off settings: schedules, charge-target enable, eco, Real Time Control, three-phase and EMS flags."""

from __future__ import annotations

import functools
from collections.abc import Callable

from givbridge.commands import devices as dev
from givbridge.commands.schemas import StatePayload
from givbridge.commands.spec import Command, PlanInput, Planned
from givbridge.devices.context import DeviceContext
from givbridge.plant import registers as reg
from givbridge.plant.writes import WritePlan

GROUP = "Switches"


def _flag_planner(registers: Callable[[DeviceContext], tuple[int, ...]], what: str) -> Callable[..., Planned]:
    """A planner writing 1/0 to each of ``registers(device)``."""

    def plan(payload: StatePayload, given: PlanInput) -> Planned:
        value = int(payload.state)
        pairs = [(register, value) for register in registers(given.device)]
        return Planned(WritePlan.of(pairs, f"{what} {'on' if value else 'off'}"))

    return plan


def plan_enable_charge_target(payload: StatePayload, given: PlanInput) -> Planned:
    """HR20 on; or off, with the target back to 100 % so "disabled" means "charge to full" (as GivTCP)."""
    if payload.state:
        return Planned(WritePlan.of([(reg.ENABLE_CHARGE_TARGET, 1)], "charge target on"))
    pairs = [(dev.charge_target_register(given.device), 100), (reg.ENABLE_CHARGE_TARGET, 0)]
    return Planned(WritePlan.of(pairs, "charge target off"))


# Every switch takes GivTCP's enable/disable as the raw payload or {"state": ...}.
_switch = functools.partial(Command, group=GROUP, payload=StatePayload, raw_field="state")


COMMANDS: tuple[Command, ...] = (
    _switch(
        name="enableChargeTarget",
        summary="Make AC charging stop at the charge target (HR20); disabling also sets the target back to 100 %.",
        plan=plan_enable_charge_target,
        updates=("Control/Enable_Charge_Target", "Control/Target_SOC"),
        applies=dev.applies(
            "inverters with a battery",
            battery=True,
            registers=lambda d: (reg.ENABLE_CHARGE_TARGET, dev.charge_target_register(d)),
        ),
    ),
    _switch(
        name="enableChargeSchedule",
        summary="Switch the timed (AC) charge schedule on or off.",
        plan=_flag_planner(dev.charge_enable_registers, "charge schedule"),
        updates=("Control/Enable_Charge_Schedule",),
        applies=dev.applies("inverters with a battery", battery=True, registers=dev.charge_enable_registers),
        notes="Three-phase: writes force charge (HR1123) and AC charge (HR1112) together, as GivTCP does.",
    ),
    _switch(
        name="enableDischargeSchedule",
        summary="Switch the timed discharge schedule on or off (HR59).",
        plan=_flag_planner(lambda d: (reg.ENABLE_DISCHARGE,), "discharge schedule"),
        updates=("Control/Enable_Discharge_Schedule", "Control/Mode"),
        applies=dev.applies(
            "inverters with a battery", battery=True, registers=dev.fixed_registers(reg.ENABLE_DISCHARGE)
        ),
        notes="HR59 on every model, the register published as Enable_Discharge_Schedule and written by "
        "setBatteryMode. GivTCP wrote HR1122 (force discharge) on three-phase units instead, which is "
        "setForceDischarge's register.",
    ),
    _switch(
        name="setEcoMode",
        summary="Eco: discharge to match demand (HR27 = 1); off: discharge at full power, exporting the rest.",
        plan=_flag_planner(lambda d: (reg.ECO_MODE,), "eco mode"),
        updates=("Control/Eco_Mode", "Control/Mode"),
        applies=dev.applies("inverters with a battery", battery=True, registers=dev.fixed_registers(reg.ECO_MODE)),
    ),
    _switch(
        name="enableRTC",
        summary="Real Time Control (HR166): settings written while it is on do not wear the EEPROM.",
        plan=_flag_planner(lambda d: (dev.rtc_register(d),), "real time control"),
        updates=("Control/Real_Time_Control",),
        applies=dev.applies("inverters", registers=lambda d: (dev.rtc_register(d),)),
        notes="Three-phase units report it in HR1005, which is outside their write allowlist, so it is "
        "unsupported there (GivTCP wrote HR166, which the published state does not read).",
    ),
    _switch(
        name="setForceCharge",
        summary="Three-phase force charge enable (HR1123).",
        plan=_flag_planner(lambda d: (reg.TPH_FORCE_CHARGE_ENABLE,), "force charge"),
        updates=("Control/Force_Charge_Enable",),
        applies=dev.applies(
            "three-phase inverters",
            when=dev.needs_three_phase,
            registers=dev.fixed_registers(reg.TPH_FORCE_CHARGE_ENABLE),
        ),
        notes="GivTCP's REST form fails (it passes a bare string) and only the exact word 'enable' enables, "
        "so api.json's 'enabled' disabled; givbridge accepts every switch spelling.",
    ),
    _switch(
        name="setForceDischarge",
        summary="Three-phase force discharge enable (HR1122).",
        plan=_flag_planner(lambda d: (reg.TPH_FORCE_DISCHARGE_ENABLE,), "force discharge"),
        updates=("Control/Force_Discharge_Enable",),
        applies=dev.applies(
            "three-phase inverters",
            when=dev.needs_three_phase,
            registers=dev.fixed_registers(reg.TPH_FORCE_DISCHARGE_ENABLE),
        ),
        notes="As setForceCharge.",
    ),
    _switch(
        name="setACCharge",
        summary="Three-phase AC charge enable (HR1112).",
        plan=_flag_planner(lambda d: (reg.TPH_AC_CHARGE_ENABLE,), "AC charge"),
        updates=("Control/Force_AC_Charge_Enable",),
        applies=dev.applies(
            "three-phase inverters",
            when=dev.needs_three_phase,
            registers=dev.fixed_registers(reg.TPH_AC_CHARGE_ENABLE),
        ),
        notes="As setForceCharge.",
    ),
    _switch(
        name="setEmsPlant",
        summary="EMS plant control enable (HR2040).",
        plan=_flag_planner(lambda d: (reg.EMS_PLANT_ENABLE,), "EMS plant control"),
        updates=("Control/Plant_Control",),
        applies=dev.applies(
            "EMS plant controllers",
            inverter=False,
            when=dev.needs_ems,
            registers=dev.fixed_registers(reg.EMS_PLANT_ENABLE),
        ),
        notes="GivTCP's REST form fails (it passes a bare string); fixed.",
    ),
)
