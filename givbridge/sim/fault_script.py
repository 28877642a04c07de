"""Fault scripts: ``givbridge simulate --faults "silent=30@60/600,crc=0.05,drop/120"``.

A script is a comma-separated list of items, each ``NAME[=VALUE][@START][/EVERY]``:

* settings, on from ``START`` (default: at once): ``latency=SECONDS`` and ``jitter=SECONDS``
  (added to every answer), ``crc=P`` (probability that an answer has a bad CRC),
  ``garbage=P`` (that random bytes come before it), ``zero=P`` (that a read is answered with
  all zeros);
* windows, on for ``VALUE`` seconds from ``START`` and again every ``EVERY`` seconds (without
  a value: from ``START`` for good): ``silent`` (nothing is answered), ``refuse`` (new
  connections are reset), ``freeze`` (measurements stop changing), ``unpersisted`` (writes are
  acknowledged but not kept);
* events, at ``START`` and again every ``EVERY`` seconds: ``drop`` (every connection is
  closed), ``clock-jump=SECONDS`` (the inverter's clock jumps, back when negative).

Times and durations are seconds, or take a unit: ``90``, ``90s``, ``5m``, ``2h``; they run on
real time from when the simulator starts (link faults are measured against real client
timeouts), or on the clock passed to :meth:`FaultScript.run`. A script that cannot mean
anything is refused as a whole with :class:`FaultSpecError`, saying which item and why.
Each item drives one attribute or method of :class:`~givbridge.sim.faults.Faults`.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from givbridge.clock import Clock, SystemClock
from givbridge.sim.faults import Faults

Kind = Literal["setting", "window", "event"]

#: Shown by ``givbridge simulate --help`` and the README.
SYNTAX = (
    "comma-separated NAME[=VALUE][@START][/EVERY] items; times in seconds or with s/m/h. "
    "Settings: latency=S, jitter=S, crc=P, garbage=P, zero=P (P a probability 0-1). "
    "Windows (VALUE = how long, none = for good): silent, refuse, freeze, unpersisted. "
    "Events: drop, clock-jump=S. Example: silent=30@60/600,crc=0.05,drop/120"
)


class FaultSpecError(ValueError):
    """A fault script that cannot be carried out; the message says which item and why."""


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: Kind
    value: Literal["seconds", "signed-seconds", "probability", "none"]
    value_required: bool


_FAULTS: dict[str, _Fault] = {
    "latency": _Fault("setting", "seconds", True),
    "jitter": _Fault("setting", "seconds", True),
    "crc": _Fault("setting", "probability", True),
    "garbage": _Fault("setting", "probability", True),
    "zero": _Fault("setting", "probability", True),
    "silent": _Fault("window", "seconds", False),
    "refuse": _Fault("window", "seconds", False),
    "freeze": _Fault("window", "seconds", False),
    "unpersisted": _Fault("window", "seconds", False),
    "drop": _Fault("event", "none", False),
    "clock-jump": _Fault("event", "signed-seconds", True),
}

_ITEM = re.compile(r"^(?P<name>[a-z-]+)(?:=(?P<value>[^@/]*))?(?:@(?P<start>[^@/]*))?(?:/(?P<every>[^@/]*))?$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^(?P<number>[-+]?(?:\d+\.?\d*|\.\d+))(?P<unit>[smh]?)$")


def _seconds(text: str, what: str, *, signed: bool = False) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise FaultSpecError(f"{what} must be a number of seconds (or with s, m, h), not {text!r}")
    seconds = float(match["number"]) * _UNITS[match["unit"]]
    if not math.isfinite(seconds) or (seconds < 0 and not signed):
        raise FaultSpecError(f"{what} must not be negative, not {text!r}")
    return seconds


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}"


@dataclass(frozen=True, slots=True)
class FaultItem:
    """One item of a script: what, how much, when first (seconds from the start) and how often."""

    name: str
    value: float | None = None
    start: float = 0.0
    every: float | None = None

    @property
    def kind(self) -> Kind:
        return _FAULTS[self.name].kind

    def __str__(self) -> str:
        text = self.name
        if self.value is not None:
            text += f"={_format_seconds(self.value)}"
        if self.start:
            text += f"@{_format_seconds(self.start)}"
        if self.every is not None:
            text += f"/{_format_seconds(self.every)}"
        return text

    @classmethod
    def parse(cls, text: str) -> FaultItem:
        item = text.strip()
        match = _ITEM.match(item)
        if match is None or match["name"] not in _FAULTS:
            name = item.split("=")[0].split("@")[0].split("/")[0]
            if name not in _FAULTS:
                known = ", ".join(sorted(_FAULTS))
                raise FaultSpecError(f"{item!r}: no fault called {name!r} (known: {known})")
            raise FaultSpecError(f"{item!r} is not NAME[=VALUE][@START][/EVERY]")
        name = match["name"]
        fault = _FAULTS[name]
        value = cls._value(item, fault, match["value"])
        start = _seconds(match["start"], f"{item!r}: the start") if match["start"] is not None else 0.0
        every: float | None = None
        if match["every"] is not None:
            if fault.kind == "setting":
                raise FaultSpecError(f"{item!r}: {name} is a setting that stays on; it cannot repeat (/EVERY)")
            every = _seconds(match["every"], f"{item!r}: the repeat interval")
            if every <= 0:
                raise FaultSpecError(f"{item!r}: the repeat interval must be more than zero")
            if fault.kind == "window":
                if value is None:
                    raise FaultSpecError(f"{item!r}: a window that repeats needs a duration ({name}=SECONDS/EVERY)")
                if every <= value:
                    raise FaultSpecError(f"{item!r}: the window ({value:g} s) must be shorter than the interval")
        return cls(name, value, start, every)

    @staticmethod
    def _value(item: str, fault: _Fault, text: str | None) -> float | None:
        if text is None:
            if fault.value_required:
                raise FaultSpecError(f"{item!r} needs a value (NAME=VALUE)")
            return None
        if fault.value == "none":
            raise FaultSpecError(f"{item!r}: this fault takes no value")
        if fault.value == "probability":
            try:
                probability = float(text)
            except ValueError:
                raise FaultSpecError(f"{item!r}: the value must be a probability between 0 and 1") from None
            if not 0.0 <= probability <= 1.0:
                raise FaultSpecError(f"{item!r}: the value must be a probability between 0 and 1")
            return probability
        seconds = _seconds(text, f"{item!r}: the value", signed=fault.value == "signed-seconds")
        if fault.kind == "window" and seconds <= 0:
            raise FaultSpecError(f"{item!r}: a window must last more than zero seconds")
        if fault.value == "signed-seconds" and seconds == 0:
            raise FaultSpecError(f"{item!r}: a clock jump of zero seconds changes nothing")
        return seconds


class FaultScript:
    """A parsed fault script; :meth:`run` carries it out on a simulator's :class:`Faults`."""

    def __init__(self, items: tuple[FaultItem, ...]) -> None:
        if not items:
            raise FaultSpecError("the fault script is empty")
        settings = [item.name for item in items if item.kind == "setting"]
        twice = sorted({name for name in settings if settings.count(name) > 1})
        if twice:
            raise FaultSpecError(f"{', '.join(twice)} given more than once")
        self.items = items

    @classmethod
    def parse(cls, text: str) -> FaultScript:
        if not text.strip():
            raise FaultSpecError("the fault script is empty")
        parts = text.split(",")
        if any(not part.strip() for part in parts):
            raise FaultSpecError(f"{text!r} has an empty item (two commas in a row, or a comma at an end)")
        return cls(tuple(FaultItem.parse(part) for part in parts))

    def __str__(self) -> str:
        return ",".join(str(item) for item in self.items)

    def __repr__(self) -> str:
        return f"FaultScript({str(self)!r})"

    def schedule(self) -> Iterator[Step]:
        """Every change the script makes, in time order (seconds from its start); endless if an item repeats."""
        return heapq.merge(*(_steps(item) for item in self.items), key=lambda step: step.at)

    async def run(self, faults: Faults, clock: Clock | None = None) -> None:
        """Carry the script out from now; returns once nothing is left to do (never, if an item repeats)."""
        clock = clock or SystemClock()
        began = clock.monotonic()
        for step in self.schedule():
            await clock.sleep(began + step.at - clock.monotonic())
            _apply(faults, step.item, step.on)


