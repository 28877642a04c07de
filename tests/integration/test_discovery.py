"""Home Assistant discovery on real brokers, from simulated inverters through the whole application.

Each test runs against mosquitto and amqtt. Nothing sleeps: every step awaits the message
that shows it happened (HA's side is played by the probe: it reads the retained configs,
publishes the birth message and GivTCP's old configs).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from givbridge.app import Application
from givbridge.clock import ScaledClock
from givbridge.entities import load_catalogue
from givbridge.mqtt.client import Message
from givbridge.mqtt.discovery.addresses import address_of, default_entity_id
from givbridge.mqtt.discovery.migration import MIGRATE_PAYLOAD
from givbridge.mqtt.discovery.record import STORE_DOCUMENT
from givbridge.mqtt.state import MESSAGES_PATH
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.store import JsonStore
from tests.brokers import Broker, MqttProbe
from tests.conftest import MakeProbe
from tests.integration.bridge_helpers import bridge_settings, fast_clock
from tests.unit.test_discovery import admin_controls, predbat_entities
from tests.unit.test_discovery_schema import problems

ROOT = "GivEnergy"
ZONE = "Europe/London"
SERIAL = "SA2306G123"
OTHER = "SA2101G456"


def device_topic(object_id: str) -> str:
    return f"homeassistant/device/{object_id}/config"


def simulated(
    clock: ScaledClock, family: str = "hybrid-gen3", batteries: int = 2, serial: str = SERIAL
) -> SimulatedPlant:
    return SimulatedPlant.create(family, batteries=batteries, serial=serial, clock=clock, seed=5, tz=ZONE, start_soc=40)


@asynccontextmanager
async def running(
    broker: Broker,
    tmp_path: Path,
    sims: Sequence[SimulatedPlant],
    *,
    inverters: Sequence[dict[str, Any]] = (),
    **overrides: Any,
) -> AsyncIterator[Application]:
    """The bridge publishing ``sims`` (on their clock) to ``broker``; ``inverters`` adds settings per inverter."""
    clock = sims[0].clock
    assert isinstance(clock, ScaledClock)
    async with AsyncExitStack() as stack:
        ports = []
        for sim in sims:
            ports.append((await stack.enter_async_context(SimulatorServer(sim))).port)
        mqtt = {**broker.settings().model_dump(), **overrides.pop("mqtt", {})}
        settings = bridge_settings(tmp_path, ports, mqtt=mqtt, **overrides)
        for extra, inverter in zip(inverters, settings.inverters, strict=False):
            for key, value in extra.items():
                setattr(inverter, key, value)
        app = Application(settings, clock=clock)
        await app.start()
        try:
            yield app
        finally:
            await app.stop()


async def config(probe: MqttProbe, object_id: str, *, after: int = 0, having: Sequence[str] = ()) -> dict[str, Any]:
    """The next discovery document of ``object_id`` (with the entity ids ``having``), checked against HA's rules."""

    def wanted(message: Message) -> bool:
        return bool(message.payload) and all(f'"{entity_id}"'.encode() in message.payload for entity_id in having)

    message = await probe.wait_for(device_topic(object_id), wanted, 15, after=after)
    document: dict[str, Any] = json.loads(message.payload)
    assert not problems(message.topic, document), problems(message.topic, document)
    return document


def position(probe: MqttProbe, message: Message) -> int:
    """Where ``message`` (this very one, not an equal one) arrived among the probe's messages."""
    return next(i for i, m in enumerate(probe.received) if m is message)


def entity_ids(*documents: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["default_entity_id"]: c for d in documents for c in d["components"].values()}


