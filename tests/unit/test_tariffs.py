"""Tariff accounting: which rate applies, what today's energy cost, midnight, restarts, the battery's value."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from givbridge.clock import ScaledClock
from givbridge.config import TariffSettings
from givbridge.plant.snapshot import DeviceInfo, Snapshot
from givbridge.store import JsonStore
from givbridge.tariffs import (
    DAY,
    MAX_GAP,
    NIGHT,
    Reading,
    TariffState,
    TariffTracker,
    advance,
    battery_value,
    published,
    rate_type_at,
)

LONDON = ZoneInfo("Europe/London")
SERIAL = "SA2314G123"
TWO_RATES = TariffSettings(
    currency="EUR",
    import_day_rate=0.30,
    import_night_rate=0.10,
    export_rate=0.15,
    day_start=time(5, 30),
    night_start=time(23, 30),
)
DYNAMIC = TariffSettings(import_day_rate=0.30, import_night_rate=0.10, export_rate=0.15, dynamic=True)


def reading(
    at: datetime, imported: float, exported: float = 0.0, ac: float = 0.0, stored: float | None = None
) -> Reading:
    return Reading(
        local=at.astimezone(LONDON),
        taken_at=at.astimezone(UTC),
        import_total=imported,
        export_total=exported,
        ac_charge_total=ac,
        stored_kwh=stored,
    )


# --------------------------------------------------------------------------- which rate


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (time(5, 29), NIGHT),
        (time(5, 30), DAY),
        (time(12, 0), DAY),
        (time(23, 29, 59), DAY),
        (time(23, 30), NIGHT),
        (time(0, 0), NIGHT),
    ],
)
def test_the_night_rate_runs_across_midnight(local: time, expected: str) -> None:
    assert rate_type_at(local, TWO_RATES) == expected


def test_a_night_window_after_midnight() -> None:
    settings = TWO_RATES.model_copy(update={"night_start": time(0, 30), "day_start": time(4, 30)})
    assert [rate_type_at(time(h, m), settings) for h, m in ((0, 29), (0, 30), (4, 29), (4, 30), (23, 59))] == [
        DAY,
        NIGHT,
        NIGHT,
        DAY,
        DAY,
    ]


def test_one_rate_is_always_the_day_rate() -> None:
    single = TariffSettings(import_day_rate=0.25)
    assert {rate_type_at(time(h), single) for h in range(24)} == {DAY}


# --------------------------------------------------------------------------- costs


def test_imports_are_charged_at_the_rate_in_force_and_exports_earn() -> None:
    start = datetime(2026, 1, 10, 22, 0, tzinfo=UTC)
    state = advance(TariffState(), reading(start, 1000.0, 500.0), DAY, TWO_RATES)
    state = advance(state, reading(start + timedelta(minutes=15), 1001.0, 500.4), DAY, TWO_RATES)
    state = advance(state, reading(start + timedelta(minutes=30), 1003.0, 500.4), NIGHT, TWO_RATES)
    assert (state.day_energy, state.night_energy) == pytest.approx((1.0, 2.0))
    assert (state.day_cost, state.night_cost) == pytest.approx((0.30, 0.20))
    assert state.export_income == pytest.approx(0.4 * 0.15)
    values = published(state, NIGHT, TWO_RATES)
    assert values["Energy/Rates/Current_Rate"] == 0.10
    assert values["Energy/Rates/Current_Rate_Type"] == NIGHT
    assert values["Energy/Rates/Import_Cost_Today"] == pytest.approx(0.5)
    assert values["Energy/Rates/Import_ppkwh_Today"] == pytest.approx(0.5 / 3, abs=1e-4)
    assert values["Energy/Rates/Export_ppkwh_Today"] == pytest.approx(0.15)
    assert values["Energy/Rates/Night_Rate"] == 0.10


def test_before_any_import_the_average_price_is_the_current_one() -> None:
    state = advance(TariffState(), reading(datetime(2026, 1, 10, 12, 0, tzinfo=UTC), 10.0), DAY, TWO_RATES)
    assert published(state, DAY, TWO_RATES)["Energy/Rates/Import_ppkwh_Today"] == 0.30


def test_one_rate_publishes_no_night_figures() -> None:
    single = TariffSettings(import_day_rate=0.25)
    values = published(TariffState(), DAY, single)
    assert not any("Night" in path for path in values)
    assert values["Energy/Rates/Export_Rate"] == 0.0


def test_the_inverters_midnight_starts_a_new_day() -> None:
    evening = datetime(2026, 1, 10, 23, 50, tzinfo=UTC)  # 23:50 in London (GMT)
    state = advance(TariffState(), reading(evening, 100.0), NIGHT, TWO_RATES)
    state = advance(state, reading(evening + timedelta(minutes=5), 101.0, 1.0), NIGHT, TWO_RATES)
    assert (state.day, state.night_energy, state.export_energy) == (date(2026, 1, 10), 1.0, 1.0)
    state = advance(state, reading(evening + timedelta(minutes=15), 101.5, 1.0), NIGHT, TWO_RATES)
    assert (state.day, state.night_energy, state.night_cost) == (date(2026, 1, 11), 0.5, pytest.approx(0.05))
    assert state.export_energy == 0.0


def test_a_clock_set_back_across_midnight_keeps_the_day() -> None:
    after = datetime(2026, 1, 11, 0, 5, tzinfo=UTC)
    state = advance(TariffState(), reading(after, 100.0), NIGHT, TWO_RATES)
    state = advance(state, reading(after + timedelta(minutes=1), 100.5), NIGHT, TWO_RATES)
    back = Reading(
        local=datetime(2026, 1, 10, 23, 59, tzinfo=LONDON),  # the inverter clock was just set back
        taken_at=after + timedelta(minutes=2),
        import_total=100.7,
        export_total=0.0,
        ac_charge_total=0.0,
        stored_kwh=None,
    )
    state = advance(state, back, NIGHT, TWO_RATES)
    assert (state.day, state.night_energy) == (date(2026, 1, 11), pytest.approx(0.7))


def test_energy_over_a_long_gap_is_not_charged() -> None:
    start = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    state = advance(TariffState(), reading(start, 100.0), DAY, TWO_RATES)
    state = advance(state, reading(start + MAX_GAP + timedelta(seconds=1), 110.0), DAY, TWO_RATES)
    assert state.day_energy == 0.0 and state.import_total == 110.0
    state = advance(state, reading(start + MAX_GAP + timedelta(minutes=1), 110.2), DAY, TWO_RATES)
    assert state.day_energy == pytest.approx(0.2)


def test_a_reset_counter_is_followed_without_charging() -> None:
    start = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    state = advance(TariffState(), reading(start, 5000.0), DAY, TWO_RATES)
    state = advance(state, reading(start + timedelta(minutes=1), 3.0), DAY, TWO_RATES)
    state = advance(state, reading(start + timedelta(minutes=2), 3.5), DAY, TWO_RATES)
    assert state.day_energy == pytest.approx(0.5)


# --------------------------------------------------------------------------- the battery's value


def test_grid_charge_is_paid_for_solar_is_free_and_discharge_keeps_the_price() -> None:
    value = battery_value(0.0, before=2.0, after=4.0, grid_charged=2.2, price=0.10)  # 2.2 kWh bought, 2 stored
    assert value == pytest.approx(0.22)
    value = battery_value(value, before=4.0, after=6.0, grid_charged=0.0, price=0.30)  # solar
    assert value == pytest.approx(0.22)
    value = battery_value(value, before=6.0, after=3.0, grid_charged=0.0, price=0.30)  # half used
    assert value == pytest.approx(0.11)
    assert battery_value(value, before=3.0, after=0.0, grid_charged=0.0, price=0.30) == 0.0
    assert battery_value(value, before=None, after=3.0, grid_charged=0.0, price=0.30) == value  # no history yet
    # The charge counter steps before the stored energy does: the kWh bought still count.
    assert battery_value(0.0, before=4.0, after=4.0, grid_charged=0.1, price=0.10) == pytest.approx(0.01)


def test_battery_price_per_kwh_is_value_over_stored_energy() -> None:
    state = TariffState(stored_kwh=4.0, battery_value=0.6)
    values = published(state, DAY, TWO_RATES)
    assert values["Energy/Rates/Battery_Value"] == 0.6
    assert values["Energy/Rates/Battery_ppkwh"] == pytest.approx(0.15)


# --------------------------------------------------------------------------- persistence


def test_state_survives_json_and_a_damaged_document_costs_only_its_damage() -> None:
    state = TariffState(
        day=date(2026, 1, 10),
        at=datetime(2026, 1, 10, 12, tzinfo=UTC),
        switched=NIGHT,
        import_total=12.5,
        day_energy=1.25,
        battery_value=0.4,
    )
    assert TariffState.from_json(state.to_json()) == state
    damaged = {**state.to_json(), "day": "not a date", "switched": "Evening", "day_cost": "x", "at": "2026-01-10"}
    restored = TariffState.from_json(damaged)
    assert (restored.day, restored.switched, restored.at, restored.day_cost) == (None, None, None, 0.0)
    assert restored.day_energy == 1.25


def snapshot(at: datetime, imported: float, *, inverter_time: datetime | None = None) -> Snapshot:
    values: dict[str, Any] = {
        "Energy/Total/Import_Energy_Total_kWh": imported,
        "Energy/Total/Export_Energy_Total_kWh": 50.0,
        "Energy/Total/AC_Charge_Energy_Total_kWh": 20.0,
        "Power/Power/SOC_kWh": 5.0,
        f"{SERIAL}/Invertor_Time": (inverter_time or at).astimezone(LONDON),
    }
    info = DeviceInfo(serial=SERIAL, model="Hybrid Gen3", family="hybrid-gen3")
    return Snapshot(info=info, taken_at=at, values=values)


async def test_a_restart_keeps_todays_figures_and_the_switched_rate(tmp_path: Path) -> None:
    start = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    clock = ScaledClock(start=start)
    store = JsonStore(tmp_path)
    first = TariffTracker(DYNAMIC, tz=LONDON, clock=clock, store=store)
    assert first.values() == {}  # nothing before the first reading
    await first.observe(snapshot(start, 100.0))
    await first.observe(snapshot(start + timedelta(minutes=1), 101.0))
    await first.switch(NIGHT)
    await first.observe(snapshot(start + timedelta(minutes=2), 102.0))
    await first.save()

    second = TariffTracker(DYNAMIC, tz=LONDON, clock=clock, store=store)
    second.serial = SERIAL
    await second.observe(snapshot(start + timedelta(minutes=5), 103.0))  # 1 kWh while restarting
    values = second.values()
    assert values["Energy/Rates/Current_Rate_Type"] == NIGHT
    assert (values["Energy/Rates/Day_Energy_kWh"], values["Energy/Rates/Night_Energy_kWh"]) == (1.0, 2.0)
    assert values["Energy/Rates/Import_Cost_Today"] == pytest.approx(0.30 + 0.20)


async def test_the_clock_picks_the_rate_in_the_configured_zone(tmp_path: Path) -> None:
    # 22:45 UTC on a July evening is 23:45 in London (BST): night there, though not yet in UTC.
    clock = ScaledClock(start=datetime(2026, 7, 10, 22, 45, tzinfo=UTC))
    tracker = TariffTracker(TWO_RATES, tz=LONDON, clock=clock, store=JsonStore(tmp_path))
    assert tracker.rate_type() == NIGHT
    clock.advance(6 * 3600)  # 05:45 BST
    assert tracker.rate_type() == DAY


# --------------------------------------------------------------------------- property: switching across midnight

step = st.tuples(
    st.integers(5, 1800),  # seconds to the next reading
    st.floats(0.0, 0.8),  # kWh imported meanwhile
    st.sampled_from([None, DAY, NIGHT]),  # a switchRate before that reading, or none
)


@given(steps=st.lists(step, min_size=1, max_size=60), start_minute=st.integers(22 * 60, 23 * 60 + 59))
def test_switching_across_midnight_charges_every_kwh_once_at_its_rate(
    steps: list[tuple[int, float, str | None]], start_minute: int
) -> None:
    """Over any run of readings and switches around midnight, each day's figures are exactly that day's imports."""
    # The night before DST starts; counted in UTC, as time passes (a wall clock skips 01:00-02:00).
    at = (datetime(2026, 3, 28, tzinfo=LONDON) + timedelta(minutes=start_minute)).astimezone(UTC)
    total = 1000.0
    rate = DAY
    state = advance(TariffState(), reading(at, total), rate, DYNAMIC)
    expected: dict[date, dict[str, float]] = {}
    for seconds, kwh, switch in steps:
        if switch is not None:
            rate = switch
        at += timedelta(seconds=seconds)
        total += kwh
        state = advance(state, reading(at, total), rate, DYNAMIC)
        today = expected.setdefault(at.astimezone(LONDON).date(), {"day": 0.0, "night": 0.0})
        today["day" if rate == DAY else "night"] += kwh
        figures = expected.get(state.day, {"day": 0.0, "night": 0.0})
        assert state.day == at.astimezone(LONDON).date()
        assert state.day_energy == pytest.approx(figures["day"], abs=1e-9)
        assert state.night_energy == pytest.approx(figures["night"], abs=1e-9)
        assert state.day_cost == pytest.approx(figures["day"] * 0.30, abs=1e-9)
        assert state.night_cost == pytest.approx(figures["night"] * 0.10, abs=1e-9)
        assert min(state.day_energy, state.night_energy, state.day_cost, state.night_cost) >= 0
