"""Data hygiene: what is published must be physically possible and counters must only count up.

Home Assistant's Energy dashboard treats any decrease of a ``total_increasing`` sensor as a
meter reset and counts the whole value again, so one bad sample costs a user a day of
statistics (GivTCP #338, #419). The library already drops frames with bad CRCs, all-zero
dropouts and battery sub-bus splices; this stage adds what needs the values' meaning and
their history:

* **bounds** per entity (from its definition, with symbolic limits such as the inverter's
  battery power resolved per device): a reading outside them is dropped;
* **counters** never decrease (but see resets below) and never jump: a value below the last good one, a zero after
  a dropout, or an increase faster than the site could possibly generate or use (a power
  ceiling times the time since the last good sample, with margin) is replaced by the last
  good value and counted as rejected. "Today" counters may reset only in a window around the
  inverter's own midnight, and only once per day (a zero read after the reset would make HA
  count the day's energy twice). A jump that persists, consistently, for several samples is a
  real step (a firmware correction, a long outage) and becomes the new baseline. A counter is
  first published only once three readings agree, so a bad first reading cannot become the
  baseline;
* **counter resets** (a replaced inverter, a BMS or firmware reset): a lower reading
  is held as a glitch, but when it is read on ``_CONFIRMATIONS`` polls in a row, each
  agreeing with the one before (the same or a little higher, as a counter counts from its new
  base), the counter is followed down, once: the lower value is published, so HA's
  ``total_increasing`` sees the reset, the reset is logged with both values and counted in
  :attr:`SampleGuard.counter_resets`. Each counter is judged on its own, so a battery pack
  whose BMS restarts its counts resets only its own counters. A zero never counts towards a
  reset (a counter reading zero is what a dropout looks like); a counter that really
  restarted is followed from its first step;
* **derived counters that can fall** (``hold_decreases`` in their definition: Load and
  Self_Consumption, GivTCP's "forced never to decrease except at midnight"): PV minus export
  really does fall while the battery exports, so a lower value is no fault and no reset. It is
  held at the last published value, quietly, and followed again once the formula passes it;
  a today one still resets at the inverter's midnight;
* **whole samples** that cannot be real (every lifetime counter zero) are rejected outright.

The guard's memory of last good counters is persisted by the caller so a restart compares
against them too: the first sample after a restart cannot spike HA's statistics either. The
readings of a reset (or jump) still being confirmed are deliberately not persisted: they are
only evidence while they come from consecutive polls, so after a restart confirmation starts
again, which costs a real reset a few polls and never lets a glitch through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any

from givbridge.entities import EntityCatalogue, resolve_limit
from givbridge.log import get_logger
from givbridge.plant.snapshot import Scalar, as_number

log = get_logger(__name__)

# Fastest a counter can legitimately grow, by what it counts, in kW. Residential supplies top
# out around 100 A x 240 V; PV arrays and batteries are bounded by the devices' own ratings
# where known (see _ceiling). Deliberately generous: the point is to stop absurd spikes
# (thousands of kWh), not to second-guess real readings.
_SITE_CEILING_KW = 30.0
_JUMP_MARGIN = 1.5
_RESOLUTION_SLACK_KWH = 0.25  # counters move in 0.1 kWh steps; two steps plus rounding
_NOISE_KWH = 0.1  # firmware sometimes steps a counter back by 0.1: hold it, but it is no fault
# Consecutive polls, each agreeing with the one before, that make a jump or a reset (a lower
# counter) real. The faults seen in the field (a dongle's substituted or all-zero page, a
# spliced BMS frame) last one poll, rarely two, and do not go on counting from the wrong
# value. A daily counter's midnight reset does not wait for them (the midnight rule takes it
# at once, once a day) and a zero never counts towards a reset, so a dropout after midnight
# cannot make HA count a day twice. At the default 15 s polling a real reset is published 30 s
# after it is first read.
_CONFIRMATIONS = 3
_RESET_VALUE_KWH = 1.0  # a today counter just after midnight is small
_BEFORE_MIDNIGHT = timedelta(minutes=5)
_AFTER_MIDNIGHT = timedelta(minutes=60)


@dataclass(frozen=True, slots=True)
class Cleaned:
    """One sample after hygiene."""

    values: dict[str, Scalar]
    rejected: dict[str, str]  # path -> why its reading was not published as read
    sample_rejected: str | None = None  # why nothing of this sample may be published
    resets: dict[str, tuple[float, float]] = field(default_factory=dict)  # path -> (before, after)


@dataclass(slots=True)
class _Counter:
    value: float
    at: datetime
    pending: list[tuple[float, datetime]] = field(default_factory=list)  # an unconfirmed jump or reset
    reset_day: date | None = None  # the inverter day whose midnight reset this counter has had
    day: date | None = None  # the inverter day of the reading it holds (not kept across restarts)


def reset_day(local: datetime) -> date:
    """The inverter day a today counter's reset at ``local`` starts (23:58 belongs to the next day)."""
    return (local + _BEFORE_MIDNIGHT).date()


