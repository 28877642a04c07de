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
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


def _same(old: object, new: Scalar) -> bool:
    """Whether ``new`` renders, encodes and compares exactly as ``old`` did (so needs no work).

    Stricter than ``==``: ``1 == 1.0 == True``, ``0.0 == -0.0`` and two datetimes of the same
    instant in different zones are equal but are written differently.
    """
    if old is new:
        return True
    if type(old) is not type(new) or old != new:
        return False
    if isinstance(new, float) and isinstance(old, float):
        return math.copysign(1.0, new) == math.copysign(1.0, old)
    if isinstance(new, datetime | time) and isinstance(old, datetime | time):
        return new.utcoffset() == old.utcoffset()
    return True


#: An object's keys sorted as ``json.dumps`` sorts them, each with its encoded form.
Layout = tuple[tuple[str, str], ...]


class _Node:
    """One object of the JSON document, its encoded text kept until a value under it changes."""

    __slots__ = ("children", "keys", "text")

    def __init__(self) -> None:
        self.children: dict[str, _Node | str] = {}  # key -> child object, or a value's encoded text
        self.keys: Layout | None = None
        self.text: str | None = None

    def encode(self, layouts: dict[tuple[str, ...], Layout]) -> str:
        """The text ``json.dumps(tree, sort_keys=True, separators=(",", ":"))`` gives this object.

        ``layouts`` holds each distinct set of keys' layout once: the same objects (``Power``,
        a pack's fields) recur in every device's document.
        """
        if self.text is None:
            if self.keys is None:
                names = tuple(sorted(self.children))
                layout = layouts.get(names)
                if layout is None:
                    layout = layouts[names] = tuple((key, json.dumps(key)) for key in names)
                self.keys = layout
            parts = []
            for key, encoded_key in self.keys:
                child = self.children[key]
                parts.append(f"{encoded_key}:{child if isinstance(child, str) else child.encode(layouts)}")
            self.text = "{" + ",".join(parts) + "}"
        return self.text


class _Conflict(Exception):
    """A path is both a value and an object's parent: :func:`nest` semantics, not a tree's."""


class _JsonDocument:
    """A device's ``<root>/<serial>/json`` text, re-encoded only along the paths whose value changed.

    The text is exactly ``json.dumps(tree, sort_keys=True, separators=(",", ":"))`` of the
    nested tree of :func:`_tree`: unchanged objects keep their encoded
    text and a changed value re-joins only the objects above it. A change in which paths
    exist rebuilds the tree (rare: a pack that did not answer, a value hygiene dropped).
    """

    def __init__(self, style_for: Callable[[str], ValueStyle], layouts: dict[tuple[str, ...], Layout]) -> None:
        self._style_for = style_for
        self._layouts = layouts
        self._root: _Node | None = None
        self._values: Mapping[str, Scalar] = {}
        self._raw: Mapping[str, Scalar] | None = None

    def text(self, values: Mapping[str, Scalar], raw: Mapping[str, Scalar] | None) -> str:
        """The document for ``values`` (and GivTCP's ``raw`` section when ``raw`` is given)."""
        root = self._root
        old_values, old_raw = self._values, self._raw
        self._values, self._raw = values, raw
        if (
            root is None
            or values.keys() != old_values.keys()
            or (raw is None) != (old_raw is None)
            or (raw is not None and old_raw is not None and raw.keys() != old_raw.keys())
        ):
            try:
                self._root = root = self._build(values, raw)
            except _Conflict:
                self._root = None  # a shape only nest() resolves: encode it whole, as the tree says
                return json.dumps(_tree(values, raw, self._style_for), sort_keys=True, separators=(",", ":"))
            return root.encode(self._layouts)
        missing = object()
        for path, value in values.items():
            if not _same(old_values.get(path, missing), value):
                _set(root, path.split("/"), json_value(value, self._style_for(path)))
        if raw is not None and old_raw is not None:
            raw_node = root.children["raw"]
            assert isinstance(raw_node, _Node)
            for path, value in raw.items():
                if not _same(old_raw.get(path, missing), value):
                    root.text = None
                    _set(raw_node, path.split("/"), json_value(value))
        return root.encode(self._layouts)

    def _build(self, values: Mapping[str, Scalar], raw: Mapping[str, Scalar] | None) -> _Node:
        root = _Node()
        for path, value in values.items():
            _insert(root, path.split("/"), json_value(value, self._style_for(path)))
        if raw is not None:
            if "raw" in root.children:
                raise _Conflict("raw")
            raw_node = root.children["raw"] = _Node()
            for path, value in raw.items():
                _insert(raw_node, path.split("/"), json_value(value))
        return root


def _insert(root: _Node, parts: list[str], value: Any) -> None:
    node = root
    for part in parts[:-1]:
        child = node.children.setdefault(sys.intern(part), _Node())  # one copy of each name, all devices
        if isinstance(child, str):
            raise _Conflict(part)
        node = child
    if parts[-1] in node.children:
        raise _Conflict(parts[-1])
    node.children[sys.intern(parts[-1])] = json.dumps(value)


