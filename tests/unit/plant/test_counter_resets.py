"""The counter reset policy: a lower counter is a glitch once, a real reset when polls agree.

A replaced inverter or battery pack, or a firmware reset, restarts counters lower. One low
reading must still be held (dropouts and substituted pages last a poll), but a lower value
read on three polls in a row, each agreeing with the one before, is followed down once,
logged with both values and counted, so Home Assistant's ``total_increasing`` starts a new
cycle instead of freezing for ever.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from structlog.testing import capture_logs

from givbridge.plant.hygiene import SampleGuard
from tests.unit.plant.test_hygiene import LONDON, SERIAL, START, TODAY, TOTAL, confirmed, guard, sample

POLL = timedelta(seconds=15)
PACK_1 = "Battery_Details/Battery_Stack_1/BJ2314G759/Battery_Cycles"
PACK_2 = "Battery_Details/Battery_Stack_1/BJ2314G367/Battery_Cycles"


class Polls:
    """A guard fed one poll at a time, remembering what it published and logged."""

    def __init__(self, g: SampleGuard | None = None, at: datetime = START) -> None:
        self.guard = g or guard()
        self.at = at
        self.logs: list[dict[str, Any]] = []

    def read(self, *, fresh: bool = True, extra: dict[str, object] | None = None, **values: float) -> dict[str, Any]:
        self.at += POLL
        with capture_logs() as logs:
            result = self.guard.clean(
                {**sample(self.at, **values), **(extra or {})}, taken_at=self.at, serial=SERIAL, fresh=fresh
            )
        self.logs += logs
        return result.values

    def resets_logged(self) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry["event"] == "counter reset accepted"]


def baseline(total: float = 13.9) -> Polls:
    polls = Polls()
    polls.at = confirmed(polls.guard, START, total=total)
    return polls


def test_one_low_reading_is_a_glitch() -> None:
    polls = baseline()
    assert polls.read(total=13.5)[TOTAL] == 13.9
    assert polls.read(total=13.9)[TOTAL] == 13.9
    assert polls.read(total=14.0)[TOTAL] == 14.0
    assert polls.guard.counter_resets == 0 and polls.resets_logged() == []
    assert polls.guard.rejected_values == 1


def test_two_low_readings_are_still_a_glitch() -> None:
    polls = baseline()
    assert [polls.read(total=13.5)[TOTAL] for _ in range(2)] == [13.9, 13.9]
    assert polls.read(total=13.9)[TOTAL] == 13.9
    assert polls.read(total=13.5)[TOTAL] == 13.9  # a run starts again from one
    assert polls.guard.counter_resets == 0


def test_a_reset_is_followed_on_the_third_agreeing_poll_logged_once_and_counted() -> None:
    polls = baseline()
    published = [polls.read(total=reading)[TOTAL] for reading in (13.5, 13.5, 13.6, 13.6, 13.7)]
    assert published == [13.9, 13.9, 13.6, 13.6, 13.7]  # down once, then counting from the new base
    assert polls.guard.counter_resets == 1
    [logged] = polls.resets_logged()
    assert logged["counter"] == TOTAL and (logged["before"], logged["after"]) == (13.9, 13.6)
    assert logged["serial"] == SERIAL and logged["log_level"] == "warning"


def test_the_readings_of_a_pending_reset_say_so() -> None:
    polls = baseline()
    polls.at += POLL
    result = polls.guard.clean(sample(polls.at, total=13.5), taken_at=polls.at, serial=SERIAL)
    assert result.rejected[TOTAL] == "decreased from 13.9 to 13.5 (a reset if 3 polls in a row agree: 1 so far)"
    for _ in range(2):
        polls.at += POLL
        result = polls.guard.clean(sample(polls.at, total=13.5), taken_at=polls.at, serial=SERIAL)
    assert result.resets == {TOTAL: (13.9, 13.5)} and TOTAL not in result.rejected


def test_low_readings_that_disagree_are_no_reset() -> None:
    polls = baseline(1500.0)
    # Each lower than the last, or further above it than the site could count in 15 s.
    published = [polls.read(total=reading)[TOTAL] for reading in (900.0, 800.0, 850.0, 20.0, 20.0)]
    assert published == [1500.0] * 5
    assert polls.guard.counter_resets == 0
    assert polls.read(total=20.1)[TOTAL] == 20.1  # the third agreeing one
    assert polls.guard.counter_resets == 1


def test_a_candidate_that_decreases_again_is_no_reset() -> None:
    polls = baseline()
    assert [polls.read(total=reading)[TOTAL] for reading in (13.5, 13.5, 13.2, 13.2)] == [13.9] * 4
    assert polls.guard.counter_resets == 0
    assert polls.read(total=13.2)[TOTAL] == 13.2  # three in a row from the new, lower value


def test_a_zero_is_never_a_reset_however_long_it_lasts() -> None:
    polls = baseline()
    assert [polls.read(total=0.0)[TOTAL] for _ in range(10)] == [13.9] * 10
    # A counter that really restarted is followed from its first step.
    assert [polls.read(total=0.1)[TOTAL] for _ in range(3)] == [13.9, 13.9, 0.1]
    assert polls.guard.counter_resets == 1


def test_a_read_back_never_counts_towards_a_reset() -> None:
    polls = baseline()
    assert polls.read(total=13.5)[TOTAL] == 13.9
    # A write's read-back rebuilds the snapshot from the same measurements: no new evidence.
    assert [polls.read(total=13.5, fresh=False)[TOTAL] for _ in range(3)] == [13.9] * 3
    assert polls.read(total=13.5)[TOTAL] == 13.9
    assert polls.read(total=13.5)[TOTAL] == 13.5
    assert polls.read(total=13.5, fresh=False)[TOTAL] == 13.5
    assert polls.guard.counter_resets == 1


def test_each_counter_resets_on_its_own() -> None:
    """A replaced pack resets its own counters; the other pack's and the inverter's go on."""
    polls = Polls()
    for _ in range(3):
        polls.read(total=13.9, extra={PACK_1: 31, PACK_2: 31})
    published = [polls.read(total=13.9 + n / 10, extra={PACK_1: 31, PACK_2: 2}) for n in range(3)]
    assert [values[PACK_2] for values in published] == [31, 31, 2]
    assert [values[PACK_1] for values in published] == [31, 31, 31]
    assert [values[TOTAL] for values in published] == [13.9, 14.0, 14.1]
    assert [entry["counter"] for entry in polls.resets_logged()] == [PACK_2]
    assert isinstance(published[-1][PACK_2], int)  # a count stays a whole number


def test_a_restart_drops_a_pending_reset_and_confirmation_starts_again() -> None:
    polls = baseline()
    polls.read(total=13.5)
    polls.read(total=13.5)
    restarted = guard()
    restarted.restore(polls.guard.state())
    polls.guard = restarted
    assert [polls.read(total=13.5)[TOTAL] for _ in range(3)] == [13.9, 13.9, 13.5]
    assert restarted.counter_resets == 1


def test_a_today_counter_still_resets_at_once_at_midnight() -> None:
    polls = Polls(at=datetime(2026, 1, 10, 23, 50, tzinfo=LONDON))
    for minute in range(3):
        polls.read(today=20.0 + minute / 10)
    polls.at = datetime(2026, 1, 11, 0, 0, 30, tzinfo=LONDON)
    assert polls.read(today=0.0)[TODAY] == 0.0  # the inverter's midnight: no confirmation needed
    assert [polls.read(today=0.0)[TODAY] for _ in range(3)] == [0.0] * 3
    assert polls.guard.counter_resets == 0  # a day's reset is no counter reset


def test_a_today_counter_that_restarts_lower_in_the_day_is_followed_too() -> None:
    polls = baseline()
    for _ in range(3):
        polls.read(today=12.4)
    assert [polls.read(today=3.0)[TODAY] for _ in range(3)] == [12.4, 12.4, 3.0]
    assert polls.guard.counter_resets == 1


def test_today_counters_restart_at_once_when_the_inverter_day_changes_away_from_midnight() -> None:
    # The inverter's clock is set forward across midnight (to 01:40): today's counters restart
    # with the new day. That is the daily reset, not a counter reset to confirm and count.
    polls = Polls()
    polls.at = confirmed(polls.guard, START, total=13.9, today=5.0)
    jumped = (polls.at + POLL).astimezone(LONDON).replace(hour=1, minute=40) + timedelta(days=1)
    assert polls.read(total=13.9, today=0.3, extra={f"{SERIAL}/Invertor_Time": jumped})[TODAY] == 0.3
    assert polls.guard.counter_resets == 0 and polls.resets_logged() == []
    assert polls.guard.rejected_values == 0
    # The same fall without a change of day is still a glitch to hold.
    polls = Polls()
    polls.at = confirmed(polls.guard, START, total=13.9, today=5.0)
    assert polls.read(total=13.9, today=0.3)[TODAY] == 5.0
