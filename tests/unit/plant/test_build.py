"""Snapshots built from synthetic register caches: paths, names and typed values as GivTCP publishes them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from givenergy_modbus.model.register import IR

from givbridge.plant import ExtrasConflict, PlantNotReady, Scalar, Snapshot, UnsupportedFamily, build_snapshot
from givbridge.plant.families import FAMILIES
from tests.unit.plant.registers import (
    INVERTER,
    PACK_1,
    Device,
    ac_one_pack,
    gen1_two_packs,
    gen3_ten_slots,
    plant_from,
    signed,
)

LONDON = ZoneInfo("Europe/London")
TAKEN_AT = datetime(2026, 6, 5, 11, 20, 0, 250_000, tzinfo=UTC)  # 12:20 BST


def build(devices: dict[int, Device], family: str, extras: Mapping[str, Scalar] | None = None) -> Snapshot:
    return build_snapshot(plant_from(devices), family=FAMILIES[family], taken_at=TAKEN_AT, tz=LONDON, extras=extras)


def group(snapshot: Snapshot, prefix: str) -> dict[str, object]:
    return {path.removeprefix(prefix + "/"): v for path, v in snapshot.values.items() if path.startswith(prefix + "/")}


@pytest.fixture(scope="module")
def gen1() -> Snapshot:
    return build(gen1_two_packs(), "hybrid-gen1")


@pytest.fixture(scope="module")
def gen3() -> Snapshot:
    return build(gen3_ten_slots(), "hybrid-gen3")


@pytest.fixture(scope="module")
def ac() -> Snapshot:
    return build(ac_one_pack(), "ac")


# --- Gen1 hybrid, two packs ---------------------------------------------------------------------


def test_gen1_device_info(gen1: Snapshot) -> None:
    info = gen1.info
    assert (info.serial, info.model, info.family, info.firmware) == (
        "SA2114G001",
        "Hybrid Gen1",
        "hybrid-gen1",
        "D0.449-A0.449",
    )
    assert info.battery_serials == ("BG2134G001", "DZ2228G002")
    assert info.meter_ids == ()
    assert gen1.taken_at == TAKEN_AT


def test_gen1_power(gen1: Snapshot) -> None:
    power = group(gen1, "Power/Power")
    assert power["PV_Power"] == 4921
    assert (power["PV_Power_String_1"], power["PV_Power_String_2"]) == (2565, 2356)
    assert (power["PV_Voltage_String_1"], power["PV_Current_String_1"]) == (372.2, 7.1)
    assert (power["Grid_Power"], power["Import_Power"], power["Export_Power"]) == (-721, 721, 0)
    assert (power["Grid_Voltage"], power["Grid_Current"], power["Grid_Frequency"]) == (243.5, 7.7, 50.11)
    assert power["Inverter_Output_Frequency"] == 50.08
    assert (power["Invertor_Power"], power["AC_Charge_Power"], power["EPS_Power"]) == (3371, 0, 293)
    assert (power["Load_Power"], power["Self_Consumption_Power"]) == (4092, 3371)
    # 83 % of what the packs hold when full: (189.61 + 150.88) Ah calibrated at 51.2 V = 17.43 kWh.
    assert (power["SOC"], power["SOC_kWh"]) == (83, 14.47)
    assert (power["Battery_Power"], power["Charge_Power"], power["Discharge_Power"]) == (-937, 937, 0)
    assert (power["Battery_Voltage"], power["Battery_Current"]) == (53.87, -12.37)
    assert "Combined_Generation_Power" not in power  # not a Gen1 register
    # Charging past the 29 % target (PV surplus): GivTCP counts no time left.
    assert power["Charge_Time_Remaining"] == power["Discharge_Time_Remaining"] == 0
    completion = power["Charge_Completion_Time"]
    assert completion == datetime(2026, 6, 5, 12, 20, 0, tzinfo=LONDON)
    assert isinstance(completion, datetime) and completion.utcoffset() == timedelta(hours=1)
    # Value types are what the MQTT layer renders: ints for watts and percent.
    for leaf in ("PV_Power", "Grid_Power", "Load_Power", "SOC", "Battery_Power"):
        assert type(power[leaf]) is int, leaf


def test_gen1_flows(gen1: Snapshot) -> None:
    assert group(gen1, "Power/Flows") == {
        "Solar_to_House": 4092,
        "Solar_to_Battery": 829,
        "Solar_to_Grid": 0,
        "Battery_to_House": 0,
        "Battery_to_Grid": 0,
        "Grid_to_House": 0,
        "Grid_to_Battery": 108,
    }


def test_gen1_energy(gen1: Snapshot) -> None:
    assert group(gen1, "Energy/Today") == {
        "PV_Energy_Today_kWh": 19.4,
        "Import_Energy_Today_kWh": 1.0,
        "Export_Energy_Today_kWh": 5.6,
        "AC_Charge_Energy_Today_kWh": 0.0,
        "Invertor_Energy_Today_kWh": 15.8,
        "Load_Energy_Today_kWh": 11.2,
        "Self_Consumption_Energy_Today_kWh": 13.8,
        "Battery_Charge_Energy_Today_kWh": 8.8,
        "Battery_Discharge_Energy_Today_kWh": 6.5,
        "Battery_Throughput_Today_kWh": 15.3,
    }
    total = group(gen1, "Energy/Total")
    assert total["PV_Energy_Total_kWh"] == 21146.3
    assert total["Invertor_Energy_Total_kWh"] == 27210.1
    assert total["AC_Charge_Energy_Total_kWh"] == 9088.9
    assert (total["Import_Energy_Total_kWh"], total["Export_Energy_Total_kWh"]) == (28657.3, 5249.1)
    assert total["Load_Energy_Total_kWh"] == round(27210.1 - 9088.9 - (5249.1 - 28657.3), 2)
    assert total["Self_Consumption_Energy_Total_kWh"] == round(21146.3 - 5249.1, 2)
    assert total["Battery_Throughput_Total_kWh"] == 29628.5
    # The packs' own lifetime counters read 0, so the inverter's IR181/IR180 are used.
    assert (total["Battery_Charge_Energy_Total_kWh"], total["Battery_Discharge_Energy_Total_kWh"]) == (1843.0, 1571.1)


def test_gen1_inverter_details(gen1: Snapshot) -> None:
    assert group(gen1, "SA2114G001") == {
        "Invertor_Serial_Number": "SA2114G001",
        "Invertor_Type": "Hybrid_gen1",
        "Invertor_Firmware": "D0.449-A0.449",
        "Modbus_Version": "1.40",
        "Meter_Type": "Em115",
        "Battery_Type": "Lithium",
        "Battery_Capacity_kWh": 17.43,  # the packs' calibrated capacity; SOC_kWh is a share of it
        "Battery_Nominal_Capacity_kWh": 17.72,  # HR55, the rate registers' basis
        "Invertor_Max_Inv_Rate": 5000,
        "Invertor_Max_Bat_Rate": 2600,
        "Invertor_Temperature": 48.1,
        "Export_Limit": 6000,
        "Battery_Calibration_Status": "Off",
        "Invertor_Time": datetime(2026, 6, 5, 12, 19, 53, tzinfo=LONDON),
    }


def test_gen1_has_two_slots_each_way_and_no_pause(gen1: Snapshot) -> None:
    assert group(gen1, "Timeslots") == {
        "Charge_start_time_slot_1": time(23, 30),
        "Charge_end_time_slot_1": time(5, 30),
        "Charge_start_time_slot_2": time(0, 0),
        "Charge_end_time_slot_2": time(0, 4),
        "Discharge_start_time_slot_1": time(0, 0),
        "Discharge_end_time_slot_1": time(0, 0),
        "Discharge_start_time_slot_2": time(0, 0),
        "Discharge_end_time_slot_2": time(0, 0),
    }


def test_gen1_control(gen1: Snapshot) -> None:
    assert group(gen1, "Control") == {
        "Mode": "Eco",
        "Eco_Mode": "enable",
        "Enable_Charge_Schedule": "enable",
        "Enable_Discharge_Schedule": "disable",
        "Enable_Charge_Target": "enable",
        "Target_SOC": 29,
        "Battery_Power_Reserve": 4,
        "Battery_Power_Cutoff": 4,
        "Battery_Charge_Rate": 2600,  # 50 % of 17.72 kWh, capped at the Gen1's 2.6 kW
        "Battery_Discharge_Rate": 2600,
        "Active_Power_Rate": 100,
        "Battery_Calibration": "Off",
        "Real_Time_Control": "disable",
        "Sync_Time": "disable",
        "Reboot_Invertor": "disable",
    }


def test_gen1_battery_packs(gen1: Snapshot) -> None:
    stack = group(gen1, "Battery_Details/Battery_Stack_1")
    assert (stack["BMS_Temperature"], stack["BMS_Voltage"]) == (23.0, 53.87)
    first = group(gen1, "Battery_Details/Battery_Stack_1/BG2134G001")
    assert first["Battery_Serial_Number"] == "BG2134G001"
    assert (first["Battery_SOC"], first["Battery_Cells"], first["Battery_Cycles"]) == (81, 16, 1114)
    assert (first["Battery_Capacity"], first["Battery_Design_Capacity"], first["Battery_Remaining_Capacity"]) == (
        189.61,
        160.0,
        154.49,
    )
    assert (first["Battery_Firmware_Version"], first["Battery_USB_present"]) == (3007, 8)
    assert (first["Battery_Temperature"], first["Battery_Voltage"]) == (27.0, 54.076)
    assert first["Battery_Cell_1_Voltage"] == 3.366 and first["Battery_Cell_16_Voltage"] == 3.375
    assert [first[f"Battery_Cell_{n}_Temperature"] for n in range(1, 5)] == [23.3, 21.8, 22.5, 20.8]
    assert len(first) == 11 + 16 + 4
    second = group(gen1, "Battery_Details/Battery_Stack_1/DZ2228G002")
    assert second["Battery_SOC"] == 79


def test_gen1_raw_carries_what_predbat_reads(gen1: Snapshot) -> None:
    raw = gen1.raw
    assert raw["invertor/serial_number"] == "SA2114G001"
    assert raw["invertor/firmware_version"] == "D0.449-A0.449"
    assert raw["invertor/model"] == "Hybrid_gen1"  # GivTCP's model name, as Predbat compares it
    assert raw["invertor/battery_nominal_capacity"] == 17.72
    assert raw["invertor/soc_force_adjust"] == 0
    assert raw["invertor/charge_slot_1_start"] == 2330 and raw["invertor/charge_slot_1_end"] == 530
    assert raw["invertor/system_time"] == "2026-06-05 12:19:53"
    assert raw["batteries/BG2134G001/soc"] == 81
    assert all(isinstance(v, int | float | str | bool) for v in raw.values())
    tree = gen1.as_tree(include_raw=True)
    assert tree["raw"]["invertor"]["battery_nominal_capacity"] == 17.72


def test_the_raw_section_is_what_the_poll_read_whenever_it_is_first_read() -> None:
    # Built on first read (most bridges never read it), from the poll's decoded models: a later
    # poll that changed the plant's registers must not show through.
    plant = plant_from(gen1_two_packs())
    snapshot = build_snapshot(plant, family=FAMILIES["hybrid-gen1"], taken_at=TAKEN_AT, tz=LONDON)
    plant.register_caches[INVERTER][IR(19)] = 777  # PV2 energy today, as the next poll might read it
    plant.register_caches[PACK_1][IR(100)] = 10  # the first pack's SOC
    fresh = build(gen1_two_packs(), "hybrid-gen1")
    assert dict(snapshot.raw) == dict(fresh.raw)
    assert snapshot.raw["batteries/BG2134G001/soc"] == 81
    assert snapshot == fresh  # equal snapshots whether or not either raw section was read


# --- Gen3 hybrid, 10-slot firmware ---------------------------------------------------------------


def test_gen3_has_ten_slots_with_targets_and_the_pause_slot(gen3: Snapshot) -> None:
    slots = group(gen3, "Timeslots")
    assert len(slots) == 2 * 2 * 10 + 2
    assert (slots["Charge_start_time_slot_3"], slots["Charge_end_time_slot_3"]) == (time(13, 0), time(14, 30))
    # On 10-slot firmware charge slot 2 is HR243/244 (as GivTCP reads it), not the legacy HR31/32.
    assert (slots["Charge_start_time_slot_2"], slots["Charge_end_time_slot_2"]) == (time(17, 30), time(18, 30))
    assert (slots["Discharge_start_time_slot_3"], slots["Discharge_end_time_slot_3"]) == (time(16, 0), time(19, 0))
    # The 60 "unset" sentinel and zeroed slots both read as midnight, as GivTCP shows them.
    assert slots["Discharge_start_time_slot_4"] == slots["Charge_end_time_slot_10"] == time(0, 0)
    assert (slots["Battery_pause_start_time_slot"], slots["Battery_pause_end_time_slot"]) == (time(16, 0), time(19, 0))
    control = group(gen3, "Control")
    assert [control[f"Charge_Target_SOC_{n}"] for n in (1, 3, 10)] == [100, 80, 100]
    assert [control[f"Discharge_Target_SOC_{n}"] for n in (1, 3, 10)] == [4, 20, 4]
    assert control["Battery_pause_mode"] == "PauseDischarge"
    assert "Battery_Charge_Rate_AC" not in control  # a DC hybrid has no AC-side rate limit


def test_gen3_power_battery_and_meter(gen3: Snapshot) -> None:
    assert gen3.info.meter_ids == (1,)
    assert gen3[f"{gen3.serial}/Invertor_Type"] == "Hybrid_gen3"
    assert gen3[f"{gen3.serial}/Invertor_Max_Bat_Rate"] == 3600
    power = group(gen3, "Power/Power")
    assert power["Combined_Generation_Power"] == 412
    assert (power["Battery_Power"], power["Discharge_Power"], power["SOC"]) == (441, 441, 46)
    # 42 % of 7.73 kWh (the pack's calibrated 150.88 Ah, not the nominal 9.52) above the 4 % reserve at 441 W.
    assert power["Discharge_Time_Remaining"] == 441
    assert power["Discharge_Completion_Time"] == datetime(2026, 6, 5, 19, 41, 0, tzinfo=LONDON)
    assert group(gen3, "Power/Flows")["Battery_to_House"] == 376
    assert gen3["Control/Battery_Charge_Rate"] == 1523  # HR111 = 16 % of 9.52 kWh
    # The library does not route battery energy for Gen3; GivTCP's IR36/37 are used.
    today = group(gen3, "Energy/Today")
    assert (today["Battery_Charge_Energy_Today_kWh"], today["Battery_Discharge_Energy_Today_kWh"]) == (4.7, 5.5)
    # No lifetime battery counter on this unit (both sources read 0): nothing published.
    assert "Energy/Total/Battery_Charge_Energy_Total_kWh" not in gen3
    meter = group(gen3, "Meter_Details/Meter_ID1")
    assert (meter["Phase_1_Voltage"], meter["Phase_1_Current"], meter["Phase_1_Power"]) == (244.6, 2.14, -4)
    assert (meter["Frequency"], meter["Import_Energy_kWh"], meter["Export_Energy_kWh"]) == (49.98, 5243.4, 1499.4)
    assert meter["Phase_1_Power_Factor"] == 0.985
    assert gen3.raw["meters/Meter_ID_1/e_import_active"] == 5243.4


# --- AC-coupled --------------------------------------------------------------------------------


def test_ac_values(ac: Snapshot) -> None:
    power = group(ac, "Power/Power")
    assert not any(leaf.startswith(("PV_Voltage", "PV_Current")) for leaf in power)  # no DC strings
    assert (power["Invertor_Power"], power["AC_Charge_Power"]) == (-1500, 1500)
    assert (power["Import_Power"], power["Load_Power"], power["Charge_Power"]) == (1900, 400, 1450)
    assert group(ac, "Power/Flows") == {
        "Solar_to_House": 0,
        "Solar_to_Battery": 0,
        "Solar_to_Grid": 0,
        "Battery_to_House": 0,
        "Battery_to_Grid": 0,
        "Grid_to_House": 400,
        "Grid_to_Battery": 1450,
    }
    details = group(ac, ac.serial)
    assert (details["Invertor_Type"], details["Battery_Capacity_kWh"], details["Invertor_Max_Bat_Rate"]) == (
        "Ac",
        5.43,
        3000,
    )
    control = group(ac, "Control")
    assert control["Mode"] == "Export (Paused)"
    assert (control["Battery_Charge_Rate"], control["Battery_Charge_Rate_AC"]) == (2715, 100)
    assert control["Battery_Discharge_Rate_AC"] == 100
    # AC firmware reads HR318-320 back but ignores writes: no pause controls, as GivTCP.
    assert "Battery_pause_mode" not in control
    assert not any("pause" in leaf for leaf in group(ac, "Timeslots"))
    assert len(group(ac, "Timeslots")) == 8


def test_ac_load_energy_adds_the_pv_counter() -> None:
    devices = ac_one_pack()
    # IR44 inverter output 6.3, AC charge 7.6, import 3.1, export 0.2, PV 0.5 + 0.4 today.
    devices[INVERTER].ir(r26=31, r25=2, r17=5, r19=4)
    today = group(build(devices, "ac"), "Energy/Today")
    assert today["Load_Energy_Today_kWh"] == round(6.3 - 7.6 - (0.2 - 3.1) + 0.9, 2)


# --- what is left out ----------------------------------------------------------------------------


def test_undecodable_values_are_omitted_not_published() -> None:
    devices = gen1_two_packs()
    inverter = devices[INVERTER]
    del inverter.input[59]  # SOC not read
    inverter.ir(r41=signed(-500))  # -50.0 degC heatsink: outside the library's bounds
    inverter.hr(r35=0, r36=1, r37=1)  # clock never set: year 2000
    snapshot = build(devices, "hybrid-gen1")
    assert "Power/Power/SOC" not in snapshot
    assert "Power/Power/SOC_kWh" not in snapshot
    assert "Power/Power/Charge_Time_Remaining" not in snapshot
    assert f"{snapshot.serial}/Invertor_Temperature" not in snapshot
    assert f"{snapshot.serial}/Invertor_Time" not in snapshot
    assert None not in snapshot.values.values()


def test_codes_outside_the_enums_are_omitted_and_mode_is_unknown() -> None:
    devices = gen1_two_packs()
    devices[INVERTER].hr(r27=5, r29=9, r47=7, r54=3)  # eco mode, calibration, meter and battery type
    snapshot = build(devices, "hybrid-gen1")
    assert snapshot["Control/Mode"] == "Unknown"
    for path in ("Control/Eco_Mode", "Control/Battery_Calibration"):
        assert path not in snapshot
    for leaf in ("Battery_Calibration_Status", "Meter_Type", "Battery_Type"):
        assert f"{snapshot.serial}/{leaf}" not in snapshot


def test_slots_not_read_yet_are_left_out_rather_than_shown_as_midnight() -> None:
    devices = gen1_two_packs()
    for register in (94, 95):
        del devices[INVERTER].holding[register]
    slots = group(build(devices, "hybrid-gen1"), "Timeslots")
    assert "Charge_start_time_slot_1" not in slots and "Charge_end_time_slot_1" not in slots
    assert slots["Discharge_start_time_slot_1"] == time(0, 0)


def test_calibration_words_match_what_can_be_written() -> None:
    for stage, control, status in ((1, "Start", "Discharge"), (3, "Charge Only", "Charge"), (5, "Running", "Balance")):
        devices = gen1_two_packs()
        devices[INVERTER].hr(r29=stage)
        snapshot = build(devices, "hybrid-gen1")
        assert snapshot["Control/Battery_Calibration"] == control
        assert snapshot[f"{snapshot.serial}/Battery_Calibration_Status"] == status


# --- extras and errors ---------------------------------------------------------------------------


def test_extras_are_merged() -> None:
    extras: dict[str, Scalar] = {
        "Stats/status": "online",
        "Control/Force_Charge": "Normal",
        "Control/Force_Charge_Num": 0,
    }
    snapshot = build(gen1_two_packs(), "hybrid-gen1", extras=extras)
    assert snapshot["Stats/status"] == "online"
    assert snapshot["Control/Force_Charge_Num"] == 0
    assert snapshot.as_tree()["Control"]["Mode"] == "Eco"


def test_extras_cannot_overwrite_register_values() -> None:
    with pytest.raises(ExtrasConflict, match="Control/Mode"):
        build(gen1_two_packs(), "hybrid-gen1", extras={"Control/Mode": "Eco", "Stats/status": "online"})


@pytest.mark.parametrize("path", ["status", "Stats//status", "Stats/#", "Stats/ status"])
def test_extras_paths_must_be_topic_safe(path: str) -> None:
    with pytest.raises(ValueError, match="extras path"):
        build(gen1_two_packs(), "hybrid-gen1", extras={path: 1})


def test_unsupported_family_is_refused() -> None:
    with pytest.raises(UnsupportedFamily, match="aio-commercial"):
        build(gen1_two_packs(), "aio-commercial")  # nothing is known of its registers


def test_family_must_match_the_plant() -> None:
    with pytest.raises(ValueError, match="hybrid-gen1"):
        build(gen1_two_packs(), "hybrid-gen2")


def test_naive_taken_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_snapshot(
            plant_from(gen1_two_packs()), family=FAMILIES["hybrid-gen1"], taken_at=datetime(2026, 1, 1), tz=LONDON
        )


def test_undetected_plant_is_not_ready() -> None:
    from givenergy_modbus.model.plant import Plant

    with pytest.raises(PlantNotReady):
        build_snapshot(Plant(), family=FAMILIES["hybrid-gen1"], taken_at=TAKEN_AT, tz=LONDON)


def test_snapshot_is_immutable(gen1: Snapshot) -> None:
    with pytest.raises(TypeError):
        gen1.values["Control/Mode"] = "Eco"  # type: ignore[index]
