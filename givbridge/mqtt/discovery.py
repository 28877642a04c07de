"""Home Assistant MQTT discovery: device-based, with GivTCP's entity ids, kept tidy.

What Home Assistant is told
---------------------------
One retained *device discovery* document per HA device at
``<discovery_prefix>/device/<object_id>/config`` (HA 2024.12+), each with ``origin``, a
``device`` block (``identifiers`` as a list) and its entities under ``components``:

========================  =================================  ===========================================
HA device                 object id                          entities
========================  =================================  ===========================================
the bridge                ``givbridge_bridge_<root>``        bridge state (connectivity), version,
                                                             restart button, log-level select
each inverter             ``givbridge_<serial>``             every inverter-level value, including the
                                                             stack-level BMS readings
                                                             (``Battery_Details/Battery_Stack_1/BMS_*``)
each battery pack         ``givbridge_<pack serial>``        the pack's values; ``via_device`` inverter
each meter                ``givbridge_<serial>_Meter_ID<n>`` the meter's values; ``via_device`` inverter
the EV charger            ``givbridge_<charger serial>``     its ``Charger/*`` values and modes (GivTCP's
                                                             "GivEVC" device; model "EV charger")
the plant (2+ inverters)  ``givbridge_plant_<root>``         the plant summary's totals (read-only,
                                                             see ``givbridge/plant/summary.py``)
========================  =================================  ===========================================

An inverter controlled by a Gateway or EMS that the bridge also polls (see
``givbridge/plant/topology.py``) has its controls published read-only: each number, select,
switch and time entity becomes a diagnostic sensor with the same unique id (its entity id
changes domain, e.g. ``sensor.givtcp_<serial>_target_soc``), its buttons are left out, and its
device hangs off the controller's (``via_device``). Changing those settings is the
controller's job; the command topics answer ``unsupported`` naming it.

The stack-level BMS values get no device of their own (GivTCP made a "Battery Stack 1"
device for two sensors): the inverter measures them, so they sit with the inverter, and
they keep GivTCP's ids.

Entity ids are GivTCP's, so Predbat's GivTCP template and users' dashboards keep working:
``unique_id`` is GivTCP's string exactly (``<prefix>_<serial>_<Leaf>``, per pack
``<prefix>_<pack serial>_<Leaf>``, stack-level ``<prefix>_Battery_Stack_1_<Leaf>``, per meter
``<prefix>_Meter_ID<n>_<Leaf>``) and ``default_entity_id`` is ``<platform>.<unique_id>`` in
lower case, as HA would spell it (never the removed ``object_id``). State topics are the
GivTCP leaf topics (no templates); command topics are ``<root>/control/<serial>/<command>``.
Every device's entities share ``availability`` = bridge state and the inverter's own
availability, with ``availability_mode: all``.

Only values a device actually publishes are discovered. A value can be missing from one
poll (an undecodable register, a completion time while idle), and removing an HA entity
deletes the user's customisations, so the discovered set is the *union* of the paths a
device has published since its model last changed; it is kept in the data directory, so a
restart does not shrink it either.

Lifecycle
---------
* Published retained (QoS 1) on every broker connection, after each device's first
  snapshot, and whenever a device's layout or identity changes (a new value or battery, a
  firmware update, a different battery power limit). Unchanged documents are not resent.
* Re-published after HA's birth message (``<discovery_prefix>/status`` = ``online``, not
  retained) after a random 1-5 s delay, followed by a full state republish.
* What was published is recorded in the JSON document ``discovery`` in the data directory.
  An entity that is no longer produced (model changed, prefix changed, platform changed)
  is removed the way HA documents it: the device document is sent once with that component
  reduced to ``{"platform": ...}``, then without it. A device that is gone (battery
  removed) gets an empty retained payload, as does every device of an inverter that is no
  longer configured, once every configured inverter has been identified (an inverter that
  is merely unreachable keeps its entities).
* ``mqtt.discovery: false`` publishes and subscribes to nothing here.

Bridge requests (the bridge device's controls; handled elsewhere)
-----------------------------------------------------------------
* ``<root>/bridge/request/restart``, payload ``restart``: the restart button.
* ``<root>/bridge/request/log_level``, payload one of ``debug``, ``info``, ``warning``,
  ``error``: the log-level select. Its state is the ``log_level`` key of the retained JSON
  at ``<root>/bridge/info``; the handler republishes ``bridge/info`` after a change.

Migrating from GivTCP (``mqtt.migrate_givtcp_discovery: true``)
---------------------------------------------------------------
GivTCP published one retained config per entity at
``<discovery_prefix>/<platform>/GivEnergy/<serial>_<name>/config``, with the same
``unique_id`` values. HA refuses a second entity with a unique id that is already loaded,
so givbridge follows HA's migration procedure before an inverter's first discovery:
``{"migrate_discovery": true}`` to each old topic (HA unloads the entity but keeps its
registry entry: entity id, name, area, history), then the device documents (HA attaches
the same unique ids to the existing entries), then empty retained payloads to the old
topics. The old topics are those GivTCP used for the entities givbridge publishes (once
per inverter, remembered in the data directory) plus any old retained config for one of
our inverters seen on the broker (``<discovery_prefix>/+/GivEnergy/+/config``), which also
retires GivTCP entities givbridge has no counterpart for: they stay in HA's registry as
orphans the user can delete, rather than ghosts fed by stale retained state. Retained old
configs that show up later (GivTCP started again by mistake) are migrated and cleared too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from givbridge import __version__
from givbridge.clock import Clock, SystemClock
from givbridge.config import EvcSettings, InverterSettings, LogSettings, MqttSettings
from givbridge.entities import TIME_SLOTS_SYMBOL, EntityCatalogue, EntityDefinition, resolve_limit, unit_for
from givbridge.evc.registers import CHARGER_FAMILY
from givbridge.log import get_logger
from givbridge.mqtt.client import Message, MqttClient
from givbridge.mqtt.state import MESSAGES_PATH
from givbridge.mqtt.topics import OFFLINE, ONLINE, DiscoveryTopics, Topics
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.summary import PLANT_ID
from givbridge.plant.topology import PlantTopology
from givbridge.store import JsonStore

log = get_logger(__name__)

ORIGIN_NAME = "givbridge"
# Where HA's "discovered from" log line and the device page point users for help.
SUPPORT_URL = "https://github.com/givbridge/givbridge"
MANUFACTURER = "GivEnergy"

STORE_DOCUMENT = "discovery"
BRIDGE_OWNER = "bridge"  # owner of the bridge device's topic in the store; inverters are owned by serial
PLANT_OWNER = PLANT_ID  # owner of the plant summary device's topic (and its learned paths)
DISCOVERY_QOS = 1  # discovery must not be lost silently; states use mqtt.qos

BIRTH_DELAY = (1.0, 5.0)  # seconds: HA's advice, so many bridges do not answer a restart at once
MIGRATION_SETTLE = 2.0  # seconds for HA to act on one migration step before the next
LEGACY_BATCH_WINDOW = 1.0  # seconds to gather retained GivTCP configs into one migration batch

MIGRATE_PAYLOAD = json.dumps({"migrate_discovery": True})

RESTART_PAYLOAD = "restart"
LOG_LEVELS: tuple[str, ...] = typing.get_args(LogSettings.model_fields["level"].annotation)

LIMIT_SOURCES = {  # symbolic limit -> the inverter-info leaf that resolves it
    "battery_max_power": "Invertor_Max_Bat_Rate",
    "inverter_max_power": "Invertor_Max_Inv_Rate",
}

Scope = Literal["inverter", "battery", "meter"]
Limits = Mapping[str, float | None]

_OBJECT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def object_id_safe(text: str) -> str:
    """``text`` with every character HA refuses in a discovery topic level replaced by ``_``."""
    return _OBJECT_ID_UNSAFE.sub("_", text)


# --------------------------------------------------------------------------- entity addressing


@dataclass(frozen=True, slots=True)
class EntityAddress:
    """Which HA device a GivTCP path belongs to, and the id GivTCP built from it.

    ``holder`` is the middle part of GivTCP's unique id: the inverter serial, a battery
    pack serial, ``Battery_Stack_<n>`` or ``Meter_ID<n>``.
    """

    scope: Scope
    holder: str
    leaf: str

    def unique_id(self, prefix: str) -> str:
        return f"{prefix}_{self.holder}_{self.leaf}"

    def givtcp_object_id(self, serial: str) -> str:
        """GivTCP's per-entity discovery object id (the topic level before ``config``)."""
        if self.holder == serial:
            return f"{serial}_{self.leaf}"
        return f"{serial}_{self.holder}_{self.leaf}"


