"""The state publisher sends exactly what a publisher that re-renders every value every poll sends.

:class:`ReferencePublisher` is the straightforward implementation (every leaf rendered and
compared, the whole JSON document nested and encoded on every poll), kept here as the
specification. The real :class:`~givbridge.mqtt.state.StatePublisher` skips the work for
values that did not change; over a sequence of polls with changing, unchanging, appearing
and disappearing values, deadbands, timed-action values, failed publishes, full refreshes
and a forget (broker reconnect), both must produce the same messages: topics, payloads and
retain flags, in the same order, and the same counts.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest

from givbridge.clock import ScaledClock
from givbridge.mqtt.state import (
    MESSAGES_PATH,
    StatePublisher,
    StyleLookup,
    ValueStyle,
    json_value,
    render,
)
from givbridge.mqtt.topics import Topics
from givbridge.plant.snapshot import DeviceInfo, Scalar, Snapshot, nest

SERIAL = "SA1234G567"
FULL_REFRESH = 300.0


@dataclass
class RecordingClient:
    """Records every publish; while ``failing`` is set, publishes fail as when disconnected."""

    failing: bool = False
    sent: list[tuple[str, str | None, bool]] = field(default_factory=list)

    def publish(self, topic: str, payload: str | None = None, *, retain: bool = False, qos: int | None = None) -> bool:
        if self.failing:
            return False
        self.sent.append((topic, payload, retain))
        return True


class ReferencePublisher:
    """Every value rendered and compared, the whole document encoded, every poll."""

    def __init__(self, client: RecordingClient, topics: Topics, *, retain: bool, style: StyleLookup, clock: Any,
                 publish_raw: bool) -> None:  # fmt: skip
        self.client, self.topics, self.retain, self.style, self.clock = client, topics, retain, style, clock
        self.publish_raw = publish_raw
        self.published: dict[str, dict[str, tuple[str, float | None]]] = {}
        self.last_full: dict[str, float | None] = {}
        self.last_json: dict[str, str | None] = {}

    def forget(self) -> None:
        for serial in self.published:
            self.published[serial].clear()
            self.last_full[serial] = None
            self.last_json[serial] = None

    def _style_for(self, path: str) -> ValueStyle:
        return self.style(path.rsplit("/", 1)[-1])

    def publish_snapshot(self, snapshot: Snapshot) -> int:
        serial = snapshot.serial
        self.published.setdefault(serial, {})
        last_full = self.last_full.setdefault(serial, None)
        now = self.clock.monotonic()
        full = last_full is None or now - last_full >= FULL_REFRESH
        values: dict[str, Scalar] = dict(snapshot.values)
        if self.publish_raw:
            values.update({f"raw/{path}": value for path, value in snapshot.raw.items()})
        sent = sum(self._leaf(serial, path, value, full) for path, value in values.items())
        tree = nest({path: json_value(value, self._style_for(path)) for path, value in snapshot.values.items()})
        if self.publish_raw:
            tree["raw"] = nest({p: json_value(v) for p, v in snapshot.raw.items()})
        document = json.dumps(tree, sort_keys=True, separators=(",", ":"))
        if (full or document != self.last_json.get(serial)) and self.client.publish(
            self.topics.json(serial), document, retain=self.retain
        ):
            self.last_json[serial] = document
            sent += 1
        if full:
            self.last_full[serial] = now
        if sent or full:
            sent += self._leaf(serial, MESSAGES_PATH, sent + 1, full)
        return sent

    def publish_values(self, serial: str, values: Mapping[str, Scalar]) -> int:
        self.published.setdefault(serial, {})
        return sum(self._leaf(serial, path, value, False) for path, value in values.items())

    def _leaf(self, serial: str, path: str, value: Scalar, full: bool) -> int:
        style = self._style_for(path)
        payload = render(value, style)
        if payload is None:
            return 0
        number = float(value.timestamp()) if isinstance(value, datetime) else None
        if number is None and not isinstance(value, bool) and isinstance(value, int | float):
            number = float(value)
        previous = self.published[serial].get(path)
        if not full and previous is not None:
            if payload == previous[0]:
                return 0
            if number is not None and previous[1] is not None and abs(number - previous[1]) < style.deadband:
                return 0
        if not self.client.publish(self.topics.state(serial, path), payload, retain=self.retain):
            return 0
        self.published[serial][path] = (payload, number)
        return 1


STYLES = {
    "Battery_Power": ValueStyle(precision=0, deadband=25.0),
    "Battery_Voltage": ValueStyle(precision=2, deadband=0.2),
    "SOC": ValueStyle(precision=0),
    "Battery_Temperature": ValueStyle(precision=1, deadband=0.5),
}


def style(leaf: str) -> ValueStyle:
    return STYLES.get(leaf, ValueStyle())


LONDON = timezone(timedelta(hours=1))


def polls(seed: int) -> list[tuple[str, dict[str, Scalar], dict[str, Scalar]]]:
    """A sequence of (event, values, raw): most values steady, some drifting, some jumping."""
    rng = random.Random(seed)
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    steady: dict[str, Scalar] = {
        "Power/Power/SOC": 54,
        "Control/Mode": "Eco",
        "Control/Enable_Charge": True,
        "Timeslots/Charge_start_time_slot_1": time(0, 30),
        "Stats/GivTCP_Version": "3.0.0",
        "Energy/Total/PV_Energy_Total_kWh": 1234.5,
        "Battery_Details/Battery_Stack_1/BA1/Battery_SOC": 54,
        "Battery_Details/Battery_Stack_1/BA1/Battery_Cells": 16,
        "Battery_Details/Battery_Stack_1/BA2/Battery_SOC": 55,
        "Inverter/Unicode_Name_é": "ü",
    }
    sequence = []
    power = 500.0
    voltage = 52.0
    for index in range(60):
        values = dict(steady)
        power += rng.choice([0.0, 0.0, 3.0, -7.0, 30.0, -120.0])
        voltage += rng.choice([0.0, 0.05, -0.05, 0.3])
        values["Power/Power/Battery_Power"] = power
        values["Power/Power/Battery_Voltage"] = round(voltage, 3)
        values["Power/Power/Battery_Temperature"] = rng.choice([21.0, 21.2, 21.6, 20.9])
        values["Power/Power/Signed"] = rng.choice([0.0, -0.0, 0.0004, -0.0004])
        values["Stats/Last_Updated_Time"] = (start + timedelta(seconds=15 * (index // 2))).astimezone(
            rng.choice([UTC, LONDON])
        )
        values["Stats/Rejected_Values"] = index // 10
        if index % 7 == 3:
            values.pop("Battery_Details/Battery_Stack_1/BA2/Battery_SOC")  # a pack that did not answer
        if 20 <= index < 25:
            values["Energy/Today/Extra_kWh"] = 1.5  # a value that appears for a while
        if index % 11 == 5:
            values["Power/Power/SOC"] = None  # hygiene dropped it
        if index == 30:
            steady["Control/Mode"] = "Timed Export"
            steady["Power/Power/SOC"] = 55
        raw: dict[str, Scalar] = {"invertor/battery_percent": values["Power/Power/SOC"], "invertor/p_battery": power}
        event = "poll"
        if index in (12, 13):
            event = "failing"
        elif index == 40:
            event = "forget"
        elif index in (8, 33):
            event = "timed"
        elif index in (18, 45):
            event = "full"  # the full refresh falls due before this poll
        sequence.append((event, values, raw))
    return sequence


@pytest.mark.parametrize(("publish_raw", "seed"), [(False, 1), (True, 2), (False, 3)])
def test_the_publisher_sends_what_the_reference_sends(publish_raw: bool, seed: int) -> None:
    clock = ScaledClock(speed=1e-9, start=datetime(2026, 6, 1, tzinfo=UTC))
    topics = Topics("GivEnergy")
    ours_client, reference_client = RecordingClient(), RecordingClient()
    ours = StatePublisher(ours_client, topics, retain=True, full_refresh_interval=FULL_REFRESH, style=style,
                          publish_raw=publish_raw, clock=clock)  # fmt: skip
    reference = ReferencePublisher(reference_client, topics, retain=True, style=style, clock=clock,
                                   publish_raw=publish_raw)  # fmt: skip
    info = DeviceInfo(serial=SERIAL, model="Hybrid Gen3", family="hybrid-gen3")
    counts: list[tuple[int, int]] = []
    for index, (event, values, raw) in enumerate(polls(seed)):
        clock.advance(15)
        ours_client.failing = reference_client.failing = event == "failing"
        if event == "forget":
            ours.forget()
            reference.forget()
        if event == "full":
            clock.advance(FULL_REFRESH)
        if event == "timed":
            timed: dict[str, Scalar] = {"Control/Mode": "Timed Demand", "Power/Power/Battery_Power": 9999.0}
            counts.append((ours.publish_values(SERIAL, timed), reference.publish_values(SERIAL, timed)))
        snapshot = Snapshot(info=info, taken_at=datetime(2026, 6, 1, tzinfo=UTC), values=values, raw=raw)
        counts.append((ours.publish_snapshot(snapshot), reference.publish_snapshot(snapshot)))
        assert ours_client.sent == reference_client.sent, f"poll {index} ({event})"
        assert counts[-1][0] == counts[-1][1] == ours.messages_last_poll(SERIAL) or event == "timed"
    # The sequence exercised what it is meant to: quiet polls, busy polls, and the document both ways.
    per_poll = [ours_count for ours_count, _ in counts]
    assert 0 in per_poll and max(per_poll) > 10
    documents = [payload for topic, payload, _ in ours_client.sent if topic.endswith("/json")]
    assert len(documents) > 5 and len(set(documents)) > 5
