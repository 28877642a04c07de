"""Publishing device state: GivTCP-compatible leaf topics, a JSON document, the bridge's state.

Each device's availability is :mod:`givbridge.mqtt.availability`'s.

Publish on change: a leaf is republished only when its payload changed by at least its
deadband (a noisy power reading that moved 3 W is not news) or when the device's full
refresh is due (``mqtt.full_refresh_interval``, default 300 s), so retained state stays
fresh and a consumer that missed a message catches up. Everything is republished after a
reconnect to the broker (:meth:`StatePublisher.forget`). The deadband compares against the
last *published* value, so slow drift is published once it adds up.

Payloads are plain text as GivTCP sends them: numbers with their entity's precision,
timestamps ISO-8601 with offset, slot times ``HH:MM:SS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from givbridge.clock import Clock, SystemClock
from givbridge.log import get_logger
from givbridge.mqtt.client import MqttClient
from givbridge.mqtt.topics import ONLINE, Topics
from givbridge.plant.snapshot import Scalar, Snapshot, nest

log = get_logger(__name__)

MESSAGES_PATH = "Stats/MQTT_Messages_Last_Poll"


@dataclass(frozen=True, slots=True)
class ValueStyle:
    """How a value is rendered and when a change is worth publishing."""

    precision: int | None = None  # decimal places for floats; None = as decoded
    deadband: float = 0.0  # smallest change published on its own


StyleLookup = Callable[[str], ValueStyle]  # leaf name -> style


def _round(value: float, precision: int | None) -> float:
    return round(value, precision if precision is not None else 3)


def render(value: Scalar, style: ValueStyle = ValueStyle()) -> str | None:
    """The text payload for a value, or None for a value that has no payload."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        precision = style.precision if style.precision is not None else 3
        return f"{value:.{precision}f}" if precision > 0 else str(round(value))
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    return str(value)


def json_value(value: Scalar, style: ValueStyle = ValueStyle()) -> Any:
    """A value as it appears in the JSON document (numbers stay numbers)."""
    if isinstance(value, float):
        return _round(value, style.precision)
    if isinstance(value, datetime | time):
        return render(value, style)
    return value


def _numeric(value: Scalar) -> float | None:
    """The value on a number line, for deadband comparisons (timestamps in seconds)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class _DeviceState:
    published: dict[str, tuple[str, float | None]] = field(default_factory=dict)  # path -> (payload, number)
    last_full: float | None = None
    last_json: str | None = None
    messages_last_poll: int = 0


class StatePublisher:
    """Turns snapshots and availability into MQTT messages."""

    def __init__(
        self,
        client: MqttClient,
        topics: Topics,
        *,
        retain: bool,
        full_refresh_interval: float,
        style: StyleLookup,
        publish_raw: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.topics = topics
        self.retain = retain
        self.full_refresh_interval = full_refresh_interval
        self.style = style
        self.publish_raw = publish_raw
        self.clock = clock or SystemClock()
        self._devices: dict[str, _DeviceState] = {}

    def forget(self) -> None:
        """Forget what was published (after a broker reconnect) so the next round sends everything."""
        for device in self._devices.values():
            device.published.clear()
            device.last_full = None
            device.last_json = None

    def _style_for(self, path: str) -> ValueStyle:
        return self.style(path.rsplit("/", 1)[-1])

    def publish_snapshot(self, snapshot: Snapshot) -> int:
        """Publish what changed in ``snapshot``; returns the number of messages sent."""
        serial = snapshot.serial
        device = self._devices.setdefault(serial, _DeviceState())
        now = self.clock.monotonic()
        full = device.last_full is None or now - device.last_full >= self.full_refresh_interval
        values: dict[str, Scalar] = dict(snapshot.values)
        if self.publish_raw:
            values.update({f"raw/{path}": value for path, value in snapshot.raw.items()})
        sent = 0
        for path, value in values.items():
            sent += self._publish_leaf(serial, device, path, value, full)
        document = json.dumps(self._json_tree(snapshot), sort_keys=True, separators=(",", ":"))
        changed = full or document != device.last_json
        if changed and self.client.publish(self.topics.json(serial), document, retain=self.retain):
            device.last_json = document
            sent += 1
        if full:
            device.last_full = now
        # The count of this round is itself published, so it includes its own message.
        if sent or full:
            count = sent + 1
            sent += self._publish_leaf(serial, device, MESSAGES_PATH, count, full)
        device.messages_last_poll = sent
        return sent

    def publish_values(self, serial: str, values: Mapping[str, Scalar]) -> int:
        """Publish a few of a device's leaves between its snapshots (a timed action's state), if changed.

        The next snapshot carries the same values, so it sends them again only if they changed since.
        """
        device = self._devices.setdefault(serial, _DeviceState())
        return sum(self._publish_leaf(serial, device, path, value, False) for path, value in values.items())

    def _publish_leaf(self, serial: str, device: _DeviceState, path: str, value: Scalar, full: bool) -> int:
        style = self._style_for(path)
        payload = render(value, style)
        if payload is None:
            return 0
        number = _numeric(value)
        previous = device.published.get(path)
        if not full and previous is not None:
            old_payload, old_number = previous
            if payload == old_payload:
                return 0
            if number is not None and old_number is not None and abs(number - old_number) < style.deadband:
                return 0
        if not self.client.publish(self.topics.state(serial, path), payload, retain=self.retain):
            return 0
        device.published[path] = (payload, number)
        return 1

    def _json_tree(self, snapshot: Snapshot) -> dict[str, Any]:
        values = {path: json_value(value, self._style_for(path)) for path, value in snapshot.values.items()}
        tree = nest(values)
        if self.publish_raw:
            tree["raw"] = nest({p: json_value(v) for p, v in snapshot.raw.items()})
        return tree

    def messages_last_poll(self, serial: str) -> int:
        device = self._devices.get(serial)
        return device.messages_last_poll if device else 0

    # --------------------------------------------------------------- the bridge

    def bridge_online(self) -> None:
        self.client.publish(self.topics.bridge_state, ONLINE, retain=True)

    def bridge_info(self, info: Mapping[str, Any]) -> None:
        self.client.publish(self.topics.bridge_info, json.dumps(info, sort_keys=True, default=str), retain=True)
