"""Every holding register givbridge names itself, per register layout, on the library's map.

givenergy-modbus is the register map: its model classes decode each field from named
registers (the single-phase, three-phase and EMS ``REGISTER_LUT`` tables), its slot maps
place the time slots and its manifest says what each model may write. givbridge keeps no
second table. Every address here is looked up in the library by the field that decodes it,
on the layout (single-phase, three-phase, EMS) that holds it, so the two cannot drift apart;
a field the library renamed or dropped fails at import, not on a live inverter.

What givbridge adds is what the library does not say, each with its reason:

* on the 10-slot layout charge slot 2 is HR243/244 (:data:`TEN_SLOT_CHARGE_2`), not the
  legacy HR31/32 the library's slot map keeps;
* which families' firmware has the battery pause registers HR318-320
  (:func:`has_pause_registers`): the library only knows them as part of the AC config block;
* the registers GivTCP writes on real units beyond the library's write allowlists
  (``*_WRITES`` and :data:`PAUSE_REGISTERS` below, which
  :func:`givbridge.plant.writes.writable_registers` adds);
* GivTCP's list of registers whose writes do not wear the EEPROM while Real Time Control is
  on (:data:`RTC_SAFE_REGISTERS`) and the reboot command word (:data:`REBOOT_VALUE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from givenergy_modbus.model.ems import EmsRegisterGetter
from givenergy_modbus.model.inverter import SinglePhaseInverterRegisterGetter
from givenergy_modbus.model.inverter_threephase import ThreePhaseInverterRegisterGetter
from givenergy_modbus.model.register import Converter

from givbridge.plant.derive import RATE_REGISTER_MAX
from givbridge.plant.families import Family
from givbridge.plant.vocab import PAUSE_MODES

_SINGLE_PHASE: Any = SinglePhaseInverterRegisterGetter
_THREE_PHASE: Any = ThreePhaseInverterRegisterGetter
_EMS: Any = EmsRegisterGetter


def holding_registers(layout: Any, field: str) -> tuple[int, ...]:
    """The holding registers the library decodes ``field`` from on ``layout``, in wire order."""
    registers = layout.registers_of(field)
    if not registers or any(register.reg_type != "HR" for register in registers):
        raise LookupError(f"{layout.__name__} decodes no holding register as {field!r}")
    return tuple(int(register.index) for register in registers)


def holding_register(layout: Any, field: str) -> int:
    """The one holding register of ``field`` on ``layout``."""
    (register,) = holding_registers(layout, field)
    return register


def _pair(layout: Any, field: str) -> tuple[int, int]:
    start, end = holding_registers(layout, field)
    return start, end


# --- the single-phase control map (HR0-359), shared by three-phase units where noted ----------

#: Identity, in HR0-59 on every device (the EMS too): what family it is and its ARM firmware.
DEVICE_TYPE_CODE = holding_register(_SINGLE_PHASE, "device_type_code")
ARM_FIRMWARE = holding_register(_SINGLE_PHASE, "arm_firmware_version")
ENABLE_CHARGE_TARGET = holding_register(_SINGLE_PHASE, "enable_charge_target")
ECO_MODE = holding_register(_SINGLE_PHASE, "battery_power_mode")  # 1: match demand (eco), 0: full power
CALIBRATION = holding_register(_SINGLE_PHASE, "battery_calibration_stage")  # SOC force adjust
#: HR35-40: year - 2000, month, day, hour, minute, second of the inverter's local clock.
CLOCK = holding_registers(_SINGLE_PHASE, "system_time")
ENABLE_DISCHARGE = holding_register(_SINGLE_PHASE, "enable_discharge")  # the timed-discharge schedule
ENABLE_CHARGE = holding_register(_SINGLE_PHASE, "enable_charge")  # the AC charge schedule
CHARGE_LIMIT = holding_register(_SINGLE_PHASE, "battery_charge_limit")  # C/100 of the capacity, 0-50
DISCHARGE_LIMIT = holding_register(_SINGLE_PHASE, "battery_discharge_limit")
REBOOT = holding_register(_SINGLE_PHASE, "inverter_reboot")
#: The word written to :data:`REBOOT` to restart the inverter (the other codes are factory resets).
REBOOT_VALUE = 100
PAUSE_MODE = holding_register(_SINGLE_PHASE, "battery_pause_mode")  # off, charge, discharge, both
PAUSE_SLOT = _pair(_SINGLE_PHASE, "battery_pause_slot_1")  # the window the pause mode applies in
#: Written (GivTCP's setBatteryPauseMode / setPauseSlot; Predbat's freeze modes) beyond the
#: library's allowlists, on the families of :data:`PAUSE_FAMILIES`.
PAUSE_REGISTERS = frozenset({PAUSE_MODE, *PAUSE_SLOT})

# On the 10-slot layout charge slot 2 lives next to its target in the HR240 block: GivTCP
# reads and writes HR243/244, and the All-in-One capture agrees (HR31/32 hold the factory
# 00:01-00:00 while HR243/244 hold a programmed window). The library decodes the pair as
# ``charge_slot_2_x`` but its slot map still names the legacy HR31/32.
TEN_SLOT_CHARGE_2_FIELD = "charge_slot_2_x"
TEN_SLOT_CHARGE_2 = _pair(_SINGLE_PHASE, TEN_SLOT_CHARGE_2_FIELD)
TEN_SLOTS = 10
#: Per-slot SOC targets of the 10-slot layout, slot 1 first.
CHARGE_SLOT_TARGETS = tuple(holding_register(_SINGLE_PHASE, f"charge_target_soc_{n}") for n in range(1, TEN_SLOTS + 1))
DISCHARGE_SLOT_TARGETS = tuple(
    holding_register(_SINGLE_PHASE, f"discharge_target_soc_{n}") for n in range(1, TEN_SLOTS + 1)
)


@dataclass(frozen=True, slots=True)
class ControlRegisters:
    """Where an inverter layout keeps the controls that moved between single- and three-phase."""

    soc_reserve: int  # the floor discharge stops at
    discharge_cutoff: int
    charge_target: int
    active_power_rate: int
    rtc: int  # Real Time Control
    charge_limit_ac: int  # % of the AC rating
    discharge_limit_ac: int
    export_limit: int  # watts the inverter may export


# Each control's library field on the single-phase and on the three-phase layout. GivTCP
# writes HR114, HR50 and HR166 on three-phase units too, but reads HR1078, HR1002 and HR1005
# there; givbridge writes the register it reads, so the read-back means something.
_CONTROL_FIELDS: dict[str, tuple[str, str]] = {
    "soc_reserve": ("battery_soc_reserve", "battery_soc_reserve"),
    "discharge_cutoff": ("battery_discharge_min_power_reserve", "battery_reserve_soc"),
    "charge_target": ("charge_target_soc", "charge_target_soc"),
    "active_power_rate": ("active_power_rate", "active_rate"),
    "rtc": ("enable_rtc", "real_time_control"),
    "charge_limit_ac": ("battery_charge_limit_ac", "battery_charge_limit_ac"),
    "discharge_limit_ac": ("battery_discharge_limit_ac", "battery_discharge_limit_ac"),
    "export_limit": ("grid_port_max_power_output", "export_power_limit"),
}
SINGLE_PHASE_CONTROLS = ControlRegisters(
    **{role: holding_register(_SINGLE_PHASE, single) for role, (single, _) in _CONTROL_FIELDS.items()}
)
THREE_PHASE_CONTROLS = ControlRegisters(
    **{role: holding_register(_THREE_PHASE, three) for role, (_, three) in _CONTROL_FIELDS.items()}
)

# --- three-phase only --------------------------------------------------------------------------

TPH_AC_CHARGE_ENABLE = holding_register(_THREE_PHASE, "ac_charge_enable")
TPH_FORCE_DISCHARGE_ENABLE = holding_register(_THREE_PHASE, "force_discharge_enable")
TPH_FORCE_CHARGE_ENABLE = holding_register(_THREE_PHASE, "force_charge_enable")

# --- the EMS plant controller (HR2040-2075) ----------------------------------------------------

EMS_PLANT_ENABLE = holding_register(_EMS, "plant_status")
EMS_CAR_CHARGE_BOOST = holding_register(_EMS, "car_charge_boost")  # watts
EMS_EXPORT_LIMIT = holding_register(_EMS, "export_power_limit")
EMS_SLOTS = 3
#: The EMS's (start, end) export windows, slot 1 first (the library's slot map has only
#: charge and discharge).
EMS_EXPORT_SLOTS = tuple(_pair(_EMS, f"export_slot_{n}") for n in range(1, EMS_SLOTS + 1))
#: Per-slot SOC targets of the EMS schedule by slot kind, slot 1 first.
EMS_SLOT_TARGETS: dict[str, tuple[int, ...]] = {
    kind: tuple(holding_register(_EMS, f"{kind}_target_{n}") for n in range(1, EMS_SLOTS + 1))
    for kind in ("charge", "discharge", "export")
}

# --- writes beyond the library's allowlists ----------------------------------------------------

#: The 10-slot layout's charge-slot-2 pair and per-slot targets (GivTCP's setChargeTarget1..10 /
#: setDischargeTarget1..10; Predbat's export floor is the first discharge target).
TEN_SLOT_WRITES = frozenset({*TEN_SLOT_CHARGE_2, *CHARGE_SLOT_TARGETS, *DISCHARGE_SLOT_TARGETS})
#: The three-phase AC charge and discharge limits (GivTCP's setChargeRate / setDischargeRate and
#: its force-charge/export reverts on 3PH write them). They are in the library's global write
#: allowlist, but its per-model three-phase set leaves them out.
THREE_PHASE_RATE_WRITES = frozenset({THREE_PHASE_CONTROLS.charge_limit_ac, THREE_PHASE_CONTROLS.discharge_limit_ac})
#: The EMS's car charge boost: the library decodes it and GivTCP's EMS map lists it, but the
#: library's EMS write allowlist leaves it out. Its command bounds the value (0-22000 W).
EMS_WRITES = frozenset({EMS_CAR_CHARGE_BOOST})

# Families whose firmware has the battery pause registers: GivTCP leaves them out for Gen1
# hybrids and single-phase AC units, whose firmware lacks them. Gen2+ hybrids keep them in
# HR300-359, a bank the library only polls on AC-coupled units and the All-in-One.
PAUSE_FAMILIES = frozenset({"hybrid-gen2", "hybrid-gen3", "hybrid-gen3-plus", "hybrid-gen4", "polar", "aio"})
# Three-phase families whose battery rates GivTCP sets through the AC limits.
THREE_PHASE_RATE_FAMILIES = frozenset({"hybrid-3ph", "ac-3ph"})


def has_pause_registers(family: Family) -> bool:
    return family.key in PAUSE_FAMILIES


# GivTCP's list of registers whose writes do not wear EEPROM while Real Time Control is on;
# writes to them then count as "safe" (Safe_Write_Count) rather than Write_Count. GivTCP's
# own fact, kept as its list says it (it names HR1114/1118/1119 and HR1141 but not every
# three-phase slot register).
RTC_SAFE_REGISTERS = frozenset(
    {20, 27, 50, 56, 57, 59, 94, 95, 96, 110, 111, 112, 116, 318, 319, 320}
    | {1002, 1108, 1110, 1111, 1112, 1114, 1118, 1119, 1122, 1123, 1141}
)


# --- the values a written-back register can hold ------------------------------------------------
# A timed action saves a baseline read from the inverter and writes it back later; a value no
# register of its kind can hold (a slot at 25:99, a flag of 7, a 300 % target) must never be
# written. The library's converters say what a flag, a slot time and an enum are; the ranges of
# the plain numbers are named here, by the library field that decodes them.

#: What the inverter stores in a slot register it has never had programmed (the portal shows
#: ``--:--``); the library's timeslot converter reads it as "no slot". Writing it back restores that.
UNSET_SLOT_TIME = 60
_PERCENT_FIELDS = frozenset(
    {
        "charge_target_soc",
        "battery_soc_reserve",
        "battery_reserve_soc",
        "battery_charge_limit_ac",  # three-phase: % of the AC rating
        "battery_discharge_limit_ac",
        *(f"{kind}_target_soc_{n}" for kind in ("charge", "discharge") for n in range(1, TEN_SLOTS + 1)),
    }
)
#: C/100 of the battery's capacity, 0 up to the inverter's maximum of C/2.
_RATE_FIELDS = frozenset({"battery_charge_limit", "battery_discharge_limit"})
_PAUSE_MODE_FIELD = "battery_pause_mode"


@dataclass(frozen=True, slots=True)
class ValueDomain:
    """The raw values one holding register can legitimately hold."""

    what: str
    low: int
    high: int
    clock: bool = False  # HHMM: also a minute below 60, or the unset slot
    choices: frozenset[int] | None = None  # an enum's values, where they leave gaps

    def problem(self, value: int) -> str | None:
        """None when ``value`` is one of these, else why not."""
        if self.clock:
            hour, minute = divmod(value, 100)
            if value == UNSET_SLOT_TIME or (value >= 0 and hour < 24 and minute < 60):
                return None
            return f"{value} is not a time of day as HHMM (hour 0-23, minute 0-59)"
        if self.choices is not None and value not in self.choices:
            return f"{value} is not {self.what} ({sorted(self.choices)})"
        if not self.low <= value <= self.high:
            return f"{value} is not {self.what} ({self.low}-{self.high})"
        return None


_SLOT_TIME = ValueDomain("a slot time", 0, 2359, clock=True)
_FLAG = ValueDomain("an on/off flag", 0, 1)
_PERCENT = ValueDomain("a percentage", 0, 100)


def _field_domain(definition: Any, field: str) -> ValueDomain | None:
    """What the register(s) of one library field can hold, from its converter or its name."""
    convert = definition.pre_conv[0] if isinstance(definition.pre_conv, tuple) else definition.pre_conv
    if convert is Converter.timeslot:
        return _SLOT_TIME
    if convert is Converter.bool:
        return _FLAG
    enum = definition.post_conv
    if isinstance(enum, type) and issubclass(enum, Enum) and issubclass(enum, int):
        values = frozenset(int(member.value) for member in enum)
        return ValueDomain(f"a {enum.__name__} value", min(values), max(values), choices=values)
    if field in _PERCENT_FIELDS:
        return _PERCENT
    if field in _RATE_FIELDS:
        return ValueDomain("a battery rate register", 0, RATE_REGISTER_MAX)
    if field == _PAUSE_MODE_FIELD:
        return ValueDomain("a battery pause mode", 0, len(PAUSE_MODES) - 1)
    return None


def _domains(layout: Any) -> dict[int, ValueDomain]:
    """Every holding register of ``layout`` whose values givbridge can judge, by address."""
    domains: dict[int, ValueDomain] = {}
    ambiguous: set[int] = set()  # decoded by fields that disagree: judged by neither
    for field, definition in layout.REGISTER_LUT.items():
        registers = definition.registers
        if not registers or any(register.reg_type != "HR" for register in registers):
            continue
        domain = _field_domain(definition, field)
        if domain is None:
            continue
        for register in registers:
            if domains.setdefault(int(register.index), domain) != domain:
                ambiguous.add(int(register.index))
    return {address: domain for address, domain in domains.items() if address not in ambiguous}


_SINGLE_PHASE_DOMAINS = _domains(_SINGLE_PHASE)
_THREE_PHASE_DOMAINS = _domains(_THREE_PHASE)


def holds_valid(register: int, value: int, *, three_phase: bool) -> str | None:
    """None when ``value`` is one ``register`` can legitimately hold, else why it cannot.

    For a value read from the inverter that is to be written back (a timed action's
    baseline). ``three_phase`` picks the layout the address is read on. A register givbridge
    knows no domain for is refused too: nothing is written back unjudged.
    """
    domains = _THREE_PHASE_DOMAINS if three_phase else _SINGLE_PHASE_DOMAINS
    domain = domains.get(register)
    if domain is None:
        return f"HR{register} has no known range of values, so it is not written back"
    problem = domain.problem(value)
    return f"HR{register}: {problem}" if problem else None