def address_of(path: str, serial: str) -> EntityAddress:
    """The address of a snapshot path (relative to ``<root>/<serial>/``), by GivTCP's rules."""
    parts = path.split("/")
    leaf = parts[-1]
    if parts[0] == "Battery_Details" and len(parts) == 4:
        return EntityAddress("battery", parts[2], leaf)
    if parts[0] == "Battery_Details" and len(parts) == 3:
        # Stack-level readings: GivTCP's id names the stack; they live on the inverter device.
        return EntityAddress("inverter", parts[1], leaf)
    if parts[0] == "Meter_Details" and len(parts) == 3:
        return EntityAddress("meter", parts[1], leaf)
    return EntityAddress("inverter", serial, leaf)


def default_entity_id(platform: str, unique_id: str) -> str:
    return f"{platform}.{unique_id.lower()}"


def resolved_limits(snapshot: Snapshot) -> dict[str, float | None]:
    """The symbolic number limits (``battery_max_power``...) as this device reports them."""
    limits: dict[str, float | None] = {}
    for name, leaf in LIMIT_SOURCES.items():
        value = snapshot.get(f"{snapshot.serial}/{leaf}")
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        limits[name] = number if number is not None and number > 0 else None
    return limits


def pack_firmware(snapshot: Snapshot) -> dict[str, str]:
    """Each battery pack's firmware version, whichever stack the pack is in."""
    found: dict[str, str] = {}
    for path, value in snapshot.values.items():
        parts = path.split("/")
        is_pack_firmware = len(parts) == 4 and parts[0] == "Battery_Details" and parts[3] == "Battery_Firmware_Version"
        if is_pack_firmware and value is not None:
            found[parts[2]] = str(value)
    return found


