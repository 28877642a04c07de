"""Every simulated family over TCP: the library detects it, the runner publishes it, a write lands.

One simulator per family (its default storage and meters), the library's ``Client.detect()``
against it, then givbridge's ``InverterRunner``: its snapshots carry the family's
GivTCP names with values that match the simulator's registers, and one write per family
reaches the register variant that model uses (three-phase HR1111, the EMS slot registers,
the Gateway's single-phase slot) and is confirmed by reading it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from givenergy_modbus.model.inverter import Model

from givbridge.clock import ScaledClock
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.outcome import WriteStatus
from givbridge.plant.snapshot import Scalar, Snapshot
from givbridge.plant.writes import WritePlan
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.integration.bridge_helpers import Watch, bridge_settings, start, stop
from tests.integration.sim_helpers import FAST_DETECT, MIDSUMMER_NOON, library_client


def _signed(raw: int) -> int:
    return raw - 0x10000 if raw >= 0x8000 else raw


@dataclass(frozen=True)
class Case:
    """What one family must look like to the library and to the bridge."""

    family: str
    model: Model
    #: (LV packs, BCU stacks, per-module addresses, meters) detect must find.
    packs: int = 0
    stacks: int = 0
    modules: int = 0
    meters: tuple[int, ...] = ()
    #: GivTCP paths (relative to the snapshot; "{serial}" is the device) that must be published.
    paths: tuple[str, ...] = ()
    #: path -> (simulator reading, tolerance): values the snapshot must take from the registers.
    readings: Callable[[SimulatedPlant], dict[str, tuple[Scalar, float]]] = lambda sim: {}
    #: one write: (register, value), and the snapshot path that must show it afterwards (or None).
    write: tuple[int, int] = (116, 80)
    shows: tuple[str, Scalar] | None = ("Control/Target_SOC", 80)
    extra: dict[str, object] = field(default_factory=dict)


def _lv(sim: SimulatedPlant) -> dict[str, tuple[Scalar, float]]:
    return {
        "Power/Power/SOC": (sim.input(59), 1),
        "Control/Target_SOC": (sim.holding(116), 0),
        "Control/Battery_Power_Reserve": (sim.holding(110), 0),
    }


def _three_phase(sim: SimulatedPlant) -> dict[str, tuple[Scalar, float]]:
    return {
        "Power/Power/SOC": (sim.input(1132), 1),
        "Control/Target_SOC": (sim.holding(1111), 0),
        "Control/Battery_Power_Reserve": (sim.holding(1109), 0),
        "Control/Battery_Charge_Rate_AC": (sim.holding(1110), 0),
        f"{sim.serial}/Battery_Capacity_kWh": (round(52 * sim.storage.stack.health, 1) * 76.8 * 6 * 0.9 / 1000, 0.05)
        if sim.storage.stack
        else (None, 0),
    }


def _ems(sim: SimulatedPlant) -> dict[str, tuple[Scalar, float]]:
    return {
        "Power/Battery_Power": (_signed(sim.input(2090)), 150),
        "Power/Grid_Power": (-_signed(sim.input(2089)), 150),
        f"{sim.serial}/Inverter_Count": (sim.input(2044), 0),
        f"Inverters/{sim.unit_serials[0]}/SOC": (sim.input(2058), 1),
        "Control/EMS_Charge_Target_SOC_1": (sim.holding(2055), 0),
    }


def _gateway(sim: SimulatedPlant) -> dict[str, tuple[Scalar, float]]:
    return {
        f"{sim.serial}/Parallel_Total_AIO_Number": (sim.input(1700), 0),
        "Inverters/AIO_1/SOC": (sim.input(1801), 1),
        "Control/Target_SOC": (sim.holding(116), 0),
        "Power/Power/PV_Power": (sim.input(1617), 150),
    }


CASES = [
    Case(
        "ac",
        Model.AC,
        packs=1,
        paths=("Power/Power/SOC", "Control/Battery_Charge_Rate_AC", "Energy/Total/Invertor_Energy_Total_kWh"),
        readings=_lv,
        write=(313, 60),  # the AC-side charge limit in HR(300-359)
        shows=("Control/Battery_Charge_Rate_AC", 60),
    ),
    Case(
        "aio",
        Model.ALL_IN_ONE,
        stacks=1,
        modules=4,
        paths=("{serial}/Battery_Capacity_kWh_calc", "Battery_Details/Battery_Stack_1/Stack_SOC_kWh"),
        readings=_lv,
        write=(245, 85),  # charge slot 2's target in the 10-slot map
        shows=("Control/Charge_Target_SOC_2", 85),
    ),
    Case(
        "hybrid-hv-gen3",
        Model.HYBRID_HV_GEN3,
        stacks=1,
        modules=3,
        meters=(1,),
        paths=("Battery_Details/Battery_Stack_1/Stack_Voltage", "Meter_Details/Meter_ID1/Phase_1_Power"),
        readings=_lv,
        write=(116, 85),  # the single-phase target: the library's HV Gen3 write map
        shows=("Control/Target_SOC", 85),
    ),
    Case(
        "hybrid-3ph",
        Model.HYBRID_3PH,
        stacks=1,
        modules=6,
        meters=(1, 2),
        paths=(
            "Power/Power/Grid_Phase3_Voltage",
            "Power/Power/Load_Phase2_Power",
            "Control/Force_Discharge_Enable",
            "Meter_Details/Meter_ID1/Phase_3_Power",
        ),
        readings=_three_phase,
        write=(1111, 80),  # the three-phase charge target, HR116's twin
        shows=("Control/Target_SOC", 80),
    ),
    Case(
        "ac-3ph",
        Model.AC_3PH,
        stacks=1,
        modules=6,
        meters=(1, 2),
        paths=("Power/Power/Output_Phase1_Voltage", "Battery_Details/Battery_Stack_1/Stack_SOH"),
        readings=_three_phase,
        write=(1110, 60),  # the three-phase AC charge limit GivTCP's setChargeRate writes
        shows=("Control/Battery_Charge_Rate_AC", 60),
    ),
    Case(
        "ems",
        Model.EMS,
        meters=(1, 3),
        paths=("Power/Meters/Meter_3_Power", "Timeslots/Export_start_time_slot_1", "Control/Plant_Control"),
        readings=_ems,
        write=(2053, 130),  # EMS charge slot 1 starts 01:30
        shows=None,
        extra={"shows_time": ("Timeslots/EMS_Charge_start_time_slot_1", "01:30")},
    ),
    Case(
        "gateway",
        Model.GATEWAY,
        meters=(1, 2),
        paths=("{serial}/Gateway_Mode", "Inverters/AIO_2/AIO_2_Serial_Number", "Energy/Total/Load_Energy_Total_kWh"),
        readings=_gateway,
        write=(94, 130),  # charge slot 1 starts 01:30: the Gateway's single-phase slot registers
        shows=None,
        extra={"shows_time": ("Timeslots/Charge_start_time_slot_1", "01:30")},
    ),
    Case("hybrid-gen4", Model.HYBRID_GEN4, packs=2, paths=("Control/Charge_Target_SOC_10",), readings=_lv),
    Case(
        "hybrid-gen3-plus",
        Model.HYBRID,
        packs=2,
        paths=("Control/Battery_pause_mode", "Timeslots/Battery_pause_start_time_slot"),
        readings=_lv,
        write=(318, 1),  # battery pause mode (HR300-359, read by the bridge on Gen2+)
        shows=("Control/Battery_pause_mode", "PauseCharge"),
    ),
    Case("polar", Model.POLAR, packs=2, paths=("Battery_Details/Battery_Stack_1/BMS_Voltage",), readings=_lv),
    Case(
        "pv",
        Model.HYBRID,
        paths=("Power/Power/PV_Power", "Energy/Total/PV_Energy_Total_kWh"),
        write=(50, 80),  # active power rate: the PV-only unit's one control
        shows=None,
    ),
]


def _sim(family: str, clock: ScaledClock) -> SimulatedPlant:
    return SimulatedPlant.create(family, clock=clock, seed=21, start_soc=55)


@pytest.mark.parametrize("case", CASES, ids=[c.family for c in CASES])
async def test_the_library_detects_the_model_and_its_topology(case: Case) -> None:
    sim = _sim(case.family, ScaledClock(start=MIDSUMMER_NOON))
    async with SimulatorServer(sim) as server:
        client = await library_client(server.port)
        try:
            caps = await client.detect(**FAST_DETECT)
        finally:
            await client.close()
    assert caps.device_type is case.model
    assert len(caps.lv_battery_addresses) == case.packs
    assert len(caps.bcu_stacks) == case.stacks
    assert len(caps.aio_battery_module_addresses) + len(caps.hv_bmu_addresses) == case.modules
    assert tuple(caps.meter_addresses) == case.meters


def _time_text(value: Scalar) -> str:
    return value.strftime("%H:%M") if hasattr(value, "strftime") else str(value)


@pytest.mark.parametrize("case", CASES, ids=[c.family for c in CASES])
async def test_the_runner_publishes_the_familys_values_and_a_write_lands(tmp_path: Path, case: Case) -> None:
    clock = ScaledClock(speed=20, start=MIDSUMMER_NOON)  # as fast_clock(), at noon: the PV runs
    sim = _sim(case.family, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            # Counters are published once three polls agree (the hygiene stage): wait for a few.
            await watch.count(4, within=15.0)
            snapshot = watch.snapshots[-1]
            expected = case.readings(sim)
            seen = len(watch.snapshots)
            register, value = case.write
            outcome = (await runner.apply(WritePlan.of([case.write], f"{case.family} write"))).outcome
            after = await watch.snapshot(after=seen)
        finally:
            await stop(task)
    _check_snapshot(case, sim, snapshot, expected)
    assert outcome.status is WriteStatus.OK, outcome
    assert outcome.readback == {register: value}
    assert sim.holding(register) == value
    if case.shows is not None:
        path, shown = case.shows
        assert after.values[path] == shown
    if "shows_time" in case.extra:
        path, text = case.extra["shows_time"]  # type: ignore[misc]
        assert _time_text(after.values[path]) == text


def _check_snapshot(
    case: Case, sim: SimulatedPlant, snapshot: Snapshot, expected: dict[str, tuple[Scalar, float]]
) -> None:
    values = snapshot.values
    assert snapshot.serial == sim.serial
    assert snapshot.info.family == case.family
    assert values[f"{sim.serial}/Invertor_Serial_Number"] == sim.serial
    assert values[f"{sim.serial}/Invertor_Type"] == _givtcp_type(case.family)
    assert set(snapshot.info.battery_serials) == set(sim.battery_serials)
    assert snapshot.info.meter_ids == sim.meter_addresses
    for path in case.paths:
        assert path.format(serial=sim.serial) in values, path
    for path, (reading, tolerance) in expected.items():
        if reading is None:
            continue
        got = values[path]
        if tolerance:
            assert isinstance(got, int | float) and isinstance(reading, int | float), path
            assert abs(got - reading) <= tolerance, (path, got, reading)
        else:
            assert got == reading, (path, got, reading)
    for pack in sim.battery_serials:
        assert any(pack in path for path in values), pack
    assert values["Stats/status"] == "online"


def _givtcp_type(family: str) -> str:
    from givbridge.plant.families import FAMILIES

    return FAMILIES[family].givtcp_type
