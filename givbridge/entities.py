"""Entity definitions: how each published value looks to Home Assistant and to validation.

One :class:`EntityDefinition` per GivTCP leaf name (``PV_Power``, ``Target_SOC``,
``Battery_Cell_3_Voltage``): GivTCP keys its entity table by leaf, and the leaf is what
ends up in entity ids (``sensor.givtcp_<serial>_pv_power``), so the same leaf means the
same entity wherever it sits in the topic tree. A definition drives MQTT discovery (platform,
classes, unit, category, command, options), the hygiene layer (bounds, counter kind,
deadband) and the documentation.

Definitions are data: YAML files in the ``givbridge.discovery_templates`` package (the
top-level ``discovery_templates/`` directory). :func:`load_catalogue` reads and validates all
of them once (the bridge device's own entities, which are not published values, are in its
``bridge/`` folder: :func:`load_bridge_catalogue`). A definition Home Assistant would reject,
or one that contradicts its own semantics (an energy sensor in Ah, a settings sensor, a
control without a command), fails loading with a message naming the file, the key and the
rule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from givbridge.log import LOG_LEVELS

TEMPLATES_PACKAGE = "givbridge.discovery_templates"
BRIDGE_TEMPLATES = "bridge"  # the folder of the bridge device's entities, in TEMPLATES_PACKAGE

Platform = Literal["sensor", "binary_sensor", "number", "select", "switch", "button", "time", "text"]
StateClass = Literal["measurement", "total", "total_increasing"]
EntityCategory = Literal["config", "diagnostic"]
CounterKind = Literal["today", "total"]
NumberMode = Literal["auto", "box", "slider"]

SENSOR_PLATFORMS = frozenset({"sensor", "binary_sensor"})

# Symbolic limits resolved per device at run time (see resolve_limit); a leading "-" negates.
# (givbridge.mqtt.discovery.addresses.resolved_limits says where each comes from.)
LIMIT_NAMES = frozenset(
    {
        "battery_max_power",
        "inverter_max_power",
        "battery_rate_step",
        "battery_rate_min",
        "battery_rate_max",
        "charger_min_current",
        "charger_max_current",
    }
)
_SYMBOLIC_LIMIT = re.compile(r"^-?(?P<name>[a-z_]+)$")

# The options of a time-slot select: every minute of the day as GivTCP spells it (HH:MM:SS).
TIME_SLOTS_SYMBOL = "time_slots"
TIME_SLOT_OPTIONS: tuple[str, ...] = tuple(f"{h:02d}:{m:02d}:00" for h in range(24) for m in range(60))
# The options of the bridge's log-level select: the levels the settings accept.
LOG_LEVELS_SYMBOL = "log_levels"
SYMBOLIC_OPTIONS: dict[str, tuple[str, ...]] = {TIME_SLOTS_SYMBOL: TIME_SLOT_OPTIONS, LOG_LEVELS_SYMBOL: LOG_LEVELS}

# Money is in the configured currency, unknown until the settings are read: a definition says
# "currency" (or "currency/kWh" for a price) and discovery puts the ISO code in (see unit_for).
CURRENCY_UNIT = "currency"
CURRENCY_UNITS = frozenset({CURRENCY_UNIT, f"{CURRENCY_UNIT}/kWh"})

# Units Home Assistant accepts per device class (None = unitless). A device class missing here
# is not one givbridge uses, so it is rejected as a probable typo.
_SENSOR_UNITS: dict[str, frozenset[str | None]] = {
    "monetary": frozenset(CURRENCY_UNITS),
    "energy": frozenset({"Wh", "kWh", "MWh"}),
    "energy_storage": frozenset({"Wh", "kWh", "MWh"}),
    "power": frozenset({"W", "kW"}),
    "battery": frozenset({"%"}),
    "temperature": frozenset({"°C", "°F"}),
    "voltage": frozenset({"V", "mV"}),
    "current": frozenset({"A", "mA"}),
    "frequency": frozenset({"Hz", "kHz"}),
    "duration": frozenset({"s", "min", "h", "d"}),
    "power_factor": frozenset({None, "%"}),
    "timestamp": frozenset({None}),
    "enum": frozenset({None}),
}
# State classes Home Assistant allows per sensor device class; absent = any.
_SENSOR_STATE_CLASSES: dict[str, frozenset[str | None]] = {
    "monetary": frozenset({"total", None}),
    "energy": frozenset({"total", "total_increasing"}),
    "energy_storage": frozenset({"measurement", None}),
    "timestamp": frozenset({None}),
    "enum": frozenset({None}),
}
_NUMBER_UNITS: dict[str, frozenset[str | None]] = {
    "battery": frozenset({"%"}),
    "power": frozenset({"W", "kW"}),
    "energy": frozenset({"Wh", "kWh"}),
    "duration": frozenset({"s", "min", "h"}),
}
_OTHER_DEVICE_CLASSES: dict[str, frozenset[str]] = {
    "binary_sensor": frozenset({"problem", "running", "plug", "connectivity", "battery_charging"}),
    "switch": frozenset({"switch", "outlet"}),
    "button": frozenset({"restart", "identify", "update"}),
}


# Measurement noise a consumer does not need to see every poll: a reading that moved less
# than this since it was last published waits for the next real change or the full refresh.
# Counters, percentages and settings have no deadband: every change of those is news.
_DEFAULT_DEADBANDS: dict[str, float] = {
    "power": 20.0,  # W
    "voltage": 0.5,  # V (cell voltages override this with their own)
    "current": 0.1,  # A
    "frequency": 0.02,  # Hz
    "temperature": 0.3,  # °C
    "duration": 1.0,  # s
}


def unit_for(unit: str | None, currency: str) -> str | None:
    """A definition's unit as Home Assistant is told it: ``currency`` becomes e.g. ``GBP``."""
    if unit in CURRENCY_UNITS:
        return unit.replace(CURRENCY_UNIT, currency)
    return unit


