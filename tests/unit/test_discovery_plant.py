"""Discovery for multi-inverter plants, offline: a managed inverter's read-only device, the plant summary's."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from givbridge.entities import load_catalogue
from givbridge.mqtt.discovery.documents import DiscoveryBuilder
from givbridge.mqtt.state import MESSAGES_PATH
from givbridge.mqtt.topics import DiscoveryTopics, Topics
from givbridge.plant import Snapshot, build_snapshot
from givbridge.plant.families import FAMILIES
from givbridge.plant.summary import Member, summarise
from givbridge.plant.topology import PlantTopology
from tests.unit.plant.registers import gen3_ten_slots, plant_from
from tests.unit.test_discovery_schema import problems

TAKEN_AT = datetime(2026, 6, 5, 11, 20, tzinfo=UTC)
CATALOGUE = load_catalogue()
BUILDER = DiscoveryBuilder(
    topics=Topics("GivEnergy"), discovery_topics=DiscoveryTopics("homeassistant"), catalogue=CATALOGUE
)


def gen3() -> Snapshot:
    return build_snapshot(
        plant_from(gen3_ten_slots()), family=FAMILIES["hybrid-gen3"], taken_at=TAKEN_AT, tz=ZoneInfo("Europe/London")
    )


def test_a_managed_inverter_shows_its_settings_but_offers_no_control() -> None:
    snapshot = gen3()
    paths = {*snapshot.values, MESSAGES_PATH}
    free = BUILDER.inverter(snapshot, prefix="givtcp", paths=paths)
    managed = BUILDER.inverter(snapshot, prefix="givtcp", paths=paths, controlled_by="GW2412G001")
    assert managed.undefined == () and managed.unresolved == ()
    before = {key: c for d in free.devices for key, c in d.document["components"].items()}
    after = {key: c for d in managed.devices for key, c in d.document["components"].items()}
    for device in managed.devices:
        assert not problems(device.topic, dict(device.document)), problems(device.topic, dict(device.document))
    inverter = next(d for d in managed.devices if d.topic.endswith(f"givbridge_{snapshot.serial}/config"))
    assert inverter.document["device"]["via_device"] == "givbridge_GW2412G001"

    controls = {key for key, c in before.items() if "command_topic" in c}
    buttons = {key for key in controls if before[key]["platform"] == "button"}
    assert controls and buttons
    # A select's state sensor is not needed: read-only, the select itself shows every state.
    states = {f"{key}_State" for key in controls if "value_template" in before[key]}
    assert states and states <= set(before)
    assert set(after) == set(before) - buttons - states  # the same unique ids, less what can only be pressed
    assert not [key for key, c in after.items() if "command_topic" in c]
    target = after[f"givtcp_{snapshot.serial}_Target_SOC"]
    assert target["platform"] == "sensor" and target["default_entity_id"].startswith("sensor.")
    assert (target["unit_of_measurement"], target["entity_category"]) == ("%", "diagnostic")
    assert target["state_topic"] == before[f"givtcp_{snapshot.serial}_Target_SOC"]["state_topic"]
    mode = after[f"givtcp_{snapshot.serial}_Mode"]
    assert "options" not in mode and mode["platform"] == "sensor"
    # Plain sensors are untouched.
    assert after[f"givtcp_{snapshot.serial}_PV_Power"] == before[f"givtcp_{snapshot.serial}_PV_Power"]


def test_the_plant_summary_device() -> None:
    other = gen3()
    summary = summarise([Member(gen3(), True), Member(other, True)], PlantTopology())
    assert summary is not None
    config = BUILDER.plant(summary, {*summary.values, MESSAGES_PATH})
    assert config.topic == "homeassistant/device/givbridge_plant_GivEnergy/config"
    assert not problems(config.topic, dict(config.document)), problems(config.topic, dict(config.document))
    components = config.document["components"]
    assert set(components) == {f"givbridge_plant_GivEnergy_{p.rsplit('/', 1)[-1]}" for p in {*summary, MESSAGES_PATH}}
    soc = components["givbridge_plant_GivEnergy_SOC_kWh"]
    assert (soc["state_topic"], soc["device_class"], soc["unit_of_measurement"]) == (
        "GivEnergy/plant/Power/Power/SOC_kWh",
        "energy_storage",
        "kWh",
    )
    assert config.document["availability"] == [
        {"topic": "GivEnergy/bridge/state"},
        {"topic": "GivEnergy/plant/availability"},
    ]
    assert config.document["device"]["via_device"] == "givbridge_bridge_GivEnergy"
