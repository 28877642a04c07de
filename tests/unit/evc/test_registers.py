"""Decoding the charger's registers with GivTCP's names and scaling, and the write plans."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from givbridge.evc import registers as reg
from givbridge.evc.runner import contiguous_runs
from givbridge.plant.writes import RegisterWrite

LONDON = ZoneInfo("Europe/London")
SERIAL = "GE2239EVC01"


def registers(**changes: int) -> dict[int, int]:
    """A charging single-phase charger at 01:00:30 on 21 June, its session started at 23:30 the day before."""
    image = dict.fromkeys(range(115), 0)
    image.update(
        {
            reg.STATE: 4,
            reg.CABLE: 1,
            6: 160,  # 16.0 A
            reg.ACTIVE_POWER: 3856,
            17: 3856,
            reg.METER_ENERGY: 12345,  # 1234.5 kWh
            reg.EVSE_MAX_CURRENT: 320,
            reg.EVSE_MIN_CURRENT: 60,
            reg.CHARGE_LIMIT: 160,
            reg.SESSION_ENERGY: 57,  # 5.7 kWh
            74: 23,
            75: 30,
            76: 0,
            reg.SESSION_DURATION: 5430,
            reg.PLUG_AND_GO: 0,  # 0 means on
            reg.CHARGE_CONTROL: 1,
            97: 2026,
            98: 6,
            99: 21,
            100: 1,
            101: 0,
            102: 30,
            109: 2410,
        }
    )
    for offset, character in enumerate(SERIAL):
        image[reg.SERIAL_FIRST + offset] = ord(character)
    for name, value in changes.items():
        image[int(name.removeprefix("hr"))] = value
    return image


def test_values_decode_with_givtcps_names_and_scaling() -> None:
    values = reg.decode(registers(), LONDON)
    assert reg.serial_of(registers()) == SERIAL
    assert values == {
        "Charger/Charging_State": "Charging",
        "Charger/Connection_Status": "Connected",
        "Charger/Error_Code": "Clear",
        "Charger/Current_L1": 16.0,
        "Charger/Current_L2": 0.0,
        "Charger/Current_L3": 0.0,
        "Charger/Active_Power": 3856,
        "Charger/Active_Power_L1": 3856,
        "Charger/Active_Power_L2": 0,
        "Charger/Active_Power_L3": 0,
        "Charger/Voltage_L1": 241.0,
        "Charger/Voltage_L2": 0.0,
        "Charger/Voltage_L3": 0.0,
        "Charger/Meter_Energy": 1234.5,
        "Charger/Evse_Max_Current": 32.0,
        "Charger/Evse_Min_Current": 6.0,
        "Charger/Charge_Limit": 16.0,
        "Charger/Charge_Session_Energy": 5.7,
        "Charger/Charge_Session_Duration": 5430,
        "Charger/Plug_and_Go": "enable",
        "Charger/Charge_Control": "Start",
        "Charger/Serial_Number": SERIAL,
        "Charger/System_Time": datetime(2026, 6, 21, 1, 0, 30, tzinfo=LONDON),
        # 23:30 is after 01:00: the session started the day before (GivTCP dated it today, in UTC).
        "Charger/Charge_Start_Time": datetime(2026, 6, 20, 23, 30, tzinfo=LONDON),
        # No end time while the session runs: left out, not 00:00.
    }


def test_the_control_in_force_is_read_not_guessed_from_the_state() -> None:
    # A full car waiting on Start: GivTCP showed "Stop" (it derived the control from the state), and
    # its select snapped back whenever a car was not drawing (GivTCP #467).
    values = reg.decode(registers(hr0=6, hr94=1), LONDON)
    assert (values["Charger/Charging_State"], values["Charger/Charge_Control"]) == ("End of Charging", "Start")
    values = reg.decode(registers(hr93=1, hr94=2), LONDON)
    assert (values["Charger/Plug_and_Go"], values["Charger/Charge_Control"]) == ("disable", "Stop")


def test_codes_outside_the_known_lists_do_not_break_the_read() -> None:
    image = registers(hr0=42, hr2=7, hr4=27, hr94=9)
    values = reg.decode(image, LONDON)
    assert reg.serial_of(image) == SERIAL
    assert values["Charger/Charging_State"] == "Unknown"
    assert values["Charger/Connection_Status"] == "Unknown"
    assert values["Charger/Error_Code"] == "Code 27"
    assert "Charger/Charge_Control" not in values
    values = reg.decode(registers(hr4=19), LONDON)
    assert values["Charger/Error_Code"] == "Overcurrent"


def test_garbled_identity_and_clock() -> None:
    image = registers(hr38=0x7F, hr97=1999)
    values = reg.decode(image, LONDON)
    assert reg.serial_of(image) is None
    assert "Charger/System_Time" not in values
    assert "Charger/Charge_Start_Time" not in values  # no clock to date it by


def test_write_plans_name_the_register_that_confirms_them() -> None:
    stop = reg.charge_control_plan("Stop")
    assert stop.writes == (RegisterWrite(95, 2),)
    assert stop.expected == (RegisterWrite(94, 2),)
    assert not stop.skip_unchanged
    limit = reg.current_limit_plan(16)
    assert (limit.writes, limit.expected) == ((RegisterWrite(91, 160),), (RegisterWrite(36, 160),))
    assert reg.plug_and_go_plan(True).writes == (RegisterWrite(93, 0),)
    assert reg.plug_and_go_plan(False).writes == (RegisterWrite(93, 1),)
    clock = reg.clock_writes(datetime(2026, 6, 21, 9, 5, 7))
    assert [(w.register, w.value) for w in clock] == [(97, 2026), (98, 6), (99, 21), (100, 9), (101, 5), (102, 7)]


def test_a_plan_goes_out_in_one_request_per_contiguous_run() -> None:
    clock = reg.clock_writes(datetime(2026, 6, 21, 9, 5, 7))
    assert contiguous_runs(clock) == [(97, [2026, 6, 21, 9, 5, 7])]
    scattered = (RegisterWrite(91, 100), RegisterWrite(93, 0), RegisterWrite(94, 1))
    assert contiguous_runs(scattered) == [(91, [100]), (93, [0, 1])]