class EntityDefinitionError(ValueError):
    """The entity definitions cannot be used; ``str()`` lists every problem for a person."""


def _limit(value: object) -> object:
    """Accept a number or a symbolic limit name (optionally negated)."""
    if isinstance(value, str):
        match = _SYMBOLIC_LIMIT.match(value)
        if match is None or match["name"] not in LIMIT_NAMES:
            raise ValueError(
                f"{value!r} is neither a number nor one of {sorted(LIMIT_NAMES)} (optionally '-'-prefixed)"
            )
    return value


Limit = int | float | str


def resolve_limit(limit: Limit | None, limits: Mapping[str, float | None]) -> float | None:
    """A bound as a number for one device; None when it is symbolic and the device's figure is unknown."""
    if limit is None or isinstance(limit, int | float):
        return limit
    negate = limit.startswith("-")
    value = limits.get(limit.lstrip("-"))
    if value is None:
        return None
    return -value if negate else value


class _Strict(BaseModel):
    # A misspelt field in a YAML definition is a mistake to report, not to ignore.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bounds(_Strict):
    """Plausible range of a value; the hygiene layer drops readings outside it."""

    min: Limit | None = None
    max: Limit | None = None

    _check_min = field_validator("min", mode="before")(_limit)
    _check_max = field_validator("max", mode="before")(_limit)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if isinstance(self.min, int | float) and isinstance(self.max, int | float) and self.min > self.max:
            raise ValueError(f"bounds min {self.min} is above max {self.max}")
        return self


