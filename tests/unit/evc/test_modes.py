"""The emulated modes' decisions, one pass at a time: units, minimums, delays, the cap and the session limit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from givbridge.evc import registers as reg
from givbridge.evc.rules import (
    CAP_HEADROOM,
    RAISE_EVERY,
    START_AFTER,
    STOP_AFTER,
    ChargerView,
    Decision,
    Memory,
    ModeSettings,
    SiteView,
    decide,
    surplus_amps,
)
from givbridge.plant.snapshot import DeviceInfo, Snapshot

VOLTS = 240.0
CHARGING = ChargerView(
    connected=True,
    charging=True,
    control="Start",
    limit=10.0,
    draw=10.0,
    power=10.0 * VOLTS,
    minimum=6,
    maximum=32,
    phases=1,
    volts=VOLTS,
    session_energy=3.0,
)


def site(pv: float, load: float, grid: float = 0.0) -> SiteView:
    return SiteView(pv=pv, load=load, grid=grid, volts=VOLTS, phases=1)


def settings(mode: str = "Grid", **changes: object) -> ModeSettings:
    return replace(ModeSettings(charging_mode=mode), **changes)  # type: ignore[arg-type]


def test_surplus_is_amps_per_phase_with_the_chargers_own_draw_added_back() -> None:
    # 4.8 kW of PV and a load of 4.8 kW of which the car takes 2.4 kW: the house leaves 2.4 kW, 10 A.
    assert surplus_amps(CHARGING, site(pv=4800, load=4800)) == pytest.approx(10.0)
    three_phase = replace(CHARGING, phases=3, power=3 * 10 * VOLTS)
    # 14.4 kW spare on three phases is 20 A per phase, not 60 A (GivTCP counted L1 only).
    assert surplus_amps(three_phase, site(pv=14400 + 1000, load=1000 + 7200)) == pytest.approx(20.0)


def test_hybrid_follows_the_surplus_but_never_below_the_minimum_nor_above_the_users_limit() -> None:
    memory = Memory()
    sunny = decide(settings("Hybrid"), CHARGING, site(pv=5000, load=2400 + 1300), memory, 0.0)
    assert sunny.limit == 15  # (5000 - 3700 + 2400) / 240 = 15.4 A, whole amps down
    assert sunny.control is None  # Hybrid never starts or stops the car
    dull = decide(settings("Hybrid"), CHARGING, site(pv=500, load=3000), Memory(), 0.0)
    assert dull.limit == 6  # the grid tops it up to the minimum (GivTCP: 6 A *plus* the surplus)
    capped = decide(settings("Hybrid", user_limit=12), CHARGING, site(pv=9000, load=2400), Memory(), 0.0)
    assert capped.limit == 12


def test_limits_come_down_at_once_but_go_up_at_most_once_a_minute() -> None:
    memory = Memory()
    up = decide(settings("Hybrid"), CHARGING, site(pv=5000, load=2400), memory, 0.0)
    assert up.limit == 20
    higher = replace(CHARGING, limit=20.0, draw=20.0, power=20 * VOLTS)
    assert decide(settings("Hybrid"), higher, site(pv=7000, load=4800), memory, 30.0).limit is None
    assert decide(settings("Hybrid"), higher, site(pv=7000, load=4800), memory, RAISE_EVERY).limit == 29
    down = decide(settings("Hybrid"), higher, site(pv=1000, load=4800), memory, RAISE_EVERY + 1)
    assert down.limit == 6


def test_solar_waits_for_enough_surplus_before_starting_and_for_a_lasting_shortfall_before_stopping() -> None:
    stopped = replace(CHARGING, charging=False, control="Stop", limit=6.0, draw=0.0, power=0.0)
    memory = Memory()
    bright = site(pv=3000, load=500)  # 10.4 A spare
    assert decide(settings("Solar"), stopped, bright, memory, 0.0) == Decision(reason="Solar: surplus 10.4 A")
    started = decide(settings("Solar"), stopped, bright, memory, START_AFTER)
    assert (started.control, started.limit) == ("Start", 10)

    memory = Memory()
    dim = site(pv=1000, load=500 + 2400)  # the car's 2.4 kW added back: 4.2 A spare, below 6 A
    first = decide(settings("Solar"), CHARGING, dim, memory, 0.0)
    assert (first.control, first.limit) == (None, 6)  # turned down, not off: a cloud may pass
    assert decide(settings("Solar"), replace(CHARGING, limit=6.0), dim, memory, STOP_AFTER - 1).control is None
    assert decide(settings("Solar"), replace(CHARGING, limit=6.0), dim, memory, STOP_AFTER).control == "Stop"


def test_the_import_cap_lowers_the_limit_before_the_grid_reaches_it() -> None:
    # Importing 30 A, of which the car draws 10 A: the house alone takes 20 A. A 32 A cap leaves
    # 32 x 0.95 - 20 = 10.4 A for the car (the grid current comes from the CT's watts).
    importing = site(pv=0, load=7200, grid=-30 * VOLTS)
    decision = decide(settings("Grid", import_cap=32), replace(CHARGING, limit=32.0), importing, Memory(), 0.0)
    assert decision.limit == 10
    assert decision.limit + 20 <= 32 * CAP_HEADROOM
    # Hybrid's wish (10 A of surplus) is capped the same way: here the battery charges from the grid,
    # so the site imports 20 A although the sun covers the house.
    battery_charging = site(pv=5000, load=2400 + 2400, grid=-20 * VOLTS)
    hybrid = decide(settings("Hybrid", import_cap=18), CHARGING, battery_charging, Memory(), 0.0)
    assert hybrid.limit == 7  # 18 x 0.95 - (20 - 10) = 7.1


def test_the_import_cap_stops_when_not_even_the_minimum_fits_and_resumes_when_it_does() -> None:
    memory = Memory()
    busy = site(pv=0, load=9000, grid=-(35 * VOLTS))  # house 25 A of a 30 A cap: 3.5 A left
    stop = decide(settings("Grid", import_cap=30), CHARGING, busy, memory, 0.0)
    assert stop.control == "Stop" and memory.cap_stopped
    stopped = replace(CHARGING, charging=False, control="Stop", draw=0.0, power=0.0)
    still_busy = site(pv=0, load=6000, grid=-25 * VOLTS)
    assert decide(settings("Grid", import_cap=30), stopped, still_busy, memory, 60.0).control is None
    quiet = site(pv=0, load=1200, grid=-5 * VOLTS)
    resume = decide(settings("Grid", import_cap=30), stopped, quiet, memory, 120.0)
    assert resume.control == "Start"
    assert resume.limit == 23  # 28.5 - 5, and the raise is allowed: the limit was not raised before


def test_the_session_energy_limit_stops_and_nothing_restarts_until_a_new_session() -> None:
    memory = Memory()
    limit = settings("Solar", max_session_energy=3.5)
    sunny = site(pv=6000, load=2400)
    assert decide(limit, CHARGING, sunny, memory, 0.0).control is None
    done = replace(CHARGING, session_energy=3.5)
    assert decide(limit, done, sunny, memory, 10.0).control == "Stop"
    stopped = replace(done, charging=False, control="Stop", draw=0.0, power=0.0)
    # Plenty of sun, but the session is over: Solar does not start it again.
    assert not decide(limit, stopped, sunny, memory, 100.0).acts
    assert not decide(limit, stopped, sunny, memory, 100.0 + START_AFTER).acts
    # The charger starts a new session (energy back to zero): the limit applies afresh.
    new = replace(stopped, session_energy=0.0)
    assert decide(limit, new, sunny, memory, 200.0).reason.startswith("Solar")
    assert decide(limit, new, sunny, memory, 200.0 + START_AFTER).control == "Start"


def test_unplugging_forgets_the_session() -> None:
    memory = Memory(session_done=True, cap_stopped=True)
    assert decide(settings("Solar"), replace(CHARGING, connected=False), None, memory, 0.0).reason == "no car connected"
    assert not memory.session_done and not memory.cap_stopped


def test_without_inverter_values_only_grid_mode_without_a_cap_can_act() -> None:
    for chosen in (settings("Hybrid"), settings("Solar"), settings("Grid", import_cap=40)):
        decision = decide(chosen, CHARGING, None, Memory(), 0.0)
        assert not decision.acts
        assert "no live inverter values" in decision.reason
    assert not decide(settings("Grid"), CHARGING, None, Memory(), 0.0).acts  # Grid alone leaves the charger be


def test_the_views_read_givtcp_paths_and_the_inverters_sign_convention() -> None:
    taken = datetime(2026, 6, 20, 12, tzinfo=UTC)
    charger = Snapshot(
        DeviceInfo("GE2239EVC01", reg.CHARGER_MODEL, reg.CHARGER_FAMILY),
        taken,
        {
            "Charger/Connection_Status": "Connected",
            "Charger/Charging_State": "Charging",
            "Charger/Charge_Control": "Start",
            "Charger/Charge_Limit": 16.0,
            "Charger/Current_L1": 15.9,
            "Charger/Current_L2": 15.8,
            "Charger/Current_L3": 16.1,
            "Charger/Active_Power": 11100,
            "Charger/Voltage_L1": 231.0,
            "Charger/Voltage_L2": 232.0,
            "Charger/Voltage_L3": 233.0,
            "Charger/Evse_Min_Current": 6.0,
            "Charger/Evse_Max_Current": 32.0,
            "Charger/Charge_Session_Energy": 4.2,
        },
    )
    view = ChargerView.from_snapshot(charger)
    assert (view.phases, view.volts, view.draw, view.minimum, view.maximum) == (3, 232.0, 16.1, 6, 32)
    inverter = Snapshot(
        DeviceInfo("SA2314G123", "Hybrid Gen3", "hybrid-gen3"),
        taken,
        {
            "Power/Power/PV_Power": 4000,
            "Power/Power/Load_Power": 6000,
            "Power/Power/Grid_Power": -1200,  # importing
            "Power/Power/Grid_Voltage": 240.0,
        },
    )
    found = SiteView.from_snapshot(inverter)
    assert found is not None
    assert found.import_amps() == pytest.approx(5.0)
    without_grid = {path: value for path, value in inverter.values.items() if path != "Power/Power/Grid_Power"}
    assert SiteView.from_snapshot(Snapshot(inverter.info, taken, without_grid)) is None


def test_saved_settings_round_trip_and_bad_files_fall_back_to_defaults() -> None:
    chosen = ModeSettings(charging_mode="Solar", import_cap=60, max_session_energy=20.5, user_limit=16)
    assert ModeSettings.from_document(chosen.document()) == chosen
    assert ModeSettings.from_document({"charging_mode": "Turbo", "import_cap": "lots", "user_limit": True}) == (
        ModeSettings()
    )
    assert chosen.values() == {
        "Charger/Charging_Mode": "Solar",
        "Charger/Import_Cap": 60,
        "Charger/Max_Session_Energy": 20.5,
    }
