"""The GivEnergy EV charger's Modbus registers: what they mean, how they decode, how they are written.

The charger speaks plain Modbus TCP on port 502 (firmware 1.13+ with "Enable Local Control";
older firmware only on Wi-Fi). Everything here is the register list GivTCP's ``evc.py`` works
with (givtcp.md, the EVC rows of sections 4.2 and 5.1), read as holding registers at unit id 0
in the same two blocks, HR(0,60) and HR(60,55):

=====  ======================  ==============================================================
HR     GivTCP name             meaning
=====  ======================  ==============================================================
0      Charging_State          index into :data:`CHARGING_STATES`
2      Connection_Status       0 not connected, 1 connected (the cable/car)
4      Error_Code              :data:`ERROR_CODES`
6..10  Current_L1..L3          0.1 A, every other register
13     Active_Power            W
17,    Active_Power_L1..L3     W
20, 24
29     Meter_Energy            0.1 kWh, the charger's lifetime meter
32/34  Evse_Max/Min_Current    0.1 A, the range the charger accepts
36     Charge_Limit            0.1 A, the limit in force
38-68  Serial_Number           one ASCII character per register, zero padded
72     Charge_Session_Energy   0.1 kWh
74-76  Charge_Start_Time       hour, minute, second (the charger's wall clock)
79     Charge_Session_Duration seconds
82-84  Charge_End_Time         hour, minute, second
91     (write)                 the current limit, 0.1 A; confirmed by HR36
93     Plug_and_Go             0 on, 1 off (inverted, as GivTCP found it)
94     Charge_Control          index into :data:`CHARGE_CONTROLS`: the command in force
95     (write)                 Ready/Start/Stop as 0/1/2; confirmed by HR94
97-102 System_Time             year, month, day, hour, minute, second
109,   Voltage_L1..L3          0.1 V, every other register
111, 113
=====  ======================  ==============================================================

The counters (HR29, HR72, HR79) are single registers as GivTCP reads them. The gaps before
them suggest they may be the low words of 32-bit values, which would wrap at 6553.5 kWh and
18.2 hours; givbridge reads what GivTCP reads until a register list says otherwise, and the
hygiene layer holds a lifetime counter that goes backwards.

Where givbridge departs from GivTCP's reading, on purpose:

* ``Charge_Control`` is HR94 as read. GivTCP overwrote it with "Start" while charging and
  "Stop" otherwise, so the Home Assistant select snapped back to Stop whenever the car was
  full or waiting (GivTCP #467);
* timestamps are the charger's wall clock in the configured time zone (GivTCP labelled them
  UTC), and a session that started yesterday is dated yesterday;
* ``Charge_Session_Duration`` is a number of seconds (a duration sensor), not ``H:MM:SS`` text;
* an unknown state or error code is published as ``Unknown`` / ``Code <n>`` (an unknown
  control is left out) instead of failing the whole read.

Everything in this module is pure: register values in, GivTCP-named values or write plans out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta, tzinfo

from givbridge.plant.snapshot import Scalar
from givbridge.plant.writes import RegisterWrite, WritePlan
from givbridge.scan import EVC_CLOCK, EVC_DEVICE_ID, EVC_SERIAL, decode_charger_clock, decode_charger_serial

CHARGER_FAMILY = "evc"
"""The snapshot family of a charger (``DeviceInfo.family``); every inverter family is another word."""
CHARGER_MODEL = "EV charger"
PREFIX = "givevc"
"""GivTCP's entity-id prefix for the charger since 3.0.4 (``sensor.givevc_<serial>_charging_state``)."""
GROUP = "Charger"
"""Every charger value lives under ``<root>/<serial>/Charger/``."""

DEVICE_ID = EVC_DEVICE_ID
READ_BLOCKS: tuple[tuple[int, int], ...] = ((0, 60), (60, 55))
"""(first register, count) of each read; together they hold every register below."""

