"""What each simulated GivEnergy model looks like on the wire, as data.

A :class:`InverterProfile` says which device type code and firmware a model reports, which
register banks it answers (and which it ignores outright), its factory configuration, its
schedule layout, which writes it accepts and which battery-energy registers its firmware
fills, what storage hangs off it (LV packs, an HV stack, or the units an EMS or Gateway
manages), which meters a site usually has and which registers its battery logic obeys.
Everything a new family needs is a new entry in :data:`PROFILES`; the plant, physics and
renderers read these fields and nothing model-specific lives elsewhere.

Where the values come from (facts only; serials, clocks and lifetime totals are our own):

- ``hybrid-gen1``: the HYBRID_GEN1 captures (DTC 0x2001, ARM/DSP 449, two LV packs): identity,
  the HR(0-179) configuration, IR(221-227)/IR(240-246) constants, the battery-energy layout
  (IR36/37 and IR182/183 daily, IR180/181 lifetime) and the pack banks (BMS firmware 3007,
  160 Ah). It answers no HR bank above 179: HR(300,60) and HR(540,60) time out (library
  issues #162 and #179) and GivTCP's HR(180)/HR(240) probes go unanswered in the captures.
- ``hybrid-gen2``: the HYBRID_GEN2 capture (DTC 0x2003, ARM/DSP 920, one 186 Ah pack on BMS
  firmware 3020 that fills the pack lifetime energy registers): identity and HR(0-179).
  IR36/37 carry the daily battery energy, IR180/181 read zero (library manifest note).
  The HR(300-359) block is taken from the AC-coupled capture, because GivTCP reads and
  writes the pause registers HR318-320 on Gen2 (it only excludes Gen1 and AC).
- ``hybrid-gen3``: no LV Gen3 capture exists, so this is the Gen2 configuration with Gen3
  identity (DTC 0x2001, ARM > 302 so the library and GivTCP both use the 10-slot map) and
  the HR(240-299) slot/target layout as the All-in-One and HV Gen3 captures report it. It
  fills IR194-197 (battery lifetime totals, protocol v4.1.5) as the HV Gen3 and All-in-One
  captures do; an LV Gen3 has not been seen doing it.
- ``hybrid-gen3-plus``, ``hybrid-gen4``, ``polar``, ``pv``: no capture of any of them. They
  are the Gen3 profile with the family's device type code from the library's rating table
  (0x2201, 0x8304, 0x2101, 0x2301) and invented firmware numbers; Gen3+ and Polar keep the
  2-slot map the library gives their models, Gen4 has the 10-slot map. Polar's battery
  rating (3.6 kW) is an assumption (the library has none); Gen4's 6 kW is GivTCP's. The PV
  inverter is the hybrid platform without a battery port: no packs, nothing charges.
- ``ac``: the AC-coupled captures (DTC 0x3001, ARM 282, DSP 291, one Giv-Bat 5.12 Gen3 or
  two Giv-Bat 5.2): HR(0-179) and HR(300-359), the register file at 0x31 and 0x32 as well
  as 0x11, blank BMS pages at 0x30 and every empty pack slot, no PV of its own (IR1/2,
  IR11/12 and IR17-20 read zero: the site's PV inverter is separate).
- ``aio``: the All-in-One captures (DTC 0x8001, ARM/DSP 620): HR(0-179) and HR(240-359);
  the 1000-range answers with an error (captured HR(1100,60), library #105); nothing at
  0x32. The battery is an HV stack: BMS summary at 0xA0, one BCU at 0x70 (firmware
  BAAA0013, IR(60-179)), four 24-cell modules at 0x50-0x53 with 12 temperature sensors
  each. PV is AC-coupled but metered by the unit, so IR18/20 and the PV counters carry it.
- ``hybrid-hv-gen3``: the GIV-HY-8.0-G3-HV capture (DTC 0x8102): HR(240-299), the
  1000-range answering zeros (HR1060-1124, IR1000-1413: library hass#295), one BCU
  (BABA0009) with three 24-cell modules carrying 24 temperature sensors, a meter at 0x01.
  The capture has no HR(0-179) and no firmware numbers: those are the Gen3 ones.
- ``hybrid-3ph``: the GIV-3HY-11 captures (DTC 0x4004): HR(0-179) and HR(1000-1124), IR(0-59)
  and IR(120-239) answering zeros, the IR(1000-1419) three-phase banks, firmware only in
  IR1317-1327 (HR19/HR21 read 0), a BCU with six modules at 0x50-0x55, the BAMS page at
  0x90, two meters and blank pages at the other meter addresses.
- ``ac-3ph``: no capture. The three-phase profile with an AC-coupled device type (0x6003)
  and the HR(300-359) block the library polls on that model.
- ``ems``: the EMS captures (DTC 0x5001, ARM 1036): HR(0-179) and HR(2040-2075), IR(0-59),
  IR(180-239) and the IR(2040-2099) rollup of two managed AC inverters, meters at 0x01 and
  0x03 and blank pages at the other meter addresses. The managed inverters and their
  batteries sit on their own dongles; this one only reports them.
- ``gateway``: the Gateway captures (DTC 0x7001, firmware GAAA0014): HR(0-359), IR(0-59) and
  IR(120-239) answering zeros, the IR(1600-1959) rollup of two parallel All-in-Ones, two
  meters (grid and PV) and blank pages at the other meter addresses; nothing at 0x32.

Not simulated, for want of any fact: ``aio-hybrid`` (DTC 82xx), ``aio-commercial`` (41xx) and
``ems-commercial`` (51xx).

Two behaviours come straight from the captures and differ from a naive reading of the
protocol: the inverter answers at legacy addresses as well as 0x11 (0x31 on Gen1/AC, 0x32
on the LV hybrids, where IR(60-119) is battery pack 1), and an unpopulated battery slot
(0x32-0x37) answers IR(60,60) with an empty bank rather than staying silent. Battery
responses carry the *inverter's* serial in the envelope: the inverter answers from its own
cache of the BMS pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType
from typing import Literal, cast

from givenergy_modbus.model import manifest
from givenergy_modbus.model.inverter import _DTC_RATED_POWER, Model, _battery_max_power, resolve_model
from givenergy_modbus.model.slot_map import EMS_SLOTS, EXTENDED_SLOTS, SINGLE_PHASE_SLOTS, THREE_PHASE_SLOTS

from givbridge.plant import registers as reg
from givbridge.sim import captured

#: Modbus address the library (and the GivEnergy app) reads the inverter at, on every model.
INVERTER_ADDRESS = 0x11
#: LV battery pack n answers at 0x32 + n - 1; the library probes up to 0x37.
FIRST_PACK_ADDRESS = 0x32
MAX_PACKS = 6
#: The LV pack bank: IR(60-119) at a pack's address.
PACK_BANK = range(60, 120)

#: HV storage: the BMS summary (how many BCUs), BCU n, module k, and the three-phase BAMS page.
BMS_ADDRESS = 0xA0
FIRST_BCU_ADDRESS = 0x70
FIRST_MODULE_ADDRESS = 0x50
BAMS_ADDRESS = 0x90
#: Energy meters answer at 0x01-0x08 (IR(60-119) and the meter product registers MR(60-68)).
METER_ADDRESSES = range(0x01, 0x09)
#: Modules in the one simulated HV stack; the library reads each module at its own address.
MAX_MODULES = 6
#: Cells per HV module (24 x 3.2 V LiFePO4).
CELLS_PER_MODULE = 24


class Layout(Enum):
    """Which register map the device at 0x11 answers with."""

    SINGLE_PHASE = "single-phase"  # IR(0-299): hybrids, AC, All-in-One, PV
    THREE_PHASE = "three-phase"  # IR/HR 1000-range
    EMS = "ems"  # HR/IR 2040 plant rollup
    GATEWAY = "gateway"  # IR 1600-1959 parallel All-in-One rollup


@dataclass(frozen=True, slots=True)
class SlotRegisters:
    """Where one time slot lives: HHMM start/end and, on 10-slot firmware, its SOC target."""

    start: int
    end: int
    target: int | None = None


@dataclass(frozen=True, slots=True)
class PackSpec:
    """One LV battery pack model."""

    name: str
    design_ah: int
    bms_firmware: int
    #: IR(105/106) lifetime discharge/charge energy; firmware 3007/3009 leave them at zero.
    reports_energy_totals: bool
    serial_prefix: str


@dataclass(frozen=True, slots=True)
class HvSpec:
    """An HV stack: one BCU at 0x70 over 24-cell modules at 0x50+, summarised by the BMS at 0xA0."""

    module_ah: int  # design capacity; the BCU's IR98 reports a measured figure a little below
    temperatures: int  # sensors per module: 12 (All-in-One) or 24 (HV BMU)
    bcu_firmware: tuple[int, int, int, int]  # IR60-63, the library's gateway_version encoding
    bcu_serial_prefix: str
    module_serial_prefix: str
    has_bams: bool  # the three-phase BAMS page at 0x90
    max_charge_current_a: float  # IR105
    hr18: int  # what HR18 (first battery's BMS firmware on LV models) reads


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """An inverter an EMS manages, or an All-in-One a Gateway parallels: reported, not addressable here."""

    name: str
    rated_w: int
    battery_w: int
    capacity_ah: float
    nominal_volts: float
    serial_prefix: str


@dataclass(frozen=True, slots=True)
class BatteryEnergyLayout:
    """Which inverter input registers this firmware fills with battery energy (manifest.VALUE_SOURCES)."""

    today_ir36: bool = True  # "alt1" daily: IR36 charge, IR37 discharge
    today_ir182: bool = False  # "alt2" daily: IR182 discharge, IR183 charge
    total_ir180: bool = False  # "alt1" lifetime, uint16: IR180 discharge, IR181 charge
    total_ir194: bool = False  # protocol v4.1.5 lifetime, uint32: IR194/195 charge, IR196/197 discharge


@dataclass(frozen=True, slots=True)
class ControlMap:
    """The holding registers a model's battery logic obeys; the plant decodes them for the physics."""

    charge_enable: tuple[int, ...] = (reg.ENABLE_CHARGE,)  # every one must read 1 (three-phase: two)
    discharge_enable: int | None = reg.ENABLE_DISCHARGE  # timed discharge; None where the model has none
    export_enable: int | None = None  # gates the export slots (three-phase force discharge, EMS plant enable)
    eco: int | None = reg.ECO_MODE  # None: self-consumption outside the slots, always
    reserve: int | None = reg.SINGLE_PHASE_CONTROLS.soc_reserve
    target: int | None = reg.SINGLE_PHASE_CONTROLS.charge_target
    target_enable: int | None = reg.ENABLE_CHARGE_TARGET  # None: the target always applies
    charge_limit: int | None = reg.CHARGE_LIMIT
    discharge_limit: int | None = reg.DISCHARGE_LIMIT
    limits_in_percent: bool = False  # % of the battery rating (HR1110/1108, HR313/314), not C/100
    pause: tuple[int, int, int] | None = None  # mode, start, end (HR318-320)
    active_power_rate: int | None = reg.SINGLE_PHASE_CONTROLS.active_power_rate
    export_limit: int | None = reg.SINGLE_PHASE_CONTROLS.export_limit


