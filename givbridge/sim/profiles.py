"""What each simulated GivEnergy model looks like on the wire, as data.

A :class:`InverterProfile` says which device type code and firmware a model reports, which
register banks it answers (and which it ignores outright), its factory configuration, its
schedule layout, which writes it accepts and which battery-energy registers its firmware
fills. Everything a new family needs is a new entry in :data:`PROFILES`; the plant, physics
and server read these fields and nothing model-specific lives elsewhere.

Where the values come from (facts only; serials and lifetime totals are our own):

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
  the HR(240-299) slot/target layout as the All-in-One and HV Gen3 captures report it. That
  it fills IR194-197 (battery lifetime totals, protocol v4.1.5) rather than IR180/181 is an
  assumption, flagged here because no unit has been seen doing either.

Two behaviours come straight from the captures and differ from a naive reading of the
protocol: the inverter answers at legacy addresses as well as 0x11 (0x31 on Gen1/AC, 0x32
on all of them, where IR(60-119) is battery pack 1), and an unpopulated battery slot
(0x32-0x37) answers IR(60,60) with an empty bank rather than staying silent. Battery
responses carry the *inverter's* serial in the envelope: the inverter answers from its own
cache of the BMS pages.

Adding a family (AC, AIO, three-phase, HV, EMS, Gateway, Gen4, PV-only): describe its banks
and defaults here. A device kind the plant does not model yet (meters, HV BCU/BMU stacks,
the EMS rollup) also needs a renderer in ``render.py`` and a route in ``plant.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from givenergy_modbus.model import manifest
from givenergy_modbus.model.inverter import Model, _battery_max_power, resolve_model

#: Modbus address the library (and the GivEnergy app) reads the inverter at, on every model.
INVERTER_ADDRESS = 0x11
#: LV battery pack n answers at 0x32 + n - 1; the library probes up to 0x37.
FIRST_PACK_ADDRESS = 0x32
MAX_PACKS = 6

#: The LV pack bank: IR(60-119) at a pack's address.
PACK_BANK = range(60, 120)


@dataclass(frozen=True, slots=True)
class SlotRegisters:
    """Where one charge or discharge slot lives: HHMM start/end and, on 10-slot firmware, its SOC target."""

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
class BatteryEnergyLayout:
    """Which inverter input registers this firmware fills with battery energy (manifest.VALUE_SOURCES)."""

    today_ir36: bool = True  # "alt1" daily: IR36 charge, IR37 discharge
    today_ir182: bool = False  # "alt2" daily: IR182 discharge, IR183 charge
    total_ir180: bool = False  # "alt1" lifetime, uint16: IR180 discharge, IR181 charge
    total_ir194: bool = False  # protocol v4.1.5 lifetime, uint32: IR194/195 charge, IR196/197 discharge


@dataclass(frozen=True, slots=True)
class InverterProfile:
    """Everything model-specific about one simulated family."""

    family: str  # key in givbridge.plant.families.FAMILIES
    device_type_code: int  # HR0
    arm_firmware: int  # HR21
    dsp_firmware: int  # HR19
    rated_power_w: int  # AC output rating (library _DTC_RATED_POWER for the DTC)
    serial_prefix: str  # inverter serial: prefix + YYWW + "G" + 3 digits
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
    has_pause: bool  # HR318 pause mode with pause slot HR319/320
    battery_energy: BatteryEnergyLayout
    #: IR247/248 total PV power ("combined generation"), which GivTCP reads on Gen3 and later.
    reports_combined_generation: bool
    pack: PackSpec
    #: Factory defaults for the PV array and the unit's age, which scale the lifetime counters.
    pv_kwp: float
    years_in_service: float

    @property
    def model(self) -> Model:
        return cast(Model, resolve_model(self.device_type_code, self.arm_firmware))

    @property
    def battery_max_power_w(self) -> int:
        """The library's rated battery power for this DTC and firmware; the cap on HR111/112."""
        watts = _battery_max_power(f"{self.device_type_code:04x}", self.arm_firmware)
        if not isinstance(watts, int):
            raise ValueError(f"the library has no battery rating for DTC {self.device_type_code:04x}")
        return watts

    @property
    def inverter_addresses(self) -> tuple[int, ...]:
        return (INVERTER_ADDRESS, *self.inverter_aliases)

    def serves_holding(self, register: int) -> bool:
        return any(register in r for r in self.holding_served)

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
    **{242 + 3 * n: 100 for n in range(10)},
    **{272 + 3 * n: 4 for n in range(10)},
}

