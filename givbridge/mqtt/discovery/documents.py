"""The discovery documents: one per Home Assistant device, built from snapshots and entity definitions.

Pure: nothing here publishes, so every rule is testable offline. What each device holds
is described in the package docstring (:mod:`givbridge.mqtt.discovery`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from givbridge import __version__
from givbridge.commands.access import MQTT, AccessPolicy
from givbridge.commands.registry import REGISTRY, Registry
from givbridge.devices.context import DeviceContext
from givbridge.entities import (
    TIME_SLOTS_SYMBOL,
    EntityCatalogue,
    EntityDefinition,
    load_bridge_catalogue,
    unit_for,
)
from givbridge.evc.registers import CHARGER_FAMILY
from givbridge.mqtt.discovery.addresses import (
    Limits,
    Scope,
    address_of,
    default_entity_id,
    object_id_safe,
    pack_firmware,
    resolved_limits,
)
from givbridge.mqtt.discovery.controls import (
    STATE_SUFFIX,
    number_range,
    settable_options,
    shown_only,
    state_template,
)
from givbridge.mqtt.topics import OFFLINE, ONLINE, DiscoveryTopics, Topics
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.summary import PLANT_ID

ORIGIN_NAME = "givbridge"
# Where HA's "discovered from" log line and the device page point users for help.
SUPPORT_URL = "https://github.com/givbridge/givbridge"
MANUFACTURER = "GivEnergy"

# Platforms an HA still in use may not know (time: 2026.5): their entities get topics of their
# own, so an HA without them rejects only those, not the whole device (see split_entities).
OWN_TOPIC_PLATFORMS = frozenset({"time"})

BRIDGE_OWNER = "bridge"  # owner of the bridge device's topic in the store; inverters are owned by serial
PLANT_OWNER = PLANT_ID  # owner of the plant summary device's topic (and its learned paths)


def _plain(number: float) -> int | float:
    """A limit as JSON: ``3600``, not ``3600.0``."""
    return int(number) if float(number).is_integer() else number


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device discovery document and where it goes."""

    topic: str
    owner: str  # inverter serial, or BRIDGE_OWNER
    document: Mapping[str, Any]
    # Set for one entity announced on its own topic (see DiscoveryBuilder.split_entities): the
    # topic names the platform, the document has no components.
    platform: str | None = None

    @property
    def components(self) -> dict[str, str]:
        """Component key -> platform."""
        if self.platform is not None:
            return {str(self.document["unique_id"]): self.platform}
        return {key: str(config["platform"]) for key, config in self.document["components"].items()}

    def text(self, removed: Mapping[str, str] | None = None) -> str:
        """The JSON payload; with ``removed`` (key -> platform), those components as removals.

        HA removes a component of a device document when it arrives reduced to its platform;
        a key whose platform changed is removed this way under its old platform first.
        """
        document = dict(self.document)
        if removed and self.platform is None:  # an entity on its own topic is removed with its topic
            components = dict(document["components"])
            components.update({key: {"platform": platform} for key, platform in removed.items()})
            document["components"] = components
        return document_text(document)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def document_text(document: Mapping[str, Any]) -> str:
    """``json.dumps(document, separators=(",", ":"), ensure_ascii=False)``, encoded an entry at a time.

    The same text, joined once from the encoded entries of the document and of its components:
    an inverter's document is most of a megabyte (each slot select lists its 1,440 times, in its
    options and its template), and encoding it whole first collects every small JSON token of it
    in one list, five times the text's size at once.
    """
    pieces = ["{"]
    for key, value in document.items():
        if not isinstance(key, str):
            return _compact(document)  # json.dumps converts other keys; leave that to it
        if len(pieces) > 1:
            pieces.append(",")
        pieces.append(f"{_compact(key)}:")
        if isinstance(value, dict) and all(isinstance(inner, str) for inner in value):
            pieces.append("{")
            for number, (inner, item) in enumerate(value.items()):
                pieces.append(f"{',' if number else ''}{_compact(inner)}:{_compact(item)}")
            pieces.append("}")
        else:
            pieces.append(_compact(value))
    pieces.append("}")
    return "".join(pieces)


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
    legacy_object_id: bool = False  # mqtt.legacy_object_id: object_id too, for HA before 2025.10
    currency: str = "GBP"  # the unit of money entities (tariffs.currency)
    bridge_catalogue: EntityCatalogue = field(default_factory=load_bridge_catalogue)
    # Who may run what over MQTT (mqtt.admin); the default is givbridge's: admin commands off.
    policy: AccessPolicy = field(default_factory=lambda: AccessPolicy(None, ()))
    registry: Registry = REGISTRY

    def ids(self, platform: str, unique_id: str, object_id: str | None = None) -> dict[str, str]:
        """An entity's unique id and the entity id HA is asked for (``object_id`` defaults to the unique id).

        With ``mqtt.legacy_object_id`` the id is also sent the way HA before 2025.10 reads it
        (``object_id``, without the domain): those versions ignore ``default_entity_id``.
        """
        wanted = object_id or unique_id
        found = {"unique_id": unique_id, "default_entity_id": default_entity_id(platform, wanted)}
        if self.legacy_object_id:
            found["object_id"] = wanted.lower()
        return found

    def offers(self, definition: EntityDefinition) -> bool:
        """Whether Home Assistant gets this entity: not a control whose every use would answer ``forbidden``.

        HA sends a control's command as a plain MQTT caller, without the admin token, so an admin
        command (restart, log level, the inverter's reboot) is offered only when the access policy
        lets any MQTT caller run it (``mqtt.admin: on``).
        """
        if definition.command is None:
            return True
        command = self.registry.get(definition.command)
        # A definition naming no command is the entity-definition tests' business, not a refusal.
        return command is None or self.policy.decide(command, MQTT).refusal is None

    def split_entities(self, config: DeviceConfig) -> list[DeviceConfig]:
        """The device's document, with each entity of a platform too new for some HA on its own topic.

        An HA that does not know a platform rejects a device document naming it, with every
        entity in it. The MQTT ``time`` platform is that new (:data:`OWN_TOPIC_PLATFORMS`), so
        time entities are announced one by one on ``<prefix>/time/givbridge/<id>/config``
        (joined to the device by its identifiers): an older HA ignores those and keeps the rest.
        """
        document = dict(config.document)
        components = dict(document["components"])
        alone = {key: c for key, c in components.items() if c["platform"] in OWN_TOPIC_PLATFORMS}
        if not alone:
            return [config]
        document["components"] = {key: c for key, c in components.items() if key not in alone}
        shared = {key: value for key, value in document.items() if key not in ("components", "device")}
        linked = {"identifiers": document["device"]["identifiers"]}
        split = [DeviceConfig(config.topic, config.owner, document)]
        for key, component in alone.items():
            platform = str(component["platform"])
            body = {key: value for key, value in component.items() if key != "platform"}
            entity = {**body, "device": linked, **shared}
            topic = self.discovery_topics.entity(platform, object_id_safe(key))
            split.append(DeviceConfig(topic, config.owner, entity, platform=platform))
        return split

    def _applies(self, definition: EntityDefinition, context: DeviceContext | None) -> bool:
        """Whether a control's command can be carried out on the device (True when not known)."""
        command = self.registry.get(definition.command) if definition.command is not None else None
        if command is None or context is None or command.target != "inverter":
            return True
        return command.applies.reason(context) is None

    # ---- ids

    @property
    def bridge_identifier(self) -> str:
        return device_id(f"bridge_{object_id_safe(self.topics.root)}")

    @property
    def plant_identifier(self) -> str:
        return device_id(f"plant_{object_id_safe(self.topics.root)}")

    @property
    def origin(self) -> dict[str, str]:
        return {"name": ORIGIN_NAME, "sw_version": __version__, "support_url": SUPPORT_URL}

    # ---- the bridge

    def bridge(self) -> DeviceConfig:
        """The bridge device: its entities are the bridge catalogue's (``discovery_templates/bridge/``)."""
        identifier = self.bridge_identifier
        components: dict[str, dict[str, Any]] = {}
        for key, definition in self.bridge_catalogue.definitions.items():
            if not self.offers(definition):
                continue
            unique_id = f"{identifier}_{key}"
            components[unique_id] = self._bridge_component(key, definition, unique_id)
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

    def _bridge_component(self, key: str, definition: EntityDefinition, unique_id: str) -> dict[str, Any]:
        """One of the bridge's entities: it shows a key of ``bridge/info``, or the bridge state itself."""
        config: dict[str, Any] = {"platform": definition.platform, "name": definition.name}
        config.update(self._presentation(definition))
        if definition.options is not None:
            config["options"] = list(definition.option_values() or ())
        if definition.json_key is not None:
            config["state_topic"] = self.topics.bridge_info
            config["value_template"] = f"{{{{ value_json.{definition.json_key} }}}}"
        elif definition.platform != "button":
            config.update(state_topic=self.topics.bridge_state, payload_on=ONLINE, payload_off=OFFLINE)
        if definition.command is not None:
            config["command_topic"] = self.topics.bridge_request_topic(key)
        if definition.payload_press is not None:
            config["payload_press"] = definition.payload_press
        if config.get("state_topic") != self.topics.bridge_state:
            # What shows the bridge state reads "disconnected" when the bridge is down, not "unavailable".
            config["availability"] = [{"topic": self.topics.bridge_state}]
        config.update(self.ids(definition.platform, unique_id))
        return config

    def _presentation(self, definition: EntityDefinition) -> dict[str, Any]:
        """How HA shows an entity: its classes, unit, precision, category and icon, those it has."""
        shown = {
            "device_class": definition.device_class,
            "state_class": definition.state_class,
            "unit_of_measurement": unit_for(definition.unit, self.currency),
            "suggested_display_precision": definition.precision,
            "entity_category": definition.entity_category,
            "icon": definition.icon,
        }
        return {key: value for key, value in shown.items() if value is not None}

    def _availability(self, serial: str) -> list[dict[str, str]]:
        """A device's entities are available while the bridge and the device both are."""
        return [{"topic": self.topics.bridge_state}, {"topic": self.topics.availability(serial)}]

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
        context: DeviceContext | None = None,
    ) -> InverterDiscovery:
        """The devices of one inverter: itself, its packs and meters, with the entities of ``paths``.

        ``paths`` is what the device publishes (see the package docstring for why that is more
        than one snapshot); ``limits`` resolves symbolic number bounds and defaults to what
        ``snapshot`` reports. ``controlled_by`` is the serial of the Gateway or EMS that
        controls this inverter: its controls are then published read-only. ``context`` is what
        the commands know of the inverter (its model, firmware, writable registers): a control
        whose command does not apply to it is published read-only too, as it could only answer
        ``unsupported``.
        """
        serial = snapshot.serial
        info = snapshot.info
        limits = resolved_limits(snapshot) if limits is None else limits
        packs = set(info.battery_serials)
        meters = {f"Meter_ID{n}" for n in info.meter_ids}
        inverter_id = device_id(serial)
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
            if not self.offers(definition):
                continue  # it could only answer forbidden (the inverter's reboot while mqtt.admin is not on)
            read_only = controlled_by is not None or not self._applies(definition, context)
            if read_only and definition.platform == "button":
                continue  # nothing to press here: the controller has the buttons, or the command does not apply
            unique_id = where.unique_id(prefix)
            object_id = where.object_id(prefix, serial)
            component = self._component(
                definition, unique_id, serial, path, limits, read_only=read_only, object_id=object_id
            )
            if component is None:
                unresolved.append(where.leaf)
                continue
            holder = serial if where.scope == "inverter" else where.holder
            components = grouped.setdefault((where.scope, holder), {})
            components[unique_id] = component
            if component.get("value_template") is not None and component["platform"] == "select":
                # Some of its states cannot be chosen: a sensor shows them (see controls).
                state_id = f"{unique_id}_{STATE_SUFFIX}"
                state = self._read_only(definition, state_id, serial, path, object_id=f"{object_id}_{STATE_SUFFIX}")
                components[state_id] = {**state, "name": f"{definition.name} {STATE_SUFFIX}"}
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
                    "via_device": device_id(controlled_by) if controlled_by else self.bridge_identifier,
                }
                if info.firmware:
                    device["sw_version"] = info.firmware
            elif scope == "battery":
                object_id = device_id(holder)
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
                object_id = device_id(f"{serial}_{holder}")
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
                "availability": self._availability(serial),
                "availability_mode": "all",
                "components": components,
            }
            devices.extend(self.split_entities(DeviceConfig(self.discovery_topics.device(object_id), serial, document)))
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
        object_id: str | None = None,
    ) -> dict[str, Any] | None:
        """One entity's config, or None when a number's limits are not known for this device.

        ``read_only`` turns a control into a diagnostic sensor showing its state (see
        :meth:`_read_only`); a button cannot be shown that way, so the caller leaves it out.
        """
        if read_only and definition.command is not None:
            return self._read_only(definition, unique_id, serial, path, object_id=object_id)
        platform: str = definition.platform
        if definition.options == TIME_SLOTS_SYMBOL and self.slot_entities == "time":
            platform = "time"
        config: dict[str, Any] = {
            "platform": platform,
            **self.ids(platform, unique_id, object_id),
            "name": definition.name,
        }
        if platform != "button":  # a button has no state
            config["state_topic"] = self.topics.state(serial, path)
        if definition.command is not None:
            config["command_topic"] = self.topics.control(serial, definition.command)
        config.update(self._presentation(definition))
        command = self.registry.get(definition.command) if definition.command is not None else None
        if platform == "number":
            offered = number_range(definition, command, limits)
            if offered is None:
                return None
            config.update(min=_plain(offered.min), max=_plain(offered.max), step=_plain(offered.step))
            if definition.mode is not None:
                config["mode"] = definition.mode
        elif platform == "select" and command is not None:
            settable = settable_options(definition, command)
            config["options"] = list(settable)
            if shown_only(definition, command):
                config["value_template"] = state_template(settable)
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

    def _read_only(
        self, definition: EntityDefinition, unique_id: str, serial: str, path: str, *, object_id: str | None = None
    ) -> dict[str, Any]:
        """A control's state as a plain sensor: a number keeps its unit and class, the rest show their words."""
        config: dict[str, Any] = {
            "platform": "sensor",
            **self.ids("sensor", unique_id, object_id),
            "name": definition.name,
            "state_topic": self.topics.state(serial, path),
            "entity_category": "diagnostic",  # a setting someone else makes: never "config" on a sensor
        }
        kept = {"suggested_display_precision", "icon"}
        if definition.platform == "number":  # its value is a quantity; a select's or switch's is a word
            kept |= {"device_class", "unit_of_measurement"}
        config.update({key: value for key, value in self._presentation(definition).items() if key in kept})
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
            "availability": self._availability(snapshot.serial),
            "availability_mode": "all",
            "components": components,
        }
        return DeviceConfig(self.discovery_topics.device(identifier), PLANT_OWNER, document)


def device_id(holder: str) -> str:
    """givbridge's HA device identifier (and discovery object id) of a device: ``givbridge_<holder>``."""
    return f"givbridge_{holder}"


def _givtcp_device_id(serial: str, family: str) -> str:
    """GivTCP's identifier of a device's main HA device (the charger's was "<serial>_Charger")."""
    return f"{serial}_Charger" if family == CHARGER_FAMILY else f"{serial}_{serial}"


def _scope_order(scope: Scope, holder: str) -> tuple[int, str]:
    # The inverter first: its packs and meters name it as via_device.
    return ({"inverter": 0, "battery": 1, "meter": 2}[scope], holder)