@dataclass(frozen=True, slots=True)
class InverterProfile:
    """Everything model-specific about one simulated family."""

    family: str  # key in givbridge.plant.families.FAMILIES
    layout: Layout
    device_type_code: int  # HR0
    arm_firmware: int  # HR21
    dsp_firmware: int  # HR19
    rated_power_w: int  # AC output rating (library _DTC_RATED_POWER for the DTC; units x rating for EMS)
    serial_prefix: str  # inverter serial: prefix + YYWW + serial_letter + 3 digits
    serial_week: str
    dongle_prefix: str
    #: Addresses besides 0x11 where the same inverter register file answers.
    inverter_aliases: tuple[int, ...]
    #: Addresses that answer IR(60,60) with an empty BMS page when no pack is fitted there.
    empty_bms_addresses: tuple[int, ...]
    holding_served: tuple[range, ...]
    #: Banks the firmware ignores completely: a read gets no reply at all, not an error.
    holding_silent: tuple[range, ...]
    input_served: tuple[range, ...]
    input_silent: tuple[range, ...]
    holding_defaults: Mapping[int, int]
    #: Input registers with a fixed value (unexplained firmware constants seen in captures).
    input_constants: Mapping[int, int]
    charge_slots: tuple[SlotRegisters, ...]
    discharge_slots: tuple[SlotRegisters, ...]
    #: Writes GivTCP makes on real units beyond the library's per-model manifest list.
    extra_writable: frozenset[int]
    #: Writes the firmware acknowledges but does not keep (batpred #4517: per-slot discharge target).
    unpersisted_writes: frozenset[int]
    battery_energy: BatteryEnergyLayout
    #: IR247/248 total PV power ("combined generation"), which GivTCP reads on Gen3 and later.
    reports_combined_generation: bool
    pack: PackSpec | None
    #: Factory defaults for the PV array and the unit's age, which scale the lifetime counters.
    pv_kwp: float
    years_in_service: float
    controls: ControlMap = ControlMap()
    #: Forced-export slots (EMS HR2062+, three-phase discharge slots under HR1122).
    export_slots: tuple[SlotRegisters, ...] = ()
    hv: HvSpec | None = None
    unit: UnitSpec | None = None  # EMS-managed inverters / Gateway-paralleled All-in-Ones
    #: LV packs, HV modules or managed units a plant of this family gets unless told otherwise.
    default_batteries: int = 2
    max_batteries: int = MAX_PACKS
    #: Meters fitted by default (at 0x01 upwards, or at these addresses), and whether the
    #: other meter addresses answer a blank page (AIO, three-phase, EMS, Gateway) or nothing.
    default_meters: tuple[int, ...] = ()
    ghost_meter_pages: bool = False
    pv_coupling: Literal["dc", "ac"] = "dc"
    #: False on AC-coupled inverters, whose PV registers stay at zero.
    reports_pv: bool = True
    #: Battery rating where the library's table has none (Gen4 6 kW as GivTCP, Polar assumed).
    battery_max_w: int | None = None
    #: HR55 holds the battery capacity in Ah (three-phase, EMS and Gateway leave it at 0).
    reports_capacity_ah: bool = True
    serial_letter: str = "G"  # the EMS's serial has no middle letter: EMS + YYWW + 3 digits

    @property
    def model(self) -> Model:
        return cast(Model, resolve_model(self.device_type_code, self.arm_firmware))

    @property
    def battery_max_power_w(self) -> int:
        """The battery port's rating: the library's table for this DTC, else the profile's own figure."""
        if self.battery_max_w is not None:
            return self.battery_max_w
        watts = _battery_max_power(f"{self.device_type_code:04x}", self.arm_firmware)
        if not isinstance(watts, int):
            raise ValueError(f"the library has no battery rating for DTC {self.device_type_code:04x}")
        return watts

    def battery_rating_w(self, batteries: int) -> int:
        """The battery port's rating with ``batteries`` packs, modules or managed units fitted."""
        if self.unit is not None:
            return self.unit.battery_w * batteries
        if self.battery_max_w is not None or self.hv is None:
            return self.battery_max_power_w
        library = _battery_max_power(f"{self.device_type_code:04x}", self.arm_firmware)
        if isinstance(library, int):
            return library
        # No figure in the library's table (three-phase): GivTCP's 25 A at 80 V per battery,
        # counted per HV module rather than per LV pack (of which an HV stack has none).
        return round(self.hv.max_charge_current_a * 80 * batteries)

    @property
    def inverter_addresses(self) -> tuple[int, ...]:
        return (INVERTER_ADDRESS, *self.inverter_aliases)

    def serves_holding(self, register: int) -> bool:
        return any(register in r for r in self.holding_served)

    @property
    def slot_registers(self) -> tuple[SlotRegisters, ...]:
        return (*self.charge_slots, *self.discharge_slots, *self.export_slots)

    @property
    def writable(self) -> frozenset[int]:
        """Registers a write may change: the library's manifest list plus GivTCP's, where the unit has them."""
        library = cast(frozenset[int], manifest.write_safe_registers(self.model, self.arm_firmware))
        return frozenset(r for r in library | self.extra_writable if self.serves_holding(r))