_TWO_SLOTS_CHARGE = (SlotRegisters(94, 95), SlotRegisters(31, 32))
_TWO_SLOTS_DISCHARGE = (SlotRegisters(56, 57), SlotRegisters(44, 45))

# 10-slot firmware: slot n's SOC target follows its window. Charge slot 2 has two register
# pairs: the library's map keeps it at HR31/32, GivTCP writes HR243/244; either window counts.
_TEN_SLOTS_CHARGE = (
    SlotRegisters(94, 95, 242),
    SlotRegisters(31, 32, 245),
    SlotRegisters(243, 244, 245),
    *(SlotRegisters(246 + 3 * n, 247 + 3 * n, 248 + 3 * n) for n in range(8)),
)
_TEN_SLOTS_DISCHARGE = (
    SlotRegisters(56, 57, 272),
    SlotRegisters(44, 45, 275),
    *(SlotRegisters(276 + 3 * n, 277 + 3 * n, 278 + 3 * n) for n in range(8)),
)

_PAUSE_REGISTERS = frozenset({318, 319, 320})
# GivTCP's setDischargeTarget for slots 1 and 2; acknowledged but dropped by Gen1/Gen2/AC firmware.
_DISCHARGE_TARGETS_1_2 = frozenset({272, 275})
_TEN_SLOT_TARGETS = frozenset({242 + 3 * n for n in range(10)} | {272 + 3 * n for n in range(10)})

_GIVBAT_8_2 = PackSpec("Giv-Bat 8.2", design_ah=160, bms_firmware=3007, reports_energy_totals=False, serial_prefix="BG")
_GIVBAT_9_5 = PackSpec("Giv-Bat 9.5", design_ah=186, bms_firmware=3020, reports_energy_totals=True, serial_prefix="DF")
_GIVBAT_9_5_GEN3 = PackSpec(
    "Giv-Bat 9.5 Gen3", design_ah=186, bms_firmware=3022, reports_energy_totals=True, serial_prefix="BJ"
)

_EMPTY_PACK_SLOTS = tuple(range(FIRST_PACK_ADDRESS, FIRST_PACK_ADDRESS + MAX_PACKS))

PROFILES: dict[str, InverterProfile] = {
    p.family: p
    for p in (
        InverterProfile(
            family="hybrid-gen1",
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
            has_pause=False,
            battery_energy=BatteryEnergyLayout(today_ir36=True, today_ir182=True, total_ir180=True),
            reports_combined_generation=False,
            pack=_GIVBAT_8_2,
            pv_kwp=5.2,
            years_in_service=4.5,
        ),
        InverterProfile(
            family="hybrid-gen2",
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
            has_pause=True,
            battery_energy=BatteryEnergyLayout(today_ir36=True),
            reports_combined_generation=False,
            pack=_GIVBAT_9_5,
            pv_kwp=4.4,
            years_in_service=3.0,
        ),
        InverterProfile(
            family="hybrid-gen3",
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
            holding_defaults=_frozen(
                {**_HR_HYBRID_BASE, 3: 0x0201, 5: 50000, **_HR_EXTENDED_SLOT_TARGETS, **_HR_AC_CONFIG_BLOCK}
            ),
            input_constants=_frozen({221: 8192, 227: 300}),
            charge_slots=_TEN_SLOTS_CHARGE,
            discharge_slots=_TEN_SLOTS_DISCHARGE,
            extra_writable=_PAUSE_REGISTERS | _TEN_SLOT_TARGETS | {243, 244},
            unpersisted_writes=frozenset(),
            has_pause=True,
            battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
            reports_combined_generation=True,
            pack=_GIVBAT_9_5_GEN3,
            pv_kwp=5.6,
            years_in_service=1.5,
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
