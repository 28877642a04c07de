"""The plant summary's counting rules and the topology it relies on, on hand-made snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from givbridge.plant.snapshot import DeviceInfo, Scalar, Snapshot
from givbridge.plant.summary import PLANT_ID, Member, summarise
from givbridge.plant.topology import Controller, PlantTopology

NOW = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)


def device(
    serial: str,
    family: str,
    *,
    pv: int | None = None,
    load: int | None = None,
    grid: int | None = None,
    battery: int | None = None,
    soc_kwh: float | None = None,
    capacity: float | None = None,
    managed: tuple[str, ...] = (),
    at: datetime = NOW,
) -> Snapshot:
    """A snapshot with the summary's readings where the family publishes them."""
    ems = family == "ems"
    values: dict[str, Scalar] = {
        "Power/Power/PV_Power": pv,
        ("Power/Calculated_Load_Power" if ems else "Power/Power/Load_Power"): load,
        ("Power/Grid_Power" if ems else "Power/Power/Grid_Power"): grid,
        ("Power/Battery_Power" if ems else "Power/Power/Battery_Power"): battery,
        "Power/Power/SOC_kWh": soc_kwh,
        f"{serial}/Battery_Capacity_kWh": capacity,
        f"{serial}/Invertor_Type": family,
    }
    info = DeviceInfo(serial=serial, model=family, family=family, managed=managed)
    return Snapshot(info, at, {path: value for path, value in values.items() if value is not None})


def totals(*members: Member, topology: PlantTopology | None = None, grid: str = "separate") -> dict[str, Scalar]:
    summary = summarise(members, topology or PlantTopology(), grid_meter=grid)  # type: ignore[arg-type]
    assert summary is not None and summary.serial == PLANT_ID
    return {path.rsplit("/", 1)[-1]: value for path, value in summary.values.items()}


def test_independent_inverters_on_separate_supplies_add_up() -> None:
    got = totals(
        Member(device("SA0001G001", "hybrid-gen3", pv=3000, load=1200, grid=-500, battery=-2300, soc_kwh=4.75,
                      capacity=9.5), online=True),
        Member(device("SA0001G002", "ac", pv=0, load=800, grid=300, battery=1100, soc_kwh=2.6, capacity=5.2),
               online=True),
    )  # fmt: skip
    assert (got["PV_Power"], got["Load_Power"], got["Grid_Power"]) == (3000, 2000, -200)
    assert (got["Import_Power"], got["Export_Power"]) == (200, 0)
    assert (got["Battery_Power"], got["Charge_Power"], got["Discharge_Power"]) == (-1200, 1200, 0)
    assert (got["SOC_kWh"], got["Battery_Capacity_kWh"], got["SOC"]) == (7.35, 14.7, 50)
    assert (got["Inverters_Online"], got["Inverters_Configured"]) == (2, 2)
    assert got["Last_Updated_Time"] == NOW


def test_a_shared_grid_meter_is_counted_once() -> None:
    # Both CTs on the one supply read the same 400 W import; each inverter's load is its own
    # output (2000 W and 700 W) less that shared flow: the house uses 2700 + 400 W.
    hybrid = device("SA0001G001", "hybrid-gen3", pv=2500, load=2000 + 400, grid=-400, battery=0)
    ac = device("SA0001G002", "ac", pv=0, load=700 + 400, grid=-400, battery=700)
    pv_only = device("SA0001G003", "pv", pv=600, grid=-400)  # its output feeds the house too
    got = totals(Member(hybrid, True), Member(ac, True), Member(pv_only, True), grid="shared")
    assert (got["Grid_Power"], got["Import_Power"]) == (-400, 400)
    assert got["Load_Power"] == 2000 + 700 + 600 + 400
    assert got["PV_Power"] == 3100


def test_offline_and_unread_devices_are_left_out() -> None:
    online = device("SA0001G001", "hybrid-gen3", pv=1000, load=500, grid=0, battery=-500)
    stale = device(
        "SA0001G002", "hybrid-gen3", pv=9999, load=9999, grid=9999, battery=9999, at=NOW - timedelta(hours=1)
    )
    got = totals(Member(online, True), Member(stale, False), Member(None, False))
    assert (got["PV_Power"], got["Load_Power"], got["Battery_Power"]) == (1000, 500, -500)
    assert (got["Inverters_Online"], got["Inverters_Configured"]) == (1, 3)
    assert "SOC" not in got  # no device reported stored energy and capacity


