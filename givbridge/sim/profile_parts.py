"""The building blocks the simulated families share: factory register blocks taken from the
captures, schedule slot layouts, the control maps, battery specs, and the builders for the
Gen3-platform hybrids and the three-phase inverters. :mod:`givbridge.sim.profiles` assembles
the families from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from givenergy_modbus.model.inverter import _DTC_RATED_POWER
from givenergy_modbus.model.slot_map import EMS_SLOTS, EXTENDED_SLOTS, SINGLE_PHASE_SLOTS, THREE_PHASE_SLOTS

from givbridge.plant import registers as reg
from givbridge.sim import captured
from givbridge.sim.profile_spec import (
    CELLS_PER_MODULE,
    FIRST_PACK_ADDRESS,
    MAX_MODULES,
    MAX_PACKS,
    BatteryEnergyLayout,
    ControlMap,
    HvSpec,
    InverterProfile,
    Layout,
    PackSpec,
    SlotRegisters,
    UnitSpec,
)


def register_ranges(*pairs: tuple[int, int]) -> tuple[range, ...]:
    return tuple(range(start, stop) for start, stop in pairs)


def frozen_registers(values: Mapping[int, int]) -> Mapping[int, int]:
    return MappingProxyType(dict(values))


# HR(0-179) of the HYBRID_GEN2 capture, minus identity (filled per unit in plant.py) and the
# clock. The charge schedule (HR94/95 23:30-05:30, HR96 on) is the capture's own.
HR_HYBRID_BASE: dict[int, int] = {
    1: 3, 2: 2084, 4: 0, 5: 36000, 6: 3600, 7: 1, 20: 0, 22: 2, 24: 49152, 25: 66,
    26: 6000, 27: 1, 30: 17, 33: 7, 34: 140, 42: 2, 46: 101, 47: 1, 50: 100, 53: 1,
    54: 1, 58: 1, 59: 0,
    60: 1300, 61: 30, 62: 30, 63: 1840, 64: 2622, 65: 4750, 66: 5200, 67: 125, 68: 50,
    69: 1000, 70: 25, 71: 1800, 72: 2730, 73: 4700, 74: 5200, 75: 122, 76: 25, 77: 25,
    78: 25, 79: 1880, 80: 2580, 81: 4760, 82: 5190, 83: 2622, 84: 21313, 85: 12590,
    86: 12288, 94: 2330, 95: 530, 96: 1, 97: 4320, 98: 5850, 101: 100, 108: 6, 109: 1,
    110: 4, 111: 50, 112: 50, 114: 4, 115: 1, 116: 100, 123: 24, 125: 1, 128: 1, 129: 1,
    130: 255, 131: 20000, 132: 255, 133: 20000, 134: 255, 135: 20000, 136: 255,
    137: 20000, 138: 2484, 139: 2530, 140: 2116, 141: 2070, 142: 20, 143: 5, 144: 2415,
    145: 2300, 166: 1, 176: 15,
}  # fmt: skip

# Where the HYBRID_GEN1 capture differs from the Gen2 one (grid-protection trims, the module
# code and the MPPT/phase word); HR84-86 carry no firmware string on ARM 449.
HR_GEN1_OVERRIDES: dict[int, int] = {
    2: 2098, 3: 0x0201, 5: 50000, 24: 32768, 25: 30235, 41: 1, 60: 1500, 64: 2740,
    65: 4700, 66: 5198, 67: 126, 68: 27, 69: 24, 70: 28, 71: 1840, 72: 2620, 73: 4745,
    75: 126, 76: 52, 77: 1, 78: 28, 79: 1755, 80: 2837, 81: 4700, 82: 5200, 83: 2740,
    84: 0, 85: 0, 86: 0, 101: 0, 115: 0, 166: 0, 176: 0,
}  # fmt: skip

# HR(300-359) as the AC-coupled capture reports it (the block's only wire evidence), with the
# battery power rating (HR308) set to what a 3.6 kW hybrid battery port delivers.
HR_AC_CONFIG_BLOCK: dict[int, int] = {
    300: 1, 302: 20000, 303: 15000, 306: 20000, 307: 2300, 308: 3600, 309: 60, 310: 100,
    312: 15000, 313: 100, 314: 100, 315: 1150, 316: 2760, 317: 1, 318: 0, 319: 0, 320: 0,
    321: 5040, 326: 4980, 327: 24, 328: 5010,
}  # fmt: skip

# 10-slot charge targets (HR242+3n) at 100 % and discharge targets (HR272+3n) at 4 %, as the
# All-in-One capture reports them with no schedule programmed.
HR_EXTENDED_SLOT_TARGETS: dict[int, int] = {
    **dict.fromkeys(reg.CHARGE_SLOT_TARGETS, 100),
    **dict.fromkeys(reg.DISCHARGE_SLOT_TARGETS, 4),
}

HR_GEN3 = {**HR_HYBRID_BASE, 3: 0x0201, 5: 50000, **HR_EXTENDED_SLOT_TARGETS, **HR_AC_CONFIG_BLOCK}

TWO_SLOTS_CHARGE = tuple(SlotRegisters(start, end) for start, end in SINGLE_PHASE_SLOTS.charge_slots)
TWO_SLOTS_DISCHARGE = tuple(SlotRegisters(start, end) for start, end in SINGLE_PHASE_SLOTS.discharge_slots)

# 10-slot firmware: slot n's SOC target follows its window. Charge slot 2 has two register
# pairs: the library's map keeps it at HR31/32, GivTCP writes HR243/244; either window counts.
TEN_SLOTS_CHARGE = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(EXTENDED_SLOTS.charge_slots, reg.CHARGE_SLOT_TARGETS, strict=True)
)
TEN_SLOTS_CHARGE = (
    *TEN_SLOTS_CHARGE[:2],
    SlotRegisters(*reg.TEN_SLOT_CHARGE_2, reg.CHARGE_SLOT_TARGETS[1]),
    *TEN_SLOTS_CHARGE[2:],
)
TEN_SLOTS_DISCHARGE = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(EXTENDED_SLOTS.discharge_slots, reg.DISCHARGE_SLOT_TARGETS, strict=True)
)
# Three-phase slots 1 and 2 move to the 1000-range (the library's THREE_PHASE_SLOTS); its
# discharge slots are forced-export windows gated by the force-discharge switch.
THREE_PHASE_CHARGE = tuple(SlotRegisters(start, end) for start, end in THREE_PHASE_SLOTS.charge_slots[:2])
THREE_PHASE_EXPORT = tuple(SlotRegisters(start, end) for start, end in THREE_PHASE_SLOTS.discharge_slots[:2])
# EMS plant schedule (library EmsRegisterGetter): (start, end, target) triples.
EMS_DISCHARGE = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(EMS_SLOTS.discharge_slots, reg.EMS_SLOT_TARGETS["discharge"], strict=True)
)
EMS_CHARGE = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(EMS_SLOTS.charge_slots, reg.EMS_SLOT_TARGETS["charge"], strict=True)
)
EMS_EXPORT = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(reg.EMS_EXPORT_SLOTS, reg.EMS_SLOT_TARGETS["export"], strict=True)
)

PAUSE_REGISTERS = reg.PAUSE_REGISTERS
# GivTCP's setDischargeTarget for slots 1 and 2; acknowledged but dropped by Gen1/Gen2/AC firmware.
DISCHARGE_TARGETS_1_2 = frozenset(reg.DISCHARGE_SLOT_TARGETS[:2])
TEN_SLOT_EXTRAS = reg.TEN_SLOT_WRITES

SINGLE_PHASE_CONTROLS = ControlMap()
PAUSE_CONTROLS = ControlMap(pause=(reg.PAUSE_MODE, *reg.PAUSE_SLOT))
THREE_PHASE_CONTROLS = ControlMap(
    # GivTCP's Enable_Charge_Schedule: AC charge and force charge both on
    charge_enable=(reg.TPH_AC_CHARGE_ENABLE, reg.TPH_FORCE_CHARGE_ENABLE),
    discharge_enable=None,
    export_enable=reg.TPH_FORCE_DISCHARGE_ENABLE,
    eco=None,  # HR27 reads 0 on the captured unit while it covers the house: not the 3PH switch
    reserve=reg.THREE_PHASE_CONTROLS.soc_reserve,
    target=reg.THREE_PHASE_CONTROLS.charge_target,
    target_enable=None,
    charge_limit=reg.THREE_PHASE_CONTROLS.charge_limit_ac,
    discharge_limit=reg.THREE_PHASE_CONTROLS.discharge_limit_ac,
    limits_in_percent=True,
    active_power_rate=reg.THREE_PHASE_CONTROLS.active_power_rate,
    export_limit=reg.THREE_PHASE_CONTROLS.export_limit,
)
EMS_CONTROLS = ControlMap(
    charge_enable=(reg.EMS_PLANT_ENABLE,),
    discharge_enable=None,  # EMS discharge slots only set a floor for self-consumption: not modelled
    export_enable=reg.EMS_PLANT_ENABLE,
    eco=None,
    reserve=None,
    target=None,  # each slot carries its own target
    target_enable=None,
    charge_limit=None,
    discharge_limit=None,
    limits_in_percent=True,
    active_power_rate=None,
    export_limit=reg.EMS_EXPORT_LIMIT,
)
GATEWAY_CONTROLS = ControlMap(
    charge_limit=reg.SINGLE_PHASE_CONTROLS.charge_limit_ac,
    discharge_limit=reg.SINGLE_PHASE_CONTROLS.discharge_limit_ac,
    limits_in_percent=True,
    pause=(reg.PAUSE_MODE, *reg.PAUSE_SLOT),
)  # GivTCP drives the Gateway's rates through HR313/314

GIVBAT_8_2 = PackSpec("Giv-Bat 8.2", design_ah=160, bms_firmware=3007, reports_energy_totals=False, serial_prefix="BG")
GIVBAT_9_5 = PackSpec("Giv-Bat 9.5", design_ah=186, bms_firmware=3020, reports_energy_totals=True, serial_prefix="DF")
GIVBAT_9_5_GEN3 = PackSpec(
    "Giv-Bat 9.5 Gen3", design_ah=186, bms_firmware=3022, reports_energy_totals=True, serial_prefix="BJ"
)
GIVBAT_5_12_GEN3 = PackSpec(
    "Giv-Bat 5.12 Gen3", design_ah=106, bms_firmware=4009, reports_energy_totals=True, serial_prefix="AC"
)

AIO_STACK = HvSpec(
    module_ah=52,
    temperatures=12,
    bcu_firmware=(0x4241, 0x4141, 0x0000, 0x0103),  # "BAAA0013"
    bcu_serial_prefix="HC",
    module_serial_prefix="HX",
    has_bams=False,
    max_charge_current_a=25.0,
    hr18=13,
)
HV_BMU_STACK = HvSpec(
    module_ah=52,
    temperatures=24,
    bcu_firmware=(0x4241, 0x4241, 0x0000, 0x0009),  # "BABA0009"
    bcu_serial_prefix="HB",
    module_serial_prefix="HY",
    has_bams=False,
    max_charge_current_a=25.0,
    hr18=0,
)
THREE_PHASE_STACK = replace(HV_BMU_STACK, has_bams=True)  # the same BCU/BMU stack, with a BAMS
EMS_MANAGED_AC = UnitSpec("AC 3.0", 3000, 3000, 106, 51.2, "CE")
GATEWAY_AIO = UnitSpec("All-in-One", 6000, 6000, 52, CELLS_PER_MODULE * 4 * 3.2, "CH")

EMPTY_PACK_SLOTS = tuple(range(FIRST_PACK_ADDRESS, FIRST_PACK_ADDRESS + MAX_PACKS))


def gen3_like_profile(
    family: str,
    *,
    device_type_code: int,
    firmware: int,
    ten_slots: bool,
    serial_prefix: str,
    serial_week: str,
    pack: PackSpec | None,
    battery_max_w: int | None = None,
    pause: bool = True,
    combined_generation: bool = True,
    years: float = 1.0,
) -> InverterProfile:
    """A single-phase LV hybrid on the Gen3 platform (Gen3, Gen3+, Gen4, Polar, PV-only)."""
    extended = HR_EXTENDED_SLOT_TARGETS if ten_slots else {}
    return InverterProfile(
        family=family,
        layout=Layout.SINGLE_PHASE,
        device_type_code=device_type_code,
        arm_firmware=firmware,
        dsp_firmware=firmware,
        rated_power_w=_rated(device_type_code),
        serial_prefix=serial_prefix,
        serial_week=serial_week,
        dongle_prefix="WG",
        inverter_aliases=(0x32,),
        empty_bms_addresses=(0x31, *EMPTY_PACK_SLOTS),
        holding_served=register_ranges((0, 360)),
        holding_silent=register_ranges((540, 600)),
        input_served=register_ranges((0, 300)),
        input_silent=(),
        holding_defaults=frozen_registers({**HR_HYBRID_BASE, 3: 0x0201, 5: 50000, **extended, **HR_AC_CONFIG_BLOCK}),
        input_constants=frozen_registers({221: 8192, 227: 300}),
        charge_slots=TEN_SLOTS_CHARGE if ten_slots else TWO_SLOTS_CHARGE,
        discharge_slots=TEN_SLOTS_DISCHARGE if ten_slots else TWO_SLOTS_DISCHARGE,
        extra_writable=(PAUSE_REGISTERS if pause else frozenset()) | (TEN_SLOT_EXTRAS if ten_slots else frozenset()),
        unpersisted_writes=frozenset() if ten_slots else DISCHARGE_TARGETS_1_2,
        battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
        reports_combined_generation=combined_generation,
        pack=pack,
        pv_kwp=5.6,
        years_in_service=years,
        controls=PAUSE_CONTROLS if pause else SINGLE_PHASE_CONTROLS,
        default_batteries=2 if pack is not None else 0,
        max_batteries=MAX_PACKS if pack is not None else 0,
        battery_max_w=battery_max_w,
        reports_capacity_ah=pack is not None,
    )


def _rated(device_type_code: int) -> int:
    """The AC rating the library's table gives a device type code (W)."""
    return int(_DTC_RATED_POWER[f"{device_type_code:04x}"])