def _ranges(*pairs: tuple[int, int]) -> tuple[range, ...]:
    return tuple(range(start, stop) for start, stop in pairs)


def _frozen(values: Mapping[int, int]) -> Mapping[int, int]:
    return MappingProxyType(dict(values))


# HR(0-179) of the HYBRID_GEN2 capture, minus identity (filled per unit in plant.py) and the
# clock. The charge schedule (HR94/95 23:30-05:30, HR96 on) is the capture's own.
_HR_HYBRID_BASE: dict[int, int] = {
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
_HR_GEN1_OVERRIDES: dict[int, int] = {
    2: 2098, 3: 0x0201, 5: 50000, 24: 32768, 25: 30235, 41: 1, 60: 1500, 64: 2740,
    65: 4700, 66: 5198, 67: 126, 68: 27, 69: 24, 70: 28, 71: 1840, 72: 2620, 73: 4745,
    75: 126, 76: 52, 77: 1, 78: 28, 79: 1755, 80: 2837, 81: 4700, 82: 5200, 83: 2740,
    84: 0, 85: 0, 86: 0, 101: 0, 115: 0, 166: 0, 176: 0,
}  # fmt: skip

# HR(300-359) as the AC-coupled capture reports it (the block's only wire evidence), with the
# battery power rating (HR308) set to what a 3.6 kW hybrid battery port delivers.
_HR_AC_CONFIG_BLOCK: dict[int, int] = {
    300: 1, 302: 20000, 303: 15000, 306: 20000, 307: 2300, 308: 3600, 309: 60, 310: 100,
    312: 15000, 313: 100, 314: 100, 315: 1150, 316: 2760, 317: 1, 318: 0, 319: 0, 320: 0,
    321: 5040, 326: 4980, 327: 24, 328: 5010,
}  # fmt: skip

# 10-slot charge targets (HR242+3n) at 100 % and discharge targets (HR272+3n) at 4 %, as the
# All-in-One capture reports them with no schedule programmed.
_HR_EXTENDED_SLOT_TARGETS: dict[int, int] = {
    **dict.fromkeys(reg.CHARGE_SLOT_TARGETS, 100),
    **dict.fromkeys(reg.DISCHARGE_SLOT_TARGETS, 4),
}

_HR_GEN3 = {**_HR_HYBRID_BASE, 3: 0x0201, 5: 50000, **_HR_EXTENDED_SLOT_TARGETS, **_HR_AC_CONFIG_BLOCK}

_TWO_SLOTS_CHARGE = tuple(SlotRegisters(start, end) for start, end in SINGLE_PHASE_SLOTS.charge_slots)
_TWO_SLOTS_DISCHARGE = tuple(SlotRegisters(start, end) for start, end in SINGLE_PHASE_SLOTS.discharge_slots)

# 10-slot firmware: slot n's SOC target follows its window. Charge slot 2 has two register
# pairs: the library's map keeps it at HR31/32, GivTCP writes HR243/244; either window counts.
_TEN_SLOTS_CHARGE = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(EXTENDED_SLOTS.charge_slots, reg.CHARGE_SLOT_TARGETS, strict=True)
)
_TEN_SLOTS_CHARGE = (
    *_TEN_SLOTS_CHARGE[:2],
    SlotRegisters(*reg.TEN_SLOT_CHARGE_2, reg.CHARGE_SLOT_TARGETS[1]),
    *_TEN_SLOTS_CHARGE[2:],
)
_TEN_SLOTS_DISCHARGE = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(EXTENDED_SLOTS.discharge_slots, reg.DISCHARGE_SLOT_TARGETS, strict=True)
)
# Three-phase slots 1 and 2 move to the 1000-range (the library's THREE_PHASE_SLOTS); its
# discharge slots are forced-export windows gated by the force-discharge switch.
_THREE_PHASE_CHARGE = tuple(SlotRegisters(start, end) for start, end in THREE_PHASE_SLOTS.charge_slots[:2])
_THREE_PHASE_EXPORT = tuple(SlotRegisters(start, end) for start, end in THREE_PHASE_SLOTS.discharge_slots[:2])
# EMS plant schedule (library EmsRegisterGetter): (start, end, target) triples.
_EMS_DISCHARGE = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(EMS_SLOTS.discharge_slots, reg.EMS_SLOT_TARGETS["discharge"], strict=True)
)
_EMS_CHARGE = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(EMS_SLOTS.charge_slots, reg.EMS_SLOT_TARGETS["charge"], strict=True)
)
_EMS_EXPORT = tuple(
    SlotRegisters(start, end, target)
    for (start, end), target in zip(reg.EMS_EXPORT_SLOTS, reg.EMS_SLOT_TARGETS["export"], strict=True)
)

