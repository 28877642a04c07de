"""The simulated charger's session physics and write rules, without sockets (its server is tested with the bridge)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pymodbus.constants import ExcCodes

from givbridge.clock import ScaledClock
from givbridge.evc import registers as reg
from givbridge.sim.evc import Car, EvcSimulator

START = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)  # noon in London


def charger(**options: object) -> tuple[EvcSimulator, ScaledClock]:
    clock = ScaledClock(speed=1e-6, start=START)  # time moves only when the test advances it
    return EvcSimulator(clock=clock, **options), clock  # type: ignore[arg-type]


def values(sim: EvcSimulator) -> dict[str, object]:
    decoded = reg.decode(dict(enumerate(sim.registers())), ZoneInfo(sim.tz))
    return decoded


def test_plug_and_go_charges_at_the_limit_and_fills_the_car() -> None:
    sim, clock = charger()
    assert values(sim)["Charger/Charging_State"] == "Idle"
    sim.plug_in(Car(capacity_kwh=60, soc=40, max_current=32))
    clock.advance(3600)
    now = values(sim)
    assert (now["Charger/Charging_State"], now["Charger/Charge_Control"]) == ("Charging", "Start")
    assert now["Charger/Current_L1"] == 32.0
    # An hour at 32 A and about 240 V: some 7.7 kWh into the car, the session and the meter alike.
    energy = sim.session_energy_kwh
    assert energy == pytest.approx(32 * 240.5 / 1000, rel=0.02)
    assert now["Charger/Charge_Session_Energy"] == pytest.approx(energy, abs=0.05)
    assert now["Charger/Meter_Energy"] == pytest.approx(1234.5 + energy, abs=0.05)
    assert sim.car is not None and sim.car.soc == pytest.approx(40 + energy / 60 * 100)
    assert now["Charger/Charge_Session_Duration"] == 3600
    assert now["Charger/Charge_Start_Time"] == datetime(2026, 6, 20, 12, 0, tzinfo=ZoneInfo("Europe/London"))
    assert sim.power_w == pytest.approx(32 * now["Charger/Voltage_L1"], rel=0.01)  # type: ignore[operator]


def test_a_car_takes_what_its_onboard_charger_allows_and_tapers_when_nearly_full() -> None:
    sim, clock = charger()
    sim.plug_in(Car(capacity_kwh=40, soc=60, max_current=16))
    assert sim.current == 16.0  # below the charger's 32 A
    clock.advance(4 * 3600)
    assert 0 < sim.current < 16
    assert sim.car is not None and sim.car.soc > 90
    clock.advance(6 * 3600)
    assert sim.current == 0.0
    assert values(sim)["Charger/Charging_State"] == "End of Charging"


def test_without_plug_and_go_a_car_waits_for_start() -> None:
    sim, _ = charger(plug_and_go=False)
    sim.plug_in(Car())
    assert (values(sim)["Charger/Charging_State"], values(sim)["Charger/Charge_Control"]) == ("Connected", "Ready")
    assert sim.write(reg.CHARGE_COMMAND, [1]) is None
    assert sim.current == 32.0
    assert sim.write(reg.CURRENT_LIMIT_SET, [100]) is None
    assert sim.current == 10.0 and values(sim)["Charger/Charge_Limit"] == 10.0
    assert sim.write(reg.CHARGE_COMMAND, [2]) is None
    assert sim.current == 0.0 and values(sim)["Charger/Charge_Control"] == "Stop"


def test_unplugging_ends_the_session_and_keeps_its_figures() -> None:
    sim, clock = charger()
    sim.plug_in(Car())
    clock.advance(1800)
    sim.unplug()
    clock.advance(600)
    after = values(sim)
    assert after["Charger/Charging_State"] == "Idle"
    assert after["Charger/Connection_Status"] == "Not Connected"
    assert after["Charger/Charge_Session_Duration"] == 1800
    assert after["Charger/Charge_End_Time"] == datetime(2026, 6, 20, 12, 30, tzinfo=ZoneInfo("Europe/London"))
    assert after["Charger/Charge_Session_Energy"] == pytest.approx(3.8, abs=0.1)


def test_writes_are_checked_like_a_charger_does_and_refused_ones_change_nothing() -> None:
    sim, _ = charger()
    before = sim.registers()
    assert sim.write(reg.STATE, [4]) is ExcCodes.ILLEGAL_ADDRESS  # read-only
    assert sim.write(reg.CURRENT_LIMIT_SET, [400]) is ExcCodes.ILLEGAL_VALUE  # 40 A on a 32 A charger
    assert sim.write(reg.CURRENT_LIMIT_SET, [50]) is ExcCodes.ILLEGAL_VALUE  # below its 6 A
    assert sim.write(reg.CHARGE_COMMAND, [3]) is ExcCodes.ILLEGAL_VALUE
    assert sim.write(97, [2026, 2, 30, 10, 0, 0]) is ExcCodes.ILLEGAL_VALUE  # no 30 February
    assert sim.writes_refused == 5
    assert sim.registers() == before


def test_faults_refuse_or_ignore_writes() -> None:
    sim, _ = charger()
    sim.faults.refuse_writes = True
    assert sim.write(reg.CURRENT_LIMIT_SET, [160]) is ExcCodes.ILLEGAL_FUNCTION
    sim.faults.refuse_writes = False
    sim.faults.ignore_writes = True
    assert sim.write(reg.CURRENT_LIMIT_SET, [160]) is None  # acknowledged...
    assert sim.limit_tenths == 320  # ...and not kept
    assert sim.writes_applied == 0


def test_setting_the_clock_moves_the_chargers_wall_time_only() -> None:
    sim, clock = charger()
    assert sim.write(97, [2026, 6, 20, 9, 0, 0]) is None
    assert sim.wall_clock() == datetime(2026, 6, 20, 9, 0, 0)
    clock.advance(90)
    assert sim.wall_clock() == datetime(2026, 6, 20, 9, 1, 30)
    assert values(sim)["Charger/System_Time"] == datetime(2026, 6, 20, 9, 1, 30, tzinfo=ZoneInfo("Europe/London"))
    assert clock.now() - START == timedelta(seconds=90)
