"""The values command payloads are made of: one parser per kind of value, and the types built on them.

A number has one form wherever it comes from (raw text, a JSON string or a JSON number):
:data:`NUMBER_TEXT`, plain ASCII decimal (``80``, ``-10``, ``80.5``, `` 80.0 ``). Python's own
``int()``/``float()`` also take ``1_0_0``, ``6e1``, ``inf``, Arabic-Indic and full-width digits;
those are refused with ``invalid_payload``, as are JSON's ``NaN``/``Infinity`` and exponents.
The value types accept the spellings GivTCP's documentation and its working code disagree on
(``enable``/``enabled``) and nothing ambiguous: a percentage must be a whole number, a time
must be a real time of day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, time
from typing import Annotated

from pydantic import BeforeValidator, Field

from givbridge.plant import vocab

# --- value parsers ----------------------------------------------------------------------------
# Each takes what JSON or a raw MQTT payload can carry and returns a plain Python value, or raises
# ValueError with a message naming what is accepted; pydantic adds the field name.


#: Whitespace allowed around a value: ASCII only (``str.strip()`` would also take U+3000 and friends).
ASCII_SPACE = " \t\n\r\f\v"
_SPACE = r"[ \t\n\r\f\v]*"
#: The one form a number may take, as text or as a JSON number's literal: an optional sign, ASCII
#: digits with an optional decimal fraction, optional whitespace around. No exponent, underscore,
#: hex, ``inf``/``nan`` or non-ASCII digit (all of which Python's ``int()``/``float()`` take).
#: Fifteen integer digits are beyond every register yet exact as a float; 24 fractional ones cover
#: any float as JavaScript or Python print it without an exponent (0.000001234567890123456).
#: Also the JSON Schema pattern of numbers written as text (:mod:`givbridge.commands.docs`), so it
#: is ECMA-262 syntax too.
NUMBER_TEXT = rf"^{_SPACE}([-+]?(?:[0-9]{{1,15}}(?:\.[0-9]{{0,24}})?|\.[0-9]{{1,24}})){_SPACE}$"
_NUMBER = re.compile(NUMBER_TEXT)
#: Magnitude a JSON number (or an already parsed value) must stay below: the text form's limit.
NUMBER_LIMIT = 10**15
NUMBER_WORDS = (
    "a plain decimal number such as 80, -10 or 80.5 "
    "(ASCII digits, at most 15 before the point; no exponent, underscore, hex, inf or nan)"
)


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error message never echoes a whole payload."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:limit]}...{size}"


def number_text(text: str) -> int | float:
    """A number written as text (:data:`NUMBER_TEXT`): an int without a decimal point, else a float."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(f"expected {NUMBER_WORDS}, got {shown(text)}")
    literal = match[1]
    return float(literal) if "." in literal else int(literal)


def parse_number(value: object) -> int | float:
    """The one number parser: every numeric field and every JSON number literal goes through it."""
    if isinstance(value, bool):  # JSON true is not 1 here: almost certainly the wrong field
        raise ValueError("expected a number, not true/false")
    if isinstance(value, str):
        return number_text(value)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("expected a finite number")
        if abs(value) >= NUMBER_LIMIT:
            raise ValueError(f"expected a number below {NUMBER_LIMIT:.0e} in size, got {shown(value)}")
        return value
    raise ValueError(f"expected a number, got {type(value).__name__}")


def whole_number(value: object) -> int:
    """``80``, ``"80"``, ``80.0`` and ``"80.0"`` (a Home Assistant number entity) are 80; 80.5 is an error."""
    number = parse_number(value)
    if isinstance(number, int):
        return number
    if not number.is_integer():
        raise ValueError(f"expected a whole number, got {shown(value)}")
    return int(number)


def rounded_number(value: object) -> int:
    """Any number, rounded to the nearest integer (for watts, where the register steps are coarse anyway)."""
    return round(parse_number(value))


def decimal_number(value: object) -> float:
    return float(parse_number(value))


_ON = frozenset({"enable", "enabled", "on", "true", "1", "yes"})
_OFF = frozenset({"disable", "disabled", "off", "false", "0", "no"})
SWITCH_WORDS = "enable or disable (also enabled/disabled, on/off, true/false, 1/0)"


