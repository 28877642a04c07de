"""What a simulated GivEnergy model is, as data: the bus addresses every model shares and the
:class:`InverterProfile` (with its parts) that says how one family looks on the wire.

The families themselves are in :mod:`givbridge.sim.profiles`, built from the shared pieces in
:mod:`givbridge.sim.profile_parts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal, cast

from givenergy_modbus.model import manifest
from givenergy_modbus.model.inverter import Model, _battery_max_power, resolve_model

from givbridge.plant import registers as reg

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
