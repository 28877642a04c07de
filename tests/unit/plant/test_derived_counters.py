"""Derived counters (Load, Self_Consumption) never go back, except a today one at midnight.

Self_Consumption is PV minus export: during a forced export the battery's energy raises export
while PV stands still, so the formula really falls. Published as ``total_increasing``, a fall
would read as a glitch and, repeated, as a counter reset that makes Home Assistant count the
whole value again. GivTCP's rule is kept instead: the published value holds until the formula
passes it again, quietly (no rejection, no reset), and a today counter still resets at midnight.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from structlog.testing import capture_logs

from givbridge.entities import load_catalogue
from givbridge.plant.hygiene import SampleGuard
from tests.unit.plant.test_hygiene import LONDON, SERIAL, guard

POLL = timedelta(seconds=15)
SELF_TODAY = "Energy/Today/Self_Consumption_Energy_Today_kWh"
SELF_TOTAL = "Energy/Total/Self_Consumption_Energy_Total_kWh"
LOAD_TOTAL = "Energy/Total/Load_Energy_Total_kWh"
IMPORT_TOTAL = "Energy/Total/Import_Energy_Total_kWh"
AFTERNOON = datetime(2026, 6, 20, 14, 0, tzinfo=UTC)  # 15:00 in London


class Polls:
    """One guard fed a poll at a time; remembers what it logged."""

    def __init__(self, at: datetime = AFTERNOON) -> None:
        self.guard: SampleGuard = guard()
        self.at = at
        self.logs: list[dict[str, Any]] = []

    def read(self, values: dict[str, float]) -> dict[str, Any]:
        self.at += POLL
        sample: dict[str, object] = {
            f"{SERIAL}/Invertor_Time": self.at.astimezone(LONDON),
            f"{SERIAL}/Invertor_Max_Bat_Rate": 3600,
            f"{SERIAL}/Invertor_Max_Inv_Rate": 5000,
            "Energy/Total/PV_Energy_Total_kWh": 8000.0,
            **values,
        }
        with capture_logs() as logs:
            result = self.guard.clean(sample, taken_at=self.at, serial=SERIAL)
        self.logs += logs
        return result.values

    def baseline(self, values: dict[str, float]) -> None:
        for _ in range(3):
            self.read(values)


def forced_export(polls: Polls, *, path: str, start: float, polls_long: int, kwh_per_poll: float) -> list[Any]:
    """Publish ``path`` while its formula falls by ``kwh_per_poll`` each poll; what was published."""
    return [polls.read({path: round(start - kwh_per_poll * i, 2)})[path] for i in range(1, polls_long + 1)]


def test_only_the_derived_counters_are_held() -> None:
    held = {key for key, d in load_catalogue().definitions.items() if d.hold_decreases}
    assert held == {
        "Load_Energy_Today_kWh",
        "Load_Energy_Total_kWh",
        "Self_Consumption_Energy_Today_kWh",
        "Self_Consumption_Energy_Total_kWh",
    }


def test_a_forced_export_holds_self_consumption_without_a_fault_or_a_reset() -> None:
    polls = Polls()
    polls.baseline({SELF_TOTAL: 500.0, SELF_TODAY: 9.0})
    # An hour of forced export: the formula falls on every poll, for far longer than the
    # three agreeing polls that confirm a real reset of a read counter.
    published_total = forced_export(polls, path=SELF_TOTAL, start=500.0, polls_long=240, kwh_per_poll=0.02)
    assert set(published_total) == {500.0}
    assert polls.guard.counter_resets == 0
    assert polls.guard.rejected_values == 0
    assert polls.logs == []


def test_a_held_counter_follows_again_once_the_formula_passes_it() -> None:
    polls = Polls()
    polls.baseline({SELF_TOTAL: 500.0})
    forced_export(polls, path=SELF_TOTAL, start=500.0, polls_long=10, kwh_per_poll=0.3)  # down to 497.0
    assert polls.read({SELF_TOTAL: 499.9})[SELF_TOTAL] == 500.0  # still below what was published
    assert polls.read({SELF_TOTAL: 500.2})[SELF_TOTAL] == 500.2
    assert polls.read({SELF_TOTAL: 500.4})[SELF_TOTAL] == 500.4
    assert polls.guard.rejected_values == 0 and polls.guard.counter_resets == 0


def test_load_energy_is_held_the_same_way() -> None:
    polls = Polls()
    polls.baseline({LOAD_TOTAL: 3000.0})
    assert set(forced_export(polls, path=LOAD_TOTAL, start=3000.0, polls_long=6, kwh_per_poll=0.5)) == {3000.0}
    assert polls.guard.counter_resets == 0 and polls.guard.rejected_values == 0


def test_a_formula_floored_at_zero_is_held_quietly() -> None:
    # Export past PV on a dark morning: max(PV - export, 0) reads 0, which is no dropout here.
    polls = Polls()
    polls.baseline({SELF_TODAY: 0.4})
    assert [polls.read({SELF_TODAY: 0.0})[SELF_TODAY] for _ in range(5)] == [0.4] * 5
    assert polls.guard.rejected_values == 0 and polls.guard.counter_resets == 0


def test_a_read_counter_falling_the_same_way_is_still_a_reset() -> None:
    # The hold belongs to the derived counters only: a read counter that restarts lower and
    # counts on from there is a real reset, as before.
    polls = Polls()
    polls.baseline({IMPORT_TOTAL: 500.0})
    published = [polls.read({IMPORT_TOTAL: value})[IMPORT_TOTAL] for value in (20.0, 20.0, 20.1)]
    assert published == [500.0, 500.0, 20.1] and polls.guard.counter_resets == 1
    # The same readings of a derived counter are held.
    polls.baseline({SELF_TOTAL: 500.0})
    assert [polls.read({SELF_TOTAL: value})[SELF_TOTAL] for value in (20.0, 20.0, 20.1)] == [500.0] * 3
    assert polls.guard.counter_resets == 1


def test_a_held_today_counter_still_resets_at_the_inverters_midnight() -> None:
    polls = Polls(at=datetime(2026, 6, 20, 22, 50, tzinfo=UTC))  # 23:50 in London
    polls.baseline({SELF_TODAY: 6.0})
    # A forced export running into midnight: small readings before it are no reset ...
    before = forced_export(polls, path=SELF_TODAY, start=1.2, polls_long=28, kwh_per_poll=0.04)
    assert polls.at.astimezone(LONDON).hour == 23 and set(before) == {6.0}
    # ... the inverter's own midnight is, once.
    while (polls.at + POLL).astimezone(LONDON).hour == 23:
        assert polls.read({SELF_TODAY: 0.1})[SELF_TODAY] == 6.0
    assert polls.read({SELF_TODAY: 0.0})[SELF_TODAY] == 0.0
    assert polls.read({SELF_TODAY: 0.0})[SELF_TODAY] == 0.0
    assert polls.read({SELF_TODAY: 0.1})[SELF_TODAY] == 0.1
    assert polls.guard.counter_resets == 0 and polls.guard.rejected_values == 0


def test_a_first_baseline_is_found_while_the_formula_falls() -> None:
    polls = Polls()
    published = [polls.read({SELF_TOTAL: 500.0 - 0.05 * i}).get(SELF_TOTAL) for i in range(4)]
    assert published[:2] == [None, None]
    assert published[2] == 499.9
    assert published[3] == 499.9  # and then held, as ever