STATE = 0
CABLE = 2
ERROR = 4
PHASE_CURRENTS = (6, 8, 10)
ACTIVE_POWER = 13
PHASE_POWERS = (17, 20, 24)
METER_ENERGY = 29
EVSE_MAX_CURRENT = 32
EVSE_MIN_CURRENT = 34
CHARGE_LIMIT = 36
SERIAL_FIRST, SERIAL_COUNT = EVC_SERIAL
SESSION_ENERGY = 72
SESSION_START = (74, 75, 76)
SESSION_DURATION = 79
SESSION_END = (82, 83, 84)
CURRENT_LIMIT_SET = 91
PLUG_AND_GO = 93
CHARGE_CONTROL = 94
CHARGE_COMMAND = 95
SYSTEM_TIME = tuple(range(EVC_CLOCK[0], EVC_CLOCK[0] + EVC_CLOCK[1]))
PHASE_VOLTAGES = (109, 111, 113)

WRITABLE = frozenset({CURRENT_LIMIT_SET, PLUG_AND_GO, CHARGE_COMMAND, *SYSTEM_TIME})

CHARGING_STATES: tuple[str, ...] = (
    "Unknown",
    "Idle",
    "Connected",
    "Starting",
    "Charging",
    "Startup Failure",
    "End of Charging",
    "System Failure",
    "Scheduled",
    "Updating",
    "Unstable CP",
)
CHARGING = CHARGING_STATES.index("Charging")
CABLE_STATES: tuple[str, ...] = ("Not Connected", "Connected")
CHARGE_CONTROLS: tuple[str, ...] = ("Ready", "Start", "Stop")
CHARGING_MODES: tuple[str, ...] = ("Grid", "Hybrid", "Solar")
ERROR_CODES: Mapping[int, str] = {
    0: "Clear",
    11: "CP voltage is abnormal",
    12: "Emergency stop",
    13: "Undervoltage",
    14: "Overvoltage",
    15: "Over temperature",
    16: "Meter failure",
    17: "Leakage fault",
    18: "Output short circuit",
    19: "Overcurrent",
    21: "Vehicle response timeout",
    22: "No diode at the vehicle end",
    23: "Relay sticking",
    24: "Leakage current device failure",
    25: "Ground fault",
    26: "Failed to start process",
}
PLUG_AND_GO_ON = 0  # inverted: 0 means on
SWITCH_ON, SWITCH_OFF = "enable", "disable"

#: Below this a phase carries no supply (the L2/L3 voltages of a single-phase charger read 0).
LIVE_PHASE_VOLTS = 100.0


def path(name: str) -> str:
    """The snapshot path of a charger value (``Charger/Charge_Limit``)."""
    return f"{GROUP}/{name}"


def _word(table: tuple[str, ...], value: int, unknown: str | None) -> str | None:
    return table[value] if 0 <= value < len(table) else unknown


def serial_of(registers: Mapping[int, int]) -> str | None:
    """The charger's serial in ``registers``, or None if they do not hold one."""
    return decode_charger_serial([registers.get(r, 0) for r in range(SERIAL_FIRST, SERIAL_FIRST + SERIAL_COUNT)])