def switch(value: object) -> bool:
    """GivTCP's ``enable``/``disable`` and the spellings its api.json and HA users send."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip(ASCII_SPACE).lower()
        if word in _ON:
            return True
        if word in _OFF:
            return False
    raise ValueError(f"expected {SWITCH_WORDS}, got {shown(value)}")


#: A time of day as text (ASCII digits); also the JSON Schema pattern of time fields.
TIME_TEXT = rf"^{_SPACE}([0-9]{{1,2}}):([0-9]{{2}})(?::([0-9]{{2}}))?{_SPACE}$"
_TIME = re.compile(TIME_TEXT)
TIME_WORDS = "a time of day HH:MM or HH:MM:SS, 00:00 to 23:59"


def slot_time(value: object) -> time:
    """``16:30`` or ``16:30:00`` (a Home Assistant select) as a time; seconds are dropped like GivTCP does."""
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0)
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected {TIME_WORDS}, got {shown(value)}")
    hour, minute, second = (int(group or 0) for group in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"expected {TIME_WORDS}, got {shown(value)}")
    return time(hour, minute)


DATETIME_WORDS = "a date and time as DD/MM/YYYY HH:MM:SS or ISO-8601 (2024-05-01T16:30:00, optionally with an offset)"


def date_time(value: object) -> datetime:
    """GivTCP's documented ``%d/%m/%Y %H:%M:%S``, or ISO-8601; an offset, when given, is kept."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value.isascii():  # strptime's digits are Unicode ones, like int()'s
        text = value.strip(ASCII_SPACE)
        for pattern in ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"):
            try:
                return datetime.strptime(text, pattern)
            except ValueError:
                pass
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"expected {DATETIME_WORDS}, got {shown(value)}")


def _squash(word: str) -> str:
    return re.sub(r"[\s_\-()]+", "", word).lower()


def choice(options: Sequence[str], aliases: Mapping[str, str] | None = None) -> Callable[[object], str]:
    """A parser for one of ``options`` in any case and spacing (``charge only`` is ``Charge Only``).

    ``aliases`` map further spellings (compared the same way) onto an option.
    """
    table = {_squash(option): option for option in options}
    table.update({_squash(alias): option for alias, option in (aliases or {}).items()})
    accepted = ", ".join(options)

    def parse(value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and _squash(value) in table:
            return table[_squash(value)]
        raise ValueError(f"expected one of {accepted}, got {shown(value)}")

    return parse


# --- value types -----------------------------------------------------------------------------

Percent = Annotated[int, BeforeValidator(whole_number), Field(ge=4, le=100)]
"""An SOC target or reserve as the inverter accepts it, 4-100 %."""
AnyPercent = Annotated[int, BeforeValidator(whole_number), Field(ge=0, le=100)]
AcPercent = Annotated[int, BeforeValidator(whole_number), Field(ge=1, le=100)]
Watts = Annotated[int, BeforeValidator(rounded_number), Field(ge=0, le=65535)]
Switch = Annotated[bool, BeforeValidator(switch)]
SlotTime = Annotated[time, BeforeValidator(slot_time)]
DateTime = Annotated[datetime, BeforeValidator(date_time)]
SlotNumber = Annotated[int, BeforeValidator(whole_number), Field(ge=1, le=10)]
EmsSlotNumber = Annotated[int, BeforeValidator(whole_number), Field(ge=1, le=3)]

SETTABLE_MODES = (vocab.MODE_ECO, vocab.MODE_ECO_PAUSED, vocab.MODE_TIMED_DEMAND, vocab.MODE_TIMED_EXPORT)
BatteryMode = Annotated[str, BeforeValidator(choice(SETTABLE_MODES))]
# api.json documents enable/disable for the pause mode; enable pauses both directions (the
# inverter then holds the battery during the pause slot), disable turns pausing off.
PauseMode = Annotated[
    str,
    BeforeValidator(
        choice(
            vocab.PAUSE_MODES,
            {
                vocab.ENABLE: vocab.PAUSE_MODES[-1],  # PauseBoth
                vocab.DISABLE: vocab.PAUSE_MODES[0],  # Disabled
                **{str(i): m for i, m in enumerate(vocab.PAUSE_MODES)},
            },
        )
    ),
]
# The calibration stages a user can ask for, in stage order.
CALIBRATION_MODES = tuple(vocab.CALIBRATION_BY_STAGE.values())
Calibration = Annotated[str, BeforeValidator(choice(CALIBRATION_MODES, {"stop": vocab.CALIBRATION_OFF}))]
CANCEL = "Cancel"
MAX_DURATION_MINUTES = 1440


def duration(value: object) -> int | str:
    """Minutes for a timed action, or :data:`CANCEL` (GivTCP also cancels on ``Normal`` and ``0``)."""
    if isinstance(value, str) and _squash(value) in {"cancel", "normal"}:
        return CANCEL
    minutes = whole_number(value)
    if minutes == 0:
        return CANCEL
    if not 1 <= minutes <= MAX_DURATION_MINUTES:
        raise ValueError(f"expected minutes 1-{MAX_DURATION_MINUTES} or Cancel, got {shown(value)}")
    return minutes


Duration = Annotated[int | str, BeforeValidator(duration)]