def three_phase_profile(family: str, device_type_code: int, *, ac_coupled: bool) -> InverterProfile:
    holding = dict(captured.THREE_PHASE)
    # HR1108/1110 read 1 on the captured unit while it discharged at 1.7 kW, so they do not
    # cap self-consumption there; the simulated firmware applies them always, so its factory
    # value is the 100 GivTCP restores after a forced charge or export.
    holding.update({1108: 100, 1110: 100})
    served = ((0, 180), (1000, 1125), (300, 360)) if ac_coupled else ((0, 180), (1000, 1125))
    if ac_coupled:
        holding.update(HR_AC_CONFIG_BLOCK)
    return InverterProfile(
        family=family,
        layout=Layout.THREE_PHASE,
        device_type_code=device_type_code,
        # HR19/HR21 read 0 on the captured unit: its firmware is in IR1325-1327 only.
        arm_firmware=0,
        dsp_firmware=0,
        rated_power_w=_rated(device_type_code),
        serial_prefix="TC" if not ac_coupled else "TA",
        serial_week="2337",
        dongle_prefix="WH",
        inverter_aliases=(),
        empty_bms_addresses=(),
        holding_served=register_ranges(*served),
        holding_silent=(),
        input_served=register_ranges((0, 60), (120, 240), (1000, 1420)),
        input_silent=(),
        holding_defaults=frozen_registers(holding),
        input_constants=frozen_registers({}),
        charge_slots=THREE_PHASE_CHARGE,
        discharge_slots=(),
        export_slots=THREE_PHASE_EXPORT,
        # GivTCP's setChargeRate/setDischargeRate write the three-phase AC limits HR1110/1108.
        extra_writable=frozenset({1108, 1110}),
        unpersisted_writes=frozenset(),
        battery_energy=BatteryEnergyLayout(today_ir36=False),
        reports_combined_generation=False,
        pack=None,
        hv=THREE_PHASE_STACK,
        pv_kwp=8.0,
        years_in_service=2.5,
        controls=THREE_PHASE_CONTROLS,
        default_batteries=6,
        max_batteries=MAX_MODULES,
        default_meters=(0x01, 0x02),
        ghost_meter_pages=True,
        pv_coupling="ac" if ac_coupled else "dc",
        reports_capacity_ah=False,
    )
