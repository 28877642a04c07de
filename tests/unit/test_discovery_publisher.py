"""The discovery lifecycle against a recording stand-in for the MQTT client: when documents go
out, what is left alone, how stale entities and devices are removed, and what is remembered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from givbridge.clock import ScaledClock
from givbridge.config import InverterSettings, MqttSettings
from givbridge.entities import load_catalogue
from givbridge.mqtt.client import Message
from givbridge.mqtt.discovery.migration import MIGRATE_PAYLOAD
from givbridge.mqtt.discovery.publisher import DiscoveryPublisher
from givbridge.mqtt.discovery.record import STORE_DOCUMENT
from givbridge.mqtt.topics import Topics
from givbridge.plant import Snapshot, build_snapshot
from givbridge.plant.families import FAMILIES
from givbridge.store import JsonStore
from tests.unit.plant.registers import gen1_two_packs, gen3_ten_slots, plant_from

ZONE = ZoneInfo("Europe/London")
PREFIX = "homeassistant/device/"


@dataclass
class Sent:
    topic: str
    payload: str | None
    retain: bool
    qos: int | None

    @property
    def document(self) -> dict[str, Any]:
        assert self.payload
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed


@dataclass
class FakeClient:
    """Records what would be published; ``connected`` decides whether a publish succeeds."""

    connected: bool = True
    sent: list[Sent] = field(default_factory=list)
    handlers: dict[str, Callable[[Message], Any]] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def subscribe(self, topic_filter: str, handler: Callable[[Message], Any], qos: int = 1) -> None:
        self.handlers[topic_filter] = handler

    def publish(self, topic: str, payload: str | None = None, *, retain: bool = False, qos: int | None = None) -> bool:
        if not self.connected:
            return False
        self.sent.append(Sent(topic, payload, retain, qos))
        asyncio.get_running_loop().create_task(self._notify())
        return True

    async def publish_confirmed(self, topic: str, payload: str | None = None, **kwargs: Any) -> bool:
        return self.publish(topic, payload, retain=kwargs.get("retain", False), qos=kwargs.get("qos", 1))

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def mark(self) -> int:
        return len(self.sent)

    def since(self, mark: int, prefix: str = PREFIX) -> list[Sent]:
        return [s for s in self.sent[mark:] if s.topic.startswith(prefix)]

    async def wait_for(self, predicate: Callable[[Sent], bool], *, after: int = 0) -> int:
        """Index of the first message from ``after`` matching ``predicate``, waiting for it."""

        def index() -> int | None:
            return next((i for i, s in enumerate(self.sent) if i >= after and predicate(s)), None)

        async with asyncio.timeout(5), self.changed:
            await self.changed.wait_for(lambda: index() is not None)
        found = index()
        assert found is not None
        return found


@dataclass
class FakeInverter:
    prefix: str
    config: InverterSettings
    snapshot: Snapshot | None = None
    known_serial: str | None = None

    @property
    def serial(self) -> str | None:
        return self.snapshot.serial if self.snapshot else self.known_serial


def snapshot_of(make: Callable[[], Any], family: str) -> Snapshot:
    taken_at = datetime(2026, 6, 5, 11, 20, tzinfo=UTC)
    return build_snapshot(plant_from(make()), family=FAMILIES[family], taken_at=taken_at, tz=ZONE)


def without_pack(snapshot: Snapshot, pack: str) -> Snapshot:
    info = replace(snapshot.info, battery_serials=tuple(p for p in snapshot.info.battery_serials if p != pack))
    return replace(snapshot, info=info, values={k: v for k, v in snapshot.values.items() if pack not in k})


class Harness:
    def __init__(self, tmp_path: Path, inverters: list[FakeInverter], **mqtt: Any) -> None:
        self.client = FakeClient()
        self.inverters = inverters
        self.store = JsonStore(tmp_path)
        self.states_republished = asyncio.Event()
        self.publisher = DiscoveryPublisher(
            self.client,  # type: ignore[arg-type]
            Topics("GivEnergy"),
            MqttSettings(**mqtt),
            inverters=inverters,
            catalogue=load_catalogue(),
            store=self.store,
            republish_states=self.states_republished.set,
            clock=ScaledClock(speed=1000),
        )

    def poll(self, inverter: FakeInverter, snapshot: Snapshot) -> None:
        inverter.snapshot = snapshot
        self.publisher.on_snapshot(snapshot)

    async def stop(self) -> dict[str, Any]:
        await self.publisher.stop()
        return self.store.load(STORE_DOCUMENT)


def inverter(prefix: str = "givtcp", **kw: Any) -> FakeInverter:
    return FakeInverter(prefix, InverterSettings(host="192.0.2.10"), **kw)


@pytest.fixture(scope="module")
def gen1() -> Snapshot:
    return snapshot_of(gen1_two_packs, "hybrid-gen1")


@pytest.fixture(scope="module")
def gen3() -> Snapshot:
    return snapshot_of(gen3_ten_slots, "hybrid-gen3")


async def test_first_snapshot_publishes_then_only_changes(tmp_path: Path, gen1: Snapshot) -> None:
    one = inverter()
    h = Harness(tmp_path, [one])
    h.publisher.publish_all()  # connected, nothing polled yet: the bridge device only
    assert [s.topic for s in h.client.sent] == [f"{PREFIX}givbridge_bridge_GivEnergy/config"]
    h.poll(one, gen1)
    topics = [s.topic for s in h.client.since(1)]
    assert topics[0] == f"{PREFIX}givbridge_{gen1.serial}/config"
    assert set(topics[1:]) == {f"{PREFIX}givbridge_{pack}/config" for pack in gen1.info.battery_serials}
    assert all(s.retain and s.qos == 1 for s in h.client.sent)

    mark = h.client.mark()
    h.poll(one, gen1)
    assert h.client.since(mark) == []  # nothing new: nothing sent

    # A value missing from one poll keeps its entity; a new value adds one to its device only.
    h.poll(one, replace(gen1, values={k: v for k, v in gen1.values.items() if not k.endswith("/PV_Power")}))
    assert h.client.since(mark) == []
    h.poll(one, replace(gen1, values={**gen1.values, "Power/Power/Combined_Generation_Power": 0}))
    [update] = h.client.since(mark)
    assert update.topic == f"{PREFIX}givbridge_{gen1.serial}/config"
    assert f"givtcp_{gen1.serial}_Combined_Generation_Power" in update.document["components"]
    assert f"givtcp_{gen1.serial}_PV_Power" in update.document["components"]
    record = await h.stop()
    assert "Power/Power/Combined_Generation_Power" in record["inverters"][gen1.serial]["paths"]


async def test_nothing_is_published_while_disconnected(tmp_path: Path, gen1: Snapshot) -> None:
    one = inverter()
    h = Harness(tmp_path, [one])
    h.client.connected = False
    h.poll(one, gen1)
    assert h.client.sent == []
    h.client.connected = True
    h.publisher.publish_all()  # what the application does on connecting
    assert f"{PREFIX}givbridge_{gen1.serial}/config" in {s.topic for s in h.client.sent}
    await h.stop()


async def test_restart_with_a_pack_removed_and_a_new_prefix(tmp_path: Path, gen1: Snapshot) -> None:
    first = Harness(tmp_path, [one := inverter()])
    first.poll(one, gen1)
    await first.stop()
    kept, removed = gen1.info.battery_serials

    second = Harness(tmp_path, [two := inverter("house")])
    second.poll(two, without_pack(gen1, removed))
    sent = second.client.since(0)
    inverter_topic = f"{PREFIX}givbridge_{gen1.serial}/config"
    marked, clean = (s.document for s in sent if s.topic == inverter_topic)
    old_keys = {k for k in marked["components"] if k.startswith("givtcp_")}
    assert old_keys and all(
        marked["components"][k] == {"platform": marked["components"][k]["platform"]} for k in old_keys
    )
    assert not any(k.startswith("givtcp_") for k in clean["components"])
    assert f"house_{gen1.serial}_SOC_kWh" in clean["components"]
    emptied = [s for s in sent if s.payload is None]
    assert [s.topic for s in emptied] == [f"{PREFIX}givbridge_{removed}/config"]
    assert emptied[0].retain
    assert f"{PREFIX}givbridge_{kept}/config" in {s.topic for s in sent}
    record = await second.stop()
    assert f"{PREFIX}givbridge_{removed}/config" not in record["published"]


async def test_a_changed_platform_is_removed_under_the_old_one(tmp_path: Path, gen3: Snapshot) -> None:
    first = Harness(tmp_path, [one := inverter()])
    first.poll(one, gen3)
    await first.stop()
    second = Harness(tmp_path, [two := inverter()], slot_entities="time")
    second.poll(two, gen3)
    marked, clean = (s.document for s in second.client.since(0) if s.topic.endswith(f"givbridge_{gen3.serial}/config"))
    key = f"givtcp_{gen3.serial}_Charge_start_time_slot_1"
    assert marked["components"][key] == {"platform": "select"}
    # A time entity is announced on a topic of its own, so an HA without the time platform
    # rejects only it, not the whole device.
    assert key not in clean["components"]
    time_topic = f"homeassistant/time/givbridge/{key}/config"
    [alone] = [s.document for s in second.client.since(0, "homeassistant/") if s.topic == time_topic]
    assert alone["unique_id"] == key and alone["device"] == {"identifiers": marked["device"]["identifiers"]}
    await second.stop()

    third = Harness(tmp_path, [three := inverter()])  # back to selects: the time entity's topic is emptied
    third.poll(three, gen3)
    emptied = [s.topic for s in third.client.since(0, "homeassistant/") if s.payload is None]
    assert time_topic in emptied
    await third.stop()


async def test_admin_controls_go_when_mqtt_admin_is_turned_off(tmp_path: Path, gen3: Snapshot) -> None:
    """An install that had the admin controls loses them the way HA removes a component of a device."""
    bridge_topic, inverter_topic = (
        f"{PREFIX}givbridge_bridge_GivEnergy/config",
        f"{PREFIX}givbridge_{gen3.serial}/config",
    )
    reboot = f"givtcp_{gen3.serial}_Reboot_Invertor"
    bridge_controls = {"givbridge_bridge_GivEnergy_restart": "button", "givbridge_bridge_GivEnergy_log_level": "select"}
    first = Harness(tmp_path, [one := inverter()], admin="on")
    first.publisher.publish_all()
    first.poll(one, gen3)
    offered = {s.topic: s.document for s in first.client.since(0)}
    assert bridge_controls.keys() <= offered[bridge_topic]["components"].keys()
    assert reboot in offered[inverter_topic]["components"]
    await first.stop()

    second = Harness(tmp_path, [two := inverter()])  # mqtt.admin back to its default, off
    second.publisher.publish_all()
    second.poll(two, gen3)
    for topic, gone in ((bridge_topic, bridge_controls), (inverter_topic, {reboot: "button"})):
        marked, clean = (s.document for s in second.client.since(0) if s.topic == topic)
        # First the document with each reduced to its platform (HA removes them), then without them.
        assert {key: marked["components"][key] for key in gone} == {key: {"platform": p} for key, p in gone.items()}
        assert not gone.keys() & clean["components"].keys()
    record = await second.stop()
    assert not bridge_controls.keys() & record["published"][bridge_topic]["components"].keys()
    assert reboot not in record["published"][inverter_topic]["components"]

    third = Harness(tmp_path, [three := inverter()])  # nothing left to remove: each goes out once
    third.publisher.publish_all()
    third.poll(three, gen3)
    assert [s.topic for s in third.client.since(0)].count(inverter_topic) == 1
    await third.stop()


async def test_an_inverter_no_longer_configured_goes_once_all_are_identified(
    tmp_path: Path, gen1: Snapshot, gen3: Snapshot
) -> None:
    first = Harness(tmp_path, [a := inverter(), b := inverter("givtcp2")])
    first.poll(a, gen1)
    first.poll(b, gen3)
    await first.stop()

    # gen1's inverter is gone from the config; the other one has not answered yet.
    later = Harness(tmp_path, [c := inverter()])
    later.publisher.publish_all()
    assert not [s for s in later.client.sent if s.payload is None]
    later.poll(c, gen3)  # now every configured inverter is known, and gen1 is not one of them
    emptied = {s.topic for s in later.client.sent if s.payload is None}
    gen1_topics = {f"{PREFIX}givbridge_{gen1.serial}/config"} | {
        f"{PREFIX}givbridge_{p}/config" for p in gen1.info.battery_serials
    }
    assert emptied == gen1_topics
    record = await later.stop()
    assert gen1.serial not in record["inverters"]

    # An inverter with a configured serial counts as identified before it answers.
    again = Harness(tmp_path, [inverter(known_serial=gen3.serial)])
    again.publisher.publish_all()
    assert not [s for s in again.client.sent if s.payload is None]
    await again.stop()


async def test_home_assistants_birth_resends_discovery_then_state(tmp_path: Path, gen1: Snapshot) -> None:
    h = Harness(tmp_path, [one := inverter()])
    h.poll(one, gen1)
    birth = h.client.handlers["homeassistant/status"]
    mark = h.client.mark()
    birth(Message("homeassistant/status", b"online", retain=True))  # a leftover, not HA starting
    birth(Message("homeassistant/status", b"offline"))
    assert not h.states_republished.is_set()
    birth(Message("homeassistant/status", b"online"))
    birth(Message("homeassistant/status", b"online"))  # one republish for a burst
    async with asyncio.timeout(5):
        await h.states_republished.wait()
    resent = [s.topic for s in h.client.since(mark)]
    assert resent.count(f"{PREFIX}givbridge_{gen1.serial}/config") == 1
    assert resent[0] == f"{PREFIX}givbridge_bridge_GivEnergy/config"
    await h.stop()


async def test_givtcp_migration_order(tmp_path: Path, gen1: Snapshot) -> None:
    h = Harness(tmp_path, [one := inverter()], migrate_givtcp_discovery=True)
    legacy = h.client.handlers["homeassistant/+/GivEnergy/+/config"]
    sn = gen1.serial
    extra = f"homeassistant/select/GivEnergy/{sn}_Force_Charge/config"
    foreign = "homeassistant/sensor/GivEnergy/SA9999G999_PV_Power/config"
    for topic in (extra, foreign):
        legacy(Message(topic, json.dumps({"unique_id": "x"}).encode(), retain=True))
    h.poll(one, gen1)
    assert h.client.since(0) == []  # the migration runs first, in the background

    async with asyncio.timeout(5):
        await h.states_republished.wait()  # the last step of a migration
    old_pv = f"homeassistant/sensor/GivEnergy/{sn}_PV_Power/config"
    sent = h.client.sent
    first_device = next(i for i, s in enumerate(sent) if s.topic == f"{PREFIX}givbridge_{sn}/config")
    migrated = {s.topic for s in sent[:first_device] if s.payload == MIGRATE_PAYLOAD}
    assert {old_pv, extra} <= migrated
    cleared = {s.topic for s in sent[first_device:] if s.payload is None}
    assert migrated == cleared
    assert foreign not in {s.topic for s in sent}
    record = await h.stop()
    assert record["givtcp_migrated"] == [sn]

    # Once done, a restart does not migrate again, but a config GivTCP publishes again is retired.
    again = Harness(tmp_path, [two := inverter()], migrate_givtcp_discovery=True)
    again.poll(two, gen1)
    assert not [s for s in again.client.sent if s.payload == MIGRATE_PAYLOAD]
    again.client.handlers["homeassistant/+/GivEnergy/+/config"](
        Message(old_pv, json.dumps({"unique_id": f"givtcp_{sn}_PV_Power"}).encode(), retain=True)
    )
    migrate = await again.client.wait_for(lambda s: s.topic == old_pv and s.payload == MIGRATE_PAYLOAD)
    await again.client.wait_for(lambda s: s.topic == old_pv and s.payload is None, after=migrate)
    await again.stop()


async def test_an_unreadable_record_is_ignored(tmp_path: Path, gen1: Snapshot) -> None:
    JsonStore(tmp_path).save(STORE_DOCUMENT, {"published": {"x": "not a record"}})
    h = Harness(tmp_path, [one := inverter()])
    h.poll(one, gen1)
    assert not [s for s in h.client.sent if s.payload is None]
    await h.stop()