def midnight_window(local: datetime) -> bool:
    """Whether a local time is close enough to midnight for a today counter to reset."""
    since_midnight = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second)
    return since_midnight <= _AFTER_MIDNIGHT or since_midnight >= timedelta(days=1) - _BEFORE_MIDNIGHT


class SampleGuard:
    """The hygiene rules for one device, with its memory of last good counters."""

    def __init__(self, catalogue: EntityCatalogue, tz: tzinfo, *, phases: int = 1) -> None:
        self.catalogue = catalogue
        self.tz = tz
        self.site_ceiling_kw = _SITE_CEILING_KW * (3 if phases == 3 else 1)
        self._counters: dict[str, _Counter] = {}
        self._candidates: dict[str, list[tuple[float, datetime]]] = {}  # first readings awaiting agreement
        self.rejected_values = 0
        self.rejected_samples = 0
        self.counter_resets = 0  # lower counters followed as real resets (Stats/Counter_Resets)

    # ------------------------------------------------------------------ persistence

    def state(self) -> dict[str, Any]:
        """The last good counters, to :meth:`restore` after a restart (readings being confirmed are left out)."""
        return {
            path: [c.value, c.at.isoformat(), c.reset_day.isoformat() if c.reset_day else None]
            for path, c in self._counters.items()
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for path, entry in state.items():
            try:
                value, at = float(entry[0]), datetime.fromisoformat(entry[1])
                day = date.fromisoformat(entry[2]) if len(entry) > 2 and entry[2] else None
            except (TypeError, ValueError, IndexError):
                continue  # a damaged entry only costs that counter its history
            if at.tzinfo is not None:
                self._counters[path] = _Counter(value, at, reset_day=day)

    # ------------------------------------------------------------------ the rules

    def clean(self, values: Mapping[str, Scalar], *, taken_at: datetime, serial: str, fresh: bool = True) -> Cleaned:
        """``values`` as they may be published.

        ``fresh`` is False when the counters in ``values`` are the last poll's again (a write's
        read-back re-reads settings, not measurements): counters then keep what they have, so
        one reading never counts twice towards confirming a jump or a reset.
        """
        limits = {
            "battery_max_power": as_number(values.get(f"{serial}/Invertor_Max_Bat_Rate")),
            "inverter_max_power": as_number(values.get(f"{serial}/Invertor_Max_Inv_Rate")),
        }
        totals = [v for p, v in values.items() if p.startswith("Energy/Total/") and isinstance(v, int | float)]
        if totals and not any(totals):
            self.rejected_samples += 1
            return Cleaned({}, {}, "every lifetime energy counter reads zero")

        inverter_time = values.get(f"{serial}/Invertor_Time")
        local = (inverter_time if isinstance(inverter_time, datetime) else taken_at).astimezone(self.tz)
        cleaned: dict[str, Scalar] = {}
        rejected: dict[str, str] = {}
        resets: dict[str, tuple[float, float]] = {}
        for path, value in values.items():
            definition = self.catalogue.for_path(path)
            number = as_number(value)
            reason = None
            if definition is not None and number is not None and definition.bounds is not None:
                low = resolve_limit(definition.bounds.min, limits)
                high = resolve_limit(definition.bounds.max, limits)
                if (low is not None and number < low) or (high is not None and number > high):
                    reason = f"{number} is outside {low}..{high}"
            if definition is not None and definition.counter is not None and number is not None:
                reading = None if reason or not fresh else number
                accepted, counter_reason = self._counter(
                    path, reading, definition.counter, taken_at, local, limits, resets, hold=definition.hold_decreases
                )
                if (taken := self._counters.get(path)) is not None and taken.at == taken_at:
                    taken.day = local.date()  # the inverter day of the reading the counter took
                reason = reason or counter_reason
                if accepted is not None:
                    cleaned[path] = _as_read(value, accepted)
            elif reason is None:
                cleaned[path] = value
            if reason is not None:
                rejected[path] = reason
        self.rejected_values += len(rejected)
        self.counter_resets += len(resets)
        for path, (before, after) in resets.items():
            log.warning("counter reset accepted", serial=serial, counter=path, before=before, after=after)
        return Cleaned(cleaned, rejected, resets=resets)

    def _counter(
        self,
        path: str,
        value: float | None,
        kind: str,
        at: datetime,
        local: datetime,
        limits: Mapping[str, float | None],
        resets: dict[str, tuple[float, float]],
        *,
        hold: bool = False,
    ) -> tuple[float | None, str | None]:
        """The value to publish for a counter, and why the reading was not used (if it was not).

        An accepted reset is added to ``resets``. ``hold``: the counter is derived by a formula
        that can legitimately fall, so a lower value is held rather than judged (see the module
        docstring).
        """
        last = self._counters.get(path)
        if value is None:  # out of bounds, or not a new reading: hold what we had
            return (last.value if last else None), None
        if last is None:
            return self._cold_start(path, value, at, local, limits, hold=hold), None
        if at <= last.at:
            return last.value, None
        if value < last.value:
            day = reset_day(local)
            # A held counter waits for midnight itself: just before it, its formula can fall
            # below the reset threshold during a forced export, which is no reset.
            at_midnight = midnight_window(local) and (local.hour == 0 or not hold)
            if kind == "today" and at_midnight and value <= _RESET_VALUE_KWH and last.reset_day != day:
                self._counters[path] = _Counter(value, at, reset_day=day)  # the inverter's midnight reset
                return value, None
            if kind == "today" and last.day is not None and local.date() != last.day and value <= _RESET_VALUE_KWH:
                # The inverter's day changed since the last reading away from midnight (its clock
                # was set, or jumped): today's counters restarted with it. The daily reset, not
                # a counter reset to confirm and count.
                self._counters[path] = _Counter(value, at, reset_day=day)
                return value, None
            if hold:
                # PV - export falls while the battery exports (down to the formula's floor of
                # zero); the true self-consumption only grows, so max(published, PV - export)
                # is still a valid lower bound of it: holding is the honest figure, not a fault
                # to count and never a reset. A dropout's zero is held the same way.
                last.pending = []
                return last.value, None
            if last.value - value <= _NOISE_KWH + 1e-9:
                # The firmware's 0.1 step back: hold quietly. It is in line with the last good
                # value, so it ends any run of out-of-line readings.
                last.pending = []
                return last.value, None
            return self._reset(path, last, value, at, limits, resets)
        if value - last.value <= self._allowed(path, limits, last.at, at):
            self._counters[path] = _Counter(value, at, reset_day=last.reset_day)
            return value, None
        if self._confirmed(last, value, at, limits):
            self._counters[path] = _Counter(value, at, reset_day=last.reset_day)  # a real step: it kept being true
            return value, None
        return last.value, f"jumped from {last.value} to {value} in {(at - last.at).total_seconds():.0f}s"

    def _reset(
        self,
        path: str,
        last: _Counter,
        value: float,
        at: datetime,
        limits: Mapping[str, float | None],
        resets: dict[str, tuple[float, float]],
    ) -> tuple[float | None, str | None]:
        """A reading below the last good one: a glitch to hold, or (once confirmed) a real reset."""
        decreased = f"decreased from {last.value} to {value}"
        if value <= 0:
            last.pending = []  # a zero is what a dropout reads: never evidence of a reset
            return last.value, decreased
        if not self._confirmed(last, value, at, limits):
            return (
                last.value,
                f"{decreased} (a reset if {_CONFIRMATIONS} polls in a row agree: {len(last.pending)} so far)",
            )
        # Lower on every poll, counting on from there: the counter really restarted (a replaced
        # inverter, a BMS or firmware reset). Follow it down, once; HA starts a new cycle.
        self._counters[path] = _Counter(value, at, reset_day=last.reset_day)
        resets[path] = (last.value, value)
        return value, None

    def _cold_start(
        self,
        path: str,
        value: float,
        at: datetime,
        local: datetime,
        limits: Mapping[str, float | None],
        *,
        hold: bool = False,
    ) -> float | None:
        """Publish a counter only once readings agree, so a bad first one cannot become the baseline.

        A counter that may fall (``hold``) agrees when it moves no faster either way, else a long
        forced export would keep it unpublished.
        """
        candidates = [*self._candidates.get(path, []), (value, at)]
        floor = -1.0 if hold else 0.0
        if not all(
            floor * self._allowed(path, limits, t1, t2) <= b - a <= self._allowed(path, limits, t1, t2)
            for (a, t1), (b, t2) in pairwise(candidates)
        ):
            candidates = [(value, at)]
        if len(candidates) < _CONFIRMATIONS:
            self._candidates[path] = candidates
            return None
        del self._candidates[path]
        # Small just after midnight: today's reset has happened, and a zero now would be a dropout.
        after_reset = midnight_window(local) and local.hour == 0 and value <= _RESET_VALUE_KWH
        self._counters[path] = _Counter(value, at, reset_day=reset_day(local) if after_reset else None)
        return value

    def _confirmed(
        self,
        last: _Counter,
        value: float,
        at: datetime,
        limits: Mapping[str, float | None],
    ) -> bool:
        """Record an out-of-line reading; True once enough consistent ones in a row confirm it."""
        path = ""  # rate limits for confirmations use the generic ceiling
        pending = [*last.pending, (value, at)]
        consistent = all(0 <= b - a <= self._allowed(path, limits, t1, t2) for (a, t1), (b, t2) in pairwise(pending))
        last.pending = pending if consistent else [(value, at)]
        return len(last.pending) >= _CONFIRMATIONS

    def _allowed(self, path: str, limits: Mapping[str, float | None], since: datetime, until: datetime) -> float:
        hours = max(0.0, (until - since).total_seconds()) / 3600
        return self._ceiling_kw(path, limits) * hours * _JUMP_MARGIN + _RESOLUTION_SLACK_KWH

    def _ceiling_kw(self, path: str, limits: Mapping[str, float | None]) -> float:
        """The fastest this counter could grow, in kW."""
        leaf = path.rsplit("/", 1)[-1]
        battery = limits.get("battery_max_power")
        if leaf.startswith(("Battery_Charge", "Battery_Discharge", "AC_Charge")) and battery:
            return battery / 1000 * 1.2
        if leaf.startswith("Battery_Throughput") and battery:
            return battery / 1000 * 2.4
        return self.site_ceiling_kw


def _as_read(original: Scalar, number: float) -> Scalar:
    """Keep a counter's type (ints stay ints) when publishing a held value."""
    return round(number) if isinstance(original, int) and not isinstance(original, bool) else number
