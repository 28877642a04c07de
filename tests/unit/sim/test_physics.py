"""The simulator's physics as pure functions: sun, house, battery decisions and integration."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from givbridge.sim import physics, weather
from givbridge.sim.physics import Controls, Decision, Energy, Environment, Rating, Window
from givbridge.sim.weather import Site

LONDON = ZoneInfo("Europe/London")
SITE = Site(seed=4, pv_kwp=5.0)
GEN3_TWO_PACKS = Rating(inverter_w=5000, battery_max_w=3600, capacity_ah=372)


def _env(controls: Controls | None = None, offset: float = 0.0) -> Environment:
    return Environment(SITE, controls or Controls(), GEN3_TWO_PACKS, LONDON, timedelta(seconds=offset))


def test_pv_follows_the_sun_through_the_day_and_the_seasons() -> None:
    def total(moment: datetime) -> float:
        return sum(weather.pv_power(moment, SITE))

    june = [total(datetime(2026, 6, 21, hour, tzinfo=UTC)) for hour in range(24)]
    assert june[0] == june[1] == june[23] == 0.0  # night
    assert max(june) == max(june[9:15])  # peaks around solar noon (~12:06 UTC here)
    assert max(june) <= SITE.pv_kwp * 1000
    december = [total(datetime(2026, 12, 21, hour, 30, tzinfo=UTC)) for hour in range(24)]
    assert december[6] == december[16] == 0.0  # short winter days
    summer_noon = weather.solar_elevation_sine(datetime(2026, 6, 21, 12, tzinfo=UTC), SITE.latitude, SITE.longitude)
    winter_noon = weather.solar_elevation_sine(datetime(2026, 12, 21, 12, tzinfo=UTC), SITE.latitude, SITE.longitude)
    assert summer_noon == pytest.approx(0.87, abs=0.02)  # 61° elevation at 52.5°N
    assert winter_noon == pytest.approx(0.24, abs=0.02)  # 14°


def test_pv_splits_over_two_strings_and_is_a_pure_function_of_seed_and_time() -> None:
    moment = datetime(2026, 5, 2, 12, 17, tzinfo=UTC)
    string_1, string_2 = weather.pv_power(moment, SITE)
    assert string_1 / (string_1 + string_2) == pytest.approx(SITE.string_1_share)
    assert weather.pv_power(moment, SITE) == (string_1, string_2)
    assert weather.pv_power(moment, replace(SITE, seed=5)) != (string_1, string_2)


def test_house_load_has_a_base_and_an_evening_peak() -> None:
    day = [
        weather.house_load(datetime(2026, 3, d, h, m, tzinfo=LONDON), seed=1)
        for d in range(1, 15)
        for h in range(24)
        for m in (0, 20, 40)
    ]
    assert min(day) > 150
    night = [weather.house_load(datetime(2026, 3, d, 3, m, tzinfo=LONDON), 1) for d in range(1, 15) for m in range(60)]
    evening = [
        weather.house_load(datetime(2026, 3, d, 18, m, tzinfo=LONDON), 1) for d in range(1, 15) for m in range(60)
    ]
    assert sum(evening) / len(evening) > 3 * sum(night) / len(night)


@pytest.mark.parametrize(
    ("limit", "capacity_ah", "battery_max_w", "watts"),
    [
        (50, 186, 3600, 3600),  # 0.5 C of 9.5 kWh is 4762 W: the battery rating caps it
        (16, 186, 3600, 0.16 * 186 * 51.2),  # the Gen2 capture's HR111
        (10, 160, 2600, 819.2),
        (0, 186, 3600, 0),
    ],
)
def test_c100_limits_map_to_watts(limit: int, capacity_ah: float, battery_max_w: int, watts: float) -> None:
    assert physics.limit_watts(limit, capacity_ah, battery_max_w) == pytest.approx(watts)


@given(st.integers(0, 100), st.integers(0, 100), st.floats(0, 600))
def test_c100_limits_are_monotonic_and_capped(low: int, high: int, capacity_ah: float) -> None:
    low, high = sorted((low, high))
    assert physics.limit_watts(low, capacity_ah, 3600) <= physics.limit_watts(high, capacity_ah, 3600) <= 3600


def test_windows_wrap_past_midnight_and_unset_slots_never_match() -> None:
    overnight = Window.from_registers(2330, 530)
    assert overnight is not None
    assert overnight.contains(23 * 60 + 45) and overnight.contains(60) and not overnight.contains(12 * 60)
    assert Window(0, 0).contains(0) is False
    assert Window.from_registers(2460, 100) is None  # not a time


NIGHT = 60  # 01:00
DAY = 13 * 60


@pytest.mark.parametrize(
    ("controls", "soc", "pv", "load", "minute", "expected"),
    [
        # eco: battery covers the house, PV surplus charges it
        (Controls(), 50, 0, 480, NIGHT, Decision(500, 4, 100)),
        (Controls(), 50, 3000, 480, DAY, Decision(-2500, 4, 100)),
        # eco, at the reserve: no discharge
        (Controls(reserve=50), 50, 0, 480, NIGHT, Decision(0, 50, 100)),
        # AC charge in a slot, up to the HR116 target only when HR20 enables it
        (
            Controls(charge_enabled=True, charge_windows=(Window(0, 120),), target_enabled=True, charge_target=80),
            50,
            0,
            480,
            NIGHT,
            Decision(-3600, 4, 80),
        ),
        (
            Controls(charge_enabled=True, charge_windows=(Window(0, 120),), charge_target=80),
            90,
            0,
            480,
            NIGHT,
            Decision(-3600, 4, 100),
        ),
        # holding at target inside the slot: no discharge
        (
            Controls(charge_enabled=True, charge_windows=(Window(0, 120),), target_enabled=True, charge_target=80),
            80,
            0,
            480,
            NIGHT,
            Decision(0, 4, 100),
        ),
        # 10-slot firmware: the slot's own target caps it too
        (
            Controls(charge_enabled=True, charge_windows=(Window(0, 120, 60),)),
            50,
            0,
            480,
            NIGHT,
            Decision(-3600, 4, 60),
        ),
        # timed export: full discharge power regardless of the house, down to the slot target
        (
            Controls(eco=False, discharge_enabled=True, discharge_windows=(Window(0, 120, 20),)),
            50,
            0,
            480,
            NIGHT,
            Decision(3600, 20, 100),
        ),
        # timed demand in the slot, and no discharge at all outside it
        (
            Controls(discharge_enabled=True, discharge_windows=(Window(0, 120),)),
            50,
            0,
            480,
            NIGHT,
            Decision(500, 4, 100),
        ),
        (
            Controls(discharge_enabled=True, discharge_windows=(Window(600, 700),)),
            50,
            0,
            480,
            NIGHT,
            Decision(0, 4, 100),
        ),
        # HR111/112 limits
        (Controls(discharge_limit=2), 50, 0, 4800, NIGHT, Decision(0.02 * 372 * 51.2, 4, 100)),
        (Controls(charge_limit=0), 50, 3000, 480, DAY, Decision(0, 4, 100)),
        # pause discharge only inside its slot; pause mode without a slot does nothing
        (Controls(pause_mode=2, pause_window=Window(0, 120)), 50, 0, 480, NIGHT, Decision(0, 4, 100)),
        (Controls(pause_mode=3, pause_window=Window(0, 120)), 50, 3000, 480, NIGHT, Decision(0, 4, 100)),
        (Controls(pause_mode=2, pause_window=Window(600, 700)), 50, 0, 480, NIGHT, Decision(500, 4, 100)),
        (Controls(pause_mode=2), 50, 0, 480, NIGHT, Decision(500, 4, 100)),
    ],
)
def test_battery_decisions_obey_the_registers(
    controls: Controls, soc: float, pv: float, load: float, minute: int, expected: Decision
) -> None:
    decision = physics.decide(controls, GEN3_TWO_PACKS, soc, pv, load, minute)
    assert decision.battery_w == pytest.approx(expected.battery_w)
    assert (decision.floor, decision.ceiling) == (expected.floor, expected.ceiling)


def test_balance_caps_output_and_export_by_shedding_battery_before_pv() -> None:
    capped = physics.balance((3000.0, 2000.0), 3600.0, 500.0, Controls(export_limit_w=2000), GEN3_TWO_PACKS)
    assert capped.grid_w == pytest.approx(2000)
    assert capped.battery_w == 0
    assert capped.pv_w == pytest.approx(2500 / 0.96)
    limited = physics.balance((3000.0, 2000.0), 0.0, 200.0, Controls(active_power_rate=50), GEN3_TWO_PACKS)
    assert limited.inverter_w == pytest.approx(2500)
    assert limited.pv_w == pytest.approx(2500 / 0.96)
    assert limited.pv1_w / limited.pv_w == pytest.approx(0.6)


def _run(env: Environment, soc: float, start: datetime, seconds: float) -> list[physics.PlantState]:
    state = physics.initial_state(start, soc, Energy(), 0.0, env)
    states = [state]
    for _ in range(int(seconds // 600)):
        state = physics.advance(state, state.moment + timedelta(seconds=600), env)
        states.append(state)
    return states


def test_integration_stops_at_the_reserve_and_at_the_charge_target() -> None:
    winter_night = datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
    draining = _run(_env(Controls(reserve=40, discharge_limit=50)), 45, winter_night, 6 * 3600)
    assert min(s.soc for s in draining) == pytest.approx(40)
    assert draining[-1].flows.battery_w == 0
    charging = Controls(charge_enabled=True, charge_windows=(Window(0, 300),), target_enabled=True, charge_target=70)
    charged = _run(_env(charging), 20, winter_night, 4 * 3600)
    assert max(s.soc for s in charged) == pytest.approx(70)
    # 3600 W into 19 kWh at 96 %: a little over 18 points an hour
    assert charged[6].soc == pytest.approx(20 + 3600 * 0.96 / (372 * 51.2) * 100, abs=0.5)
    assert charged[6].energy.battery_charge_today == pytest.approx(3600, rel=0.01)


def test_step_size_barely_changes_the_result() -> None:
    env = _env()
    start = datetime(2026, 4, 4, 9, 0, tzinfo=UTC)
    coarse = physics.advance(physics.initial_state(start, 50, Energy(), 0, env), start + timedelta(hours=3), env)
    fine = physics.initial_state(start, 50, Energy(), 0, env)
    for second in range(7, 3 * 3600 + 1, 7):
        fine = physics.advance(fine, start + timedelta(seconds=second), env)
    assert fine.soc == pytest.approx(coarse.soc, abs=0.5)
    assert fine.energy.pv_total == pytest.approx(coarse.energy.pv_total, rel=0.01)


def test_the_inverter_clock_runs_with_its_offset_and_decides_midnight() -> None:
    env = _env(Controls(reserve=100), offset=-1800)  # the house runs off the grid; the inverter is 30 min slow
    true_midnight = datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
    assert env.inverter_time(true_midnight) == datetime(2026, 1, 9, 23, 30, tzinfo=LONDON)
    state = physics.initial_state(true_midnight - timedelta(hours=1), 50, Energy(), 0, env)
    state = physics.advance(state, true_midnight + timedelta(minutes=20), env)
    assert state.energy.import_today > 0  # still the 9th on the inverter: nothing reset yet
    state = physics.advance(state, true_midnight + timedelta(minutes=40), env)
    assert state.counter_day.day == 10
    assert state.energy.import_today < state.energy.import_total
    summer = _env().inverter_time(datetime(2026, 7, 1, 12, tzinfo=UTC))
    assert summer.hour == 13  # British Summer Time


def test_frozen_state_only_moves_its_timestamp() -> None:
    env = _env()
    start = datetime(2026, 4, 4, 9, 0, tzinfo=UTC)
    state = physics.initial_state(start, 50, Energy(), 0, env)
    held = physics.hold(state, start + timedelta(hours=2))
    assert held.moment == start + timedelta(hours=2)
    assert replace(held, moment=start) == state


COUNTER_FIELDS = [f for f in Energy.__dataclass_fields__ if f.endswith("total")]
TODAY_FIELDS = [f for f in Energy.__dataclass_fields__ if not f.endswith("total")]


@settings(max_examples=25, deadline=None)
@given(
    start_minute=st.integers(0, 24 * 60 - 1),
    steps=st.lists(
        st.tuples(
            st.integers(1, 60 * 60),  # seconds to advance
            st.sampled_from(["eco", "export", "charge", "paused", "limits"]),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_counters_never_decrease_except_todays_at_the_inverters_midnight(
    start_minute: int, steps: list[tuple[int, str]]
) -> None:
    settings_for = {
        "eco": Controls(),
        "export": Controls(eco=False, discharge_enabled=True, discharge_windows=(Window(0, 1439),)),
        "charge": Controls(charge_enabled=True, charge_windows=(Window(0, 1439),)),
        "paused": Controls(pause_mode=3, pause_window=Window(0, 1439)),
        "limits": Controls(charge_limit=5, discharge_limit=3, reserve=60),
    }
    start = datetime(2026, 3, 28, 22, 0, tzinfo=UTC) + timedelta(minutes=start_minute)  # spans the BST change
    state = physics.initial_state(start, 50, Energy(), 0, _env())
    for seconds, mode in steps:
        env = _env(settings_for[mode])
        before = state
        state = physics.advance(state, state.moment + timedelta(seconds=seconds), env)
        for name in COUNTER_FIELDS:
            assert getattr(state.energy, name) >= getattr(before.energy, name), name
        new_day = state.counter_day != before.counter_day
        for name in TODAY_FIELDS:
            assert new_day or getattr(state.energy, name) >= getattr(before.energy, name), name
        assert 0 <= state.soc <= 100
