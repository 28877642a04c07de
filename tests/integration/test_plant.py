"""A mixed plant of ten inverters in one bridge process, over a real broker.

The plant: a Gateway with its two parallel All-in-Ones, an EMS with the two AC-coupled
inverters it manages, and four standalone inverters (three-phase hybrid, Gen3 hybrid,
PV-only, Gen1 hybrid), each a simulator on its own port. Every simulator's measurements are
frozen, so the plant summary's expected totals can be worked out from the published
snapshots. The tests run in order on one bridge; the last one kills one inverter and slows
another.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from givbridge.app import Application
from givbridge.config_checks import default_prefix
from givbridge.devices.inverter import InverterRunner
from givbridge.mqtt.client import Message
from givbridge.plant.snapshot import Snapshot
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import Broker, MqttProbe
from tests.integration.bridge_helpers import Watch, bridge_settings, error, fast_clock, first_snapshot, ok
from tests.integration.test_commands import Rig
from tests.unit.test_discovery_schema import problems

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = "Plant"
ZONE = "Europe/London"
CUSTOM_PREFIX = "garage"  # the Gen1's configured prefix; the others keep GivTCP's givtcp, givtcp2, ...
POLLING = {"poll_interval": 4, "settings_interval": 20, "timeout": 1.0}


@dataclass
class Plant(Rig):
    """The rig with each simulator's role in the plant (serial -> "gateway", "aio1", ...)."""

    roles: dict[str, str] = field(default_factory=dict)

    def runner(self, serial: str) -> InverterRunner:
        return next(r for r in self.app.bridge.runners if r.serial == serial)

    def role(self, name: str) -> str:
        return next(serial for serial, role in self.roles.items() if role == name)

    def snapshot(self, name: str) -> Snapshot:
        snapshot = self.runner(self.role(name)).snapshot
        assert snapshot is not None
        return snapshot


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Plant]:
    clock = fast_clock(10)

    def make(family: str, seed: int, **kwargs: Any) -> SimulatedPlant:
        return SimulatedPlant.create(family, clock=clock, seed=seed, tz=ZONE, start_soc=60, **kwargs)

    gateway = make("gateway", 1, batteries=2)
    ems = make("ems", 2, batteries=2)
    roles = {
        gateway: "gateway",
        **{make("aio", 10 + n, serial=serial): f"aio{n}" for n, serial in enumerate(gateway.unit_serials, 1)},
        ems: "ems",
        **{make("ac", 20 + n, serial=serial, batteries=1): f"ac{n}" for n, serial in enumerate(ems.unit_serials, 1)},
        make("hybrid-3ph", 3): "three-phase",
        make("hybrid-gen3", 4, batteries=2): "gen3",
        make("pv", 5): "pv",
        make("hybrid-gen1", 6, batteries=1): "gen1",
    }
    assert len(roles) == 10
    async with AsyncExitStack() as stack:
        servers: dict[str, SimulatorServer] = {}
        for sim in roles:
            sim.frozen = True  # measurements hold still; settings and clocks still move
            servers[sim.serial] = await stack.enter_async_context(SimulatorServer(sim))
        probe = MqttProbe.for_broker(module_broker, topics=(f"{ROOT}/#", "homeassistant/device/#"))
        await probe.start()
        stack.push_async_callback(probe.stop)
        mqtt = module_broker.settings(root=ROOT).model_dump()
        settings = bridge_settings(
            tmp_path_factory.mktemp("plant"),
            [s.port for s in servers.values()],
            mqtt=mqtt,
            polling=POLLING,
            plant={"grid": "separate"},  # each simulator is a house of its own, with its own supply
        )
        settings.inverters[-1].prefix = CUSTOM_PREFIX
        app = Application(settings, clock=clock)
        await app.start()
        stack.push_async_callback(app.stop)
        for runner in app.bridge.runners:
            await first_snapshot(runner, within=20)
        sims = {sim.serial: sim for sim in roles}
        yield Plant(app, probe, sims, servers, ROOT, roles={sim.serial: role for sim, role in roles.items()})


async def device_document(
    plant: Plant, object_id: str, predicate: Callable[[dict[str, Any]], bool] = lambda d: True
) -> dict[str, Any]:
    """The latest discovery document of ``object_id`` that satisfies ``predicate``, checked against HA's rules."""

    def wanted(message: Message) -> bool:
        return bool(message.payload) and predicate(json.loads(message.payload))

    topic = f"homeassistant/device/{object_id}/config"
    await plant.probe.wait_for(topic, wanted, 20)
    message = [m for m in plant.probe.messages(topic) if m.payload][-1]
    document: dict[str, Any] = json.loads(message.payload)
    assert not problems(message.topic, document), problems(message.topic, document)
    return document


