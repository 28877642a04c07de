"""Unit and property tests for the derived values in givbridge.plant.derive."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from givbridge.plant import derive, vocab
from givbridge.plant.families import FAMILIES

watts = st.integers(min_value=0, max_value=20_000)
signed_watts = st.integers(min_value=-20_000, max_value=20_000)


# --- grid and battery splits ------------------------------------------------------------------


@pytest.mark.parametrize(("grid", "expected"), [(-721, (721, 0)), (613, (0, 613)), (0, (0, 0))])
def test_grid_power_splits_into_import_and_export(grid: int, expected: tuple[int, int]) -> None:
    assert derive.split_grid_power(grid) == expected


@pytest.mark.parametrize(("battery", "expected"), [(-937, (937, 0)), (441, (0, 441)), (0, (0, 0))])
def test_battery_power_splits_into_charge_and_discharge(battery: int, expected: tuple[int, int]) -> None:
    assert derive.split_battery_power(battery) == expected


def test_self_consumption_is_load_not_met_by_the_grid() -> None:
    assert derive.self_consumption_power(4092, 721) == 3371
    assert derive.self_consumption_power(300, 500) == 0


# --- power flows ------------------------------------------------------------------------------


def test_flows_for_a_sunny_charging_import() -> None:
    # Gen1 capture: PV 4921, load 4092, charging 937, importing 721 (613 W of losses).
    flows = derive.power_flows(pv=4921, load=4092, battery_power=-937, grid_power=-721)
    assert (flows.solar_to_house, flows.solar_to_battery, flows.solar_to_grid) == (4092, 829, 0)
    assert (flows.grid_to_house, flows.grid_to_battery) == (0, 108)
    assert (flows.battery_to_house, flows.battery_to_grid) == (0, 0)
    assert flows.residual == 613


def test_flows_for_a_battery_exporting_at_night() -> None:
    flows = derive.power_flows(pv=0, load=400, battery_power=2500, grid_power=2100)
    assert (flows.battery_to_house, flows.battery_to_grid) == (400, 2100)
    assert flows.grid_to_house == flows.solar_to_house == 0
    assert flows.residual == 0


@given(pv=watts, load=watts, battery=signed_watts, grid=signed_watts)
def test_flows_are_never_negative_and_never_exceed_their_port(pv: int, load: int, battery: int, grid: int) -> None:
    f = derive.power_flows(pv=pv, load=load, battery_power=battery, grid_power=grid)
    charge, discharge = derive.split_battery_power(battery)
    grid_import, grid_export = derive.split_grid_power(grid)
    flows = (
        f.solar_to_house,
        f.solar_to_battery,
        f.solar_to_grid,
        f.battery_to_house,
        f.battery_to_grid,
        f.grid_to_house,
        f.grid_to_battery,
    )
    assert all(flow >= 0 for flow in flows)
    assert f.solar_to_house + f.solar_to_battery + f.solar_to_grid <= pv
    assert f.solar_to_house + f.battery_to_house + f.grid_to_house <= load
    assert f.solar_to_battery + f.grid_to_battery <= charge
    assert f.battery_to_house + f.battery_to_grid <= discharge
    assert f.solar_to_grid + f.battery_to_grid <= grid_export
    assert f.grid_to_house + f.grid_to_battery <= grid_import
    assert f.residual == (pv + discharge + grid_import) - (load + charge + grid_export)


@given(pv=watts, load=watts, battery=signed_watts)
def test_flows_account_for_every_watt_when_the_readings_balance(pv: int, load: int, battery: int) -> None:
    # Let the grid close the balance, as it does physically: export what is left over.
    charge, discharge = derive.split_battery_power(battery)
    grid = pv + discharge - load - charge
    f = derive.power_flows(pv=pv, load=load, battery_power=battery, grid_power=grid)
    grid_import, grid_export = derive.split_grid_power(grid)
    assert f.residual == 0
    assert f.solar_to_house + f.solar_to_battery + f.solar_to_grid == pv
    assert f.solar_to_house + f.battery_to_house + f.grid_to_house == load
    assert f.solar_to_battery + f.grid_to_battery == charge
    assert f.battery_to_house + f.battery_to_grid == discharge
    assert f.solar_to_grid + f.battery_to_grid == grid_export
    assert f.grid_to_house + f.grid_to_battery == grid_import


# --- battery state ----------------------------------------------------------------------------


def test_soc_kwh_uses_two_decimals() -> None:
    assert derive.soc_kwh(83, 17.72) == 14.71
    assert derive.soc_kwh(0, 9.52) == 0.0


def test_discharge_time_is_to_the_reserve_at_the_present_rate() -> None:
    # 42 % of 9.52 kWh at 441 W -> 544 minutes (GivTCP's formula, truncated).
    assert derive.discharge_time_remaining(soc=46, reserve_soc=4, capacity_kwh=9.52, discharge_power=441) == 544


def test_charge_time_is_to_the_target_and_zero_when_idle_or_past_it() -> None:
    assert derive.charge_time_remaining(soc=50, target_soc=100, capacity_kwh=10.0, charge_power=2500) == 120
    assert derive.charge_time_remaining(soc=50, target_soc=100, capacity_kwh=10.0, charge_power=0) == 0
    assert derive.charge_time_remaining(soc=83, target_soc=29, capacity_kwh=17.72, charge_power=937) == 0


def test_completion_time_is_whole_seconds() -> None:
    now = datetime(2026, 7, 13, 22, 22, 40, 123456, tzinfo=UTC)
    assert derive.completion_time(now, 544) == datetime(2026, 7, 14, 7, 26, 40, tzinfo=UTC)


# --- Mode ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eco", "timed_discharge", "reserve", "mode"),
    [
        (True, False, 4, vocab.MODE_ECO),
        (True, False, 99, vocab.MODE_ECO),
        (True, False, 100, vocab.MODE_ECO_PAUSED),
        (True, True, 4, vocab.MODE_TIMED_DEMAND),
        (True, True, 100, vocab.MODE_TIMED_DEMAND),
        (False, True, 4, vocab.MODE_TIMED_EXPORT),
        (False, True, None, vocab.MODE_TIMED_EXPORT),
        (False, False, 4, vocab.MODE_EXPORT_PAUSED),
        (True, False, None, vocab.MODE_UNKNOWN),
        (None, False, 4, vocab.MODE_UNKNOWN),
        (True, None, 4, vocab.MODE_UNKNOWN),
    ],
)
def test_battery_mode_table(eco: bool | None, timed_discharge: bool | None, reserve: int | None, mode: str) -> None:
    assert derive.battery_mode(eco=eco, timed_discharge=timed_discharge, reserve_soc=reserve) == mode
    assert mode in vocab.MODES


# --- ratings and rate registers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "library", "expected"),
    [("hybrid-gen1", 2600, 2600), ("hybrid-gen3", 3600, 3600), ("hybrid-gen4", None, 6000), ("aio", 6000, 6000)],
)
def test_battery_max_power_follows_the_library_except_givtcps_6kw_families(
    family: str, library: int | None, expected: int
) -> None:
    assert derive.battery_max_power(FAMILIES[family], library) == expected


def test_battery_capacity_rounds_and_treats_zero_as_absent() -> None:
    assert derive.battery_capacity_kwh(17.7152) == 17.72
    assert derive.battery_capacity_kwh(0.0) is None
    assert derive.battery_capacity_kwh(None) is None


def test_rate_register_is_a_fraction_of_capacity_capped_at_the_rating() -> None:
    assert derive.rate_register_to_watts(16, capacity_kwh=9.52, max_power=3600) == 1523
    assert derive.rate_register_to_watts(50, capacity_kwh=17.72, max_power=2600) == 2600
    assert derive.rate_register_to_watts(50, capacity_kwh=5.43, max_power=3000) == 2715
    assert derive.rate_register_to_watts(0, capacity_kwh=9.52, max_power=3600) == 0


def test_watts_to_rate_register_picks_the_nearest_step_and_reports_the_real_watts() -> None:
    assert derive.watts_to_rate_register(1500, capacity_kwh=9.52, max_power=3600) == derive.RateSetting(16, 1523)
    assert derive.watts_to_rate_register(2600, capacity_kwh=17.72, max_power=2600) == derive.RateSetting(50, 2600)
    assert derive.watts_to_rate_register(9999, capacity_kwh=5.43, max_power=3000) == derive.RateSetting(50, 2715)
    assert derive.watts_to_rate_register(0, capacity_kwh=5.43, max_power=3000) == derive.RateSetting(0, 0)


capacities = st.integers(min_value=100, max_value=6000).map(lambda centi: centi / 100)  # 1.00..60.00 kWh
max_powers = st.one_of(st.none(), st.integers(min_value=1000, max_value=13_000))


@given(register=st.integers(min_value=0, max_value=50), capacity=capacities, max_power=max_powers)
def test_every_register_value_survives_the_round_trip(register: int, capacity: float, max_power: int | None) -> None:
    shown = derive.rate_register_to_watts(register, capacity_kwh=capacity, max_power=max_power)
    setting = derive.watts_to_rate_register(shown, capacity_kwh=capacity, max_power=max_power)
    assert setting.watts == shown


@given(requested=watts, capacity=capacities, max_power=max_powers)
def test_setting_a_rate_is_stable_and_close(requested: int, capacity: float, max_power: int | None) -> None:
    first = derive.watts_to_rate_register(requested, capacity_kwh=capacity, max_power=max_power)
    again = derive.watts_to_rate_register(first.watts, capacity_kwh=capacity, max_power=max_power)
    assert again.watts == first.watts
    assert 0 <= first.register <= derive.RATE_REGISTER_MAX
    assert first.watts == derive.rate_register_to_watts(first.register, capacity_kwh=capacity, max_power=max_power)
    if max_power is not None:
        assert first.watts <= max_power
    ceiling = derive.rate_register_to_watts(derive.RATE_REGISTER_MAX, capacity_kwh=capacity, max_power=max_power)
    assume(requested <= ceiling)
    # Within half a register step (1 % of capacity) plus the watt lost to truncation.
    assert abs(first.watts - requested) <= capacity * 1000 / 200 + 1


# --- energy ------------------------------------------------------------------------------------


def test_load_energy_on_a_dc_hybrid_balances_the_inverter_output() -> None:
    # Gen1 capture: IR44 15.8, AC charge 0.0, export 5.6, import 1.0.
    assert derive.load_energy(inverter_output=15.8, ac_charge=0.0, grid_import=1.0, grid_export=5.6) == 11.2


def test_load_energy_on_ac_and_aio_adds_the_pv_the_inverter_output_does_not_see() -> None:
    # AIO capture: IR44 1.8, AC charge 4.8, import 8.9, export 0.1, PV 1.4.
    assert derive.load_energy(inverter_output=1.8, ac_charge=4.8, grid_import=8.9, grid_export=0.1, extra_pv=1.4) == 7.2


def test_energies_never_go_negative() -> None:
    assert derive.load_energy(inverter_output=6.3, ac_charge=7.6, grid_import=0.0, grid_export=0.0) == 0.0
    assert derive.self_consumption_energy(pv=6439.9, grid_export=8053.0) == 0.0
    assert derive.self_consumption_energy(pv=19.4, grid_export=5.6) == 13.8