def _plain(number: float) -> int | float:
    """A limit as JSON: ``3600``, not ``3600.0``."""
    return int(number) if float(number).is_integer() else number


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device discovery document and where it goes."""

    topic: str
    owner: str  # inverter serial, or BRIDGE_OWNER
    document: Mapping[str, Any]

    @property
    def components(self) -> dict[str, str]:
        """Component key -> platform."""
        return {key: str(config["platform"]) for key, config in self.document["components"].items()}

    def text(self, removed: Mapping[str, str] | None = None) -> str:
        """The JSON payload; with ``removed`` (key -> platform), those components as removals.

        HA removes a component of a device document when it arrives reduced to its platform;
        a key whose platform changed is removed this way under its old platform first.
        """
        document = dict(self.document)
        if removed:
            components = dict(document["components"])
            components.update({key: {"platform": platform} for key, platform in removed.items()})
            document["components"] = components
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class InverterDiscovery:
    """Everything discovery publishes for one inverter, and what it had to leave out."""

    devices: tuple[DeviceConfig, ...]
    legacy_topics: frozenset[str]  # GivTCP's per-entity config topics of the same entities
    undefined: tuple[str, ...] = ()  # leaves without an entity definition (a bug: tests catch it)
    unresolved: tuple[str, ...] = ()  # numbers whose limit this device has not reported


@dataclass(frozen=True, slots=True)
class DiscoveryBuilder:
    """Builds discovery documents from snapshots; pure, so every rule is testable offline."""

    topics: Topics
    discovery_topics: DiscoveryTopics
    catalogue: EntityCatalogue
    slot_entities: Literal["select", "time"] = "select"
    currency: str = "GBP"  # the unit of money entities (tariffs.currency)

    # ---- ids

    @property
    def bridge_identifier(self) -> str:
        return f"givbridge_bridge_{object_id_safe(self.topics.root)}"

    @property
    def plant_identifier(self) -> str:
        return f"givbridge_plant_{object_id_safe(self.topics.root)}"

    @property
    def origin(self) -> dict[str, str]:
        return {"name": ORIGIN_NAME, "sw_version": __version__, "support_url": SUPPORT_URL}

    # ---- the bridge

    def bridge(self) -> DeviceConfig:
        identifier = self.bridge_identifier
        # The connectivity sensor has no availability of its own: it must read "disconnected"
        # when the bridge is down, not "unavailable".
        bridge_up = [{"topic": self.topics.bridge_state}]
        components: dict[str, dict[str, Any]] = {
            f"{identifier}_state": {
                "platform": "binary_sensor",
                "name": "Bridge state",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": self.topics.bridge_state,
                "payload_on": ONLINE,
                "payload_off": OFFLINE,
            },
            f"{identifier}_version": {
                "platform": "sensor",
                "name": "Version",
                "entity_category": "diagnostic",
                "icon": "mdi:information-outline",
                "state_topic": self.topics.bridge_info,
                "value_template": "{{ value_json.version }}",
                "availability": bridge_up,
            },
            f"{identifier}_restart": {
                "platform": "button",
                "name": "Restart",
                "device_class": "restart",
                "entity_category": "config",
                "command_topic": self.topics.bridge_request_topic("restart"),
                "payload_press": RESTART_PAYLOAD,
                "availability": bridge_up,
            },
            f"{identifier}_log_level": {
                "platform": "select",
                "name": "Log level",
                "entity_category": "config",
                "icon": "mdi:math-log",
                "options": list(LOG_LEVELS),
                "state_topic": self.topics.bridge_info,
                "value_template": "{{ value_json.log_level }}",
                "command_topic": self.topics.bridge_request_topic("log_level"),
                "availability": bridge_up,
            },
        }
        for key, component in components.items():
            component["unique_id"] = key
            component["default_entity_id"] = default_entity_id(str(component["platform"]), key)
        document = {
            "device": {
                "identifiers": [identifier],
                "name": "givbridge",
                "manufacturer": ORIGIN_NAME,
                "model": "GivEnergy MQTT bridge",
                "sw_version": __version__,
            },
            "origin": self.origin,
            "components": components,
        }
        return DeviceConfig(self.discovery_topics.device(identifier), BRIDGE_OWNER, document)

    # ---- an inverter and what hangs off it

    def inverter(
        self,
        snapshot: Snapshot,
        *,
        prefix: str,
        paths: Iterable[str],
        name: str | None = None,
        limits: Limits | None = None,
        controlled_by: str | None = None,
    ) -> InverterDiscovery:
        """The devices of one inverter: itself, its packs and meters, with the entities of ``paths``.

        ``paths`` is what the device publishes (see the module docstring for why that is more
        than one snapshot); ``limits`` resolves symbolic number bounds and defaults to what
        ``snapshot`` reports. ``controlled_by`` is the serial of the Gateway or EMS that
        controls this inverter: its controls are then published read-only.
        """
        serial = snapshot.serial
        info = snapshot.info
        limits = resolved_limits(snapshot) if limits is None else limits
        packs = set(info.battery_serials)
        meters = {f"Meter_ID{n}" for n in info.meter_ids}
        availability = [{"topic": self.topics.bridge_state}, {"topic": self.topics.availability(serial)}]
        inverter_id = f"givbridge_{serial}"
        firmware = pack_firmware(snapshot)

        grouped: dict[tuple[Scope, str], dict[str, dict[str, Any]]] = {}
        legacy: set[str] = set()
        undefined: list[str] = []
        unresolved: list[str] = []
        for path in sorted(set(paths)):
            where = address_of(path, serial)
            if (where.scope == "battery" and where.holder not in packs) or (
                where.scope == "meter" and where.holder not in meters
            ):
                continue  # remembered from a pack or meter that is no longer there
            definition = self.catalogue.get(where.leaf)
            if definition is None:
                undefined.append(where.leaf)
                continue
            if controlled_by is not None and definition.platform == "button":
                continue  # nothing to press here: the controller has the buttons
            unique_id = where.unique_id(prefix)
            read_only = controlled_by is not None
            component = self._component(definition, unique_id, serial, path, limits, read_only=read_only)
            if component is None:
                unresolved.append(where.leaf)
                continue
            holder = serial if where.scope == "inverter" else where.holder
            grouped.setdefault((where.scope, holder), {})[unique_id] = component
            legacy.add(self.discovery_topics.givtcp(definition.platform, where.givtcp_object_id(serial)))

        devices: list[DeviceConfig] = []
        for (scope, holder), components in sorted(grouped.items(), key=lambda item: _scope_order(*item[0])):
            if scope == "inverter":
                object_id = inverter_id
                device: dict[str, Any] = {
                    # GivTCP's id of its inverter-info device, so that HA device keeps its area and name.
                    "identifiers": [inverter_id, _givtcp_device_id(serial, info.family)],
                    "name": name or f"{info.model} {serial}",
                    "manufacturer": MANUFACTURER,
                    "model": info.model,
                    "serial_number": serial,
                    "via_device": f"givbridge_{controlled_by}" if controlled_by else self.bridge_identifier,
                }
                if info.firmware:
                    device["sw_version"] = info.firmware
            elif scope == "battery":
                object_id = f"givbridge_{holder}"
                device = {
                    "identifiers": [object_id, f"{prefix} {holder}"],
                    "name": f"Battery {holder}",
                    "manufacturer": MANUFACTURER,
                    "model": "Battery pack",
                    "serial_number": holder,
                    "via_device": inverter_id,
                }
                if holder in firmware:
                    device["sw_version"] = firmware[holder]
            else:
                object_id = f"givbridge_{serial}_{holder}"
                device = {
                    "identifiers": [object_id, f"{prefix} {holder}"],
                    "name": f"Meter {holder.removeprefix('Meter_ID')} ({serial})",
                    "manufacturer": MANUFACTURER,
                    "model": "Energy meter",
                    "via_device": inverter_id,
                }
            document = {
                "device": device,
                "origin": self.origin,
                "availability": availability,
                "availability_mode": "all",
                "components": components,
            }
            devices.append(DeviceConfig(self.discovery_topics.device(object_id), serial, document))
        return InverterDiscovery(
            devices=tuple(devices),
            legacy_topics=frozenset(legacy),
            undefined=tuple(sorted(set(undefined))),
            unresolved=tuple(sorted(set(unresolved))),
        )

    def _component(
        self,
        definition: EntityDefinition,
        unique_id: str,
        serial: str,
        path: str,
        limits: Limits,
        *,
        read_only: bool = False,
    ) -> dict[str, Any] | None:
        """One entity's config, or None when a number's limits are not known for this device.

        ``read_only`` turns a control into a diagnostic sensor showing its state (see
        :meth:`_read_only`); a button cannot be shown that way, so the caller leaves it out.
        """
        if read_only and definition.command is not None:
            return self._read_only(definition, unique_id, serial, path)
        platform: str = definition.platform
        if definition.options == TIME_SLOTS_SYMBOL and self.slot_entities == "time":
            platform = "time"
        config: dict[str, Any] = {
            "platform": platform,
            "unique_id": unique_id,
            "default_entity_id": default_entity_id(platform, unique_id),
            "name": definition.name,
        }
        if platform != "button":  # a button has no state
            config["state_topic"] = self.topics.state(serial, path)
        if definition.command is not None:
            config["command_topic"] = self.topics.control(serial, definition.command)
        if definition.device_class is not None:
            config["device_class"] = definition.device_class
        if definition.state_class is not None:
            config["state_class"] = definition.state_class
        if definition.unit is not None:
            config["unit_of_measurement"] = unit_for(definition.unit, self.currency)
        if definition.precision is not None:
            config["suggested_display_precision"] = definition.precision
        if definition.entity_category is not None:
            config["entity_category"] = definition.entity_category
        if definition.icon is not None:
            config["icon"] = definition.icon
        if platform == "number":
            low = resolve_limit(definition.min, limits)
            high = resolve_limit(definition.max, limits)
            if low is None or high is None or definition.step is None:
                return None
            config.update(min=_plain(low), max=_plain(high), step=_plain(definition.step))
            if definition.mode is not None:
                config["mode"] = definition.mode
        elif platform in ("select", "sensor") and definition.options is not None:
            config["options"] = list(definition.option_values() or ())
        elif platform == "switch":
            # GivTCP's words both ways: the command layer takes enable/disable, the state reads the same.
            config.update(
                payload_on=definition.state_on,
                payload_off=definition.state_off,
                state_on=definition.state_on,
                state_off=definition.state_off,
            )
        elif platform == "button" and definition.payload_press is not None:
            config["payload_press"] = definition.payload_press
        return config

    def _read_only(self, definition: EntityDefinition, unique_id: str, serial: str, path: str) -> dict[str, Any]:
        """A control's state as a plain sensor: a number keeps its unit and class, the rest show their words."""
        config: dict[str, Any] = {
            "platform": "sensor",
            "unique_id": unique_id,
            "default_entity_id": default_entity_id("sensor", unique_id),
            "name": definition.name,
            "state_topic": self.topics.state(serial, path),
            "entity_category": "diagnostic",  # a setting someone else makes: never "config" on a sensor
        }
        if definition.platform == "number":
            if definition.device_class is not None:
                config["device_class"] = definition.device_class
            if definition.unit is not None:
                config["unit_of_measurement"] = unit_for(definition.unit, self.currency)
        if definition.precision is not None:
            config["suggested_display_precision"] = definition.precision
        if definition.icon is not None:
            config["icon"] = definition.icon
        return config

    def plant(self, snapshot: Snapshot, paths: Iterable[str]) -> DeviceConfig:
        """The plant summary's device: every path of ``paths`` with a definition, as a read-only entity."""
        identifier = self.plant_identifier
        components: dict[str, dict[str, Any]] = {}
        for path in sorted(set(paths)):
            leaf = path.rsplit("/", 1)[-1]
            definition = self.catalogue.get(leaf)
            if definition is None or definition.platform == "button":
                continue
            unique_id = f"{identifier}_{leaf}"
            component = self._component(definition, unique_id, snapshot.serial, path, {}, read_only=True)
            if component is not None:
                components[unique_id] = component
        document = {
            "device": {
                "identifiers": [identifier],
                "name": "GivEnergy plant",
                "manufacturer": ORIGIN_NAME,
                "model": snapshot.info.model,
                "via_device": self.bridge_identifier,
            },
            "origin": self.origin,
            "availability": [{"topic": self.topics.bridge_state}, {"topic": self.topics.availability(snapshot.serial)}],
            "availability_mode": "all",
            "components": components,
        }
        return DeviceConfig(self.discovery_topics.device(identifier), PLANT_OWNER, document)


