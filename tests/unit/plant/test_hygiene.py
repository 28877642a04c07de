"""Hygiene: bounds, counters that only count up, midnight resets, persistence across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from givbridge.entities import load_catalogue
from givbridge.plant.hygiene import SampleGuard, midnight_window

LONDON = ZoneInfo("Europe/London")
SERIAL = "SA2314G123"
TODAY = "Energy/Today/PV_Energy_Today_kWh"
TOTAL = "Energy/Total/Import_Energy_Total_kWh"
START = datetime(2026, 6, 20, 9, 0, tzinfo=UTC)  # 10:00 in London


def guard() -> SampleGuard:
    return SampleGuard(load_catalogue(), LONDON)


def sample(at: datetime, **values: float | int) -> dict[str, object]:
    base: dict[str, object] = {
        f"{SERIAL}/Invertor_Time": at.astimezone(LONDON),
        f"{SERIAL}/Invertor_Max_Bat_Rate": 3600,
        f"{SERIAL}/Invertor_Max_Inv_Rate": 5000,
        "Energy/Total/PV_Energy_Total_kWh": 8000.0,
    }
    base.update({_path(k): v for k, v in values.items()})
    return base


def misread(kind: str, total: float, today: float) -> tuple[float, float]:
    """What a faulty poll of ``kind`` reads instead of the true total and today counters."""
    if kind == "dropout":
        return 0.0, 0.0
    if kind == "spike":
        return total + 7000, today + 300
    if kind == "dip":
        return total - 5, max(0.0, today - 3)
    if kind == "sag":
        return total - 50, today
    return total, today


def _path(key: str) -> str:
    return {"today": TODAY, "total": TOTAL, "soc": "Power/Power/SOC", "pv": "Power/Power/PV_Power"}[key]


def test_a_normal_day_passes_untouched() -> None:
    g = guard()
    for minute in range(0, 60, 5):
        at = START + timedelta(minutes=minute)
        values = sample(at, today=1.0 + minute / 10, total=100 + minute / 20, soc=50)
        result = g.clean(values, taken_at=at, serial=SERIAL)
        assert result.rejected == {}
        # A counter appears once three readings agree.
        assert result.values.get(TODAY) == (None if minute < 10 else 1.0 + minute / 10)
    assert g.rejected_values == 0


def test_a_bad_first_reading_never_becomes_the_baseline() -> None:
    g = guard()
    at = START
    assert TOTAL not in g.clean(sample(at, total=9000.0), taken_at=at, serial=SERIAL).values
    at += timedelta(seconds=15)
    assert TOTAL not in g.clean(sample(at, total=1000.0), taken_at=at, serial=SERIAL).values
    at += timedelta(seconds=15)
    assert TOTAL not in g.clean(sample(at, total=1000.0), taken_at=at, serial=SERIAL).values
    at += timedelta(seconds=15)
    assert g.clean(sample(at, total=1000.1), taken_at=at, serial=SERIAL).values[TOTAL] == 1000.1


def test_a_reading_judged_again_at_its_own_time_confirms_nothing() -> None:
    # A write's read-back carries the last poll's counters and is judged as of that poll: the
    # same reading twice is one reading, not two that agree.
    g = guard()
    first, second = START, START + timedelta(seconds=15)
    for at in (first, second, second):
        assert TOTAL not in g.clean(sample(at, total=1000.0), taken_at=at, serial=SERIAL).values
    third = second + timedelta(seconds=15)
    assert g.clean(sample(third, total=1000.0), taken_at=third, serial=SERIAL).values[TOTAL] == 1000.0
    # Once believed, a reading no newer than the last good one leaves the counter as it was.
    assert g.clean(sample(second, total=1000.0), taken_at=second, serial=SERIAL).values[TOTAL] == 1000.0
    assert g.rejected_values == 0


def test_out_of_bounds_readings_are_dropped() -> None:
    g = guard()
    result = g.clean(sample(START, soc=250, pv=99999), taken_at=START, serial=SERIAL)
    assert "Power/Power/SOC" not in result.values and "Power/Power/PV_Power" not in result.values
    assert set(result.rejected) == {"Power/Power/SOC", "Power/Power/PV_Power"}


def confirmed(g: SampleGuard, at: datetime, **values: float) -> datetime:
    """Feed agreeing readings until the counters have a baseline; returns the time of the last."""
    for _ in range(3):
        at += timedelta(seconds=15)
        g.clean(sample(at, **values), taken_at=at, serial=SERIAL)
    return at


def test_spike_dropout_and_decrease_are_held() -> None:
    g = guard()
    at = confirmed(g, START, total=1000.0)
    at += timedelta(seconds=15)
    spike = g.clean(sample(at, total=4000.0), taken_at=at, serial=SERIAL)
    assert spike.values[TOTAL] == 1000.0 and "jumped" in spike.rejected[TOTAL]
    at += timedelta(seconds=15)
    dropout = g.clean(sample(at, total=0.0), taken_at=at, serial=SERIAL)
    assert dropout.values[TOTAL] == 1000.0 and "decreased" in dropout.rejected[TOTAL]
    at += timedelta(seconds=15)
    wobble = g.clean(sample(at, total=999.9), taken_at=at, serial=SERIAL)  # firmware's 0.1 step back
    assert wobble.values[TOTAL] == 1000.0 and TOTAL not in wobble.rejected
    at += timedelta(seconds=15)
    assert g.clean(sample(at, total=1000.1), taken_at=at, serial=SERIAL).values[TOTAL] == 1000.1


def test_a_step_that_persists_becomes_the_new_baseline() -> None:
    g = guard()
    at = confirmed(g, START, total=1000.0)
    published = []
    for step in range(4):
        at += timedelta(seconds=15)
        published.append(g.clean(sample(at, total=5000.0 + step * 0.1), taken_at=at, serial=SERIAL).values[TOTAL])
    assert published[:2] == [1000.0, 1000.0]
    assert published[2:] == [5000.2, 5000.3]


def test_today_resets_only_at_the_inverters_midnight() -> None:
    g = guard()
    evening = confirmed(g, datetime(2026, 6, 20, 20, 0, tzinfo=UTC), today=20.0)  # 21:00 in London
    early = evening + timedelta(minutes=5)
    assert g.clean(sample(early, today=0.0), taken_at=early, serial=SERIAL).values[TODAY] == 20.0
    just_after = datetime(2026, 6, 20, 23, 1, tzinfo=UTC)  # 00:01 in London, the next day
    assert g.clean(sample(just_after, today=0.0), taken_at=just_after, serial=SERIAL).values[TODAY] == 0.0


def test_the_inverters_clock_decides_midnight_not_ours() -> None:
    g = guard()
    at = confirmed(g, datetime(2026, 6, 20, 20, 0, tzinfo=UTC), today=12.0)  # 21:00 here ...
    later = at + timedelta(minutes=1)
    skewed = sample(later, today=0.0)
    skewed[f"{SERIAL}/Invertor_Time"] = datetime(2026, 6, 21, 0, 2, tzinfo=LONDON)  # ... but 00:02 on the inverter
    assert g.clean(skewed, taken_at=later, serial=SERIAL).values[TODAY] == 0.0


def test_all_zero_lifetime_counters_reject_the_sample() -> None:
    g = guard()
    values = sample(START, total=0.0)
    values["Energy/Total/PV_Energy_Total_kWh"] = 0.0
    result = g.clean(values, taken_at=START, serial=SERIAL)
    assert result.sample_rejected and result.values == {}
    assert g.rejected_samples == 1


def test_memory_survives_a_restart() -> None:
    first = guard()
    at = confirmed(first, START, total=1500.0)
    second = guard()
    second.restore(first.state())
    at += timedelta(minutes=1)
    result = second.clean(sample(at, total=0.0), taken_at=at, serial=SERIAL)
    assert result.values[TOTAL] == 1500.0


def test_a_lasting_drop_is_followed_once() -> None:
    g = guard()
    at = confirmed(g, START, total=1500.0)
    published = []
    for step in range(8):
        at += timedelta(minutes=3)
        published.append(g.clean(sample(at, total=2.0 + step * 0.1), taken_at=at, serial=SERIAL).values[TOTAL])
    assert published[0] == 1500.0  # held while it might be a glitch ...
    assert published[-1] == round(2.0 + 7 * 0.1, 1)  # ... followed once it has lasted
    assert sorted(published[published.index(min(published)) :]) == published[published.index(min(published)) :]


def test_damaged_state_is_ignored() -> None:
    g = guard()
    g.restore({TOTAL: ["x", "y"], TODAY: [1.0], "a": None})
    assert g.state() == {}


def test_midnight_window_is_minutes_before_to_an_hour_after() -> None:
    day = datetime(2026, 3, 29, tzinfo=LONDON)
    assert midnight_window(day.replace(hour=0, minute=30))
    assert midnight_window(day.replace(hour=23, minute=58))
    assert not midnight_window(day.replace(hour=1, minute=30))
    assert not midnight_window(day.replace(hour=23, minute=40))


# A fault (dropout, spike, dip) lasts one or two polls, as in the field: the dongle's
# substitutions and all-zero pages are single frames. Anything longer is a real change,
# which the guard follows after confirming it (tested above).
fault = st.sampled_from(["dropout", "spike", "dip"])
stretch = st.tuples(
    st.lists(st.tuples(st.just("normal"), st.floats(0.0, 0.3), st.integers(5, 900)), min_size=1, max_size=6),
    st.lists(st.tuples(fault, st.floats(0.0, 0.3), st.integers(5, 60)), max_size=2),
)


@given(stretches=st.lists(stretch, min_size=1, max_size=15), start_hour=st.integers(0, 23))
def test_published_counters_never_decrease_outside_midnight(
    stretches: list[tuple[list[tuple[str, float, int]], list[tuple[str, float, int]]]], start_hour: int
) -> None:
    events = [event for normal, faults in stretches for event in (*normal, *faults)]
    g = guard()
    at = datetime(2026, 1, 10, start_hour, 0, tzinfo=LONDON)
    true_total, true_today = 3000.0, 5.0
    last_total: float | None = None
    last_today: float | None = None
    for kind, growth, seconds in events:
        previous = at
        at += timedelta(seconds=seconds)
        true_total += growth
        true_today = growth if at.date() != previous.date() else true_today + growth
        read_total, read_today = misread(kind, round(true_total, 1), round(true_today, 1))
        result = g.clean(sample(at, total=read_total, today=read_today), taken_at=at, serial=SERIAL)
        total, today = result.values.get(TOTAL), result.values.get(TODAY)
        if total is not None:
            if last_total is not None:
                assert total >= last_total
            last_total = total
        if today is not None:
            if last_today is not None and not midnight_window(at):
                assert today >= last_today
            last_today = today
