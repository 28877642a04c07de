"""Planners are pure: payload + snapshot + device + memory in, register writes out. No sockets here."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from givbridge.commands.devices import reference_device, slot_windows
from givbridge.commands.modes import SAVED_RESERVE, observe
from givbridge.commands.results import CommandFailed, ErrorCode
from tests.unit.commands.helpers import NOW, command, plan, snapshot, writes

BATTERY = {"{serial}/Battery_Capacity_kWh": 9.5, "{serial}/Invertor_Max_Bat_Rate": 3600}


# --- targets ----------------------------------------------------------------------------------


def test_charge_target_below_100_also_enables_the_target() -> None:
    # batpred #4141: with HR20 off the inverter ignores HR116.
    assert writes(plan("setChargeTarget", "80")) == [(116, 80), (20, 1)]
    assert writes(plan("setChargeTarget", "100")) == [(116, 100)]
    assert writes(plan("setChargeTarget", "80", "hybrid-3ph")) == [(1111, 80), (20, 1)]


def test_disabling_the_charge_target_returns_it_to_full() -> None:
    assert writes(plan("enableChargeTarget", "disable")) == [(116, 100), (20, 0)]
    assert writes(plan("enableChargeTarget", "enable")) == [(20, 1)]


def test_per_slot_targets() -> None:
    assert writes(plan("setChargeTarget1", "90")) == [(242, 90)]
    assert writes(plan("setChargeTarget10", "90")) == [(269, 90)]
    assert writes(plan("setDischargeTarget2", "30")) == [(275, 30)]
    assert writes(plan("setDischargeTarget", {"exportToPercent": 25, "slot": 10})) == [(299, 25)]
    assert writes(plan("setEMSDischargeTarget2", "30", "ems")) == [(2049, 30)]
    assert writes(plan("setExportTarget", {"exportToPercent": 20, "slot": 3}, "ems")) == [(2070, 20)]


@pytest.mark.parametrize("family", ["hybrid-gen1", "hybrid-gen2", "ac"])
def test_no_per_slot_discharge_target_where_firmware_ignores_it(family: str) -> None:
    # batpred #4517: these acknowledge HR272 and keep the old value.
    reason = command("setDischargeTarget1").applies.reason(reference_device(family))
    assert reason is not None and "per-slot" in reason


def test_reserve_and_cutoff_are_raised_to_4() -> None:
    assert writes(plan("setBatteryReserve", "2")) == [(110, 4)]
    assert writes(plan("setBatteryReserve", "35", "hybrid-3ph")) == [(1109, 35)]
    assert writes(plan("setBatteryCutoff", "0")) == [(114, 4)]
    assert writes(plan("setBatteryCutoff", "10", "hybrid-3ph")) == [(1078, 10)]


# --- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("Eco", [(27, 1), (59, 0), (110, 35)]),
        ("Eco (Paused)", [(27, 1), (59, 0), (110, 100)]),
        ("Timed Demand", [(27, 1), (59, 1)]),
        ("Timed Export", [(27, 0), (59, 1)]),
    ],
)
def test_battery_modes(mode: str, expected: list[tuple[int, int]]) -> None:
    assert writes(plan("setBatteryMode", mode, memory={SAVED_RESERVE: 35})) == expected


def test_eco_restores_4_when_no_reserve_was_ever_seen() -> None:
    assert writes(plan("setBatteryMode", "Eco")) == [(27, 1), (59, 0), (110, 4)]
    assert writes(plan("setBatteryMode", "Eco", "hybrid-3ph")) == [(27, 1), (59, 0), (1109, 4)]


def test_enable_discharge_holds_and_restores_the_reserve() -> None:
    assert writes(plan("enableDischarge", "disable", memory={SAVED_RESERVE: 20})) == [(110, 100)]
    assert writes(plan("enableDischarge", "enable", memory={SAVED_RESERVE: 20})) == [(110, 20)]


def test_only_a_real_reserve_is_remembered() -> None:
    device = reference_device("hybrid-gen3")
    assert observe(snapshot(device, {"Control/Battery_Power_Reserve": 20})) == {SAVED_RESERVE: 20}
    assert observe(snapshot(device, {"Control/Battery_Power_Reserve": 100})) == {}
    assert observe(snapshot(device)) == {}


def test_pause_mode_and_calibration() -> None:
    assert writes(plan("setBatteryPauseMode", "PauseDischarge")) == [(318, 2)]
    assert writes(plan("setBatteryPauseMode", "disable")) == [(318, 0)]
    assert writes(plan("setBatteryCalibration", "Charge Only")) == [(29, 3)]
    reason = command("setBatteryPauseMode").applies.reason(reference_device("hybrid-gen1"))
    assert reason is not None and "HR318" in reason


def test_schedules_and_three_phase_flags() -> None:
    assert writes(plan("enableChargeSchedule", "enable")) == [(96, 1)]
    assert writes(plan("enableChargeSchedule", "on", "hybrid-3ph")) == [(1123, 1), (1112, 1)]
    assert writes(plan("enableDischargeSchedule", "0", "hybrid-3ph")) == [(59, 0)]
    assert writes(plan("setForceCharge", "enabled", "hybrid-3ph")) == [(1123, 1)]
    assert writes(plan("setACCharge", "disabled", "ac-3ph")) == [(1112, 0)]
    assert writes(plan("setEmsPlant", "enable", "ems")) == [(2040, 1)]
    assert command("setForceCharge").applies.reason(reference_device("hybrid-gen3")) is not None
    # Three-phase units publish these from registers outside their write allowlist.
    for name in ("enableRTC", "setActivePowerRate"):
        reason = command(name).applies.reason(reference_device("hybrid-3ph"))
        assert reason is not None and ("HR1005" in reason or "HR1002" in reason)


# --- rates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("watts", "register"), [("2500", 26), ("2500.4", 26), ("0", 0), ("3600", 50), ("9000", 50)])
def test_charge_rate_watts_to_c_hundredths(watts: str, register: int) -> None:
    assert writes(plan("setChargeRate", watts, values=BATTERY)) == [(111, register)]
    assert writes(plan("setDischargeRate", watts, values=BATTERY)) == [(112, register)]


def test_rate_needs_a_known_capacity() -> None:
    with pytest.raises(CommandFailed) as failed:
        plan("setChargeRate", "2500")
    assert failed.value.code is ErrorCode.UNSUPPORTED


def test_three_phase_rates_are_ac_percentages_of_the_rated_battery_power() -> None:
    rated = {"{serial}/Invertor_Max_Bat_Rate": 6000}
    assert writes(plan("setChargeRate", "3000", "hybrid-3ph", values=rated)) == [(1110, 50)]
    assert writes(plan("setDischargeRate", "9000", "hybrid-3ph", values=rated)) == [(1108, 100)]
    with pytest.raises(CommandFailed) as failed:  # the AC limit's floor is 1 %
        plan("setChargeRate", "0", "hybrid-3ph", values=rated)
    assert failed.value.code is ErrorCode.INVALID_PAYLOAD
    with pytest.raises(CommandFailed) as failed:
        plan("setChargeRate", "3000", "hybrid-3ph")  # rated power unknown
    assert failed.value.code is ErrorCode.UNSUPPORTED


def test_ac_rates_only_where_the_block_exists() -> None:
    assert writes(plan("setChargeRateAC", "50", "ac")) == [(313, 50)]
    assert writes(plan("setDischargeRateAC", "100", "aio")) == [(314, 100)]
    assert command("setChargeRateAC").applies.reason(reference_device("hybrid-gen3")) is not None


# --- slots ------------------------------------------------------------------------------------


def test_slot_layouts() -> None:
    assert slot_windows(reference_device("hybrid-gen1"), "charge") == ((94, 95), (31, 32))
    gen3 = slot_windows(reference_device("hybrid-gen3"), "charge")
    assert gen3[:3] == ((94, 95), (243, 244), (246, 247)) and len(gen3) == 10
    # Gen3 on firmware up to 302 still has the two-slot map.
    assert len(slot_windows(reference_device("hybrid-gen3", arm_firmware=302), "charge")) == 2
    assert slot_windows(reference_device("hybrid-3ph"), "discharge")[:2] == ((1118, 1119), (1120, 1121))
    assert slot_windows(reference_device("ems"), "export") == ((2062, 2063), (2065, 2066), (2068, 2069))
    # The Gateway schedules its All-in-Ones through the single-phase two-slot map the library reads.
    assert slot_windows(reference_device("gateway"), "charge") == ((94, 95), (31, 32))
    assert slot_windows(reference_device("gateway"), "export") == ()


def test_slot_boundaries_are_hhmm() -> None:
    assert writes(plan("setChargeStart1", "16:30:00")) == [(94, 1630)]
    assert writes(plan("setChargeEnd2", "04:05")) == [(244, 405)]
    assert writes(plan("setChargeEnd2", "04:05", "hybrid-gen2")) == [(32, 405)]
    assert writes(plan("setDischargeStart3", "0:00")) == [(276, 0)]
    assert writes(plan("setEMSChargeStart2", "01:00", "ems")) == [(2056, 100)]
    assert writes(plan("setPauseEnd", "23:59:00")) == [(320, 2359)]


def test_a_slot_the_model_lacks_is_unsupported() -> None:
    reason = command("setChargeStart3").applies.reason(reference_device("hybrid-gen1"))
    assert reason is not None and "2 charge slots" in reason
    with pytest.raises(CommandFailed) as failed:
        plan("setChargeSlot", {"start": "01:00", "finish": "02:00", "slot": 3}, "hybrid-gen1")
    assert failed.value.code is ErrorCode.UNSUPPORTED
    assert command("setEMSChargeStart1").applies.reason(reference_device("hybrid-gen3")) is not None


def test_slot_target_goes_to_the_slot_where_the_model_has_one() -> None:
    window = {"start": "01:00", "finish": "04:30", "chargeToPercent": 90}
    assert writes(plan("setChargeSlot2", window)) == [(243, 100), (244, 430), (245, 90)]
    # Two-slot firmware: the global target, switched on, as setChargeTarget does.
    assert writes(plan("setChargeSlot1", window, "hybrid-gen1")) == [(94, 100), (95, 430), (116, 90), (20, 1)]
    discharge = {"start": "16:00", "finish": "19:00", "dischargeToPercent": 2}
    assert writes(plan("setDischargeSlot1", discharge)) == [(56, 1600), (57, 1900), (272, 4)]
    assert writes(plan("setDischargeSlot1", discharge, "hybrid-gen2")) == [(56, 1600), (57, 1900), (110, 4)]


# --- clock ------------------------------------------------------------------------------------


def test_sync_writes_the_bridge_time_in_the_sites_zone() -> None:
    planned = plan("syncDateTime", "")
    assert writes(planned) == [(35, 24), (36, 5), (37, 1), (38, 16), (39, 30), (40, 10)]
    assert not planned.plan.skip_unchanged
    assert [(w.register, w.value) for w in planned.plan.expected] == [(35, 24), (36, 5), (37, 1)]
    check = planned.check
    assert check is not None
    readback = dict(writes(planned))
    assert check(readback, NOW + timedelta(seconds=3)) is None  # the clock ran on meanwhile
    assert check({**readback, 38: 15}, NOW) is not None  # an hour out
    assert check({**readback, 36: 13}, NOW) is not None  # not a date


def test_set_date_time_converts_an_instant_to_the_sites_zone() -> None:
    assert writes(plan("setDateTime", "2024-01-10T12:00:00+00:00"))[3] == (38, 12)  # GMT in winter
    assert writes(plan("setDateTime", "2024-07-10T12:00:00+00:00"))[3] == (38, 13)  # BST in summer
    assert writes(plan("setDateTime", "10/07/2024 12:00:00"))[3] == (38, 12)  # wall time as given
    with pytest.raises(CommandFailed) as failed:
        plan("setDateTime", "10/07/2124 12:00:00")
    assert failed.value.code is ErrorCode.INVALID_PAYLOAD


def test_now_is_aware() -> None:
    assert isinstance(NOW, datetime) and NOW.utcoffset() == timedelta(hours=1)