def _givtcp_device_id(serial: str, family: str) -> str:
    """GivTCP's identifier of a device's main HA device (the charger's was "<serial>_Charger")."""
    return f"{serial}_Charger" if family == CHARGER_FAMILY else f"{serial}_{serial}"


def _scope_order(scope: Scope, holder: str) -> tuple[int, str]:
    # The inverter first: its packs and meters name it as via_device.
    return ({"inverter": 0, "battery": 1, "meter": 2}[scope], holder)


# --------------------------------------------------------------------------- publishing


class Inverter(Protocol):
    """What discovery needs of a device runner (``givbridge.bridge.InverterRunner``, or the EV charger's)."""

    prefix: str
    snapshot: Snapshot | None

    @property
    def config(self) -> InverterSettings | EvcSettings: ...

    @property
    def serial(self) -> str | None: ...


@dataclass
class _Published:
    """What the broker holds (as far as we know) on one discovery topic."""

    owner: str
    components: dict[str, str]  # key -> platform


@dataclass
class _Learned:
    """The paths an inverter has published since its model last changed."""

    family: str
    paths: set[str] = field(default_factory=set)


class DiscoveryPublisher:
    """Keeps Home Assistant's view of the bridge and its inverters in step; see the module docstring.

    Construct it before the MQTT client starts (it subscribes to HA's birth topic, and with
    ``migrate_givtcp_discovery`` to GivTCP's old config topics). The application calls
    :meth:`publish_all` on every broker connection, :meth:`on_snapshot` for every snapshot and
    :meth:`stop` on shutdown. ``republish_states`` is called after discovery was re-sent for
    HA (birth, migration): a fresh entity needs a state, and states may not be retained.
    """

    def __init__(
        self,
        client: MqttClient,
        topics: Topics,
        settings: MqttSettings,
        *,
        inverters: Sequence[Inverter],
        catalogue: EntityCatalogue,
        store: JsonStore,
        republish_states: Callable[[], None],
        clock: Clock | None = None,
        rng: random.Random | None = None,
        topology: PlantTopology | None = None,
        plant_summary: bool = False,
        currency: str = "GBP",
    ) -> None:
        self.client = client
        self.builder = DiscoveryBuilder(
            topics=topics,
            discovery_topics=DiscoveryTopics(settings.discovery_prefix),
            catalogue=catalogue,
            slot_entities=settings.slot_entities,
            currency=currency,
        )
        self.inverters = inverters
        self.topology = topology or PlantTopology()
        self.plant_summary = plant_summary  # whether a plant device exists (its topic is kept)
        self._plant: Snapshot | None = None  # the latest plant summary
        self.migrate_givtcp = settings.migrate_givtcp_discovery
        self._store = store
        self._republish_states = republish_states
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._published, self._learned, self._migrated = self._load()
        # topic -> digest of the payload sent on this broker connection. A digest, not the text:
        # an inverter's document is ~0.7 MB (GivTCP's 1,440-option slot selects), kept per inverter.
        self._sent: dict[str, bytes] = {}
        self._signatures: dict[str, object] = {}  # serial -> what its last publish was built from
        self._limits: dict[str, dict[str, float | None]] = {}  # serial -> last known number limits
        self._warned: dict[str, tuple[str, ...]] = {}
        self._announced: set[str] = set()  # serials discovered in this process
        self._migrating: set[str] = set()
        self._legacy: dict[str, str] = {}  # observed GivTCP config topic -> its object id
        self._tasks: set[asyncio.Task[None]] = set()
        self._birth_task: asyncio.Task[None] | None = None
        self._legacy_task: asyncio.Task[None] | None = None
        self._save_task: asyncio.Task[None] | None = None
        self._dirty = False
        client.subscribe(self.builder.discovery_topics.birth, self._on_birth)
        if self.migrate_givtcp:
            client.subscribe(self.builder.discovery_topics.givtcp_filter, self._on_legacy_config)

    # ------------------------------------------------------------------ entry points

    def publish_all(self) -> None:
        """Send every document again (a new broker connection, or HA came back) and tidy up."""
        self._sent.clear()
        self._signatures.clear()
        if not self._send_device(self.builder.bridge(), force=True):
            return
        self._remove_foreign()
        for inverter in self.inverters:
            if inverter.snapshot is not None:
                self._refresh(inverter, inverter.snapshot, force=True)
        if self._plant is not None:
            self._refresh_plant(self._plant, force=True)
        self._remove_orphans()

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """Publish what is new about the device of ``snapshot`` (nothing, on most polls)."""
        inverter = next((i for i in self.inverters if i.serial == snapshot.serial), None)
        if inverter is None:
            return
        self._refresh(inverter, snapshot, force=False)
        # A controller's report may have just made its units read-only (or given them back).
        for unit in self.topology.units_of(snapshot.serial):
            managed = next((i for i in self.inverters if i.serial == unit), None)
            if managed is not None and managed.snapshot is not None:
                self._refresh(managed, managed.snapshot, force=False)
        self._remove_orphans()

    def on_plant(self, snapshot: Snapshot) -> None:
        """Publish the plant summary's device when what it is built from changed."""
        self._plant = snapshot
        self._refresh_plant(snapshot, force=False)

    async def stop(self) -> None:
        """Cancel pending republishes and migrations, then write the record one last time."""
        tasks = [t for t in (*self._tasks, self._birth_task, self._legacy_task) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._save_task is not None:
            await asyncio.gather(self._save_task, return_exceptions=True)
        if self._dirty:
            await self._flush()

    # ------------------------------------------------------------------ one inverter

    def _refresh(self, inverter: Inverter, snapshot: Snapshot, *, force: bool) -> None:
        serial = snapshot.serial
        if not self.client.connected or serial in self._migrating:
            return  # publish_all sends everything on the next connection; a migration publishes itself
        learned_changed = self._learn(serial, snapshot)
        limits = self._limits_for(serial, snapshot)
        if learned_changed:
            self._save()
        owner = self.topology.owner_of(serial)
        # What the documents are built from; most polls change none of it and publish nothing.
        signature = (
            snapshot.info,
            tuple(limits.items()),
            len(self._learned[serial].paths),  # the learned set only grows while the model stays
            inverter.prefix,
            inverter.config.name,
            tuple(sorted(pack_firmware(snapshot).items())),
            owner.serial if owner else None,
        )
        if not force and self._signatures.get(serial) == signature:
            return
        discovery = self._build(inverter, snapshot, limits)
        if serial not in self._announced and self.migrate_givtcp:
            old = self._take_legacy(serial)
            if serial not in self._migrated:
                old |= discovery.legacy_topics
            if old:
                self._migrating.add(serial)  # now, so the next snapshot does not start a second one
                self._spawn(self._migrate_then_publish(inverter, old), f"discovery migration {serial}")
                return
        if self._apply(serial, discovery.devices, force=force):
            self._signatures[serial] = signature
            self._announced.add(serial)

    def _build(self, inverter: Inverter, snapshot: Snapshot, limits: Limits) -> InverterDiscovery:
        serial = snapshot.serial
        owner = self.topology.owner_of(serial)
        discovery = self.builder.inverter(
            snapshot,
            prefix=inverter.prefix,
            paths=self._learned[serial].paths,
            name=inverter.config.name,
            limits=limits,
            controlled_by=owner.serial if owner else None,
        )
        problems = discovery.undefined + discovery.unresolved
        if problems and self._warned.get(serial) != problems:
            self._warned[serial] = problems
            log.warning(
                "values left out of discovery",
                serial=serial,
                without_definition=list(discovery.undefined),
                limit_unknown=list(discovery.unresolved),
            )
        return discovery

    def _refresh_plant(self, snapshot: Snapshot, *, force: bool) -> None:
        if not self.client.connected:
            return  # publish_all sends it on the next connection
        if self._learn(PLANT_OWNER, snapshot):
            self._save()
        signature = len(self._learned[PLANT_OWNER].paths)
        if not force and self._signatures.get(PLANT_OWNER) == signature:
            return
        if self._apply(PLANT_OWNER, [self.builder.plant(snapshot, self._learned[PLANT_OWNER].paths)], force=force):
            self._signatures[PLANT_OWNER] = signature

    def _learn(self, serial: str, snapshot: Snapshot) -> bool:
        """Add the snapshot's paths to what the device publishes; True if that grew or was reset."""
        family = snapshot.info.family
        learned = self._learned.get(serial)
        current = {*snapshot.values, MESSAGES_PATH}
        if learned is None or learned.family != family:
            # A different model behind this serial: what the old one published says nothing now.
            self._learned[serial] = _Learned(family, current)
            return True
        if current <= learned.paths:
            return False
        learned.paths |= current
        return True

    def _limits_for(self, serial: str, snapshot: Snapshot) -> dict[str, float | None]:
        # A limit missing from one poll keeps its last value, so its entity is not removed.
        known = self._limits.setdefault(serial, {})
        for name, value in resolved_limits(snapshot).items():
            if value is not None or name not in known:
                known[name] = value
        return dict(sorted(known.items()))

    # ------------------------------------------------------------------ publishing and removal

    def _send(self, topic: str, payload: str | None) -> bool:
        return self.client.publish(topic, payload, retain=True, qos=DISCOVERY_QOS)

    def _send_device(self, config: DeviceConfig, *, force: bool) -> bool:
        """Publish one document, removing the components it no longer has first."""
        previous = self._published.get(config.topic)
        current = config.components
        stale = {}
        if previous is not None:
            stale = {key: platform for key, platform in previous.components.items() if current.get(key) != platform}
        if stale:
            if not self._send(config.topic, config.text(removed=stale)):
                return False
            log.info("removing entities from discovery", topic=config.topic, entities=sorted(stale))
        text = config.text()
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if force or stale or self._sent.get(config.topic) != digest:
            if not self._send(config.topic, text):
                return False
            self._sent[config.topic] = digest
        record = _Published(config.owner, current)
        if previous != record:
            self._published[config.topic] = record
            self._save()
        return True

    def _apply(self, owner: str, devices: Sequence[DeviceConfig], *, force: bool) -> bool:
        """Publish an inverter's documents and empty the topics of its devices that are gone."""
        for config in devices:
            if not self._send_device(config, force=force):
                return False
        expected = {config.topic for config in devices}
        gone = [t for t, record in self._published.items() if record.owner == owner and t not in expected]
        return self._remove(gone)

    def _remove(self, topics: Iterable[str]) -> bool:
        removed = False
        for topic in list(topics):
            if not self._send(topic, None):
                return False
            log.info("removing device from discovery", topic=topic)
            del self._published[topic]
            self._sent.pop(topic, None)
            removed = True
        if removed:
            self._save()
        return True

    def _remove_foreign(self) -> None:
        """Topics from another discovery prefix or another bridge root: left over from a config change."""
        discovery_topics = self.builder.discovery_topics
        bridge_topic = discovery_topics.device(self.builder.bridge_identifier)
        self._remove(
            topic
            for topic, record in self._published.items()
            if not discovery_topics.is_device(topic) or (record.owner == BRIDGE_OWNER and topic != bridge_topic)
        )

    def _remove_orphans(self) -> None:
        """Devices of inverters no longer configured, once every configured one has been identified."""
        serials = [inverter.serial for inverter in self.inverters]
        if any(serial is None for serial in serials) or not self.client.connected:
            return  # an inverter not yet identified may be the one that owns them
        live = {serial for serial in serials if serial is not None}
        if self.plant_summary:
            live.add(PLANT_OWNER)
        owners = {record.owner for record in self._published.values()} - {BRIDGE_OWNER}
        for owner in sorted(owners - live):
            log.info("removing an inverter that is no longer configured from discovery", serial=owner)
            self._remove([t for t, record in self._published.items() if record.owner == owner])
        forgotten = set(self._learned) - live
        for serial in forgotten:
            del self._learned[serial]
        if forgotten:
            self._save()

    # ------------------------------------------------------------------ Home Assistant's birth

    def _on_birth(self, message: Message) -> None:
        # A retained birth is somebody's leftover, not HA starting now; the connection
        # publish already covered whatever it could mean.
        if message.retain or message.text.strip().lower() != ONLINE:
            return
        if self._birth_task is not None and not self._birth_task.done():
            return  # a republish is already on its way
        self._birth_task = asyncio.get_running_loop().create_task(self._after_birth(), name="discovery after birth")

    async def _after_birth(self) -> None:
        await self._clock.sleep(self._rng.uniform(*BIRTH_DELAY))
        log.info("home assistant started; sending discovery and state again")
        self.publish_all()
        self._republish_states()

    # ------------------------------------------------------------------ migration from GivTCP

    async def _migrate_then_publish(self, inverter: Inverter, old_topics: set[str]) -> None:
        """HA's migration procedure for one inverter's first discovery; see the module docstring."""
        serial = inverter.serial
        assert serial is not None
        try:
            # Any step failing means the broker connection went: the next connection starts
            # over (retained old configs are delivered again on the new subscription).
            if not await self._send_migrate(old_topics):
                return
            await self._clock.sleep(MIGRATION_SETTLE)
            snapshot = inverter.snapshot
            if snapshot is None or not self.client.connected:
                return
            discovery = self._build(inverter, snapshot, self._limits_for(serial, snapshot))
            if not self._apply(serial, discovery.devices, force=True):
                return
            self._announced.add(serial)
            await self._clock.sleep(MIGRATION_SETTLE)
            for topic in sorted(old_topics):
                if not self._send(topic, None):
                    return
            self._migrated.add(serial)
            self._save()
            log.info("moved GivTCP's discovery to givbridge", serial=serial, old_topics=len(old_topics))
        finally:
            self._migrating.discard(serial)
        self._republish_states()
        self._schedule_legacy()  # old configs seen while this ran

    async def _send_migrate(self, topics: Iterable[str]) -> bool:
        sends = [self.client.publish_confirmed(t, MIGRATE_PAYLOAD, retain=True, qos=1) for t in sorted(topics)]
        return all(await asyncio.gather(*sends))

    def _on_legacy_config(self, message: Message) -> None:
        object_id = self.builder.discovery_topics.givtcp_object_id(message.topic)
        if object_id is None:
            return
        if not message.payload or _is_migration(message.payload):
            self._legacy.pop(message.topic, None)  # our own migration and clearing, echoed back
            return
        self._legacy[message.topic] = object_id
        self._schedule_legacy()

    def _take_legacy(self, serial: str) -> set[str]:
        taken = {topic for topic, object_id in self._legacy.items() if object_id.startswith(f"{serial}_")}
        for topic in taken:
            del self._legacy[topic]
        return taken

    def _schedule_legacy(self) -> None:
        if self._legacy and (self._legacy_task is None or self._legacy_task.done()):
            self._legacy_task = asyncio.get_running_loop().create_task(self._retire_legacy(), name="givtcp retire")

    async def _retire_legacy(self) -> None:
        """Migrate and clear old GivTCP configs of inverters that already have givbridge's discovery."""
        while True:
            await self._clock.sleep(LEGACY_BATCH_WINDOW)
            ready = set()
            for serial in self._announced - self._migrating:
                ready |= self._take_legacy(serial)
            if all(inverter.serial is not None for inverter in self.inverters):
                ours = tuple(f"{inverter.serial}_" for inverter in self.inverters)
                self._legacy = {t: o for t, o in self._legacy.items() if o.startswith(ours)}  # not ours: leave alone
            if not ready:
                return
            if not await self._send_migrate(ready):
                return
            await self._clock.sleep(MIGRATION_SETTLE)
            for topic in sorted(ready):
                self._send(topic, None)
            log.warning(
                "retired GivTCP discovery configs that appeared on the broker; is GivTCP still running?",
                topics=len(ready),
            )

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ persistence

    def _load(self) -> tuple[dict[str, _Published], dict[str, _Learned], set[str]]:
        document = self._store.load(STORE_DOCUMENT)
        published: dict[str, _Published] = {}
        learned: dict[str, _Learned] = {}
        try:
            for topic, record in dict(document.get("published", {})).items():
                published[str(topic)] = _Published(str(record["owner"]), dict(record["components"]))
            for serial, record in dict(document.get("inverters", {})).items():
                learned[str(serial)] = _Learned(str(record["family"]), {str(p) for p in record["paths"]})
            migrated = {str(serial) for serial in document.get("givtcp_migrated", [])}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Forgetting means old configs are not cleaned up, never that something is removed.
            log.warning("ignoring an unreadable discovery record", error=repr(exc))
            return {}, {}, set()
        return published, learned, migrated

    def _save(self) -> None:
        """Write the record soon, off the event loop; one writer at a time, the latest state wins."""
        self._dirty = True
        if self._save_task is None or self._save_task.done():
            self._save_task = asyncio.get_running_loop().create_task(self._flush(), name="discovery record")

    async def _flush(self) -> None:
        while self._dirty:
            self._dirty = False
            await asyncio.to_thread(self._store.save, STORE_DOCUMENT, self._record())

    def _record(self) -> dict[str, Any]:
        return {
            "published": {
                topic: {"owner": record.owner, "components": record.components}
                for topic, record in sorted(self._published.items())
            },
            "inverters": {
                serial: {"family": learned.family, "paths": sorted(learned.paths)}
                for serial, learned in sorted(self._learned.items())
            },
            "givtcp_migrated": sorted(self._migrated),
        }


def _is_migration(payload: bytes) -> bool:
    try:
        document = json.loads(payload)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("migrate_discovery") is True
