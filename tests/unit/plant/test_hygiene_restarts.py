"""Hygiene across bridge restarts: the counter memory goes through the data directory and back.

A restart is where GivTCP users saw their Energy dashboard spike (GivTCP #237, #338): the first
sample after it must be judged against the last good values, exactly as if nothing happened.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from givbridge.plant.hygiene import SampleGuard, midnight_window, reset_day
from givbridge.store import JsonStore
from tests.unit.plant.test_hygiene import LONDON, SERIAL, TODAY, TOTAL, guard, misread, sample

DOCUMENT = f"counters-{SERIAL}"  # the runner's name for it (GuardMemory.document)

event = st.one_of(
    st.tuples(st.just("normal"), st.floats(0.0, 0.3), st.integers(5, 900)),
    st.tuples(st.sampled_from(["dropout", "spike", "dip", "restart"]), st.floats(0.0, 0.3), st.integers(5, 60)),
    # Two polls reading 50 kWh low: agreeing readings, one short of the three polls in a row
    # that make the guard follow a lower counter as a real reset.
    st.tuples(st.just("sag"), st.floats(0.0, 0.3), st.integers(5, 60)),
)


def restarted(old: SampleGuard, store: JsonStore) -> SampleGuard:
    """What a new bridge process has: a fresh guard with the memory the old one saved."""
    store.save(DOCUMENT, old.state())
    new = guard()
    new.restore(store.load(DOCUMENT))
    return new


@given(events=st.lists(event, min_size=1, max_size=80), start_hour=st.integers(0, 23))
def test_restarts_between_faults_never_publish_a_decrease_or_a_spike(
    events: list[tuple[str, float, int]], start_hour: int
) -> None:
    # A fault lasts one poll here (longer ones are real changes the guard follows once confirmed,
    # tested in test_hygiene.py); a restart may come between any two polls, faults included.
    with tempfile.TemporaryDirectory() as directory:
        store = JsonStore(Path(directory))
        g = guard()
        at = datetime(2026, 3, 28, start_hour, 0, tzinfo=LONDON).astimezone(UTC)  # time passes in UTC
        true_total, true_today = 3000.0, 5.0
        last_total: float | None = None
        last_today: float | None = None
        previous_fault = False
        resets: set[date] = set()  # the inverter days whose midnight reset was published
        polls = []
        for kind, growth, seconds in events:
            if kind == "restart":
                polls.append((kind, growth, seconds))
                continue
            fault = kind != "normal" and not previous_fault  # faults never follow one another
            previous_fault = fault
            polls.extend([(kind if fault else "normal", growth, seconds)] * (2 if kind == "sag" else 1))
        for kind, growth, seconds in polls:
            if kind == "restart":
                g = restarted(g, store)
                continue
            before = at
            at += timedelta(seconds=seconds)
            true_total += growth
            local, previous = at.astimezone(LONDON), before.astimezone(LONDON)
            true_today = growth if local.date() != previous.date() else true_today + growth
            read_total, read_today = misread(kind, round(true_total, 1), round(true_today, 1))
            result = g.clean(sample(at, total=read_total, today=read_today), taken_at=at, serial=SERIAL)
            total, today = result.values.get(TOTAL), result.values.get(TODAY)
            if isinstance(total, float):
                assert last_total is None or total >= last_total, "a lifetime counter went back"
                assert total <= true_total + 0.1, "a spike reached the published lifetime counter"
                last_total = total
            if isinstance(today, float):
                if last_today is not None and today < last_today:
                    assert midnight_window(local), "a today counter went back outside the midnight window"
                    assert reset_day(local) not in resets, "a today counter was reset twice in one day"
                    resets.add(reset_day(local))
                last_today = today


def test_a_today_counter_resets_once_per_inverter_day_even_across_a_restart() -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = JsonStore(Path(directory))
        g = guard()
        at = datetime(2026, 1, 10, 23, 50, tzinfo=LONDON)
        for minutes in range(3):  # a baseline
            moment = at + timedelta(minutes=minutes)
            g.clean(sample(moment, today=20.0 + minutes / 10), taken_at=moment, serial=SERIAL)

        def read(moment: datetime, today: float) -> object:
            return g.clean(sample(moment, today=today), taken_at=moment, serial=SERIAL).values[TODAY]

        assert read(datetime(2026, 1, 11, 0, 1, tzinfo=LONDON), 0.1) == 0.1  # the inverter's midnight
        assert read(datetime(2026, 1, 11, 0, 20, tzinfo=LONDON), 0.0) == 0.1  # a dropout, not a second reset
        g = restarted(g, store)
        assert read(datetime(2026, 1, 11, 0, 30, tzinfo=LONDON), 0.0) == 0.1  # nor after a restart
        assert read(datetime(2026, 1, 11, 0, 35, tzinfo=LONDON), 0.6) == 0.6
        assert read(datetime(2026, 1, 11, 23, 59, tzinfo=LONDON), 0.0) == 0.0  # the next midnight is new