def test_nothing_online_keeps_only_the_counts() -> None:
    stale = device("SA0001G002", "hybrid-gen3", pv=100, load=100, grid=0, battery=0)
    got = totals(Member(stale, False), Member(None, False))
    assert got == {"Inverters_Online": 0, "Inverters_Configured": 2}
    assert summarise([Member(None, False)], PlantTopology()) is None  # nothing read: nothing to say


def test_a_gateway_speaks_for_its_all_in_ones() -> None:
    aios = ("CH2412G001", "CH2412G002")
    gateway = device("GW2412G001", "gateway", pv=4000, load=1500, grid=500, battery=-2000, soc_kwh=13.5,
                     capacity=27.0, managed=aios)  # fmt: skip
    units = [device(s, "aio", pv=2000, load=750, grid=250, battery=-1000, soc_kwh=6.75, capacity=13.5) for s in aios]
    topology = PlantTopology()
    assert topology.observe(gateway.info)
    members = [Member(gateway, True), *(Member(u, True) for u in units)]
    got = totals(*members, topology=topology)
    assert (got["PV_Power"], got["Load_Power"], got["Grid_Power"], got["Battery_Power"]) == (4000, 1500, 500, -2000)
    assert (got["SOC_kWh"], got["Battery_Capacity_kWh"], got["SOC"]) == (13.5, 27.0, 50)
    # The Gateway offline: its plant drops out rather than being counted a second way.
    without = totals(Member(gateway, False), *(Member(u, True) for u in units), topology=topology)
    assert without == {"Inverters_Online": 2, "Inverters_Configured": 3, "Last_Updated_Time": NOW}


def test_an_ems_measures_grid_load_and_battery_its_inverters_the_rest() -> None:
    units = ("CE2522G001", "CE2522G002")
    ems = device("EMS2522001", "ems", load=2900, grid=-100, battery=600, managed=units)
    managed = [device(s, "ac", pv=0, load=1, grid=1, battery=300, soc_kwh=5.0, capacity=10.0) for s in units]
    topology = PlantTopology()
    topology.observe(ems.info)
    got = totals(Member(ems, True), *(Member(u, True) for u in managed), topology=topology, grid="shared")
    assert (got["Load_Power"], got["Grid_Power"], got["Battery_Power"]) == (2900, -100, 600)
    assert (got["PV_Power"], got["SOC_kWh"], got["Battery_Capacity_kWh"], got["SOC"]) == (0, 10.0, 20.0, 50)


# --- topology ------------------------------------------------------------------------------------


def test_topology_follows_the_controllers_reports() -> None:
    topology = PlantTopology()
    first = DeviceInfo("GW2412G001", "Gateway", "gateway", managed=("CH2412G001", "CH2412G002"))
    assert topology.observe(first) and not topology.observe(first)
    assert topology.owner_of("CH2412G001") == Controller("GW2412G001", "gateway")
    assert topology.units_of("GW2412G001") == ("CH2412G001", "CH2412G002")
    # A rollup not read yet says nothing; one All-in-One fewer is forgotten.
    assert not topology.observe(DeviceInfo("GW2412G001", "Gateway", "gateway"))
    assert topology.observe(DeviceInfo("GW2412G001", "Gateway", "gateway", managed=("CH2412G001",)))
    assert topology.owner_of("CH2412G002") is None
    # Inverters never control anything, whatever they carry.
    assert not topology.observe(DeviceInfo("SA0001G001", "Hybrid", "hybrid-gen3", managed=("X",)))
    # Round trip through the data dir, and forgetting a controller that is no longer configured.
    again = PlantTopology.from_record(topology.record())
    assert again.owners == topology.owners
    assert again.retain(["SA0001G001"]) and again.owner_of("CH2412G001") is None


@pytest.mark.parametrize("record", [{}, {"managed": []}, {"managed": {"X": {"controller": 1}}}, {"managed": {"X": 3}}])
def test_an_unreadable_topology_record_is_ignored(record: dict[str, object]) -> None:
    assert PlantTopology.from_record(record).owners == {}


def test_the_refusal_names_the_controller() -> None:
    gateway = Controller("GW2412G001", "gateway").refusal("CH2412G001", "setChargeTarget")
    assert "parallel behind the Gateway GW2412G001" in gateway and "control/GW2412G001/setChargeTarget" in gateway
    assert "managed by the EMS EMS2522001" in Controller("EMS2522001", "ems").refusal("CE2522G001", "setChargeTarget")
