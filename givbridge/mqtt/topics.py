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

A control topic's levels are checked before anything else (:meth:`Topics.parse_control`): a
command level is a letter then up to 63 letters, digits or ``_`` (every registered name is
camelCase ASCII); a serial level is 1-32 letters, digits, ``-`` or ``_``; and there are one
or two levels after ``<root>/control/``. Anything else (``<root>/control/a/b/c``, an empty
level, ``<root>/control/`` itself, a 65,535-byte level) raises :class:`InvalidTopic`, which the
control subscriber answers with ``invalid_topic`` on a response topic built only from checked
parts: ``<root>/bridge/response/<command>`` when the last level is a well-formed command name,
else ``<root>/bridge/response/invalid_topic``. A response topic is always far below MQTT's
65,535-byte limit, so publishing the answer cannot fail on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ONLINE = "online"
OFFLINE = "offline"
GIVTCP_NODE_ID = "GivEnergy"  # GivTCP hard-coded this node id in every discovery topic
ENTITY_NODE_ID = "givbridge"  # the node id of givbridge's own per-entity discovery topics

#: The device level of a response when no device could be named: ``<root>/bridge/response/<command>``.
BRIDGE_DEVICE = "bridge"
#: The command level of the answer to a control topic whose command could not be read.
INVALID_TOPIC = "invalid_topic"
COMMAND_LEVEL = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
SERIAL_LEVEL = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: How much of a bad topic a log line or an answer quotes.
QUOTED = 80


def quoted(topic: str) -> str:
    """``topic`` for a log line or a message: at most :data:`QUOTED` characters, its length said when cut."""
    return topic if len(topic) <= QUOTED else f"{topic[:QUOTED]}... ({len(topic)} characters)"


class InvalidTopic(ValueError):
    """A control topic that cannot name a command; ``command`` is its last level when that is well formed."""

    def __init__(self, reason: str, command: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command = command


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

    def parse_control(self, topic: str) -> tuple[str | None, str]:
        """``(serial or None, command)`` for a control topic; :class:`InvalidTopic` saying why not."""
        prefix = f"{self.root}/control/"
        levels = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
        last = levels[-1] if levels else ""
        command = last if COMMAND_LEVEL.fullmatch(last) else None
        expected = f"expected {prefix}<serial>/<command> or {prefix}<command>"
        if not levels or not any(levels):
            raise InvalidTopic(f"the topic names no command; {expected}", None)
        if len(levels) > 2 or not all(levels):
            shape = "an empty level" if len(levels) <= 2 else f"{len(levels)} levels after {prefix}"
            raise InvalidTopic(f"the topic has {shape}; {expected}", command)
        if command is None:
            raise InvalidTopic(
                f"the command level {quoted(last)!r} is not a command name (a letter, then up to 63 letters, "
                "digits or _)",
                None,
            )
        if len(levels) == 1:
            return None, command
        serial = levels[0]
        if not SERIAL_LEVEL.fullmatch(serial):
            raise InvalidTopic(
                f"the serial level {quoted(serial)!r} is not a serial (1 to 32 letters, digits, - or _)", command
            )
        return serial, command

    def answer(self, device: str | None, command: str) -> str:
        """The response topic for a command's answer, built only from well-formed levels.

        ``device`` (a serial) and ``command`` are used when they pass the control topic's level
        checks; otherwise the answer goes to the bridge device, and to :data:`INVALID_TOPIC`.
        """
        if not COMMAND_LEVEL.fullmatch(command):
            return self.response(BRIDGE_DEVICE, INVALID_TOPIC)
        if device is None or not (device == BRIDGE_DEVICE or SERIAL_LEVEL.fullmatch(device)):
            return self.response(BRIDGE_DEVICE, command)
        return self.response(device, command)


@dataclass(frozen=True, slots=True)
class DiscoveryTopics:
    """Home Assistant's discovery topics under ``prefix`` (``mqtt.discovery_prefix``)."""

    prefix: str

    def device(self, object_id: str) -> str:
        return f"{self.prefix}/device/{object_id}/config"

    def is_device(self, topic: str) -> bool:
        """Whether ``topic`` is under this prefix's device discovery topics."""
        return topic.startswith(f"{self.prefix}/device/")

    def entity(self, platform: str, object_id: str) -> str:
        """givbridge's per-entity config topic, for an entity announced outside its device's document."""
        return f"{self.prefix}/{platform}/{ENTITY_NODE_ID}/{object_id}/config"

    def is_ours(self, topic: str) -> bool:
        """Whether ``topic`` is one givbridge announces on under this prefix: a device's or an entity's."""
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return False
        levels = topic.removeprefix(head).split("/")
        entity = len(levels) == 4 and levels[1] == ENTITY_NODE_ID and levels[3] == "config"
        return entity or self.is_device(topic)

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
