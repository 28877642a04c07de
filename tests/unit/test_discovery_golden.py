"""Every retained discovery document of a representative site, byte for byte, against a golden file.

The site: the bridge device, a Gen1 hybrid with two battery packs, a Gen3 hybrid with a pack
and a meter (ten-slot firmware), and an EV charger. The golden file holds what the broker keeps
on each discovery topic after the publisher has seen one snapshot of each device. A second
file holds what a plant of two Gen3 hybrids adds: the plant summary's device, and each
device of a Gen3 controlled by a Gateway (its controls read-only). Any change to
a document (an id, a key's order, a unit) fails here, so a change of the discovery code that
is meant to keep behaviour can prove it did.

Two things are abbreviated in the file, both reversibly: the package version (it changes with
every release) and the 1,440 time-slot options of a slot select (they would make the file
megabytes). The expected payload is the file's document with both put back, serialised the
way discovery serialises, and compared as text.

After a deliberate change to the documents, regenerate the file and review its diff::

    GIVBRIDGE_WRITE_GOLDEN=1 .venv/bin/python -m pytest -p no:xdist -q tests/unit/test_discovery_golden.py
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from givbridge import __version__
from givbridge.config import EvcSettings
from givbridge.entities import TIME_SLOT_OPTIONS, load_catalogue
from givbridge.evc import registers as reg
from givbridge.evc.rules import ModeSettings
from givbridge.mqtt.discovery.documents import DiscoveryBuilder
from givbridge.mqtt.state import MESSAGES_PATH
from givbridge.mqtt.topics import DiscoveryTopics, Topics
from givbridge.plant import DeviceInfo, Snapshot
from givbridge.plant.summary import Member, summarise
from givbridge.plant.topology import PlantTopology
from tests.unit.evc.test_registers import registers as charger_registers
from tests.unit.plant.registers import gen1_two_packs, gen3_ten_slots
from tests.unit.test_discovery import STATS
from tests.unit.test_discovery_publisher import FakeInverter, Harness, inverter, snapshot_of

GOLDEN = Path(__file__).parent.parent / "data" / "discovery_golden.json"
GOLDEN_PLANT = Path(__file__).parent.parent / "data" / "discovery_golden_plant.json"
VERSION_MARK = "<version>"
TIME_SLOTS_MARK = "<time_slots>"
ZONE = ZoneInfo("Europe/London")


def charger_snapshot() -> Snapshot:
    taken_at = datetime(2026, 6, 21, 0, 0, 30, tzinfo=UTC)
    values = {
        **reg.decode(charger_registers(), ZONE),
        **ModeSettings().values(),
        "Stats/Last_Updated_Time": taken_at.astimezone(ZONE),
        "Stats/status": "online",
        "Stats/Poll_Failures": 0,
        "Stats/Reconnects": 0,
        "Stats/Poll_Duration": 0.05,
    }
    return Snapshot(DeviceInfo("GE2239EVC01", reg.CHARGER_MODEL, reg.CHARGER_FAMILY), taken_at, values)


def abbreviate(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: abbreviate(item) for key, item in value.items()}
    if isinstance(value, list):
        return TIME_SLOTS_MARK if tuple(value) == TIME_SLOT_OPTIONS else [abbreviate(item) for item in value]
    return VERSION_MARK if value == __version__ else value


def expand(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item) for item in value]
    if value == TIME_SLOTS_MARK:
        return list(TIME_SLOT_OPTIONS)
    return __version__ if value == VERSION_MARK else value


def payload(document: Any) -> str:
    return json.dumps(expand(document), separators=(",", ":"), ensure_ascii=False)


def check_against(golden: Path, retained: dict[str, str]) -> None:
    """``retained`` (topic -> payload) is the golden file's, byte for byte; writes the file on request."""
    if os.environ.get("GIVBRIDGE_WRITE_GOLDEN"):
        documents = {topic: abbreviate(json.loads(text)) for topic, text in sorted(retained.items())}
        golden.write_text(json.dumps(documents, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(golden.read_text(encoding="utf-8"))
    assert sorted(retained) == sorted(expected)
    for topic, document in expected.items():
        assert retained[topic] == payload(document), topic


def plant_documents(build: DiscoveryBuilder) -> dict[str, str]:
    """The plant summary's document and a Gateway-controlled Gen3's, as ``build`` makes them."""
    gen3 = snapshot_of(gen3_ten_slots, "hybrid-gen3")
    summary = summarise([Member(gen3, True), Member(gen3, True)], PlantTopology())
    assert summary is not None
    managed = build.inverter(gen3, prefix="givtcp", paths={*gen3.values, MESSAGES_PATH}, controlled_by="GW2412G001")
    devices = [build.plant(summary, {*summary.values, MESSAGES_PATH}), *managed.devices]
    return {device.topic: device.text() for device in devices}


async def test_the_sites_retained_discovery_documents_are_unchanged(tmp_path: Path) -> None:
    gen1, gen3 = snapshot_of(gen1_two_packs, "hybrid-gen1"), snapshot_of(gen3_ten_slots, "hybrid-gen3")
    hybrids = [(inverter(), gen1), (inverter("givtcp2"), gen3)]
    charger = FakeInverter(reg.PREFIX, EvcSettings(host="192.0.2.20"))
    site = Harness(tmp_path, [device for device, _ in hybrids] + [charger])
    site.publisher.publish_all()
    for device, snapshot in hybrids:
        site.poll(device, Snapshot(snapshot.info, snapshot.taken_at, {**snapshot.values, **STATS}))
    site.poll(charger, charger_snapshot())
    await site.stop()

    retained: dict[str, str] = {}
    for sent in site.client.sent:
        assert sent.retain
        if sent.payload is None:
            retained.pop(sent.topic, None)
        else:
            retained[sent.topic] = sent.payload

    check_against(GOLDEN, retained)


def test_a_plants_summary_and_managed_inverter_documents_are_unchanged() -> None:
    build = DiscoveryBuilder(
        topics=Topics("GivEnergy"), discovery_topics=DiscoveryTopics("homeassistant"), catalogue=load_catalogue()
    )
    check_against(GOLDEN_PLANT, plant_documents(build))
