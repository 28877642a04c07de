"""Home Assistant's MQTT discovery rules as a checker, and proof that the checker catches what it claims.

Other discovery tests (unit and integration) validate every payload with :func:`problems`.

The rules are those of /work/shared/reference/ecosystem.md section 1 (HA 2026): device-based
discovery needs ``device`` (with ``identifiers``), ``origin`` (with ``name``) and
``components``, each component a ``platform`` and, for entities, a ``unique_id``;
``default_entity_id`` instead of the removed ``object_id``; ``entity_category: config`` never
on a sensor; numbers with explicit ``min``/``max``/``step``; selects with options; the
Energy dashboard's device class, unit and state class pairs. :func:`problems` returns one
line per broken rule, so a failing test names every one of them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

ENTITY_PLATFORMS = {"sensor", "binary_sensor", "number", "select", "switch", "button", "time", "text"}
CONTROL_PLATFORMS = {"number", "select", "switch", "button", "time", "text"}
VALID_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")

# device_class -> (units HA accepts, state classes HA accepts; None = any)
SENSOR_CLASSES: dict[str, tuple[set[str | None], set[str | None] | None]] = {
    "energy": ({"Wh", "kWh", "MWh"}, {"total", "total_increasing"}),
    "energy_storage": ({"Wh", "kWh", "MWh"}, {"measurement", None}),
    "power": ({"W", "kW"}, {"measurement", None}),
    "battery": ({"%"}, {"measurement", None}),
    "temperature": ({"°C", "°F"}, {"measurement", None}),
    "voltage": ({"V", "mV"}, {"measurement", None}),
    "current": ({"A", "mA"}, {"measurement", None}),
    "frequency": ({"Hz", "kHz"}, {"measurement", None}),
    "duration": ({"s", "min", "h", "d"}, None),
    "power_factor": ({None, "%"}, {"measurement", None}),
    "timestamp": ({None}, {None}),
    "enum": ({None}, {None}),
}
# Money: an ISO 4217 code, or a price per kWh in one (HA allows only "total" as a state class).
MONETARY_UNIT = re.compile(r"^[A-Z]{3}(/kWh)?$")
MONETARY_STATE_CLASSES = {"total", None}


def problems(topic: str, document: Mapping[str, Any], *, legacy_object_id: bool = False) -> list[str]:
    """Every HA rule ``document`` (a discovery payload published on ``topic``) breaks.

    A device document goes to ``<prefix>/device/<object_id>/config``; an entity announced on
    its own (a time entity) to ``<prefix>/<platform>/givbridge/<object_id>/config``, joined to
    its device by the identifiers. ``legacy_object_id``: the document also carries
    ``object_id`` for HA before 2025.10 (``mqtt.legacy_object_id``).
    """
    parts = topic.split("/")
    if len(parts) == 5 and parts[2] == "givbridge":
        found = _entity_problems(parts, document)
    else:
        found = _device_problems(topic, document)
    if not legacy_object_id and "object_id" in repr(document):
        found = itertools.chain(found, ["object_id is gone from HA since 2026.4; use default_entity_id"])
    return [f"{topic}: {problem}" for problem in found]


def _entity_problems(parts: list[str], document: Mapping[str, Any]) -> Iterator[str]:
    if parts[4] != "config" or not TOPIC_LEVEL.match(parts[3]):
        yield "not <prefix>/<platform>/givbridge/<object_id>/config with a [A-Za-z0-9_-] object id"
    if "platform" in document or "components" in document:
        yield "an entity's own topic names its platform: no platform or components in the payload"
    device = document.get("device")
    identifiers = device.get("identifiers") if isinstance(device, dict) else None
    if not isinstance(identifiers, list) or not identifiers:
        yield "an entity joins its device by device.identifiers"
    availability = document.get("availability")
    if availability is not None:
        yield from _availability_problems(availability, document.get("availability_mode"))
    yield from _component_problems({**document, "platform": parts[1]})


def _device_problems(topic: str, document: Mapping[str, Any]) -> Iterator[str]:
    parts = topic.split("/")
    if len(parts) != 4 or parts[1] != "device" or parts[3] != "config" or not TOPIC_LEVEL.match(parts[2]):
        yield "not <prefix>/device/<object_id>/config with a [A-Za-z0-9_-] object id"
    device = document.get("device")
    if not isinstance(device, dict):
        yield "no device block"
    else:
        identifiers = device.get("identifiers")
        if not isinstance(identifiers, list) or not identifiers or not all(isinstance(i, str) for i in identifiers):
            yield "device.identifiers must be a non-empty list of strings"
        if not device.get("name"):
            yield "device has no name"
    origin = document.get("origin")
    if not isinstance(origin, dict) or not origin.get("name"):
        yield "origin with a name is required for device discovery"
    availability = document.get("availability")
    if availability is not None:
        yield from _availability_problems(availability, document.get("availability_mode"))
    components = document.get("components")
    if not isinstance(components, dict) or not components:
        yield "no components"
        return
    for key, component in components.items():
        for problem in _component_problems(component):
            yield f"{key}: {problem}"


def _availability_problems(availability: object, mode: object) -> Iterator[str]:
    if not isinstance(availability, list) or not all(isinstance(a, dict) and a.get("topic") for a in availability):
        yield "availability must be a list of {topic: ...}"
    elif len(availability) > 1 and mode != "all":
        yield "several availability topics need availability_mode: all"


def _component_problems(c: Mapping[str, Any]) -> Iterator[str]:
    platform = c.get("platform")
    if platform not in ENTITY_PLATFORMS:
        yield f"platform {platform!r} is not an entity platform givbridge uses"
        return
    unique_id = c.get("unique_id")
    if not isinstance(unique_id, str) or not unique_id:
        yield "an entity component needs a unique_id"
        return
    entity_id = c.get("default_entity_id")
    # GivTCP's unique id, lower case; a stack's or meter's names the inverter's serial too
    # (addresses.EntityAddress.object_id), so only the domain and the spelling are HA's rule.
    if not isinstance(entity_id, str) or not entity_id.startswith(f"{platform}."):
        yield f"default_entity_id {entity_id!r} is not in the {platform} domain"
    elif not VALID_ENTITY_ID.match(entity_id):
        yield f"default_entity_id {entity_id!r} is not a valid entity id"
    for key in ("state_topic", "command_topic"):
        if key in c and (not isinstance(c[key], str) or any(ch in c[key] for ch in "#+")):
            yield f"{key} must be a topic without wildcards"
    category = c.get("entity_category")
    if category not in (None, "config", "diagnostic"):
        yield f"entity_category {category!r}"
    if platform in ("sensor", "binary_sensor") and category == "config":
        yield "a sensor cannot be entity_category config (HA refuses to set it up)"
    if platform in CONTROL_PLATFORMS and "command_topic" not in c:
        yield "a control needs a command_topic"
    if platform not in CONTROL_PLATFORMS and "command_topic" in c:
        yield "a read-only entity has no command_topic"
    if platform != "button" and "state_topic" not in c:
        yield "no state_topic"
    if platform == "sensor":
        yield from _sensor_problems(c)
    elif platform == "number":
        bounds = [c.get(key) for key in ("min", "max", "step")]
        if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds):
            yield "a number needs numeric min, max and step (HA's 1..100 default blocks 0)"
        elif not bounds[0] < bounds[1] or bounds[2] < 0.001:
            yield f"min/max/step {bounds} make no sense"
        if c.get("mode") not in (None, "auto", "box", "slider"):
            yield f"mode {c.get('mode')!r}"
    elif platform == "select":
        options = c.get("options")
        if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
            yield "a select needs a list of string options"
        elif len(set(options)) != len(options):
            yield "select options repeat"
    elif platform == "switch":
        if not c.get("payload_on") or not c.get("payload_off"):
            yield "a switch needs payload_on and payload_off"
    elif platform == "button" and c.get("device_class") not in (None, "restart", "identify", "update"):
        yield f"button device_class {c.get('device_class')!r}"
    elif platform == "time" and "options" in c:
        yield "a time entity has no options"


def _sensor_problems(c: Mapping[str, Any]) -> Iterator[str]:
    device_class = c.get("device_class")
    unit = c.get("unit_of_measurement")
    state_class = c.get("state_class")
    if state_class not in (None, "measurement", "total", "total_increasing"):
        yield f"state_class {state_class!r}"
    if device_class is None:
        return
    if device_class == "monetary":
        if not isinstance(unit, str) or not MONETARY_UNIT.match(unit):
            yield f"a monetary sensor's unit is a currency code (or code/kWh), not {unit!r}"
        if state_class not in MONETARY_STATE_CLASSES:
            yield f"device_class monetary takes state_class total or none, not {state_class!r}"
        return
    if device_class not in SENSOR_CLASSES:
        yield f"sensor device_class {device_class!r} is not one givbridge should use"
        return
    units, state_classes = SENSOR_CLASSES[device_class]
    if unit not in units:
        yield f"device_class {device_class} takes unit {sorted(map(str, units))}, not {unit!r}"
    if state_classes is not None and state_class not in state_classes:
        yield f"device_class {device_class} takes state_class {sorted(map(str, state_classes))}, not {state_class!r}"
    if device_class == "enum" and not c.get("options"):
        yield "an enum sensor needs its options"


# --------------------------------------------------------------------------- the checker's own tests

TOPIC = "homeassistant/device/givbridge_SA1234G567/config"


def good_document() -> dict[str, Any]:
    return {
        "device": {"identifiers": ["givbridge_SA1234G567"], "name": "Hybrid Gen3 SA1234G567"},
        "origin": {"name": "givbridge"},
        "availability": [{"topic": "GivEnergy/bridge/state"}, {"topic": "GivEnergy/SA1234G567/availability"}],
        "availability_mode": "all",
        "components": {
            "givtcp_SA1234G567_PV_Energy_Today_kWh": {
                "platform": "sensor",
                "unique_id": "givtcp_SA1234G567_PV_Energy_Today_kWh",
                "default_entity_id": "sensor.givtcp_sa1234g567_pv_energy_today_kwh",
                "state_topic": "GivEnergy/SA1234G567/Energy/Today/PV_Energy_Today_kWh",
                "device_class": "energy",
                "state_class": "total_increasing",
                "unit_of_measurement": "kWh",
            },
            "givtcp_SA1234G567_Target_SOC": {
                "platform": "number",
                "unique_id": "givtcp_SA1234G567_Target_SOC",
                "default_entity_id": "number.givtcp_sa1234g567_target_soc",
                "state_topic": "GivEnergy/SA1234G567/Control/Target_SOC",
                "command_topic": "GivEnergy/control/SA1234G567/setChargeTarget",
                "entity_category": "config",
                "min": 4,
                "max": 100,
                "step": 1,
            },
        },
    }


def test_a_good_document_passes() -> None:
    assert problems(TOPIC, good_document()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("origin"), "origin"),
        (lambda d: d["device"].update(identifiers="givbridge_SA1234G567"), "identifiers"),
        (lambda d: d.update(availability_mode="latest"), "availability_mode"),
        (lambda d: _sensor(d).update(object_id="x"), "object_id"),
        (lambda d: _sensor(d).update(state_class="measurement"), "state_class"),
        (lambda d: _sensor(d).update(unit_of_measurement="Ah"), "unit"),
        (lambda d: _sensor(d).update(device_class="monetary", unit_of_measurement="currency"), "currency code"),
        (lambda d: _sensor(d).update(device_class="monetary", unit_of_measurement="EUR"), "monetary takes"),
        (lambda d: _sensor(d).update(entity_category="config"), "config"),
        (lambda d: _sensor(d).update(default_entity_id="sensor.GivTCP_x"), "default_entity_id"),
        (lambda d: _sensor(d).pop("unique_id"), "unique_id"),
        (lambda d: _number(d).pop("max"), "min, max and step"),
        (lambda d: _number(d).pop("command_topic"), "command_topic"),
        (lambda d: _number(d).update(platform="select"), "options"),
    ],
)
def test_the_checker_catches_each_rule(change: Any, expected: str) -> None:
    document = good_document()
    change(document)
    found = problems(TOPIC, document)
    assert any(expected in line for line in found), found


def _sensor(document: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["givtcp_SA1234G567_PV_Energy_Today_kWh"]  # type: ignore[no-any-return]


def _number(document: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["givtcp_SA1234G567_Target_SOC"]  # type: ignore[no-any-return]
