"""The MQTT topic scheme, in one place.

GivTCP-compatible state: ``<root>/<serial>/<Group>/<Sub>/<Name>`` (e.g.
``GivEnergy/SA1234G567/Power/Power/SOC``); one JSON document per device at
``<root>/<serial>/json``; availability at ``<root>/bridge/state`` (also the Last Will) and
``<root>/<serial>/availability``; commands at ``<root>/control/<serial>/<command>`` (and
``<root>/control/<command>`` when one inverter is configured), answered on
``<root>/<serial>/response/<command>``.
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE = "online"
OFFLINE = "offline"


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
