"""Discovery documents, built offline from register-level snapshots of each model.

Every payload is checked against Home Assistant's rules (``test_discovery_schema.problems``);
the ids, units, options and limits Predbat's GivTCP template reads are checked one by one.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from givbridge.commands.access import AccessPolicy, Kind, MqttAdmin, kind_of
from givbridge.commands.registry import REGISTRY
from givbridge.entities import LIMIT_NAMES, TIME_SLOT_OPTIONS, EntityCatalogue, load_catalogue
from givbridge.log import LOG_LEVELS
from givbridge.mqtt.discovery.addresses import address_of
from givbridge.mqtt.discovery.documents import DeviceConfig, DiscoveryBuilder, InverterDiscovery, document_text
from givbridge.mqtt.state import MESSAGES_PATH
from givbridge.mqtt.topics import DiscoveryTopics, Topics
from givbridge.plant import Snapshot, build_snapshot
from givbridge.plant.families import FAMILIES
from tests.unit.plant.registers import ac_one_pack, gen1_two_packs, gen3_ten_slots, plant_from
from tests.unit.test_discovery_schema import problems


def mqtt_policy(admin: MqttAdmin) -> AccessPolicy:
    """The access policy with ``mqtt.admin`` set so (and its token, for ``token``)."""
    return AccessPolicy(None, (), mqtt_admin=admin, mqtt_admin_token=SecretStr("admin-secret"))


#: mqtt.admin: on: Home Assistant is offered the admin controls too (by default they are left out).
ADMIN_ON = mqtt_policy("on")
#: The settings that leave the admin controls out: off (the default), and token (HA cannot send it).
ADMIN_CLOSED: tuple[MqttAdmin, ...] = ("off", "token")

FIXTURES = {"hybrid-gen1": gen1_two_packs, "hybrid-gen3": gen3_ten_slots, "ac": ac_one_pack}
TAKEN_AT = datetime(2026, 6, 5, 11, 20, tzinfo=UTC)
ZONE = ZoneInfo("Europe/London")

# The bridge-side values a runner adds to every snapshot (givbridge.devices.inverter.InverterRunner._build).
STATS: dict[str, Any] = {
    "Stats/Last_Updated_Time": TAKEN_AT.astimezone(ZONE),
    "Stats/status": "online",
    "Stats/Time_Since_Last_Update": 15.0,
    "Stats/GivTCP_Version": "3.5 (givbridge test)",
    "Stats/Write_Count": 0,
    "Stats/Safe_Write_Count": 0,
    "Stats/Poll_Failures": 0,
    "Stats/Reconnects": 0,
}


@pytest.fixture(scope="module")
def catalogue() -> EntityCatalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def snapshots() -> dict[str, Snapshot]:
    return {
        family: build_snapshot(plant_from(make()), family=FAMILIES[family], taken_at=TAKEN_AT, tz=ZONE, extras=STATS)
        for family, make in FIXTURES.items()
    }


def builder(catalogue: EntityCatalogue, **overrides: Any) -> DiscoveryBuilder:
    options: dict[str, Any] = {
        "topics": Topics("GivEnergy"),
        "discovery_topics": DiscoveryTopics("homeassistant"),
        "catalogue": catalogue,
        **overrides,
    }
    return DiscoveryBuilder(**options)


def discover(catalogue: EntityCatalogue, snapshot: Snapshot, prefix: str = "givtcp", **kw: Any) -> InverterDiscovery:
    return builder(catalogue, **kw).inverter(snapshot, prefix=prefix, paths={*snapshot.values, MESSAGES_PATH})


def entities(devices: tuple[DeviceConfig, ...]) -> dict[str, dict[str, Any]]:
    """default_entity_id -> component config, over every device."""
    found: dict[str, dict[str, Any]] = {}
    for component in components(devices).values():
        assert component["default_entity_id"] not in found, component["default_entity_id"]
        found[component["default_entity_id"]] = component
    return found


def components(devices: tuple[DeviceConfig, ...]) -> dict[str, dict[str, Any]]:
    """unique id -> component config, over every device document and every entity on its own topic."""
    found: dict[str, dict[str, Any]] = {}
    for device in devices:
        if device.platform is not None:  # one entity on its own topic: the topic names the platform
            found[device.document["unique_id"]] = {**device.document, "platform": device.platform}
        else:
            found.update(device.document["components"])
    return found


def roundtrip(device: DeviceConfig) -> dict[str, Any]:
    """What a subscriber parses from the payload."""
    parsed: dict[str, Any] = json.loads(device.text())
    return parsed


# --------------------------------------------------------------------------- HA's rules


@pytest.mark.parametrize("family", sorted(FIXTURES))
@pytest.mark.parametrize("slots", ["select", "time"])
def test_every_document_follows_home_assistants_rules(
    catalogue: EntityCatalogue, snapshots: dict[str, Snapshot], family: str, slots: str
) -> None:
    build = builder(catalogue, slot_entities=slots)
    discovery = build.inverter(snapshots[family], prefix="givtcp", paths=snapshots[family].values)
    found = [line for device in discovery.devices for line in problems(device.topic, roundtrip(device))]
    bridge = build.bridge()
    found += problems(bridge.topic, roundtrip(bridge))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("slots", ["select", "time"])
def test_every_definition_makes_a_valid_entity(
    catalogue: EntityCatalogue, snapshots: dict[str, Snapshot], slots: str
) -> None:
    """Every entry of every template file, published or not by the fixtures above."""
    snapshot = snapshots["hybrid-gen3"]
    paths = [f"Power/Power/{key}" for key in catalogue]
    limits = {
        "battery_max_power": 3600.0,
        "inverter_max_power": 5000.0,
        "battery_rate_step": 95.2,
        "battery_rate_min": 0.0,
        "battery_rate_max": 3600.0,
        "charger_min_current": 6.0,
        "charger_max_current": 32.0,
    }
    assert set(limits) == LIMIT_NAMES
    discovery = builder(catalogue, slot_entities=slots, policy=ADMIN_ON).inverter(
        snapshot, prefix="givtcp", paths=paths, limits=limits
    )
    assert discovery.unresolved == () and discovery.undefined == ()
    device, *alone = discovery.devices  # time entities are announced on topics of their own
    assert device.platform is None and all(config.platform == "time" for config in alone)
    assert bool(alone) == (slots == "time")
    found_components = components(discovery.devices)
    # A select that shows states it cannot set has a sensor with them (controls.STATE_SUFFIX).
    states = {f"{k}_State" for k, c in found_components.items() if c["platform"] == "select" and "value_template" in c}
    assert states <= set(found_components)
    assert len(found_components) - len(states) == len(catalogue)
    found = [line for config in discovery.devices for line in problems(config.topic, roundtrip(config))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("family", sorted(FIXTURES))
def test_every_published_leaf_is_discovered(
    catalogue: EntityCatalogue, snapshots: dict[str, Snapshot], family: str
) -> None:
    snapshot = snapshots[family]
    discovery = discover(catalogue, snapshot, policy=ADMIN_ON)  # nothing withheld
    assert discovery.undefined == () and discovery.unresolved == ()
    unique_ids = {key for device in discovery.devices for key in device.components}
    published = {address_of(path, snapshot.serial).unique_id("givtcp") for path in {*snapshot.values, MESSAGES_PATH}}
    # A select whose states include some it cannot set has a sensor showing them too.
    states = {f"{unique_id}_State" for unique_id in published if f"{unique_id}_State" in unique_ids}
    assert unique_ids == published | states


def test_a_leaf_without_definition_is_reported_not_published(
    catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]
) -> None:
    snapshot = snapshots["hybrid-gen3"]
    discovery = builder(catalogue).inverter(snapshot, prefix="givtcp", paths=[*snapshot.values, "Power/Power/Nonsense"])
    assert discovery.undefined == ("Nonsense",)
    assert not any("Nonsense" in key for device in discovery.devices for key in device.components)


def test_energy_dashboard_semantics(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    found = entities(discover(catalogue, snapshots["hybrid-gen3"]).devices)
    serial = snapshots["hybrid-gen3"].serial.lower()

    def sensor(name: str) -> tuple[Any, ...]:
        c = found[f"sensor.givtcp_{serial}_{name}"]
        return c["device_class"], c.get("state_class"), c["unit_of_measurement"]

    for name in ("import", "export", "pv", "load", "battery_charge", "battery_discharge", "ac_charge"):
        assert sensor(f"{name}_energy_today_kwh") == ("energy", "total_increasing", "kWh")
    for name in ("import", "export", "pv"):  # lifetime battery totals depend on the firmware
        assert sensor(f"{name}_energy_total_kwh") == ("energy", "total_increasing", "kWh")
    # Two always-positive sensors per direction, as the dashboard's "two sensors" power mode wants.
    for name in ("import_power", "export_power", "charge_power", "discharge_power", "pv_power", "load_power"):
        assert sensor(name) == ("power", "measurement", "W")
    assert sensor("soc") == ("battery", "measurement", "%")
    for key, component in found.items():
        if component.get("device_class") == "energy":
            assert component["state_class"] in ("total", "total_increasing"), key
            assert component["unit_of_measurement"] == "kWh", key


def test_categories_settings_config_identity_diagnostic(
    catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]
) -> None:
    snapshot = snapshots["hybrid-gen3"]
    found = entities(discover(catalogue, snapshot).devices)
    serial = snapshot.serial.lower()
    for platform, component in ((c["platform"], c) for c in found.values()):
        if platform in ("number", "select", "switch", "time"):
            assert component["entity_category"] == "config", component["unique_id"]
    for name in ("invertor_serial_number", "invertor_firmware", "write_count", "last_updated_time", "status"):
        assert found[f"sensor.givtcp_{serial}_{name}"]["entity_category"] == "diagnostic"
    pack = snapshot.info.battery_serials[0].lower()
    assert found[f"sensor.givtcp_{pack}_battery_firmware_version"]["entity_category"] == "diagnostic"
    assert found[f"sensor.givtcp_{pack}_battery_cycles"]["entity_category"] == "diagnostic"


# --------------------------------------------------------------------------- Predbat's entities


def predbat_entities(sn: str) -> dict[str, dict[str, Any]]:
    """What Predbat's GivTCP template (and its documented watchdog) reads: id -> expected attributes.

    Not the reboot button its commented ``auto_restart`` example may press: an admin control,
    offered only with ``mqtt.admin: on`` (``test_admin_controls_only_with_mqtt_admin_on``).
    """
    time_slot = {"options": list(TIME_SLOT_OPTIONS)}
    return {
        f"sensor.givtcp_{sn}_soc_kwh": {"unit_of_measurement": "kWh"},
        f"sensor.givtcp_{sn}_battery_capacity_kwh": {"unit_of_measurement": "kWh"},
        f"number.givtcp_{sn}_battery_charge_rate": {"unit_of_measurement": "W", "min": 0},
        f"number.givtcp_{sn}_battery_discharge_rate": {"unit_of_measurement": "W", "min": 0},
        f"number.givtcp_{sn}_battery_power_reserve": {"unit_of_measurement": "%", "max": 100},
        f"number.givtcp_{sn}_target_soc": {"unit_of_measurement": "%", "max": 100},
        f"number.givtcp_{sn}_discharge_target_soc_1": {"unit_of_measurement": "%"},
        f"switch.givtcp_{sn}_enable_charge_target": {"payload_on": "enable", "payload_off": "disable"},
        f"switch.givtcp_{sn}_enable_charge_schedule": {"payload_on": "enable", "payload_off": "disable"},
        f"switch.givtcp_{sn}_real_time_control": {"payload_on": "enable", "payload_off": "disable"},
        # Only the modes setBatteryMode takes; Unknown and Export (Paused) show on the Mode State sensor.
        f"select.givtcp_{sn}_mode": {"options": ["Eco", "Eco (Paused)", "Timed Demand", "Timed Export"]},
        f"sensor.givtcp_{sn}_mode_state": {"entity_category": "diagnostic"},
        f"select.givtcp_{sn}_battery_pause_mode": {
            "options": ["Disabled", "PauseCharge", "PauseDischarge", "PauseBoth"]
        },
        f"select.givtcp_{sn}_charge_start_time_slot_1": time_slot,
        f"select.givtcp_{sn}_charge_end_time_slot_1": time_slot,
        f"select.givtcp_{sn}_discharge_start_time_slot_1": time_slot,
        f"select.givtcp_{sn}_discharge_end_time_slot_1": time_slot,
        f"select.givtcp_{sn}_battery_pause_start_time_slot": time_slot,
        f"select.givtcp_{sn}_battery_pause_end_time_slot": time_slot,
        f"sensor.givtcp_{sn}_invertor_time": {"device_class": "timestamp"},
        f"sensor.givtcp_{sn}_battery_power": {"unit_of_measurement": "W"},
        f"sensor.givtcp_{sn}_pv_power": {"unit_of_measurement": "W"},
        f"sensor.givtcp_{sn}_load_power": {"unit_of_measurement": "W"},
        f"sensor.givtcp_{sn}_grid_power": {"unit_of_measurement": "W"},
        f"sensor.givtcp_{sn}_load_energy_today_kwh": {"unit_of_measurement": "kWh"},
        f"sensor.givtcp_{sn}_import_energy_today_kwh": {"unit_of_measurement": "kWh"},
        f"sensor.givtcp_{sn}_export_energy_today_kwh": {"unit_of_measurement": "kWh"},
        f"sensor.givtcp_{sn}_pv_energy_today_kwh": {"unit_of_measurement": "kWh"},
        # Predbat's docs suggest GivTCP's sensor.givtcp_battery_stack_1_bms_temperature, which
        # named no inverter; givbridge's names the serial (the user points Predbat at it).
        f"sensor.givtcp_{sn}_bms_temperature_battery_stack_1": {"unit_of_measurement": "°C"},
        f"sensor.givtcp_{sn}_last_updated_time": {"device_class": "timestamp"},
        f"sensor.givtcp_{sn}_status": {},
        f"sensor.givtcp_{sn}_invertor_temperature": {"unit_of_measurement": "°C"},
    }


def test_predbat_finds_every_entity_it_reads(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    snapshot = snapshots["hybrid-gen3"]
    found = entities(discover(catalogue, snapshot).devices)
    expected = predbat_entities(snapshot.serial.lower())
    missing = sorted(set(expected) - set(found))
    assert not missing, f"Predbat's entities not discovered: {missing}"
    for entity_id, attributes in expected.items():
        assert {key: found[entity_id].get(key) for key in attributes} == attributes, entity_id
    # Predbat's serial auto-detection regex, and the max attribute it reads as the battery rate.
    assert any(e.startswith("sensor.givtcp_") and e.endswith("_soc_kwh") for e in found)
    max_rate = snapshot[f"{snapshot.serial}/Invertor_Max_Bat_Rate"]
    assert max_rate == 3600
    for rate in ("battery_charge_rate", "battery_discharge_rate"):
        assert found[f"number.givtcp_{snapshot.serial.lower()}_{rate}"]["max"] == max_rate
    # Each pack's cell count, for Predbat's documented watchdog.
    for pack in snapshot.info.battery_serials:
        assert f"sensor.givtcp_{pack.lower()}_battery_cells" in found


def test_unique_ids_are_givtcps_strings(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    snapshot = snapshots["hybrid-gen3"]
    serial = snapshot.serial
    pack = snapshot.info.battery_serials[0]
    keys = {key for device in discover(catalogue, snapshot).devices for key in device.components}
    assert f"givtcp_{serial}_SOC_kWh" in keys
    assert f"givtcp_{serial}_Invertor_Time" in keys
    assert f"givtcp_{pack}_Battery_SOC" in keys
    assert "givtcp_Battery_Stack_1_BMS_Temperature" in keys
    assert f"givtcp_Meter_ID{snapshot.info.meter_ids[0]}_Import_Energy_kWh" in keys


def test_the_rate_limit_is_each_inverters_own(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    """The rating, unless the register cannot hold it: HR111/112 stop at 50 % of the capacity (C/2)."""
    for snapshot in snapshots.values():
        found = entities(discover(catalogue, snapshot).devices)
        rate = found[f"number.givtcp_{snapshot.serial.lower()}_battery_charge_rate"]
        capacity = snapshot[f"{snapshot.serial}/Battery_Nominal_Capacity_kWh"]
        assert isinstance(capacity, float)
        register_max = math.floor(capacity * 1000 / 2)
        assert rate["max"] == min(snapshot[f"{snapshot.serial}/Invertor_Max_Bat_Rate"], register_max)
        assert rate["step"] == round(capacity * 10, 3)  # one register step: 1 % of the capacity


def test_a_number_without_a_known_limit_is_left_out(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    snapshot = snapshots["hybrid-gen1"]
    discovery = builder(catalogue).inverter(
        snapshot, prefix="givtcp", paths=snapshot.values, limits={"battery_max_power": None}
    )
    assert "Battery_Charge_Rate" in discovery.unresolved
    assert f"givtcp_{snapshot.serial}_Battery_Charge_Rate" not in discovery.devices[0].components


def test_inverters_get_their_own_prefix(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    first, second = snapshots["hybrid-gen3"], snapshots["hybrid-gen1"]
    one = entities(discover(catalogue, first, "givtcp").devices)
    two = entities(discover(catalogue, second, "givtcp2").devices)
    assert not set(one) & set(two)
    # A stack's entity ids name the inverter's serial (GivTCP's named only Battery_Stack_1).
    assert f"sensor.givtcp_{first.serial.lower()}_bms_temperature_battery_stack_1" in one
    assert f"sensor.givtcp2_{second.serial.lower()}_bms_temperature_battery_stack_1" in two
    assert f"sensor.givtcp2_{second.serial.lower()}_soc_kwh" in two
    assert f"number.givtcp2_{second.serial.lower()}_battery_charge_rate" in two
    assert all(e.split(".", 1)[1].startswith("givtcp2_") for e in two)
    custom = entities(discover(catalogue, first, "house").devices)
    assert f"select.house_{first.serial.lower()}_mode" in custom


# --------------------------------------------------------------------------- devices


def test_device_layout(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    snapshot = snapshots["hybrid-gen3"]
    serial = snapshot.serial
    build = builder(catalogue)
    discovery = build.inverter(snapshot, prefix="givtcp", paths=snapshot.values, name="Garage")
    by_topic = {device.topic: device.document for device in discovery.devices}
    inverter = by_topic[f"homeassistant/device/givbridge_{serial}/config"]
    assert inverter["device"] == {
        "identifiers": [f"givbridge_{serial}", f"{serial}_{serial}"],
        "name": "Garage",
        "manufacturer": "GivEnergy",
        "model": "Hybrid Gen3",
        "serial_number": serial,
        "via_device": build.bridge_identifier,
        "sw_version": snapshot.info.firmware,
    }
    assert inverter["origin"]["name"] == "givbridge" and inverter["origin"]["sw_version"]
    assert inverter["origin"]["support_url"].startswith("https://")
    assert inverter["availability"] == [
        {"topic": "GivEnergy/bridge/state"},
        {"topic": f"GivEnergy/{serial}/availability"},
    ]
    assert inverter["availability_mode"] == "all"
    for pack in snapshot.info.battery_serials:
        battery = by_topic[f"homeassistant/device/givbridge_{pack}/config"]
        assert battery["device"]["via_device"] == f"givbridge_{serial}"
        assert battery["device"]["serial_number"] == pack
        assert battery["device"]["sw_version"]
        assert battery["availability"] == inverter["availability"]
        assert all(key.startswith(f"givtcp_{pack}_") for key in battery["components"])
    meter = by_topic[f"homeassistant/device/givbridge_{serial}_Meter_ID{snapshot.info.meter_ids[0]}/config"]
    assert meter["device"]["via_device"] == f"givbridge_{serial}"
    # Stack-level BMS readings stay with the inverter that measures them.
    assert "givtcp_Battery_Stack_1_BMS_Temperature" in inverter["components"]
    assert len(by_topic) == 1 + len(snapshot.info.battery_serials) + len(snapshot.info.meter_ids)
    # Packs and meters after their inverter, which they name as via_device.
    assert discovery.devices[0].topic.endswith(f"givbridge_{serial}/config")


def test_state_and_command_topics_are_givtcps(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    snapshot = snapshots["hybrid-gen3"]
    sn = snapshot.serial
    found = entities(discover(catalogue, snapshot, policy=ADMIN_ON).devices)
    target = found[f"number.givtcp_{sn.lower()}_target_soc"]
    assert target["state_topic"] == f"GivEnergy/{sn}/Control/Target_SOC"
    assert target["command_topic"] == f"GivEnergy/control/{sn}/setChargeTarget"
    pack = snapshot.info.battery_serials[0]
    assert (
        found[f"sensor.givtcp_{pack.lower()}_battery_soc"]["state_topic"]
        == f"GivEnergy/{sn}/Battery_Details/Battery_Stack_1/{pack}/Battery_SOC"
    )
    reboot = found[f"button.givtcp_{sn.lower()}_reboot_invertor"]
    assert "state_topic" not in reboot and reboot["command_topic"] == f"GivEnergy/control/{sn}/rebootInverter"
    # Plain GivTCP leaf topics: a template only where a select maps a state it cannot set to unknown.
    templated = {entity_id for entity_id, c in found.items() if "value_template" in c}
    # (The timed actions' selects, with their Running state, are the bridge's and not in this snapshot.)
    assert templated == {f"select.givtcp_{sn.lower()}_{leaf}" for leaf in ("mode", "battery_calibration")}


def test_time_entities_instead_of_selects(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    snapshot = snapshots["hybrid-gen3"]
    sn = snapshot.serial.lower()
    as_selects = entities(discover(catalogue, snapshot).devices)
    as_times = entities(discover(catalogue, snapshot, slot_entities="time").devices)
    assert len(as_selects) == len(as_times)
    start = as_times[f"time.givtcp_{sn}_charge_start_time_slot_1"]
    assert start["unique_id"] == f"givtcp_{snapshot.serial}_Charge_start_time_slot_1"
    assert start["command_topic"] == f"GivEnergy/control/{snapshot.serial}/setChargeStart1"
    assert "options" not in start
    assert f"time.givtcp_{sn}_battery_pause_end_time_slot" in as_times
    assert f"select.givtcp_{sn}_charge_start_time_slot_1" not in as_times
    assert f"select.givtcp_{sn}_mode" in as_times  # only time slots change platform


def admin_controls(catalogue: EntityCatalogue) -> set[str]:
    """The leaves of the controls whose command is an admin command (access.py's kind, nothing else)."""
    found = set()
    for key, definition in catalogue.definitions.items():
        command = REGISTRY.get(definition.command) if definition.command else None
        if command is not None and kind_of(command) is Kind.ADMIN:
            found.add(key)
    return found


@pytest.mark.parametrize("family", sorted(FIXTURES))
def test_admin_controls_only_with_mqtt_admin_on(
    catalogue: EntityCatalogue, snapshots: dict[str, Snapshot], family: str
) -> None:
    """HA sends without the admin token: a control that could only answer forbidden is not offered."""
    snapshot = snapshots[family]
    sn = snapshot.serial.lower()
    assert admin_controls(catalogue) == {"Reboot_Invertor"}
    reboot = f"button.givtcp_{sn}_reboot_invertor"
    withheld = {key for device in discover(catalogue, snapshot, policy=ADMIN_ON).devices for key in device.components}
    for admin in ADMIN_CLOSED:
        discovery = discover(catalogue, snapshot, policy=mqtt_policy(admin))
        keys = {key for device in discovery.devices for key in device.components}
        assert withheld - keys == {f"givtcp_{snapshot.serial}_Reboot_Invertor"}, admin
        assert reboot not in entities(discovery.devices)
        assert f"homeassistant/button/GivEnergy/{snapshot.serial}_Reboot_Invertor/config" not in discovery.legacy_topics
    assert discover(catalogue, snapshot) == discover(catalogue, snapshot, policy=AccessPolicy(None, ()))  # the default
    offered = entities(discover(catalogue, snapshot, policy=ADMIN_ON).devices)[reboot]
    assert offered["command_topic"] == f"GivEnergy/control/{snapshot.serial}/rebootInverter"
    assert offered["payload_press"] == "restart"  # not empty: an empty message runs nothing that writes
    # The clock button is a device write, open over MQTT: always offered.
    assert f"button.givtcp_{sn}_sync_time" in entities(discover(catalogue, snapshot).devices)


def test_bridge_device_without_admin_has_no_controls(catalogue: EntityCatalogue) -> None:
    for admin in ADMIN_CLOSED:
        bridge = builder(catalogue, topics=Topics("home/GivEnergy"), policy=mqtt_policy(admin)).bridge()
        components = bridge.document["components"]
        assert sorted(c["platform"] for c in components.values()) == ["binary_sensor", "sensor"], admin
        assert not [c for c in components.values() if "command_topic" in c]
        assert not problems(bridge.topic, roundtrip(bridge))
    assert builder(catalogue).bridge() == builder(catalogue, policy=AccessPolicy(None, ())).bridge()


def test_bridge_device(catalogue: EntityCatalogue) -> None:
    bridge = builder(catalogue, topics=Topics("home/GivEnergy"), policy=ADMIN_ON).bridge()
    assert bridge.topic == "homeassistant/device/givbridge_bridge_home_GivEnergy/config"
    components = {c["platform"]: c for c in bridge.document["components"].values()}
    state = components["binary_sensor"]
    assert (state["state_topic"], state["device_class"]) == ("home/GivEnergy/bridge/state", "connectivity")
    assert "availability" not in state  # it must show "disconnected", not "unavailable"
    assert components["button"]["command_topic"] == "home/GivEnergy/bridge/request/restart"
    log_level = components["select"]
    assert log_level["command_topic"] == "home/GivEnergy/bridge/request/log_level"
    assert log_level["options"] == list(LOG_LEVELS) == ["debug", "info", "warning", "error"]
    assert log_level["state_topic"] == "home/GivEnergy/bridge/info"
    assert components["sensor"]["value_template"] == "{{ value_json.version }}"


# --------------------------------------------------------------------------- GivTCP's old topics


def test_givtcp_topic_of_each_kind_of_entity(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    snapshot = snapshots["hybrid-gen3"]
    sn = snapshot.serial
    pack = snapshot.info.battery_serials[0]
    meter = snapshot.info.meter_ids[0]
    legacy = discover(catalogue, snapshot, slot_entities="time", policy=ADMIN_ON).legacy_topics
    expected = {
        f"homeassistant/sensor/GivEnergy/{sn}_PV_Power/config",
        f"homeassistant/number/GivEnergy/{sn}_Target_SOC/config",
        f"homeassistant/select/GivEnergy/{sn}_Charge_start_time_slot_1/config",  # GivTCP's platform
        f"homeassistant/button/GivEnergy/{sn}_Reboot_Invertor/config",
        f"homeassistant/sensor/GivEnergy/{sn}_{pack}_Battery_SOC/config",
        f"homeassistant/sensor/GivEnergy/{sn}_Battery_Stack_1_BMS_Temperature/config",
        f"homeassistant/sensor/GivEnergy/{sn}_Meter_ID{meter}_Import_Energy_kWh/config",
    }
    assert expected <= legacy
    discovery_topics = DiscoveryTopics("homeassistant")
    assert all(discovery_topics.givtcp_object_id(topic) for topic in legacy)
    assert discovery_topics.givtcp_object_id(f"homeassistant/device/givbridge_{sn}/config") is None


@pytest.mark.parametrize(
    ("path", "scope", "holder"),
    [
        ("Power/Power/SOC", "inverter", "SA1234G567"),
        ("SA1234G567/Invertor_Time", "inverter", "SA1234G567"),
        ("Battery_Details/Battery_Stack_1/BG1234G001/Battery_SOC", "battery", "BG1234G001"),
        ("Battery_Details/Battery_Stack_1/BMS_Temperature", "inverter", "Battery_Stack_1"),
        ("Meter_Details/Meter_ID2/Frequency", "meter", "Meter_ID2"),
    ],
)
def test_address_of(path: str, scope: str, holder: str) -> None:
    where = address_of(path, "SA1234G567")
    assert (where.scope, where.holder, where.leaf) == (scope, holder, path.rsplit("/", 1)[-1])


def test_removal_marks_components_by_platform(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    device = discover(catalogue, snapshots["ac"]).devices[0]
    key = next(iter(device.components))
    document = json.loads(device.text(removed={key: "select", "gone_entity": "sensor"}))
    assert document["components"][key] == {"platform": "select"}
    assert document["components"]["gone_entity"] == {"platform": "sensor"}
    assert len(document["components"]) == len(device.components) + 1


def test_legacy_object_id_gives_older_home_assistant_givtcps_ids(
    catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]
) -> None:
    """mqtt.legacy_object_id: HA before 2025.10 reads object_id (no domain), not default_entity_id."""
    snapshot = snapshots["hybrid-gen3"]
    build = builder(catalogue, legacy_object_id=True, slot_entities="time")
    discovery = build.inverter(snapshot, prefix="givtcp", paths={*snapshot.values, MESSAGES_PATH})
    found = components(discovery.devices)
    bridge = build.bridge()
    found.update(bridge.document["components"])
    for key, component in found.items():
        assert component["object_id"] == component["default_entity_id"].split(".", 1)[1], key
    sn = snapshot.serial.lower()
    assert found[f"givtcp_{snapshot.serial}_SOC_kWh"]["object_id"] == f"givtcp_{sn}_soc_kwh"
    stack = found["givtcp_Battery_Stack_1_BMS_Temperature"]
    assert stack["object_id"] == f"givtcp_{sn}_bms_temperature_battery_stack_1"
    checked = [*discovery.devices, bridge]
    assert not [p for c in checked for p in problems(c.topic, roundtrip(c), legacy_object_id=True)]
    # Without the setting no object_id is sent: HA 2025.10 warns about it and 2026.4 dropped it.
    plain = components(discover(catalogue, snapshot).devices)
    assert not [key for key, component in plain.items() if "object_id" in component]


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=8,
)
_KEYS = st.text() | st.integers()  # json.dumps turns an int key into a string


@given(st.dictionaries(_KEYS, _JSON | st.dictionaries(_KEYS, _JSON, max_size=5), max_size=5))
def test_a_document_is_encoded_as_json_dumps_encodes_it(document: dict[Any, Any]) -> None:
    # Discovery encodes a document an entry at a time (a whole inverter's at once peaked at five
    # times its size); the text must be json.dumps's, byte for byte.
    assert document_text(document) == json.dumps(document, separators=(",", ":"), ensure_ascii=False)
