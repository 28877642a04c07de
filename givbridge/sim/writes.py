"""How a simulated inverter answers a holding-register write.

Pure: :func:`classify_write` looks only at the profile, the register and the value. The
plant then applies the outcome (store, adjust its clock, start a reboot) and the server
turns it into an echo or an error frame.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from givbridge.plant import registers as reg
from givbridge.sim.profiles import InverterProfile


class WriteOutcome(Enum):
    STORED = "stored"
    #: Echoed like a success, but the firmware keeps the old value (a model quirk or a fault).
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    REBOOT = "reboot"


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

# Ranges as the library's command helpers (and GivTCP) enforce them for the same registers.
_SCALAR_RULES: dict[int, Callable[[int], bool]] = {
    **{register: _between(0, 1) for register in (20, 27, 59, 96, 166, 317)},
    29: lambda value: value in (0, 1, 3),  # SOC calibration: stop, start, charge only
    50: _between(0, 100),  # active power rate, % of rated output
    110: _between(4, 100),  # battery reserve
    111: _between(0, 100),  # charge limit, C/100 of capacity (0-50 meaningful)
    112: _between(0, 100),  # discharge limit, C/100
    114: _between(4, 100),  # discharge cut-off
    116: _between(4, 100),  # charge target
    reg.REBOOT: lambda value: value == reg.REBOOT_VALUE,  # the other codes are factory resets; not simulated
    311: _between(0, 2),  # export priority
    313: _between(1, 100),  # AC charge limit, %
    314: _between(1, 100),  # AC discharge limit, %
    reg.PAUSE_MODE: _between(0, 3),  # pause: off, charge, discharge, both
    # Three-phase (the library's THREE_PHASE write set and GivTCP's 3PH rate registers).
    **{register: _between(0, 1) for register in (1005, 1112, 1122, 1123)},
    1078: _between(4, 100),  # battery reserve, three-phase
    1108: _between(1, 100),  # AC discharge limit, % of the battery rating
    1109: _between(4, 100),  # discharge floor (HR110's twin)
    1110: _between(1, 100),  # AC charge limit, %
    1111: _between(4, 100),  # charge target (HR116's twin)
    # EMS plant controller.
    2040: _between(0, 1),  # plant control on/off
    2071: _between(0, 0xFFFF),  # export power limit, W
    2073: _between(0, 22000),  # car charge boost, W
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