def _set(root: _Node, parts: list[str], value: Any) -> None:
    """Replace a value the tree already holds, dropping the encoded text of the objects above it."""
    node = root
    node.text = None
    for part in parts[:-1]:
        child = node.children[part]
        assert isinstance(child, _Node)
        node = child
        node.text = None
    node.children[parts[-1]] = json.dumps(value)


def _tree(  # the document as one nested object: GivTCP's shape
    values: Mapping[str, Scalar], raw: Mapping[str, Scalar] | None, style_for: Callable[[str], ValueStyle]
) -> dict[str, Any]:
    tree = nest({path: json_value(value, style_for(path)) for path, value in values.items()})
    if raw is not None:
        tree["raw"] = nest({p: json_value(v) for p, v in raw.items()})
    return tree


_UNSEEN = object()


class _DeviceState:
    def __init__(self, style_for: Callable[[str], ValueStyle], layouts: dict[tuple[str, ...], Layout]) -> None:
        self.published: dict[str, tuple[str, float | None]] = {}  # path -> (payload, number)
        # path -> the last value judged against ``published`` whose outcome stands: published,
        # or not news. The same value again needs no rendering: it would be judged the same.
        self.settled: dict[str, object] = {}
        self.last_full: float | None = None
        self.last_json: str | None = None
        self.document = _JsonDocument(style_for, layouts)
        self.messages_last_poll = 0


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
        self._styles: dict[str, ValueStyle] = {}  # path -> style: the catalogue looked up once per path
        self._raw_paths: dict[str, str] = {}  # raw field -> its leaf path under raw/
        self._layouts: dict[tuple[str, ...], Layout] = {}  # the JSON documents' object layouts, shared

    def forget(self) -> None:
        """Forget what was published (after a broker reconnect) so the next round sends everything."""
        for device in self._devices.values():
            device.published.clear()
            device.settled.clear()
            device.last_full = None
            device.last_json = None

    def _style_for(self, path: str) -> ValueStyle:
        style = self._styles.get(path)
        if style is None:
            style = self._styles[path] = self.style(path.rsplit("/", 1)[-1])
        return style

    def _device(self, serial: str) -> _DeviceState:
        device = self._devices.get(serial)
        if device is None:
            device = self._devices[serial] = _DeviceState(self._style_for, self._layouts)
        return device

    def publish_snapshot(self, snapshot: Snapshot) -> int:
        """Publish what changed in ``snapshot``; returns the number of messages sent."""
        serial = snapshot.serial
        device = self._device(serial)
        now = self.clock.monotonic()
        full = device.last_full is None or now - device.last_full >= self.full_refresh_interval
        values: Mapping[str, Scalar] = snapshot.values
        if self.publish_raw:
            raw_paths = self._raw_paths
            values = dict(values)
            for path, value in snapshot.raw.items():
                leaf = raw_paths.get(path)
                if leaf is None:
                    leaf = raw_paths[path] = f"raw/{path}"
                values[leaf] = value
        sent = 0
        settled = device.settled
        for path, value in values.items():
            # A value judged before against what is still published is judged the same again.
            if full or not _same(settled.get(path, _UNSEEN), value):
                sent += self._publish_leaf(serial, device, path, value, full)
        document = device.document.text(snapshot.values, snapshot.raw if self.publish_raw else None)
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
        device = self._device(serial)
        return sum(self._publish_leaf(serial, device, path, value, False) for path, value in values.items())

    def _publish_leaf(self, serial: str, device: _DeviceState, path: str, value: Scalar, full: bool) -> int:
        style = self._style_for(path)
        payload = render(value, style)
        if payload is None:
            device.settled[path] = value
            return 0
        number = _numeric(value)
        previous = device.published.get(path)
        if not full and previous is not None:
            old_payload, old_number = previous
            if payload == old_payload:
                device.settled[path] = value
                return 0
            if number is not None and old_number is not None and abs(number - old_number) < style.deadband:
                device.settled[path] = value
                return 0
        if not self.client.publish(self.topics.state(serial, path), payload, retain=self.retain):
            device.settled.pop(path, None)  # not sent: judged again next time
            return 0
        device.published[path] = (payload, number)
        device.settled[path] = value
        return 1

    def messages_last_poll(self, serial: str) -> int:
        device = self._devices.get(serial)
        return device.messages_last_poll if device else 0

    # --------------------------------------------------------------- the bridge

    def bridge_online(self) -> None:
        self.client.publish(self.topics.bridge_state, ONLINE, retain=True)

    def bridge_info(self, info: Mapping[str, Any]) -> None:
        self.client.publish(self.topics.bridge_info, json.dumps(info, sort_keys=True, default=str), retain=True)
