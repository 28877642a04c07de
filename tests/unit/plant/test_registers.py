"""The register module agrees with the library wherever both name a register.

``givbridge.plant.registers`` looks every address up in the library's decoding tables; these
tests hold it to the library's other statements of the same facts (its command register map,
its slot maps, its write allowlists), and pin that givbridge's additions really are additions.
"""

from __future__ import annotations

import pytest
from givenergy_modbus.client.commands import RegisterMap
from givenergy_modbus.model import manifest
from givenergy_modbus.model.slot_map import EMS_SLOTS, EXTENDED_SLOTS, THREE_PHASE_SLOTS
from givenergy_modbus.pdu.write_registers import WRITE_SAFE_REGISTERS

from givbridge.plant import registers as reg
from givbridge.plant.families import FAMILIES

SP, TP = reg.SINGLE_PHASE_CONTROLS, reg.THREE_PHASE_CONTROLS


@pytest.mark.parametrize(
    ("ours", "library"),
    [
        (reg.ENABLE_CHARGE_TARGET, RegisterMap.ENABLE_CHARGE_TARGET),
        (reg.ECO_MODE, RegisterMap.BATTERY_POWER_MODE),
        (reg.CALIBRATION, RegisterMap.SOC_FORCE_ADJUST),
        (reg.ENABLE_DISCHARGE, RegisterMap.ENABLE_DISCHARGE),
        (reg.ENABLE_CHARGE, RegisterMap.ENABLE_CHARGE),
        (reg.CHARGE_LIMIT, RegisterMap.BATTERY_CHARGE_LIMIT),
        (reg.DISCHARGE_LIMIT, RegisterMap.BATTERY_DISCHARGE_LIMIT),
        (reg.REBOOT, RegisterMap.REBOOT),
        (reg.PAUSE_MODE, RegisterMap.BATTERY_PAUSE_MODE),
        (reg.PAUSE_SLOT, (RegisterMap.BATTERY_PAUSE_SLOT_START, RegisterMap.BATTERY_PAUSE_SLOT_END)),
        (SP.soc_reserve, RegisterMap.BATTERY_SOC_RESERVE),
        (SP.discharge_cutoff, RegisterMap.BATTERY_DISCHARGE_MIN_POWER_RESERVE),
        (SP.charge_target, RegisterMap.CHARGE_TARGET_SOC),
        (SP.active_power_rate, RegisterMap.ACTIVE_POWER_RATE),
        (SP.rtc, RegisterMap.ENABLE_RTC),
        (SP.charge_limit_ac, RegisterMap.BATTERY_CHARGE_LIMIT_AC),
        (SP.discharge_limit_ac, RegisterMap.BATTERY_DISCHARGE_LIMIT_AC),
        (TP.soc_reserve, RegisterMap.BATTERY_SOC_RESERVE_3PH),
        (TP.discharge_cutoff, RegisterMap.BATTERY_RESERVE_SOC),
        (TP.charge_target, RegisterMap.CHARGE_TARGET_SOC_3PH),
        (reg.TPH_AC_CHARGE_ENABLE, RegisterMap.AC_CHARGE_ENABLE),
        (reg.TPH_FORCE_DISCHARGE_ENABLE, RegisterMap.FORCE_DISCHARGE_ENABLE),
        (reg.TPH_FORCE_CHARGE_ENABLE, RegisterMap.FORCE_CHARGE_ENABLE),
        (reg.EMS_PLANT_ENABLE, RegisterMap.EMS_PLANT_ENABLE),
        (reg.EMS_EXPORT_LIMIT, RegisterMap.EMS_EXPORT_POWER_LIMIT),
    ],
)
def test_a_named_register_is_the_library_command_map_s(ours: object, library: object) -> None:
    assert ours == library


def test_the_clock_is_the_library_s_system_time_registers() -> None:
    names = ("YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND")
    assert tuple(getattr(RegisterMap, f"SYSTEM_TIME_{name}") for name in names) == reg.CLOCK


def test_the_ems_schedule_is_the_library_s() -> None:
    assert (
        tuple(
            (getattr(RegisterMap, f"EXPORT_SLOT_{n}_START"), getattr(RegisterMap, f"EXPORT_SLOT_{n}_END"))
            for n in range(1, reg.EMS_SLOTS + 1)
        )
        == reg.EMS_EXPORT_SLOTS
    )
    for kind in ("charge", "discharge", "export"):
        assert reg.EMS_SLOT_TARGETS[kind] == tuple(
            getattr(RegisterMap, f"EMS_{kind.upper()}_TARGET_SOC_{n}") for n in range(1, reg.EMS_SLOTS + 1)
        )
    # Each EMS slot's target follows its window, as the library's slot map lays them out.
    assert [end + 1 for _, end in EMS_SLOTS.charge_slots] == list(reg.EMS_SLOT_TARGETS["charge"])
    assert [end + 1 for _, end in EMS_SLOTS.discharge_slots] == list(reg.EMS_SLOT_TARGETS["discharge"])


def test_ten_slot_targets_follow_the_library_s_extended_slot_windows() -> None:
    # Slots 3-10 are the library's EXTENDED_SLOTS windows, each with its target next to it;
    # charge slot 2's window is the pair before its target (HR243/244, not the map's HR31/32).
    for n in range(3, reg.TEN_SLOTS + 1):
        assert EXTENDED_SLOTS.charge_slots[n - 1][1] + 1 == reg.CHARGE_SLOT_TARGETS[n - 1]
        assert EXTENDED_SLOTS.discharge_slots[n - 1][1] + 1 == reg.DISCHARGE_SLOT_TARGETS[n - 1]
    start, end = reg.TEN_SLOT_CHARGE_2
    assert (start, end, end + 1) == (
        reg.CHARGE_SLOT_TARGETS[0] + 1,
        reg.CHARGE_SLOT_TARGETS[0] + 2,
        reg.CHARGE_SLOT_TARGETS[1],
    )
    assert EXTENDED_SLOTS.charge_slots[1] != reg.TEN_SLOT_CHARGE_2
    # Three-phase units share slots 3-10 with the single-phase 10-slot layout.
    assert THREE_PHASE_SLOTS.charge_slots[2:] == EXTENDED_SLOTS.charge_slots[2:]


def test_the_write_extensions_are_outside_the_library_s_allowlists() -> None:
    """Each addition is needed: the library's own per-model sets do not hold it."""
    assert not reg.TEN_SLOT_WRITES & manifest.WRITE_SAFE_SINGLE_PHASE
    assert not reg.PAUSE_REGISTERS & (manifest.WRITE_SAFE_SINGLE_PHASE | manifest.WRITE_SAFE_AC_CONFIG)
    assert not reg.EMS_WRITES & manifest.WRITE_SAFE_EMS
    assert not reg.THREE_PHASE_RATE_WRITES & manifest.WRITE_SAFE_THREE_PHASE
    # The three-phase AC limits pass the library's encode-time check already; the others need givbridge's.
    assert reg.THREE_PHASE_RATE_WRITES <= WRITE_SAFE_REGISTERS


def test_the_quirk_families_are_real_families() -> None:
    assert FAMILIES.keys() >= reg.PAUSE_FAMILIES
    assert FAMILIES.keys() >= reg.THREE_PHASE_RATE_FAMILIES
    assert all(FAMILIES[key].key == key for key in reg.PAUSE_FAMILIES)


def test_a_layout_without_the_field_fails_loudly() -> None:
    from givenergy_modbus.model.ems import EmsRegisterGetter

    with pytest.raises(LookupError, match="battery_pause_mode"):
        reg.holding_register(EmsRegisterGetter, "battery_pause_mode")