async def test_discovery_after_the_first_poll(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    probe = await make_probe(broker)
    sim = simulated(fast_clock())
    async with running(broker, tmp_path, [sim]) as app:
        bridge = await config(probe, f"givbridge_bridge_{ROOT}")
        # Some values (today's counters) only come with a later poll; their entities follow them.
        expected = predbat_entities(SERIAL.lower())
        inverter = await config(probe, f"givbridge_{SERIAL}", having=list(expected))
        # Every value the inverter publishes has its entity, on the device it belongs to.
        snapshot = app.bridge.runners[0].snapshot
        assert snapshot is not None
        wanted: dict[str, list[str]] = {}
        withheld = admin_controls(load_catalogue())  # mqtt.admin is off: HA could not use them
        for path in (*snapshot.values, MESSAGES_PATH):
            where = address_of(path, SERIAL)
            if where.leaf in withheld:
                continue
            device = f"givbridge_{SERIAL if where.scope == 'inverter' else where.holder}"
            platform = load_catalogue()[where.leaf].platform
            wanted.setdefault(device, []).append(default_entity_id(platform, where.object_id("givtcp", SERIAL)))
        assert set(wanted) == {f"givbridge_{SERIAL}", *(f"givbridge_{pack}" for pack in sim.battery_serials)}
        inverter = await config(probe, f"givbridge_{SERIAL}", having=wanted[f"givbridge_{SERIAL}"])
        packs = [
            await config(probe, f"givbridge_{pack}", having=wanted[f"givbridge_{pack}"]) for pack in sim.battery_serials
        ]

    found = entity_ids(inverter, *packs)
    assert not set(expected) - set(found), sorted(set(expected) - set(found))
    for entity_id, attributes in expected.items():
        assert {key: found[entity_id].get(key) for key in attributes} == attributes, entity_id
    charge_rate = found[f"number.givtcp_{SERIAL.lower()}_battery_charge_rate"]
    assert charge_rate["max"] == sim.profile.battery_max_power_w
    assert charge_rate["unit_of_measurement"] == "W"
    assert {pack["device"]["via_device"] for pack in packs} == {f"givbridge_{SERIAL}"}
    assert inverter["device"]["via_device"] == bridge["device"]["identifiers"][0]
    assert inverter["device"]["model"] == "Hybrid Gen3"
    assert inverter["availability"][1] == {"topic": f"{ROOT}/{SERIAL}/availability"}

    # Retained: Home Assistant starting later finds every document at once.
    late = await make_probe(broker)
    for object_id in (
        f"givbridge_bridge_{ROOT}",
        f"givbridge_{SERIAL}",
        *(f"givbridge_{p}" for p in sim.battery_serials),
    ):
        assert (await late.wait_for(device_topic(object_id), timeout=5)).retain


async def test_birth_message_brings_discovery_and_state_again(
    broker: Broker, make_probe: MakeProbe, tmp_path: Path
) -> None:
    probe = await make_probe(broker)
    slot = f"{ROOT}/{SERIAL}/Timeslots/Charge_start_time_slot_1"
    async with running(broker, tmp_path, [simulated(fast_clock(), batteries=1)]):
        await config(probe, f"givbridge_{SERIAL}")
        await probe.wait_for(slot, timeout=15)  # a setting: not republished for minutes on its own
        mark = probe.mark()
        await probe.publish("homeassistant/status", "online")
        again = await probe.wait_for(device_topic(f"givbridge_{SERIAL}"), after=mark, timeout=15)
        state = await probe.wait_for(slot, after=mark, timeout=15)
        await probe.wait_for(device_topic(f"givbridge_bridge_{ROOT}"), after=mark, timeout=5)
    assert json.loads(again.payload)["components"]
    assert position(probe, state) > position(probe, again)  # the config first, then its state


async def test_stale_configs_are_removed_across_restarts(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    probe = await make_probe(broker)
    clock = fast_clock()
    first_sims = [simulated(clock, batteries=2), simulated(clock, "hybrid-gen1", batteries=1, serial=OTHER)]
    async with running(broker, tmp_path, first_sims):
        for sim in first_sims:
            for pack in sim.battery_serials:
                await config(probe, f"givbridge_{pack}")
            await config(probe, f"givbridge_{sim.serial}")
        running_mark = probe.mark()
    kept, removed = first_sims[0].battery_serials
    other_pack = first_sims[1].battery_serials[0]
    # The first run's last word: everything it published before (QoS 1, one client) has arrived.
    stopped = await probe.wait_for_payload(f"{ROOT}/bridge/state", b"offline", timeout=5, after=running_mark)

    # Restarted with one pack fewer, a new prefix, and the second inverter gone from the config.
    mark = probe.received.index(stopped) + 1
    sims = [simulated(fast_clock(), batteries=1)]
    async with running(broker, tmp_path, sims, inverters=[{"prefix": "house"}]):
        for object_id in (f"givbridge_{removed}", f"givbridge_{OTHER}", f"givbridge_{other_pack}"):
            await probe.wait_for_payload(device_topic(object_id), b"", timeout=15, after=mark)
        clean = await probe.wait_for(
            device_topic(f"givbridge_{SERIAL}"), lambda m: b"house_" in m.payload and b'"givtcp_' not in m.payload,
            timeout=15, after=mark,
        )  # fmt: skip
    marked = probe.messages(device_topic(f"givbridge_{SERIAL}"), after=mark)[0]
    assert marked is not clean
    old = [key for key in json.loads(marked.payload)["components"] if key.startswith("givtcp_")]
    assert old and all(json.loads(marked.payload)["components"][key].keys() == {"platform"} for key in old)
    assert f"select.house_{SERIAL.lower()}_mode" in entity_ids(json.loads(clean.payload))
    assert not problems(clean.topic, json.loads(clean.payload))

    # What HA would read from the broker now: no trace of what was removed.
    late = await make_probe(broker)
    await late.wait_for(device_topic(f"givbridge_{kept}"), timeout=5)
    for object_id in (removed, OTHER, other_pack):
        assert not late.messages(device_topic(f"givbridge_{object_id}"))
    assert set(JsonStore(tmp_path).load(STORE_DOCUMENT)["inverters"]) == {SERIAL}


async def test_migration_from_givtcp(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    probe = await make_probe(broker)
    old_soc = f"homeassistant/sensor/GivEnergy/{SERIAL}_SOC/config"
    old_extra = f"homeassistant/select/GivEnergy/{SERIAL}_Local_control_mode/config"  # nothing in givbridge matches
    foreign = f"homeassistant/sensor/GivEnergy/{OTHER}_SOC/config"  # another GivTCP's inverter: not ours
    givtcp = {
        topic: json.dumps({"unique_id": unique_id, "stat_t": f"{ROOT}/x", "device": {"identifiers": "x"}})
        for topic, unique_id in ((old_soc, f"givtcp_{SERIAL}_SOC"), (old_extra, "x"), (foreign, f"givtcp_{OTHER}_SOC"))
    }
    for topic, body in givtcp.items():
        await probe.publish(topic, body, retain=True)
    sims = [simulated(fast_clock(), batteries=1)]
    async with running(broker, tmp_path, sims, mqtt={"migrate_givtcp_discovery": True}):
        cleared_soc = await probe.wait_for_payload(old_soc, b"", timeout=15)
        cleared_extra = await probe.wait_for_payload(old_extra, b"", timeout=15)
    migrate_soc = await probe.wait_for_payload(old_soc, MIGRATE_PAYLOAD, timeout=1)
    await probe.wait_for_payload(old_extra, MIGRATE_PAYLOAD, timeout=1)
    device = await probe.wait_for(device_topic(f"givbridge_{SERIAL}"), timeout=1)
    assert position(probe, migrate_soc) < position(probe, device) < position(probe, cleared_soc)
    assert position(probe, cleared_extra) > position(probe, device)
    assert [m.text for m in probe.messages(foreign)] == [givtcp[foreign]]
    assert f"givtcp_{SERIAL}_SOC" in json.loads(device.payload)["components"]
    assert JsonStore(tmp_path).load(STORE_DOCUMENT)["givtcp_migrated"] == [SERIAL]


async def test_time_entities_for_slots(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    probe = await make_probe(broker)
    async with running(broker, tmp_path, [simulated(fast_clock(), batteries=1)], mqtt={"slot_entities": "time"}):
        inverter = await config(probe, f"givbridge_{SERIAL}")
        # Each time entity on a topic of its own: an HA without the time platform loses only those.
        key = f"givtcp_{SERIAL}_Charge_start_time_slot_1"
        message = await probe.wait_for(f"homeassistant/time/givbridge/{key}/config", timeout=15)
        state = await probe.wait_for(f"{ROOT}/{SERIAL}/Timeslots/Charge_start_time_slot_1", timeout=15)
    start = json.loads(message.payload)
    assert not problems(message.topic, start), problems(message.topic, start)
    assert start["device"] == {"identifiers": inverter["device"]["identifiers"]}
    assert start["default_entity_id"] == f"time.givtcp_{SERIAL.lower()}_charge_start_time_slot_1"
    found = entity_ids(inverter)
    assert not any("time_slot" in c["unique_id"] for c in found.values())
    assert start["state_topic"] == f"{ROOT}/{SERIAL}/Timeslots/Charge_start_time_slot_1"
    assert start["command_topic"] == f"{ROOT}/control/{SERIAL}/setChargeStart1"
    assert f"select.givtcp_{SERIAL.lower()}_mode" in found
    assert len(state.text) == 8 and state.text[2] == state.text[5] == ":"  # HH:MM:SS, what HA's time entity reads


async def test_discovery_off_publishes_nothing(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    probe = await make_probe(broker)
    async with running(broker, tmp_path, [simulated(fast_clock(), batteries=1)], mqtt={"discovery": False}):
        updated = f"{ROOT}/{SERIAL}/Stats/Last_Updated_Time"
        await probe.wait_for(updated, timeout=15)
        await probe.publish("homeassistant/status", "online")
        mark = probe.mark()
        await probe.wait_for(updated, after=mark, timeout=15)  # another poll went by
        await probe.wait_for(updated, after=probe.mark(), timeout=15)  # and another
    assert [m.topic for m in probe.messages("homeassistant/#")] == ["homeassistant/status"]


def removes_nothing(message: Message) -> bool:
    """A device document with no component reduced to its platform (HA's removal of a component)."""
    return bool(message.payload) and all(
        component.keys() != {"platform"} for component in json.loads(message.payload)["components"].values()
    )


async def test_admin_controls_only_with_mqtt_admin_on(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    """HA is offered the admin controls with mqtt.admin: on, and they work; turned off, they go."""
    probe = await make_probe(broker)
    bridge_id, inverter_id = f"givbridge_bridge_{ROOT}", f"givbridge_{SERIAL}"
    reboot = f"button.givtcp_{SERIAL.lower()}_reboot_invertor"
    restart, log_level = f"button.{bridge_id.lower()}_restart", f"select.{bridge_id.lower()}_log_level"
    sim = simulated(fast_clock(), batteries=1)
    async with running(broker, tmp_path, [sim], mqtt={"admin": "on"}):
        await config(probe, bridge_id, having=[restart, log_level])
        button = entity_ids(await config(probe, inverter_id, having=[reboot]))[reboot]
        # What HA sends when the button is pressed reboots the inverter.
        mark = probe.mark()
        await probe.publish(button["command_topic"], button["payload_press"])
        answered = await probe.wait_for(f"{ROOT}/{SERIAL}/response/rebootInverter", after=mark, timeout=40)
        assert json.loads(answered.payload)["status"] == "ok", answered.payload
        assert sim.reboots == 1
        running_mark = probe.mark()
    stopped = await probe.wait_for_payload(f"{ROOT}/bridge/state", b"offline", timeout=5, after=running_mark)
    mark = probe.received.index(stopped) + 1

    # Restarted with mqtt.admin at its default, off: each control is removed the way HA documents it.
    async with running(broker, tmp_path, [simulated(fast_clock(), batteries=1)]):
        for object_id, gone in (
            (bridge_id, {restart: "button", log_level: "select"}),
            (inverter_id, {reboot: "button"}),
        ):
            clean = await probe.wait_for(device_topic(object_id), removes_nothing, timeout=15, after=mark)
            marked = json.loads(probe.messages(device_topic(object_id), after=mark)[0].payload)
            keys = {key.lower(): key for key in marked["components"]}
            for entity_id, platform in gone.items():
                key = keys[entity_id.split(".", 1)[1]]
                assert marked["components"][key] == {"platform": platform}, entity_id
            assert not problems(clean.topic, json.loads(clean.payload))
            assert not gone.keys() & entity_ids(json.loads(clean.payload)).keys()

    # What HA would read from the broker now: no control that could only answer forbidden.
    late = await make_probe(broker)
    for object_id in (bridge_id, inverter_id):
        retained = json.loads((await late.wait_for(device_topic(object_id), timeout=5)).payload)
        assert not {restart, log_level, reboot} & set(entity_ids(retained))
    assert f"button.givtcp_{SERIAL.lower()}_sync_time" in entity_ids(retained)  # a device write: still offered