@dataclass(frozen=True, slots=True)
class Step:
    """One change: at ``at`` seconds, set ``item`` (or switch its window on), or switch its window off."""

    at: float
    item: FaultItem
    on: bool = True


def _steps(item: FaultItem) -> Iterator[Step]:
    occurrence = 0
    while True:
        moment = item.start + occurrence * (item.every or 0.0)
        yield Step(moment, item)
        if item.kind == "window" and item.value is not None:
            yield Step(moment + item.value, item, on=False)
        if item.every is None:
            return
        occurrence += 1


def _apply(faults: Faults, item: FaultItem, on: bool = True) -> None:
    """Set a setting, switch a window on or off, or fire an event."""
    value = item.value if item.value is not None else 0.0
    match item.name:
        case "latency":
            faults.extra_latency = value
        case "jitter":
            faults.extra_jitter = value
        case "crc":
            faults.crc_rate = value
        case "garbage":
            faults.garbage_rate = value
        case "zero":
            faults.zero_rate = value
        case "silent" if on:
            faults.silence()
        case "silent":
            faults.end_silence()
        case "refuse":
            faults.refuse_connections = on
        case "freeze":
            faults.frozen = on
        case "unpersisted":
            faults.writes_not_persisted = on
        case "drop":
            faults.drop_connections()
        case "clock-jump":
            faults.jump_clock(value)
        case _:  # pragma: no cover - parse() only lets known names through
            raise AssertionError(item.name)