def decode(registers: Mapping[int, int], tz: tzinfo) -> dict[str, Scalar]:
    """The charger's values, keyed by snapshot path, from the registers of :data:`READ_BLOCKS`.

    ``tz`` is the zone the charger's clock runs in (it keeps local wall time and says no zone).
    A value the registers do not hold (no session end yet) is left out, as for an inverter.
    """

    def reg(number: int) -> int:
        return registers.get(number, 0)

    def tenths(number: int) -> float:
        return reg(number) / 10

    serial = serial_of(registers)
    clock = decode_charger_clock([reg(r) for r in SYSTEM_TIME])
    system_time = clock.replace(tzinfo=tz) if clock is not None else None
    error = reg(ERROR)
    values: dict[str, Scalar] = {
        "Charging_State": _word(CHARGING_STATES, reg(STATE), "Unknown"),
        "Connection_Status": _word(CABLE_STATES, reg(CABLE), "Unknown"),
        "Error_Code": ERROR_CODES.get(error, f"Code {error}"),
        "Active_Power": reg(ACTIVE_POWER),
        "Meter_Energy": tenths(METER_ENERGY),
        "Evse_Max_Current": tenths(EVSE_MAX_CURRENT),
        "Evse_Min_Current": tenths(EVSE_MIN_CURRENT),
        "Charge_Limit": tenths(CHARGE_LIMIT),
        "Charge_Session_Energy": tenths(SESSION_ENERGY),
        "Charge_Session_Duration": reg(SESSION_DURATION),
        "Plug_and_Go": SWITCH_ON if reg(PLUG_AND_GO) == PLUG_AND_GO_ON else SWITCH_OFF,
        "Charge_Control": _word(CHARGE_CONTROLS, reg(CHARGE_CONTROL), None),
        "System_Time": system_time,
        "Serial_Number": serial,
    }
    phases = zip(PHASE_CURRENTS, PHASE_POWERS, PHASE_VOLTAGES, strict=True)
    for phase, (current, power, voltage) in enumerate(phases, start=1):
        values[f"Current_L{phase}"] = tenths(current)
        values[f"Active_Power_L{phase}"] = reg(power)
        values[f"Voltage_L{phase}"] = tenths(voltage)
    if system_time is not None:
        values["Charge_Start_Time"] = _session_time([reg(r) for r in SESSION_START], system_time)
        values["Charge_End_Time"] = _session_time([reg(r) for r in SESSION_END], system_time)
    return {path(name): value for name, value in values.items() if value is not None}


def _session_time(fields: list[int], now: datetime) -> datetime | None:
    """A session boundary (hour, minute, second of the charger's clock) as the latest such moment up to ``now``.

    All zeros means the charger has none (no session yet, or one still running).
    """
    if not any(fields):
        return None
    try:
        hour, minute, second = fields
        moment = datetime.combine(now.date(), time(hour, minute, second), tzinfo=now.tzinfo)
    except (TypeError, ValueError):
        return None
    return moment - timedelta(days=1) if moment > now else moment


# --------------------------------------------------------------------------- writes


def charge_control_plan(word: str) -> WritePlan:
    """Ready/Start/Stop: HR95, confirmed by the control HR94 reads afterwards."""
    value = CHARGE_CONTROLS.index(word)
    return WritePlan(
        (RegisterWrite(CHARGE_COMMAND, value),),
        expect=(RegisterWrite(CHARGE_CONTROL, value),),
        skip_unchanged=False,  # a command register: sending Start again is a new request
        description=f"charge control {word}",
    )


def current_limit_plan(amps: int) -> WritePlan:
    """The current limit in whole amps: HR91 in tenths, confirmed by the limit in force, HR36."""
    tenths = amps * 10
    return WritePlan(
        (RegisterWrite(CURRENT_LIMIT_SET, tenths),),
        expect=(RegisterWrite(CHARGE_LIMIT, tenths),),
        skip_unchanged=False,
        description=f"current limit {amps} A",
    )


def plug_and_go_plan(on: bool) -> WritePlan:
    value = PLUG_AND_GO_ON if on else 1 - PLUG_AND_GO_ON
    return WritePlan((RegisterWrite(PLUG_AND_GO, value),), skip_unchanged=False, description=f"plug and go {on}")


def clock_writes(wall_time: datetime) -> tuple[RegisterWrite, ...]:
    """HR97-102 for a naive wall-clock time (the charger holds full years)."""
    fields = (wall_time.year, wall_time.month, wall_time.day, wall_time.hour, wall_time.minute, wall_time.second)
    return tuple(RegisterWrite(register, value) for register, value in zip(SYSTEM_TIME, fields, strict=True))
