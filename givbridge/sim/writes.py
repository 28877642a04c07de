"""How a simulated inverter answers a holding-register write.

Pure: :func:`classify_write` looks only at the profile, the register and the value. The
plant then applies the outcome (store, adjust its clock, start a reboot) and the server
turns it into an echo or an error frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from givenergy_modbus.client.commands import RegisterMap

from givbridge.plant import registers as reg
from givbridge.sim.profile_spec import InverterProfile


class WriteOutcome(Enum):
    STORED = "stored"
    #: Echoed like a success, but the firmware keeps the old value (a model quirk or a fault).
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    REBOOT = "reboot"


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One holding-register write the inverter answered, as :attr:`SimulatedPlant.write_log` keeps it."""

    sequence: int  # 1 for the plant's first write, counting every write it answered
    moment: datetime  # simulated time of the write
    address: int
    register: int
    old: int  # what a read of the register returned just before
    new: int  # the value the write asked for
    outcome: WriteOutcome

    @property
    def accepted(self) -> bool:
        """Echoed as a success (stored, acknowledged only, or a reboot started)."""
        return self.outcome is not WriteOutcome.REJECTED


def _between(low: int, high: int) -> Callable[[int], bool]:
    return lambda value: low <= value <= high


def _is_hhmm(value: int) -> bool:
    hours, minutes = divmod(value, 100)
    return hours < 24 and minutes < 60


# Year (two digits), month, day, hour, minute, second of the inverter's local clock.
_CLOCK_RULES: dict[int, Callable[[int], bool]] = dict(
    zip(
        reg.CLOCK,
        (_between(0, 99), _between(1, 12), _between(1, 31), _between(0, 23), _between(0, 59), _between(0, 59)),
        strict=True,
    )
)

_SP, _TP = reg.SINGLE_PHASE_CONTROLS, reg.THREE_PHASE_CONTROLS
_SWITCHES = (reg.ENABLE_CHARGE_TARGET, reg.ECO_MODE, reg.ENABLE_DISCHARGE, reg.ENABLE_CHARGE, _SP.rtc)

# Ranges as the library's command helpers (and GivTCP) enforce them for the same registers.
_SCALAR_RULES: dict[int, Callable[[int], bool]] = {
    **{register: _between(0, 1) for register in (*_SWITCHES, RegisterMap.ENABLE_EPS)},
    reg.CALIBRATION: lambda value: value in (0, 1, 3),  # SOC calibration: stop, start, charge only
    _SP.active_power_rate: _between(0, 100),  # % of rated output
    _SP.soc_reserve: _between(4, 100),
    reg.CHARGE_LIMIT: _between(0, 100),  # C/100 of capacity (0-50 meaningful)
    reg.DISCHARGE_LIMIT: _between(0, 100),
    _SP.discharge_cutoff: _between(4, 100),
    _SP.charge_target: _between(4, 100),
    reg.REBOOT: lambda value: value == reg.REBOOT_VALUE,  # the other codes are factory resets; not simulated
    RegisterMap.EXPORT_PRIORITY: _between(0, 2),
    _SP.charge_limit_ac: _between(1, 100),  # %
    _SP.discharge_limit_ac: _between(1, 100),
    reg.PAUSE_MODE: _between(0, 3),  # pause: off, charge, discharge, both
    # Three-phase (the library's THREE_PHASE write set and GivTCP's 3PH rate registers).
    **{
        register: _between(0, 1)
        for register in (_TP.rtc, reg.TPH_AC_CHARGE_ENABLE, reg.TPH_FORCE_DISCHARGE_ENABLE, reg.TPH_FORCE_CHARGE_ENABLE)
    },
    _TP.discharge_cutoff: _between(4, 100),  # battery reserve, three-phase
    _TP.discharge_limit_ac: _between(1, 100),  # % of the battery rating
    _TP.soc_reserve: _between(4, 100),  # discharge floor (HR110's twin)
    _TP.charge_limit_ac: _between(1, 100),  # %
    _TP.charge_target: _between(4, 100),  # charge target (HR116's twin)
    # EMS plant controller.
    reg.EMS_PLANT_ENABLE: _between(0, 1),  # plant control on/off
    reg.EMS_EXPORT_LIMIT: _between(0, 0xFFFF),  # W
    reg.EMS_CAR_CHARGE_BOOST: _between(0, 22000),  # W
    **_CLOCK_RULES,
}


def value_is_valid(profile: InverterProfile, register: int, value: int) -> bool:
    """Whether ``value`` is one the firmware accepts for ``register`` on this model."""
    rule = _SCALAR_RULES.get(register)
    if rule is not None:
        return rule(value)
    slots = profile.slot_registers
    if register in {r for slot in slots for r in (slot.start, slot.end)} or register in reg.PAUSE_SLOT:
        return _is_hhmm(value)
    if register in {slot.target for slot in slots} or register in profile.unpersisted_writes:
        return 4 <= value <= 100  # per-slot SOC targets
    return False


def classify_write(profile: InverterProfile, register: int, value: int) -> WriteOutcome:
    """The firmware's answer to writing ``value`` to ``register`` (persisting faults aside)."""
    accepted = register in profile.writable or register in profile.unpersisted_writes
    if not accepted or not value_is_valid(profile, register, value):
        return WriteOutcome.REJECTED
    if register == reg.REBOOT:
        return WriteOutcome.REBOOT
    if register in profile.unpersisted_writes:
        return WriteOutcome.ACKNOWLEDGED
    return WriteOutcome.STORED