def entities(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # A component reduced to its platform is HA's removal step (a platform change), not an entity.
    return {c["default_entity_id"]: c for c in document["components"].values() if "default_entity_id" in c}


async def test_every_inverter_publishes_under_its_own_prefix_with_its_own_availability(plant: Plant) -> None:
    runners = plant.app.bridge.runners
    assert [r.prefix for r in runners] == [*(default_prefix(i) for i in range(9)), CUSTOM_PREFIX]
    for runner in runners:
        serial = runner.serial
        assert serial is not None and runner.context is not None
        assert runner.context.family.key == plant.sims[serial].family
        await plant.probe.wait_for_payload(f"{ROOT}/{serial}/availability", "online", 10)
        await plant.probe.wait_for(f"{ROOT}/{serial}/Stats/Last_Updated_Time", timeout=10)
        updated = f"sensor.{runner.prefix}_{serial.lower()}_last_updated_time"
        document = await device_document(plant, f"givbridge_{serial}", lambda d, e=updated: e in entities(d))
        assert document["availability"][1] == {"topic": f"{ROOT}/{serial}/availability"}
        assert all(key.startswith(f"{runner.prefix}_") for key in document["components"])


async def test_the_gateway_and_the_ems_own_their_units_controls(plant: Plant) -> None:
    gateway, ems = plant.role("gateway"), plant.role("ems")
    for unit, owner in (("aio1", gateway), ("aio2", gateway), ("ac1", ems), ("ac2", ems)):
        serial = plant.role(unit)
        prefix = plant.runner(serial).prefix
        target = f"sensor.{prefix}_{serial.lower()}_target_soc"  # a number on a standalone inverter
        document = await device_document(plant, f"givbridge_{serial}", lambda d, e=target: e in entities(d))
        assert not [key for key, c in document["components"].items() if "command_topic" in c]
        assert document["device"]["via_device"] == f"givbridge_{owner}"
        before = plant.writes(serial)
        refusal = error(await plant.send("setChargeTarget", "70", serial=serial), "unsupported")
        assert f"control/{owner}/setChargeTarget" in refusal
        assert plant.writes(serial) == before
        assert plant.runner(serial).snapshot is not None
    # The controllers keep theirs: the Gateway takes the target for its All-in-Ones.
    gateway_prefix = plant.runner(gateway).prefix
    controls = entities(await device_document(plant, f"givbridge_{gateway}"))
    assert controls[f"number.{gateway_prefix}_{gateway.lower()}_target_soc"]["command_topic"] == (
        f"{ROOT}/control/{gateway}/setChargeTarget"
    )
    assert ok(await plant.send("setChargeTarget", "70", serial=gateway))["Target_SOC"] == 70
    assert plant.holding(116, serial=gateway) == {116: 70}


def number(snapshot: Snapshot, path: str) -> float:
    value = snapshot.values[path.format(serial=snapshot.serial)]
    assert isinstance(value, int | float)
    return float(value)


def expected_totals(plant: Plant, *, without: tuple[str, ...] = ()) -> dict[str, float]:
    """The plant's totals worked out here from the devices' own values (see givbridge/plant/summary.py)."""

    def counted(*names: str) -> list[Snapshot]:
        return [plant.snapshot(name) for name in names if name not in without]

    power = "Power/Power/{}"
    standalone = ("three-phase", "gen3", "gen1")
    # Grid and load: the Gateway and the EMS measure their plants; each simulator is a house with
    # its own supply (plant.grid: separate), so both add up. The shared-CT rule is unit-tested.
    grids = [number(s, power.format("Grid_Power")) for s in counted("gateway", *standalone, "pv")]
    grids += [number(s, "Power/Grid_Power") for s in counted("ems")]
    grid = sum(grids)
    loads = [number(s, power.format("Load_Power")) for s in counted("gateway", *standalone)]
    loads += [number(s, "Power/Calculated_Load_Power") for s in counted("ems")]
    load = sum(loads)
    # PV: the Gateway's, the standalone units' and the EMS's inverters' (the EMS measures none).
    pv = sum(number(s, power.format("PV_Power")) for s in counted("gateway", *standalone, "pv", "ac1", "ac2"))
    battery = sum(number(s, power.format("Battery_Power")) for s in counted("gateway", *standalone))
    battery += sum(number(s, "Power/Battery_Power") for s in counted("ems"))
    stores = counted("gateway", *standalone, "ac1", "ac2")
    stored = sum(number(s, power.format("SOC_kWh")) for s in stores)
    capacity = sum(number(s, "{serial}/Battery_Capacity_kWh") for s in stores)
    return {
        "PV_Power": round(pv),
        "Grid_Power": round(grid),
        "Load_Power": round(load),
        "Battery_Power": round(battery),
        "SOC_kWh": round(stored, 2),
        "SOC": round(100 * stored / capacity),
        "Inverters_Online": 10 - len(without),
    }


def summary_of(document: dict[str, Any]) -> dict[str, float]:
    values = {**document["Power"]["Power"], **document["Stats"]}
    return {key: values.get(key) for key in ("PV_Power", "Grid_Power", "Load_Power", "Battery_Power", "SOC_kWh", "SOC",
                                             "Inverters_Online")}  # fmt: skip


async def wait_for_summary(plant: Plant, expected: dict[str, float], *, after: int = 0) -> dict[str, Any]:
    message = await plant.probe.wait_for(
        f"{ROOT}/plant/json", lambda m: summary_of(json.loads(m.payload)) == expected, 20, after=after
    )
    document: dict[str, Any] = json.loads(message.payload)
    return document


async def test_the_plant_summary_adds_up_without_double_counting(plant: Plant) -> None:
    document = await wait_for_summary(plant, expected_totals(plant))
    assert document["Stats"]["Inverters_Configured"] == 10
    await plant.probe.wait_for_payload(f"{ROOT}/plant/availability", "online", 10)
    discovery = await device_document(plant, f"givbridge_plant_{ROOT}")
    found = entities(discovery)
    pv = found[f"sensor.givbridge_plant_{ROOT.lower()}_pv_power"]
    assert (pv["state_topic"], pv["unit_of_measurement"]) == (f"{ROOT}/plant/Power/Power/PV_Power", "W")
    assert f"sensor.givbridge_plant_{ROOT.lower()}_soc_kwh" in found
    assert discovery["device"]["via_device"] == f"givbridge_bridge_{ROOT}"
    assert not [c for c in found.values() if "command_topic" in c]


async def test_a_dead_inverter_and_a_slow_one_do_not_hold_the_others_up(plant: Plant) -> None:
    dead, slow = plant.role("gen1"), plant.role("pv")
    others = [r for r in plant.app.bridge.runners if r.serial not in (dead, slow)]
    slow_watch = Watch(plant.runner(slow))
    mark = plant.probe.mark()
    plant.servers[dead].faults.silence()  # answers nothing from now on
    plant.servers[slow].faults.extra_latency = 0.15  # real seconds on every request, well within the timeout

    await plant.probe.wait_for_payload(f"{ROOT}/{dead}/availability", "offline", 20, after=mark)
    # A poll already answered when the silence began may still count: mark after going offline.
    answered = plant.runner(dead).health.polls_ok
    watches = [Watch(runner) for runner in others]
    for watch in watches:  # each keeps polling while the dead one times out
        await watch.count(3, within=20)
    await slow_watch.count(1, within=20)
    assert plant.runner(dead).health.polls_ok == answered  # it stayed silent
    assert plant.runner(slow).health.available
    # The summary leaves the dead inverter out and says so.
    await wait_for_summary(plant, expected_totals(plant, without=("gen1",)), after=mark)


async def test_a_restart_keeps_the_units_read_only_from_the_start(
    module_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The relation is remembered: after a restart the All-in-One's controls never come back, even briefly."""
    clock = fast_clock(10)
    gateway = SimulatedPlant.create("gateway", batteries=1, clock=clock, seed=7, tz=ZONE)
    aio = SimulatedPlant.create("aio", serial=gateway.unit_serials[0], clock=clock, seed=8, tz=ZONE)
    data_dir = tmp_path_factory.mktemp("restart")
    topic = f"homeassistant/device/givbridge_{aio.serial}/config"
    async with AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(SimulatorServer(sim)) for sim in (aio, gateway)]
        ports = [server.port for server in servers]
        probe = MqttProbe.for_broker(module_broker, topics=("homeassistant/device/#",))
        await probe.start()
        stack.push_async_callback(probe.stop)
        settings = bridge_settings(
            data_dir, ports, mqtt=module_broker.settings(root="Restart").model_dump(), polling=POLLING
        )
        target = f"sensor.givtcp_{aio.serial.lower()}_target_soc"
        for run in range(2):
            # The second time the Gateway answers late, so the All-in-One is read well before it.
            servers[1].faults.extra_latency = 0.15 * run
            mark = probe.mark()
            app = Application(settings, clock=clock)
            await app.start()
            try:
                await probe.wait_for(topic, lambda m: target.encode() in m.payload, 20, after=mark)
            finally:
                await app.stop()
        # The second run's documents: read-only from the first one on, no platform switch.
        second = [json.loads(m.payload) for m in probe.messages(topic, after=mark) if m.payload]
        assert second
        assert not [c for d in second for c in d["components"].values() if "command_topic" in c]
        assert not [c for d in second for c in d["components"].values() if set(c) == {"platform"}]
