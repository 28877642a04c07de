"""Which values a register a timed action writes back can hold (``registers.holds_valid``).

A timed action's baseline is read from the inverter and written back when it ends. Every value
a real (simulated) inverter holds in those registers, and every value the actions write, must
pass; a value no register of its kind can hold (a slot at 25:99, a flag of 7, a 300 % target, a
rate past the register maximum, a pause mode past its enum) must not.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from givbridge.commands import devices as dev
from givbridge.commands.timed import kinds_for
from givbridge.devices.context import DeviceContext
from givbridge.plant import registers as reg
from givbridge.plant.derive import RATE_REGISTER_MAX
from givbridge.sim import PROFILES, SimulatedPlant

TIMED_DEVICES = {d.family.key: d for d in dev.reference_devices() if list(kinds_for(d))}
SP, TP = reg.SINGLE_PHASE_CONTROLS, reg.THREE_PHASE_CONTROLS


def written_back(device: DeviceContext) -> list[int]:
    """Every register a timed action on ``device`` saves as its baseline."""
    return sorted({register for kind in kinds_for(device) for register in kind.registers(device)})


def judge(device: DeviceContext, register: int, value: int) -> str | None:
    return reg.holds_valid(register, value, three_phase=dev.is_three_phase(device))


def test_every_family_with_timed_actions_is_covered() -> None:
    # Both layouts, every simulated family that runs timed actions.
    assert {"hybrid-gen1", "hybrid-gen3", "aio", "hybrid-3ph", "ac-3ph"} <= set(TIMED_DEVICES)
    assert set(TIMED_DEVICES) <= set(PROFILES)


@pytest.mark.parametrize("family", sorted(TIMED_DEVICES))
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_what_the_simulator_holds_is_valid(family: str, seed: int) -> None:
    device = TIMED_DEVICES[family]
    sim = SimulatedPlant.create(family, seed=seed)
    held = {register: sim.holding(register) for register in written_back(device)}
    assert {r: judge(device, r, v) for r, v in held.items() if judge(device, r, v)} == {}
    defaults = PROFILES[family].holding_defaults
    seeded = {r: defaults[r] for r in written_back(device) if r in defaults}
    assert seeded, f"{family} seeds none of its timed registers"
    assert {r: judge(device, r, v) for r, v in seeded.items() if judge(device, r, v)} == {}


@pytest.mark.parametrize("family", sorted(TIMED_DEVICES))
@pytest.mark.parametrize("hour", [0, 12, 23])
def test_what_the_actions_write_is_valid(family: str, hour: int) -> None:
    device = TIMED_DEVICES[family]
    for kind in kinds_for(device):
        for minutes in (1, 59, 1440):
            writes = kind.writes(device, datetime(2026, 6, 20, hour, 59), minutes)
            assert {r: judge(device, r, v) for r, v in writes if judge(device, r, v)} == {}, (kind.name, minutes)


SINGLE = [
    (SP.charge_target, 0, 100, 101),
    (SP.soc_reserve, 4, 100, 300),
    (reg.CHARGE_LIMIT, 0, RATE_REGISTER_MAX, RATE_REGISTER_MAX + 1),
    (reg.DISCHARGE_LIMIT, 0, RATE_REGISTER_MAX, 100),
    (reg.PAUSE_MODE, 0, 3, 4),
    (reg.ECO_MODE, 0, 1, 2),
    (reg.ENABLE_DISCHARGE, 0, 1, 7),
    (reg.ENABLE_CHARGE, 0, 1, 2),
    (reg.ENABLE_CHARGE_TARGET, 0, 1, 65535),
    (reg.CHARGE_SLOT_TARGETS[0], 0, 100, 101),
    (reg.DISCHARGE_SLOT_TARGETS[0], 4, 100, 255),
]
THREE = [
    (TP.charge_target, 0, 100, 101),
    (TP.soc_reserve, 5, 100, 300),
    (TP.charge_limit_ac, 1, 100, 101),
    (TP.discharge_limit_ac, 1, 100, 1000),
    (reg.TPH_FORCE_CHARGE_ENABLE, 0, 1, 2),
    (reg.TPH_FORCE_DISCHARGE_ENABLE, 0, 1, 7),
    (reg.TPH_AC_CHARGE_ENABLE, 0, 1, 3),
    (reg.ECO_MODE, 0, 1, 2),
    (reg.ENABLE_DISCHARGE, 0, 1, 7),
]


@pytest.mark.parametrize(
    ("register", "low", "high", "impossible", "three_phase"),
    [(*case, False) for case in SINGLE] + [(*case, True) for case in THREE],
)
def test_ranges(register: int, low: int, high: int, impossible: int, three_phase: bool) -> None:
    assert reg.holds_valid(register, low, three_phase=three_phase) is None
    assert reg.holds_valid(register, high, three_phase=three_phase) is None
    why = reg.holds_valid(register, impossible, three_phase=three_phase)
    assert why is not None and f"HR{register}" in why and str(impossible) in why


def slot_registers() -> list[tuple[int, bool]]:
    single = TIMED_DEVICES["hybrid-gen3"]
    three = TIMED_DEVICES["hybrid-3ph"]
    pairs = [
        *dev.slot_window(single, "charge", 1),
        *dev.slot_window(single, "discharge", 1),
        *reg.PAUSE_SLOT,
        *reg.TEN_SLOT_CHARGE_2,
    ]
    return [(r, False) for r in pairs] + [
        (r, True) for r in (*dev.slot_window(three, "charge", 1), *dev.slot_window(three, "discharge", 1))
    ]


@pytest.mark.parametrize(("register", "three_phase"), slot_registers())
def test_slot_times_are_hhmm(register: int, three_phase: bool) -> None:
    for valid in (0, 1, 59, 100, 530, 1230, 2330, 2359, reg.UNSET_SLOT_TIME):
        assert reg.holds_valid(register, valid, three_phase=three_phase) is None, valid
    for impossible in (2400, 2599, 61, 99, 1260, 9999, 65535, -1):
        why = reg.holds_valid(register, impossible, three_phase=three_phase)
        assert why is not None and "HHMM" in why, impossible


def test_a_register_of_unknown_meaning_is_never_judged_valid() -> None:
    # The inverter's serial text and a register past the map: no known domain, so refused.
    assert reg.holds_valid(13, 0, three_phase=False) is not None
    assert reg.holds_valid(9999, 0, three_phase=False) is not None
    # A single-phase address the three-phase layout does not decode this way.
    assert reg.holds_valid(SP.charge_target, 50, three_phase=True) is not None