class EntityDefinition(_Strict):
    """One GivTCP leaf as a Home Assistant entity. Field meanings are in the YAML file headers."""

    key: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    name: str
    platform: Platform
    device_class: str | None = None
    state_class: StateClass | None = None
    unit: str | None = None
    precision: int | None = Field(None, ge=0, le=6)
    entity_category: EntityCategory | None = None
    icon: str | None = Field(None, pattern=r"^mdi:[a-z0-9-]+$")
    bounds: Bounds | None = None
    counter: CounterKind | None = None
    hold_decreases: bool = False
    deadband: float | None = Field(None, gt=0)
    # Controls
    command: str | None = Field(None, pattern=r"^[a-z][A-Za-z0-9]*$")
    min: Limit | None = None
    max: Limit | None = None
    step: Limit | None = None
    mode: NumberMode | None = None
    options: tuple[str, ...] | Literal["time_slots", "log_levels"] | None = None
    state_on: str | None = None
    state_off: str | None = None
    payload_press: str | None = None
    # The key of the JSON document on the state topic that holds the value (bridge entities)
    json_key: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")

    _check_min = field_validator("min", mode="before")(_limit)
    _check_max = field_validator("max", mode="before")(_limit)
    _check_step = field_validator("step", mode="before")(_limit)

    @field_validator("options", mode="before")
    @classmethod
    def _options_are_words(cls, value: object) -> object:
        # Checked before pydantic's union matching so a YAML boolean gets one clear message.
        if isinstance(value, str) and value not in SYMBOLIC_OPTIONS:
            raise ValueError(f"options must be a list of strings or one of {sorted(SYMBOLIC_OPTIONS)}, not {value!r}")
        if isinstance(value, list | tuple):
            for item in value:
                if not isinstance(item, str):
                    raise ValueError(
                        f"option {item!r} is not a string (quote Off/On/Yes/No: YAML reads them as booleans)"
                    )
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        # GivTCP names an entity after its leaf with spaces ("PV Power"); keep that unless
        # the definition says otherwise, so friendly names match what users already have.
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("key"), str):
            return {**data, "name": data["key"].replace("_", " ")}
        return data

    @model_validator(mode="after")
    def _semantics(self) -> EntityDefinition:
        problems = [*self._platform_problems(), *self._class_problems(), *self._counter_problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def publish_deadband(self) -> float:
        """Smallest change worth publishing on its own: the definition's, else its class default."""
        if self.deadband is not None:
            return self.deadband
        return _DEFAULT_DEADBANDS.get(self.device_class or "", 0.0)

    def option_values(self) -> tuple[str, ...] | None:
        """The select options (or enum sensor states) with a symbolic list (``time_slots``) expanded."""
        if isinstance(self.options, str):
            return SYMBOLIC_OPTIONS[self.options]
        return self.options

    # --- rules ------------------------------------------------------------------------------

    def _platform_problems(self) -> Iterator[str]:
        control_fields = {
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "mode": self.mode,
            "state_on": self.state_on,
            "state_off": self.state_off,
            "payload_press": self.payload_press,
        }
        if self.platform in SENSOR_PLATFORMS:
            if self.entity_category == "config":
                yield f"a {self.platform} cannot have entity_category 'config' (Home Assistant rejects it)"
            if self.command is not None:
                yield f"a {self.platform} is read-only and cannot have a command"
            used = sorted(k for k, v in control_fields.items() if v is not None)
            if used:
                yield f"control fields {used} are meaningless on a {self.platform}"
            if self.options is not None and self.device_class != "enum":
                yield "only an enum sensor (device_class: enum) lists options"
            return
        if self.command is None:
            yield f"a {self.platform} is a control and needs a command (the GivTCP MQTT command name)"
        if self.state_class is not None or self.counter is not None:
            yield "state_class and counter belong to sensors"
        expected = {
            "number": {"min", "max", "step", "mode"},
            "switch": {"state_on", "state_off"},
            "button": {"payload_press"},
        }.get(self.platform, set())
        stray = sorted(k for k, v in control_fields.items() if v is not None and k not in expected)
        if stray:
            yield f"{stray} do not apply to a {self.platform}"
        if self.platform == "number" and self.step is None:
            yield "a number needs a step"
        if isinstance(self.step, int | float) and self.step <= 0:
            yield "a number's step must be above 0"
        if self.platform == "select" and not self.options:
            yield f"a select needs options (a list, or one of {sorted(SYMBOLIC_OPTIONS)})"
        if self.platform == "button" and self.json_key is not None:
            yield "a button has no state to read a json_key from"
        if self.platform != "select" and self.options is not None:
            yield f"options do not apply to a {self.platform}"
        if self.platform == "switch" and (self.state_on is None or self.state_off is None):
            yield "a switch needs state_on and state_off (GivTCP publishes enable/disable)"

    def _class_problems(self) -> Iterator[str]:
        dc, unit = self.device_class, self.unit
        if self.key.endswith("_kWh") and unit != "kWh":
            yield f"{self.key} is a kWh value by name; unit must be kWh, not {unit!r}"
        if self.platform == "sensor":
            if dc is not None:
                allowed_units = _SENSOR_UNITS.get(dc)
                if allowed_units is None:
                    yield f"sensor device_class {dc!r} is not one givbridge knows ({sorted(_SENSOR_UNITS)})"
                elif unit not in allowed_units:
                    yield f"device_class {dc} takes unit {sorted(map(str, allowed_units))}, not {unit!r}"
                allowed_states = _SENSOR_STATE_CLASSES.get(dc)
                if allowed_states is not None and self.state_class not in allowed_states:
                    choices = sorted(map(str, allowed_states))
                    yield f"device_class {dc} takes state_class {choices}, not {self.state_class!r}"
                if dc == "power" and self.state_class not in (None, "measurement"):
                    yield "a power sensor is a measurement, not a counter"
                if dc == "enum" and not self.options:
                    yield "an enum sensor needs its options"
        elif self.platform == "number":
            if dc is not None:
                allowed_units = _NUMBER_UNITS.get(dc)
                if allowed_units is None:
                    yield f"number device_class {dc!r} is not one givbridge knows ({sorted(_NUMBER_UNITS)})"
                elif unit not in allowed_units:
                    yield f"device_class {dc} takes unit {sorted(map(str, allowed_units))}, not {unit!r}"
        elif dc is not None and dc not in _OTHER_DEVICE_CLASSES.get(self.platform, frozenset()):
            yield f"device_class {dc!r} is not valid on a {self.platform}"
        if self.precision is not None and self.platform not in ("sensor", "number"):
            yield "precision (suggested_display_precision) applies to sensors and numbers"

    def _counter_problems(self) -> Iterator[str]:
        # total_increasing is exactly the set the hygiene layer must guard against decreases,
        # so the two fields have to agree.
        if (self.counter is not None) != (self.state_class == "total_increasing"):
            yield "counter (today/total) and state_class total_increasing go together"
        if self.counter == "today" and "Today" not in self.key:
            yield "a 'today' counter is named ..._Today_... in GivTCP"
        if self.hold_decreases and self.counter is None:
            yield "hold_decreases applies to counters only"
        if self.deadband is not None and self.unit is None and self.device_class is None:
            yield "a deadband needs a numeric value (a unit or device_class)"


@dataclass(frozen=True, slots=True)
class EntityCatalogue:
    """Every entity definition, keyed by leaf name, and the file each came from."""

    definitions: Mapping[str, EntityDefinition]
    sources: Mapping[str, str]

    def __getitem__(self, key: str) -> EntityDefinition:
        return self.definitions[key]

    def __contains__(self, key: object) -> bool:
        return key in self.definitions

    def __iter__(self) -> Iterator[str]:
        return iter(self.definitions)

    def __len__(self) -> int:
        return len(self.definitions)

    def get(self, key: str) -> EntityDefinition | None:
        return self.definitions.get(key)

    def for_path(self, path: str) -> EntityDefinition | None:
        """The definition of a snapshot path (``Power/Power/SOC`` -> ``SOC``)."""
        return self.definitions.get(path.rsplit("/", 1)[-1])


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *anchor" keys may legitimately be overridden
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_catalogue(documents: Mapping[str, str]) -> EntityCatalogue:
    """Validate YAML documents (file name -> text) into a catalogue, reporting every problem at once.

    Each document is a mapping of leaf name -> definition. Top-level keys starting with
    ``x-`` hold YAML anchors shared by definitions and are not entities themselves.
    """
    definitions: dict[str, EntityDefinition] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for filename in sorted(documents):
        try:
            document = yaml.load(documents[filename], Loader=_UniqueKeyLoader)
        except yaml.YAMLError as exc:
            problems.append(f"{filename}: not valid YAML: {exc}")
            continue
        if document is None:
            continue
        if not isinstance(document, dict):
            problems.append(f"{filename}: expected a mapping of entity name -> definition")
            continue
        for key, body in document.items():
            if isinstance(key, str) and key.startswith("x-"):
                continue
            where = f"{filename}: {key}"
            if not isinstance(key, str) or not isinstance(body, dict):
                problems.append(f"{where}: expected '<Leaf_Name>: {{platform: ..., ...}}'")
                continue
            if key in sources:
                problems.append(f"{where}: already defined in {sources[key]}")
                continue
            try:
                definitions[key] = EntityDefinition.model_validate({"key": key, **body})
            except ValidationError as exc:
                problems.extend(f"{where}: {_describe(error)}" for error in exc.errors())
                continue
            sources[key] = filename
    if problems:
        raise EntityDefinitionError("invalid entity definitions:\n  " + "\n  ".join(problems))
    return EntityCatalogue(definitions=definitions, sources=sources)


def _describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


@functools.cache
def load_catalogue() -> EntityCatalogue:
    """The packaged definitions of published values, read and validated once per process."""
    return _load_folder(resources.files(TEMPLATES_PACKAGE))


@functools.cache
def load_bridge_catalogue() -> EntityCatalogue:
    """The bridge device's entities (its state, version and controls), keyed by unique id suffix."""
    return _load_folder(resources.files(TEMPLATES_PACKAGE) / BRIDGE_TEMPLATES)


def _load_folder(folder: Traversable) -> EntityCatalogue:
    documents = {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith((".yaml", ".yml"))
    }
    if not documents:
        raise EntityDefinitionError(f"no entity definition files found in {folder}")
    return parse_catalogue(documents)
