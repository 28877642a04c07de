"""The MQTT topic scheme, in one place.

GivTCP-compatible state: ``<root>/<serial>/<Group>/<Sub>/<Name>`` (e.g.
``GivEnergy/SA1234G567/Power/Power/SOC``); one JSON document per device at
``<root>/<serial>/json``; availability at ``<root>/bridge/state`` (also the Last Will) and
``<root>/<serial>/availability``; commands at ``<root>/control/<serial>/<command>`` (and
``<root>/control/<command>`` when one inverter is configured), answered on
``<root>/<serial>/response/<command>``; the bridge device's requests at
``<root>/bridge/request/<name>``.

Home Assistant's side (:class:`DiscoveryTopics`): one device discovery document per device at
``<discovery_prefix>/device/<object_id>/config``, HA's birth message at
``<discovery_prefix>/status``, and GivTCP's old per-entity configs at
``<discovery_prefix>/<platform>/GivEnergy/<object_id>/config``.
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE = "online"
OFFLINE = "offline"
GIVTCP_NODE_ID = "GivEnergy"  # GivTCP hard-coded this node id in every discovery topic


@dataclass(frozen=True, slots=True)
class Topics:
    root: str

    @property
    def bridge_state(self) -> str:
        return f"{self.root}/bridge/state"

    @property
    def bridge_info(self) -> str:
        return f"{self.root}/bridge/info"

    @property
    def bridge_request(self) -> str:
        """Filter for bridge-level requests (restart, log level) from the bridge device."""
        return f"{self.root}/bridge/request/+"

    def bridge_request_topic(self, name: str) -> str:
        """Where the bridge device's control for request ``name`` (``restart``...) sends."""
        return f"{self.root}/bridge/request/{name}"

    def state(self, serial: str, path: str) -> str:
        return f"{self.root}/{serial}/{path}"

    def json(self, serial: str) -> str:
        return f"{self.root}/{serial}/json"

    def availability(self, serial: str) -> str:
        return f"{self.root}/{serial}/availability"

    def control(self, serial: str, command: str) -> str:
        return f"{self.root}/control/{serial}/{command}"

    @property
    def control_filter(self) -> str:
        return f"{self.root}/control/#"

    def response(self, serial: str, command: str) -> str:
        return f"{self.root}/{serial}/response/{command}"

    def parse_control(self, topic: str) -> tuple[str | None, str] | None:
        """``(serial or None, command)`` for a control topic, else None."""
        prefix = f"{self.root}/control/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if len(parts) == 1 and parts[0]:
            return None, parts[0]
        if len(parts) == 2 and all(parts):
            return parts[0], parts[1]
        return None


@dataclass(frozen=True, slots=True)
class DiscoveryTopics:
    """Home Assistant's discovery topics under ``prefix`` (``mqtt.discovery_prefix``)."""

    prefix: str

    def device(self, object_id: str) -> str:
        return f"{self.prefix}/device/{object_id}/config"

    def is_device(self, topic: str) -> bool:
        """Whether ``topic`` is under this prefix's device discovery topics."""
        return topic.startswith(f"{self.prefix}/device/")

    @property
    def birth(self) -> str:
        """HA's birth and last will (``online``/``offline``)."""
        return f"{self.prefix}/status"

    def givtcp(self, platform: str, object_id: str) -> str:
        """GivTCP's per-entity config topic."""
        return f"{self.prefix}/{platform}/{GIVTCP_NODE_ID}/{object_id}/config"

    @property
    def givtcp_filter(self) -> str:
        """Every GivTCP per-entity config topic."""
        return f"{self.prefix}/+/{GIVTCP_NODE_ID}/+/config"

    def givtcp_object_id(self, topic: str) -> str | None:
        """The object id of a GivTCP per-entity config topic, else None."""
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 4 or parts[1] != GIVTCP_NODE_ID or parts[3] != "config":
            return None
        return parts[2]
