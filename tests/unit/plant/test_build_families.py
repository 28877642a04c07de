"""Snapshots of three-phase, HV, EMS, Gateway and PV-only plants: GivTCP's names, the capture's values."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from givbridge.plant import Snapshot, build_snapshot
from givbridge.plant.families import FAMILIES
from givbridge.sim import PROFILES
from tests.unit.plant import family_registers as families
from tests.unit.plant.registers import INVERTER, Device, gen3_ten_slots, plant_from

LONDON = ZoneInfo("Europe/London")
TAKEN_AT = datetime(2026, 6, 5, 11, 20, tzinfo=UTC)


def build(devices: dict[int, Device], family: str) -> Snapshot:
    return build_snapshot(plant_from(devices), family=FAMILIES[family], taken_at=TAKEN_AT, tz=LONDON)


def group(snapshot: Snapshot, prefix: str) -> dict[str, object]:
    return {path.removeprefix(prefix + "/"): v for path, v in snapshot.values.items() if path.startswith(prefix + "/")}


def leaves(snapshot: Snapshot) -> set[str]:
    return {path.rsplit("/", 1)[-1] for path in snapshot.values}


@pytest.fixture(scope="module")
def three_phase() -> Snapshot:
    return build(families.three_phase_hybrid(), "hybrid-3ph")


@pytest.fixture(scope="module")
def aio() -> Snapshot:
    return build(families.all_in_one(), "aio")


@pytest.fixture(scope="module")
def hv_gen3() -> Snapshot:
    return build(families.hv_gen3(), "hybrid-hv-gen3")


@pytest.fixture(scope="module")
def ems() -> Snapshot:
    return build(families.ems_two_inverters(), "ems")


@pytest.fixture(scope="module")
def gateway() -> Snapshot:
    return build(families.gateway_two_aios(), "gateway")


# --- three-phase --------------------------------------------------------------------------------


def test_three_phase_identity_and_details(three_phase: Snapshot) -> None:
    info = three_phase.info
    assert (info.serial, info.model, info.family, info.firmware) == (
        "TC2401G011",
        "Three-phase Hybrid",
        "hybrid-3ph",
        "ZAAA111111",
    )
    assert info.battery_serials == ("HY2401G013",)
    assert info.meter_ids == (1,)
    details = group(three_phase, "TC2401G011")
    assert details["Invertor_Type"] == "Hybrid_3ph"
    assert (details["Invertor_Software"], details["status"], details["DC_Status"]) == ("ZA1.0", "Normal", "Normal")
    assert details["Battery_Type"] == "Lithium"
    assert details["Invertor_Max_Inv_Rate"] == 11000
    # GivTCP: 25 A x 80 V per battery; six HV modules, where GivTCP counted LV packs (0).
    assert details["Invertor_Max_Bat_Rate"] == 12000
    # The stack's usable capacity: 52 Ah x 76.8 V x 6 modules x 0.9.
    assert details["Battery_Capacity_kWh"] == 21.57
    assert (details["Inverter_Temperature"], details["Boost_Temperature"]) == (44.8, 41.0)
    assert details["Invertor_Time"] == datetime(2026, 7, 9, 21, 20, 29, tzinfo=LONDON)


def test_three_phase_power_per_phase(three_phase: Snapshot) -> None:
    power = group(three_phase, "Power/Power")
    assert [power[f"Grid_Phase{n}_Voltage"] for n in (1, 2, 3)] == [401.7, 401.3, 404.0]  # line to line
    assert [power[f"Output_Phase{n}_Voltage"] for n in (1, 2, 3)] == [231.9, 231.6, 233.2]
    assert [power[f"Grid_Phase{n}_Current"] for n in (1, 2, 3)] == [2.8, 2.6, 2.8]
    # Inverter 549/516/541 W less the meter's 0/-536/+533 W (+ export): the house per phase.
    assert [power[f"Load_Phase{n}_Power"] for n in (1, 2, 3)] == [549, 1052, 8]
    assert [power[f"Export_Phase{n}_Power"] for n in (1, 2, 3)] == [0, 0, 533]
    assert (power["Load_Power"], power["Inverter_Power_Out"], power["Grid_Apparent_Power"]) == (1636, 1606, 1885)
    assert (power["Meter_Import_Power"], power["Meter_Export_Power"], power["Export_Power"]) == (3, 0, 0)
    assert (power["Grid_Power"], power["Import_Power"]) == (-3, 3)
    assert (power["Battery_Power"], power["Battery_Discharge_Power"], power["Battery_Charge_Power"]) == (1705, 1705, 0)
    assert (power["SOC"], power["Battery_Current"], power["BMS_Voltage"], power["PCS_Voltage"]) == (
        92,
        3.61,
        471.8,
        472.2,
    )
    # Stored energy: 45.0 Ah x 76.8 V x 6 x 0.9, the sum over stacks (GivTCP averaged them).
    assert power["SOC_kWh"] == 18.66
    assert power["Discharge_Time_Remaining"] == int(21.57 * (92 - 5) / 100 / 1.705 * 60)
    assert power["Meter2_Power"] == 27
    assert group(three_phase, "Power/Flows")["Battery_to_House"] == 1636


def test_three_phase_energy_names_every_counter(three_phase: Snapshot) -> None:
    today, total = group(three_phase, "Energy/Today"), group(three_phase, "Energy/Total")
    assert today["PV_Energy_Today_kWh"] == 25.4  # IR1412/1413
    assert "PV2_Energy_Today_kWh" in today  # GivTCP overwrote it with the PV total
    assert (today["Load_Energy_Today_kWh"], today["Import_Energy_Today_kWh"]) == (19.4, 19.8)
    assert (today["Battery_Charge_Energy_Today_kWh"], today["Battery_Discharge_Energy_Today_kWh"]) == (9.1, 6.6)
    assert (total["Inverter_Out_Energy_Total_kWh"], total["Load_Energy_Total_kWh"]) == (10703.5, 12582.0)
    assert total["Export2_Energy_Total_kWh"] == 6660.0


def test_three_phase_controls_read_the_1000_range() -> None:
    devices = families.three_phase_hybrid()
    devices[INVERTER].hr(r1122=0, r1005=0, r1002=80, r1110=50, r1112=1)
    control = group(build(devices, "hybrid-3ph"), "Control")
    # HR59 (single-phase timed discharge) still reads 1: GivTCP showed that as the force switch.
    assert (control["Force_Discharge_Enable"], control["Enable_Discharge_Schedule"]) == ("disable", "enable")
    assert (control["Force_Charge_Enable"], control["Force_AC_Charge_Enable"]) == ("enable", "enable")
    assert control["Enable_Charge_Schedule"] == "enable"  # force charge and AC charge both on
    assert (control["Real_Time_Control"], control["Active_Power_Rate"]) == ("disable", 80)
    assert (control["Battery_Charge_Rate_AC"], control["Battery_Charge_Rate"]) == (50, 6000)  # 50 % of 12 kW
    assert (control["Target_SOC"], control["Battery_Power_Reserve"], control["Battery_Power_Cutoff"]) == (100, 5, 5)
    assert "Eco_Mode" not in control


def test_three_phase_slots_come_from_hr1113_to_1121(three_phase: Snapshot) -> None:
    slots = group(three_phase, "Timeslots")
    assert (slots["Charge_start_time_slot_1"], slots["Charge_end_time_slot_1"]) == (time(1, 0), time(1, 0))
    assert sorted(slots) == sorted(
        f"{kind}_{edge}_time_slot_{n}" for kind in ("Charge", "Discharge") for edge in ("start", "end") for n in (1, 2)
    )  # slots 3-10 sit in HR240-299, which the library does not read on three-phase units


def test_three_phase_stack(three_phase: Snapshot) -> None:
    stack = group(three_phase, "Battery_Details/Battery_Stack_1")
    assert (stack["Stack_Voltage"], stack["Stack_Current"], stack["Stack_Load_Voltage"]) == (471.8, -3.7, 473.8)
    assert stack["Stack_Power"] == round(471.8 * -3.7)  # GivTCP's milliwatt decode read 65.52
    assert (stack["Stack_SOC_High"], stack["Stack_SOC_Low"], stack["Stack_SOC_Difference"]) == (92, 91, 1)
    assert (stack["Stack_SOH"], stack["Stack_Cycles"], stack["Stack_Firmware"]) == (95, 48.3, "BABA0009")
    assert (stack["Stack_Design_Capacity"], stack["Stack_SOC_kWh"]) == (21.57, 18.66)
    assert (stack["Stack_Charge_Energy_Today_kWh"], stack["Stack_Discharge_Energy_Today_kWh"]) == (9.5, 7.9)
    module = group(three_phase, "Battery_Details/Battery_Stack_1/HY2401G013")
    assert module["Battery_Serial_Number"] == "HY2401G013"
    assert [module[f"Battery_Cell_{n}_Voltage"] for n in (1, 24)] == [3.309, 3.308]
    assert len([k for k in module if k.endswith("_Temperature")]) == 24
    temperatures = [v for k, v in module.items() if k.endswith("_Temperature")]
    assert isinstance(temperatures[0], float)
    assert stack["BMS_Temperature"] == round(sum(temperatures) / 24, 2)  # type: ignore[arg-type]


# --- single-phase HV ------------------------------------------------------------------------------


def test_aio_adds_its_stack_to_the_single_phase_values(aio: Snapshot) -> None:
    details = group(aio, "CH2401G021")
    assert details["Invertor_Type"] == "All_in_one"
    assert (details["Battery_Capacity_kWh"], details["Battery_Capacity_kWh_calc"]) == (15.96, 13.69)
    assert group(aio, "Power/Power")["SOC"] == 42
    stack = group(aio, "Battery_Details/Battery_Stack_1")
    assert (stack["Stack_Voltage"], stack["Stack_Current"], stack["Stack_Firmware"]) == (314.6, -1.2, "BAAA0013")
    assert (stack["Stack_Design_Capacity"], stack["Stack_Cycles"]) == (13.69, 49.5)
    assert stack["BMS_Temperature"] == 22.9  # the inverter's battery input (IR56), single-phase as GivTCP
    module = group(aio, "Battery_Details/Battery_Stack_1/HX2401G023")
    # All-in-One modules fill 12 sensors and leave the rest at 0: those 12 only.
    assert sorted(int(k.split("_")[2]) for k in module if k.endswith("_Temperature")) == list(range(1, 13))
    assert len([k for k in module if k.endswith("_Voltage")]) == 24
    assert aio.info.battery_serials == ("HX2401G023",)
    assert not any("/BMS_Voltage" in path for path in aio.values)  # an LV pack stack's value


def test_hv_gen3_capacity_comes_from_its_stack(hv_gen3: Snapshot) -> None:
    details = group(hv_gen3, "FG2401G031")
    # 52 Ah x 3 modules x 76.8 V: the library's 307 V (the All-in-One's, for DTC family 8) is wrong here.
    assert details["Battery_Capacity_kWh"] == 11.98
    assert details["Battery_Capacity_kWh_calc"] == 10.78
    power = group(hv_gen3, "Power/Power")
    assert (power["SOC"], power["SOC_kWh"], power["Battery_Voltage"]) == (100, 11.98, 240.07)
    assert (power["PV_Power"], power["Grid_Power"], power["Load_Power"]) == (5205, 4458, 378)
    module = group(hv_gen3, "Battery_Details/Battery_Stack_1/HY2401G033")
    assert len([k for k in module if k.endswith("_Temperature")]) == 24  # GivTCP showed 12


def test_gen4_capacity_uses_lv_volts() -> None:
    devices = gen3_ten_slots()
    devices[INVERTER].hr(r0=0x8304)  # Gen4 (DTC family 8, which the library reads as the All-in-One's 307 V)
    details = group(build(devices, "hybrid-gen4"), "SA2301G003")
    assert details["Battery_Nominal_Capacity_kWh"] == round(186 * 51.2 / 1000, 2)
    assert details["Invertor_Max_Bat_Rate"] == 6000


# --- EMS ----------------------------------------------------------------------------------------------


def test_ems_details_and_managed_inverters(ems: Snapshot) -> None:
    assert (ems.info.serial, ems.info.family, ems.info.meter_ids) == ("EMS2401042", "ems", (1, 3))
    details = group(ems, "EMS2401042")
    assert (details["Invertor_Type"], details["status"], details["Invertor_Firmware"]) == (
        "Ems",
        "Normal",
        "D0.0-A0.1036",
    )
    assert (details["Inverter_Count"], details["Meter_Count"], details["Remaining_Battery_Wh"]) == (2, 2, 4105)
    inverters = group(ems, "Inverters")
    assert inverters == {
        "CE2401G043/Serial_Number": "CE2401G043",
        "CE2401G043/Power": 1042,
        "CE2401G043/SOC": 31,
        "CE2401G043/Temperature": 50.3,
        "CE2401G043/status": "Online",
        "CE2401G044/Serial_Number": "CE2401G044",
        "CE2401G044/Power": 1469,
        "CE2401G044/SOC": 16,
        "CE2401G044/Temperature": 50.3,
        "CE2401G044/status": "Online",
    }


def test_ems_power_uses_the_export_positive_sign(ems: Snapshot) -> None:
    power = group(ems, "Power")
    assert power["Grid_Power"] == 1834  # the rollup's -1834 is "importing -1834 W"
    assert (power["Battery_Power"], power["Calculated_Load_Power"]) == (2511, 677)
    assert (power["Meters/Meter_1_Power"], power["Meters/Meter_1_Status"]) == (-1834, "Online")
    assert (power["Meters/Meter_2_Status"], power["Meters/Meter_3_Status"]) == ("Disabled", "Online")
    assert "Energy/Today/Import_Energy_Today_kWh" not in ems  # the library does not poll the EMS's IR(0-59)


def test_ems_schedule(ems: Snapshot) -> None:
    slots, control = group(ems, "Timeslots"), group(ems, "Control")
    assert (slots["Export_start_time_slot_1"], slots["Export_end_time_slot_1"]) == (time(22, 5), time(23, 30))
    assert (slots["EMS_Discharge_start_time_slot_1"], slots["EMS_Discharge_end_time_slot_1"]) == (
        time(23, 30),
        time(23, 59),
    )
    assert slots["EMS_Charge_start_time_slot_3"] == time(0, 0)
    assert (control["EMS_Charge_Target_SOC_1"], control["EMS_Discharge_Target_SOC_1"]) == (100, 4)
    assert (control["Export_Target_SOC_1"], control["Plant_Control"], control["Car_Charge_Mode"]) == (
        4,
        "enable",
        "Stop",
    )


# --- Gateway ------------------------------------------------------------------------------------------


def test_gateway_details_and_power(gateway: Snapshot) -> None:
    details = group(gateway, "GW2401G051")
    assert (details["Gateway_Software_Version"], details["Gateway_Mode"], details["Gateway_State"]) == (
        "GAAA0014",
        "On grid",
        "Static",
    )
    assert (details["Parallel_Total_AIO_Number"], details["Parallel_Total_AIO_Online_Number"]) == (2, 2)
    assert (details["Battery_Capacity_kWh"], details["Invertor_Max_Bat_Rate"]) == (27.0, 12000)
    power = group(gateway, "Power/Power")
    assert (power["Grid_Power"], power["PV_Power"], power["Load_Power"]) == (676, 1997, 1109)
    assert (power["Battery_Power"], power["Charge_Power"], power["Liberty_Power"]) == (-154, 154, -212)
    assert (power["SOC"], power["SOC_kWh"]) == (95, 25.65)  # the All-in-Ones' 94 and 96 %
    assert (power["Grid_Voltage"], power["Grid_Current"], power["Load_Voltage"]) == (241.7, 3.8, 242.3)
    flows = group(gateway, "Power/Flows")
    assert (flows["Solar_to_House"], flows["Solar_to_Battery"], flows["Solar_to_Grid"]) == (1109, 154, 676)


def test_gateway_energy_is_the_librarys_kwh(gateway: Snapshot) -> None:
    today, total = group(gateway, "Energy/Today"), group(gateway, "Energy/Total")
    assert (today["Import_Energy_Today_kWh"], today["Load_Energy_Today_kWh"]) == (28.0, 7.7)
    assert today["Parallel_Total_Charge_Energy_Today_kWh"] == 23.9
    assert (total["Import_Energy_Total_kWh"], total["Load_Energy_Total_kWh"]) == (12710.8, 12006.4)  # GivTCP: /1000
    aio_1 = group(gateway, "Inverters/AIO_1")
    assert aio_1 == {
        "AIO_1_Serial_Number": "CH2401G052",
        "SOC": 94,
        "Invertor_Power": -76,
        "AC_Charge_Energy_Today_kWh": 9.8,
        "AC_Charge_Energy_Total_kWh": 7871.8,
        "AC_Discharge_Energy_Today_kWh": 1.4,
        "AC_Discharge_Energy_Total_kWh": 7988.8,
    }


def test_gateway_controls_come_from_its_single_phase_registers(gateway: Snapshot) -> None:
    control, slots = group(gateway, "Control"), group(gateway, "Timeslots")
    assert (control["Mode"], control["Target_SOC"], control["Battery_Power_Reserve"]) == ("Eco", 100, 4)
    assert "Battery_Charge_Rate" not in control  # HR313/314 are not polled on a Gateway
    assert (slots["Charge_start_time_slot_1"], slots["Charge_end_time_slot_1"]) == (time(0, 0), time(5, 0))


# --- PV-only -----------------------------------------------------------------------------------------


def test_pv_only_publishes_the_reduced_set() -> None:
    snapshot = build(families.simulated("pv"), "pv")
    assert not {"SOC", "Battery_Power", "Battery_Capacity_kWh", "Load_Power"} & leaves(snapshot)
    power, flows = group(snapshot, "Power/Power"), group(snapshot, "Power/Flows")
    assert power["PV_Power"] > 0 and power["Export_Power"] > 0  # type: ignore[operator]
    assert flows["Solar_to_House"] == power["PV_Power"] - power["Export_Power"]  # type: ignore[operator]
    assert flows["Solar_to_Grid"] == power["Export_Power"]
    assert group(snapshot, snapshot.serial)["Invertor_Type"] == "Pv"
    assert {"PV_Energy_Total_kWh", "Export_Energy_Today_kWh", "Invertor_Energy_Total_kWh"} <= leaves(snapshot)


@pytest.mark.parametrize(
    ("family", "factory"),
    [("ac-3ph", families.simulated), ("hybrid-gen3-plus", families.simulated), ("polar", families.simulated)],
)
def test_every_simulated_family_builds(family: str, factory: Callable[[str], dict[int, Device]]) -> None:
    snapshot = build(factory(family), family)
    assert snapshot.info.family == family
    assert snapshot.values[f"{snapshot.serial}/Invertor_Type"] == FAMILIES[family].givtcp_type


@pytest.mark.parametrize("family", sorted(PROFILES))
def test_raw_invertor_model_is_givtcps_model_name(family: str) -> None:
    """readData's ``raw.invertor.model`` is GivTCP's name, which Predbat compares (Ac, Hybrid_gen1...)."""
    snapshot = build(families.simulated(family), family)
    assert snapshot.raw["invertor/model"] == FAMILIES[family].givtcp_type
    assert snapshot.as_tree(include_raw=True)["raw"]["invertor"]["model"] == FAMILIES[family].givtcp_type