_PAUSE_REGISTERS = reg.PAUSE_REGISTERS
# GivTCP's setDischargeTarget for slots 1 and 2; acknowledged but dropped by Gen1/Gen2/AC firmware.
_DISCHARGE_TARGETS_1_2 = frozenset(reg.DISCHARGE_SLOT_TARGETS[:2])
_TEN_SLOT_EXTRAS = reg.TEN_SLOT_WRITES

_SINGLE_PHASE_CONTROLS = ControlMap()
_PAUSE_CONTROLS = ControlMap(pause=(reg.PAUSE_MODE, *reg.PAUSE_SLOT))
_THREE_PHASE_CONTROLS = ControlMap(
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
_EMS_CONTROLS = ControlMap(
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
_GATEWAY_CONTROLS = ControlMap(
    charge_limit=reg.SINGLE_PHASE_CONTROLS.charge_limit_ac,
    discharge_limit=reg.SINGLE_PHASE_CONTROLS.discharge_limit_ac,
    limits_in_percent=True,
    pause=(reg.PAUSE_MODE, *reg.PAUSE_SLOT),
)  # GivTCP drives the Gateway's rates through HR313/314

_GIVBAT_8_2 = PackSpec("Giv-Bat 8.2", design_ah=160, bms_firmware=3007, reports_energy_totals=False, serial_prefix="BG")
_GIVBAT_9_5 = PackSpec("Giv-Bat 9.5", design_ah=186, bms_firmware=3020, reports_energy_totals=True, serial_prefix="DF")
_GIVBAT_9_5_GEN3 = PackSpec(
    "Giv-Bat 9.5 Gen3", design_ah=186, bms_firmware=3022, reports_energy_totals=True, serial_prefix="BJ"
)
_GIVBAT_5_12_GEN3 = PackSpec(
    "Giv-Bat 5.12 Gen3", design_ah=106, bms_firmware=4009, reports_energy_totals=True, serial_prefix="AC"
)

_AIO_STACK = HvSpec(
    module_ah=52,
    temperatures=12,
    bcu_firmware=(0x4241, 0x4141, 0x0000, 0x0103),  # "BAAA0013"
    bcu_serial_prefix="HC",
    module_serial_prefix="HX",
    has_bams=False,
    max_charge_current_a=25.0,
    hr18=13,
)
_HV_BMU_STACK = HvSpec(
    module_ah=52,
    temperatures=24,
    bcu_firmware=(0x4241, 0x4241, 0x0000, 0x0009),  # "BABA0009"
    bcu_serial_prefix="HB",
    module_serial_prefix="HY",
    has_bams=False,
    max_charge_current_a=25.0,
    hr18=0,
)
_THREE_PHASE_STACK = replace(_HV_BMU_STACK, has_bams=True)  # the same BCU/BMU stack, with a BAMS
_EMS_MANAGED_AC = UnitSpec("AC 3.0", 3000, 3000, 106, 51.2, "CE")
_GATEWAY_AIO = UnitSpec("All-in-One", 6000, 6000, 52, CELLS_PER_MODULE * 4 * 3.2, "CH")

_EMPTY_PACK_SLOTS = tuple(range(FIRST_PACK_ADDRESS, FIRST_PACK_ADDRESS + MAX_PACKS))


def _gen3_like(
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
    extended = _HR_EXTENDED_SLOT_TARGETS if ten_slots else {}
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
        empty_bms_addresses=(0x31, *_EMPTY_PACK_SLOTS),
        holding_served=_ranges((0, 360)),
        holding_silent=_ranges((540, 600)),
        input_served=_ranges((0, 300)),
        input_silent=(),
        holding_defaults=_frozen({**_HR_HYBRID_BASE, 3: 0x0201, 5: 50000, **extended, **_HR_AC_CONFIG_BLOCK}),
        input_constants=_frozen({221: 8192, 227: 300}),
        charge_slots=_TEN_SLOTS_CHARGE if ten_slots else _TWO_SLOTS_CHARGE,
        discharge_slots=_TEN_SLOTS_DISCHARGE if ten_slots else _TWO_SLOTS_DISCHARGE,
        extra_writable=(_PAUSE_REGISTERS if pause else frozenset()) | (_TEN_SLOT_EXTRAS if ten_slots else frozenset()),
        unpersisted_writes=frozenset() if ten_slots else _DISCHARGE_TARGETS_1_2,
        battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
        reports_combined_generation=combined_generation,
        pack=pack,
        pv_kwp=5.6,
        years_in_service=years,
        controls=_PAUSE_CONTROLS if pause else _SINGLE_PHASE_CONTROLS,
        default_batteries=2 if pack is not None else 0,
        max_batteries=MAX_PACKS if pack is not None else 0,
        battery_max_w=battery_max_w,
        reports_capacity_ah=pack is not None,
    )


def _rated(device_type_code: int) -> int:
    """The AC rating the library's table gives a device type code (W)."""
    return int(_DTC_RATED_POWER[f"{device_type_code:04x}"])


def _three_phase(family: str, device_type_code: int, *, ac_coupled: bool) -> InverterProfile:
    holding = dict(captured.THREE_PHASE)
    # HR1108/1110 read 1 on the captured unit while it discharged at 1.7 kW, so they do not
    # cap self-consumption there; the simulated firmware applies them always, so its factory
    # value is the 100 GivTCP restores after a forced charge or export.
    holding.update({1108: 100, 1110: 100})
    served = ((0, 180), (1000, 1125), (300, 360)) if ac_coupled else ((0, 180), (1000, 1125))
    if ac_coupled:
        holding.update(_HR_AC_CONFIG_BLOCK)
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
        holding_served=_ranges(*served),
        holding_silent=(),
        input_served=_ranges((0, 60), (120, 240), (1000, 1420)),
        input_silent=(),
        holding_defaults=_frozen(holding),
        input_constants=_frozen({}),
        charge_slots=_THREE_PHASE_CHARGE,
        discharge_slots=(),
        export_slots=_THREE_PHASE_EXPORT,
        # GivTCP's setChargeRate/setDischargeRate write the three-phase AC limits HR1110/1108.
        extra_writable=frozenset({1108, 1110}),
        unpersisted_writes=frozenset(),
        battery_energy=BatteryEnergyLayout(today_ir36=False),
        reports_combined_generation=False,
        pack=None,
        hv=_THREE_PHASE_STACK,
        pv_kwp=8.0,
        years_in_service=2.5,
        controls=_THREE_PHASE_CONTROLS,
        default_batteries=6,
        max_batteries=MAX_MODULES,
        default_meters=(0x01, 0x02),
        ghost_meter_pages=True,
        pv_coupling="ac" if ac_coupled else "dc",
        reports_capacity_ah=False,
    )


PROFILES: dict[str, InverterProfile] = {
    p.family: p
    for p in (
        InverterProfile(
            family="hybrid-gen1",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x2001,
            arm_firmware=449,
            dsp_firmware=449,
            rated_power_w=5000,
            serial_prefix="SA",
            serial_week="2114",
            dongle_prefix="WF",
            inverter_aliases=(0x31, 0x32),
            empty_bms_addresses=_EMPTY_PACK_SLOTS,
            holding_served=_ranges((0, 180)),
            holding_silent=_ranges((180, 360), (540, 600)),
            input_served=_ranges((0, 300)),
            input_silent=(),
            holding_defaults=_frozen({**_HR_HYBRID_BASE, **_HR_GEN1_OVERRIDES}),
            input_constants=_frozen({227: 300, 246: 80}),
            charge_slots=_TWO_SLOTS_CHARGE,
            discharge_slots=_TWO_SLOTS_DISCHARGE,
            extra_writable=frozenset(),
            unpersisted_writes=_DISCHARGE_TARGETS_1_2,
            battery_energy=BatteryEnergyLayout(today_ir36=True, today_ir182=True, total_ir180=True),
            reports_combined_generation=False,
            pack=_GIVBAT_8_2,
            pv_kwp=5.2,
            years_in_service=4.5,
        ),
        InverterProfile(
            family="hybrid-gen2",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x2003,
            arm_firmware=920,
            dsp_firmware=920,
            rated_power_w=3600,
            serial_prefix="EA",
            serial_week="2302",
            dongle_prefix="WG",
            inverter_aliases=(0x32,),
            # 0x31 answers an empty LV BCU page on Gen2 (capture); with no BCU modelled it stays empty.
            empty_bms_addresses=(0x31, *_EMPTY_PACK_SLOTS),
            holding_served=_ranges((0, 360)),
            holding_silent=_ranges((540, 600)),
            input_served=_ranges((0, 300)),
            input_silent=(),
            holding_defaults=_frozen({**_HR_HYBRID_BASE, 3: 0, **_HR_AC_CONFIG_BLOCK}),
            input_constants=_frozen({221: 8192, 227: 300}),
            charge_slots=_TWO_SLOTS_CHARGE,
            discharge_slots=_TWO_SLOTS_DISCHARGE,
            extra_writable=_PAUSE_REGISTERS,
            unpersisted_writes=_DISCHARGE_TARGETS_1_2,
            battery_energy=BatteryEnergyLayout(today_ir36=True),
            reports_combined_generation=False,
            pack=_GIVBAT_9_5,
            pv_kwp=4.4,
            years_in_service=3.0,
            controls=_PAUSE_CONTROLS,
        ),
        InverterProfile(
            family="hybrid-gen3",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x2001,
            arm_firmware=310,
            dsp_firmware=310,
            rated_power_w=5000,
            serial_prefix="SD",
            serial_week="2314",
            dongle_prefix="WG",
            inverter_aliases=(0x32,),
            empty_bms_addresses=(0x31, *_EMPTY_PACK_SLOTS),
            holding_served=_ranges((0, 360)),
            holding_silent=_ranges((540, 600)),
            input_served=_ranges((0, 300)),
            input_silent=(),
            holding_defaults=_frozen(_HR_GEN3),
            input_constants=_frozen({221: 8192, 227: 300}),
            charge_slots=_TEN_SLOTS_CHARGE,
            discharge_slots=_TEN_SLOTS_DISCHARGE,
            extra_writable=_PAUSE_REGISTERS | _TEN_SLOT_EXTRAS,
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
            reports_combined_generation=True,
            pack=_GIVBAT_9_5_GEN3,
            pv_kwp=5.6,
            years_in_service=1.5,
            controls=_PAUSE_CONTROLS,
        ),
        _gen3_like(
            "hybrid-gen3-plus",
            device_type_code=0x2201,
            firmware=401,
            ten_slots=False,  # Model.HYBRID has no extended-slot entry in the library's manifest
            serial_prefix="SE",
            serial_week="2344",
            pack=_GIVBAT_9_5_GEN3,
        ),
        _gen3_like(
            "hybrid-gen4",
            device_type_code=0x8304,
            firmware=101,
            ten_slots=True,
            serial_prefix="SF",
            serial_week="2440",
            pack=_GIVBAT_9_5_GEN3,
            battery_max_w=6000,
        ),
        _gen3_like(
            "polar",
            device_type_code=0x2101,
            firmware=201,
            ten_slots=False,
            serial_prefix="PA",
            serial_week="2420",
            pack=_GIVBAT_9_5_GEN3,
            battery_max_w=3600,
            combined_generation=False,
        ),
        _gen3_like(
            "pv",
            device_type_code=0x2301,
            firmware=301,
            ten_slots=False,
            serial_prefix="SP",
            serial_week="2330",
            pack=None,
            pause=False,
            combined_generation=False,
            years=2.0,
        ),
        InverterProfile(
            family="ac",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x3001,
            arm_firmware=282,
            dsp_firmware=291,
            rated_power_w=3000,
            serial_prefix="CE",
            serial_week="2231",
            dongle_prefix="FO",
            inverter_aliases=(0x31, 0x32),
            empty_bms_addresses=(0x30, *_EMPTY_PACK_SLOTS),
            holding_served=_ranges((0, 360)),
            holding_silent=_ranges((540, 600)),
            input_served=_ranges((0, 300)),
            input_silent=(),
            holding_defaults=_frozen(captured.AC),
            input_constants=_frozen({221: 8192, 227: 300}),
            charge_slots=_TWO_SLOTS_CHARGE,
            discharge_slots=_TWO_SLOTS_DISCHARGE,
            extra_writable=frozenset(),
            unpersisted_writes=_DISCHARGE_TARGETS_1_2,
            battery_energy=BatteryEnergyLayout(today_ir36=True),
            reports_combined_generation=False,
            pack=_GIVBAT_5_12_GEN3,
            pv_kwp=4.0,
            years_in_service=3.5,
            default_batteries=1,
            pv_coupling="ac",
            reports_pv=False,
        ),
        InverterProfile(
            family="aio",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x8001,
            arm_firmware=620,
            dsp_firmware=620,
            rated_power_w=6000,
            serial_prefix="CH",
            serial_week="2414",
            dongle_prefix="WJ",
            inverter_aliases=(),
            empty_bms_addresses=(),
            holding_served=_ranges((0, 180), (240, 360)),
            holding_silent=(),
            input_served=_ranges((0, 60), (120, 240)),
            input_silent=(),
            holding_defaults=_frozen(captured.AIO),
            input_constants=_frozen({221: 8192, 227: 300}),
            charge_slots=_TEN_SLOTS_CHARGE,
            discharge_slots=_TEN_SLOTS_DISCHARGE,
            extra_writable=_PAUSE_REGISTERS | _TEN_SLOT_EXTRAS,
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
            reports_combined_generation=False,
            pack=None,
            hv=_AIO_STACK,
            pv_kwp=4.8,
            years_in_service=2.0,
            controls=_PAUSE_CONTROLS,
            default_batteries=4,
            max_batteries=4,  # the library probes at most 0x50-0x53 on an All-in-One
            ghost_meter_pages=True,
            pv_coupling="ac",
        ),
        InverterProfile(
            family="hybrid-hv-gen3",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x8102,
            arm_firmware=310,
            dsp_firmware=310,
            rated_power_w=8000,
            serial_prefix="FG",
            serial_week="2444",
            dongle_prefix="WH",
            inverter_aliases=(),
            empty_bms_addresses=(),
            holding_served=_ranges((0, 300), (1000, 1125)),
            holding_silent=(),
            input_served=_ranges((0, 300), (1000, 1414)),
            input_silent=(),
            holding_defaults=_frozen({**_HR_HYBRID_BASE, 3: 0x0201, 5: 50000, **captured.HV_GEN3_SLOTS}),
            input_constants=_frozen({221: 8192, 227: 300}),
            charge_slots=_TEN_SLOTS_CHARGE,
            discharge_slots=_TEN_SLOTS_DISCHARGE,
            extra_writable=_TEN_SLOT_EXTRAS,
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
            reports_combined_generation=False,
            pack=None,
            hv=_HV_BMU_STACK,
            pv_kwp=6.5,
            years_in_service=1.5,
            default_batteries=3,
            default_meters=(0x01,),
        ),
        _three_phase("hybrid-3ph", 0x4004, ac_coupled=False),
        _three_phase("ac-3ph", 0x6003, ac_coupled=True),
        InverterProfile(
            family="ems",
            layout=Layout.EMS,
            device_type_code=0x5001,
            arm_firmware=1036,
            dsp_firmware=0,
            rated_power_w=0,  # set from the managed units: the EMS converts nothing itself
            serial_prefix="EMS",
            serial_week="2522",
            serial_letter="",
            dongle_prefix="FO",
            inverter_aliases=(),
            empty_bms_addresses=(),
            holding_served=_ranges((0, 180), (2040, 2076)),
            holding_silent=(),
            input_served=_ranges((0, 60), (180, 240), (2040, 2100)),
            input_silent=(),
            holding_defaults=_frozen(captured.EMS),
            input_constants=_frozen({}),
            charge_slots=_EMS_CHARGE,
            discharge_slots=_EMS_DISCHARGE,
            export_slots=_EMS_EXPORT,
            extra_writable=frozenset({2073}),  # car charge boost: in GivTCP's EMS map, not the library's allowlist
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=False),
            reports_combined_generation=False,
            pack=None,
            unit=_EMS_MANAGED_AC,
            pv_kwp=4.0,
            years_in_service=1.0,
            controls=_EMS_CONTROLS,
            default_batteries=2,
            max_batteries=4,  # the rollup has four inverter slots
            default_meters=(0x01, 0x03),
            ghost_meter_pages=True,
            pv_coupling="ac",
            reports_pv=False,
            reports_capacity_ah=False,
        ),
        InverterProfile(
            family="gateway",
            layout=Layout.GATEWAY,
            device_type_code=0x7001,
            arm_firmware=14,
            dsp_firmware=0,
            rated_power_w=12000,
            serial_prefix="GW",
            serial_week="2412",
            dongle_prefix="WJ",
            inverter_aliases=(),
            empty_bms_addresses=(),
            holding_served=_ranges((0, 360)),
            holding_silent=(),
            input_served=_ranges((0, 60), (120, 240), (1600, 1960)),
            input_silent=(),
            holding_defaults=_frozen(captured.GATEWAY),
            input_constants=_frozen({}),
            charge_slots=_TEN_SLOTS_CHARGE,
            discharge_slots=_TEN_SLOTS_DISCHARGE,
            # GivTCP writes the rates to HR313/314 and the ten per-slot targets on a Gateway.
            extra_writable=frozenset({313, 314}) | _PAUSE_REGISTERS | _TEN_SLOT_EXTRAS,
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=False),
            reports_combined_generation=False,
            pack=None,
            unit=_GATEWAY_AIO,
            pv_kwp=5.0,
            years_in_service=1.5,
            controls=_GATEWAY_CONTROLS,
            default_batteries=2,
            max_batteries=3,  # the rollup has three All-in-One slots
            default_meters=(0x01, 0x02),
            ghost_meter_pages=True,
            pv_coupling="ac",
            reports_pv=False,
            reports_capacity_ah=False,
        ),
    )
}


def profile_for(family: str) -> InverterProfile:
    """The simulator profile of a family key, or a ValueError naming the ones that exist."""
    try:
        return PROFILES[family]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"no simulator profile for {family!r}; simulated families: {known}") from None
