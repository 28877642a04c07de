"""Every simulated family behind one bridge, over a real broker: detection, discovery and one command each.

One bridge polls a simulator of every family (each a standalone unit: the Gateway's and the
EMS's units are not among them, so nothing here is controlled by anything else). Per family:
the bridge detected the family it is; its Home Assistant device document passes HA's rules
and carries the family's own entities with a command topic where the family can act; and one
command sent on the MQTT control topic is answered ``ok`` with the value read back, which the
simulator's registers confirm. The register variants differ per family: three-phase HR1111 and
HR1123, the EMS export targets, the Gateway's single-phase slots, the 10-slot map. A family
givbridge has no builder for is refused by name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from givbridge.app import Application
from givbridge.devices.inverter import InverterRunner
from givbridge.plant.families import FAMILIES
from givbridge.sim import PROFILES, SimulatedPlant, SimulatorServer
from tests.brokers import Broker, MqttProbe
from tests.integration.bridge_helpers import bridge_settings, fast_clock, first_snapshot, ok, start, stop
from tests.integration.test_commands import Rig
from tests.unit.test_discovery_schema import problems

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = "Families"
ZONE = "Europe/London"
# Slower polling than the other rigs: fourteen inverters share the machine, and commands
# do not wait for polls (each write is read back at once).
POLLING = {"poll_interval": 10, "settings_interval": 30, "timeout": 1.0}


@dataclass(frozen=True)
class Case:
    family: str
    command: str
    payload: str
    #: what the answer's data must hold (leaf -> value as JSON), and the registers that must hold it.
    data: dict[str, Any]
    registers: dict[int, int]
    #: an entity of the family's own, by its id after the prefix and serial, with a command topic or not.
    entity: str
    controls: bool = True


CASES = [
    Case("hybrid-gen1", "setChargeTarget", "80", {"Target_SOC": 80}, {116: 80}, "number.{id}_target_soc"),
    Case("hybrid-gen2", "setBatteryPauseMode", "PauseCharge", {"Battery_pause_mode": "PauseCharge"}, {318: 1},
         "select.{id}_battery_pause_mode"),
    Case("hybrid-gen3", "setChargeStart3", "01:30", {"Charge_start_time_slot_3": "01:30:00"}, {246: 130},
         "select.{id}_charge_start_time_slot_3"),
    Case("hybrid-gen3-plus", "setBatteryReserve", "20", {"Battery_Power_Reserve": 20}, {110: 20},
         "number.{id}_battery_power_reserve"),
    Case("hybrid-gen4", "setChargeTarget10", "90", {"Charge_Target_SOC_10": 90}, {269: 90},
         "number.{id}_charge_target_soc_10"),
    Case("polar", "setDischargeSlot1", '{"start": "16:00", "finish": "19:00"}',
         {"Discharge_start_time_slot_1": "16:00:00", "Discharge_end_time_slot_1": "19:00:00"}, {56: 1600, 57: 1900},
         "select.{id}_discharge_start_time_slot_1"),
    Case("pv", "setActivePowerRate", "80", {}, {50: 80}, "sensor.{id}_pv_power", controls=False),
    Case("ac", "setChargeRateAC", "60", {"Battery_Charge_Rate_AC": 60}, {313: 60},
         "number.{id}_battery_charge_rate_ac"),
    Case("aio", "setChargeTarget2", "85", {"Charge_Target_SOC_2": 85}, {245: 85},
         "sensor.{id}_battery_capacity_kwh_calc", controls=False),
    Case("hybrid-hv-gen3", "setEcoMode", "disable", {"Eco_Mode": "disable"}, {27: 0}, "switch.{id}_eco_mode"),
    Case("hybrid-3ph", "setChargeTarget", "80", {"Target_SOC": 80}, {1111: 80}, "sensor.{id}_grid_phase3_voltage",
         controls=False),
    Case("ac-3ph", "setForceCharge", "enable", {"Force_Charge_Enable": "enable"}, {1123: 1},
         "switch.{id}_force_charge_enable"),
    Case("ems", "setExportTarget1", "30", {"Export_Target_SOC_1": 30}, {2064: 30}, "number.{id}_export_target_soc_1"),
    Case("ems", "setCarChargeBoost", "7000", {"Car_Charge_Boost": 7000}, {2073: 7000}, "number.{id}_car_charge_boost"),
    Case("gateway", "setChargeSlot1", '{"start": "01:30", "finish": "04:30"}',
         {"Charge_start_time_slot_1": "01:30:00", "Charge_end_time_slot_1": "04:30:00"}, {94: 130, 95: 430},
         "number.{id}_target_soc"),
]  # fmt: skip


async def test_every_simulated_family_has_a_case() -> None:
    assert {case.family for case in CASES} == set(PROFILES)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """One bridge over a simulator of every family, with a probe on everything the bridge publishes."""
    clock = fast_clock(10)
    async with AsyncExitStack() as stack:
        sims: dict[str, SimulatedPlant] = {}
        servers: dict[str, SimulatorServer] = {}
        for index, family in enumerate(dict.fromkeys(case.family for case in CASES)):
            sim = SimulatedPlant.create(family, clock=clock, seed=40 + index, tz=ZONE, start_soc=50)
            sims[sim.serial] = sim
            servers[sim.serial] = await stack.enter_async_context(SimulatorServer(sim))
        probe = MqttProbe.for_broker(module_broker, topics=(f"{ROOT}/#", "homeassistant/device/#"))
        await probe.start()
        stack.push_async_callback(probe.stop)
        data_dir = tmp_path_factory.mktemp("families")
        mqtt = module_broker.settings(root=ROOT).model_dump()
        settings = bridge_settings(data_dir, [s.port for s in servers.values()], mqtt=mqtt, polling=POLLING)
        app = Application(settings, clock=clock)
        await app.start()
        stack.push_async_callback(app.stop)
        for runner in app.bridge.runners:
            await first_snapshot(runner, within=20)
        yield Rig(app, probe, sims, servers, ROOT)


def _serial(plant: Rig, family: str) -> str:
    return next(serial for serial, sim in plant.sims.items() if sim.family == family)


@pytest.mark.parametrize("case", CASES, ids=[f"{case.family}-{case.command}" for case in CASES])
async def test_detection_discovery_and_a_command(plant: Rig, case: Case) -> None:
    serial = _serial(plant, case.family)
    runner = next(r for r in plant.app.bridge.runners if r.serial == serial)
    assert runner.context is not None and runner.context.family is FAMILIES[case.family]

    entity_id = case.entity.format(id=f"{runner.prefix}_{serial.lower()}")
    message = await plant.probe.wait_for(
        f"homeassistant/device/givbridge_{serial}/config", lambda m: f'"{entity_id}"'.encode() in m.payload, 20
    )
    document = json.loads(message.payload)
    assert not problems(message.topic, document), problems(message.topic, document)
    assert document["device"]["model"] == FAMILIES[case.family].display
    components = {c["default_entity_id"]: c for c in document["components"].values()}
    assert ("command_topic" in components[entity_id]) is case.controls
    if case.controls:
        command = components[entity_id]["command_topic"].rsplit("/", 1)[-1]
        assert components[entity_id]["command_topic"] == f"{ROOT}/control/{serial}/{command}"

    data = ok(await plant.send(case.command, case.payload, serial=serial))
    assert {key: data.get(key) for key in case.data} == case.data
    assert plant.holding(*case.registers, serial=serial) == case.registers


async def test_a_family_without_a_builder_is_refused_by_name(tmp_path: Path) -> None:
    """An All-in-One Hybrid (device type 82xx) is detected, then refused: its registers are unknown."""
    clock = fast_clock()
    sim = SimulatedPlant.create("aio", clock=clock, seed=3, tz=ZONE)
    sim.set_holding(0, 0x8201)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        task = await start(runner)
        try:
            async with asyncio.timeout(10):
                while runner.health.polls_failed < 1:
                    await clock.sleep(1)
        finally:
            await stop(task)
    assert runner.snapshot is None and not runner.health.available
    assert "All-in-One Hybrid detected, but givbridge does not know its registers" in (runner.health.last_error or "")
