"""Command payloads: the value types they are made of, the models, and how a message becomes one.

A payload arrives in one of GivTCP's two forms:

* **raw**: the bare value, as GivTCP's MQTT topics and Home Assistant's entities send it
  (``80``, ``80.0`` from a number entity, ``enable``, ``16:30`` or ``16:30:00`` from a
  time-slot select, ``Eco (Paused)``). A command's ``raw_field`` says which field it fills.
* **JSON object** with the keys of GivTCP's api.json (``{"chargeToPercent": 80}``), values as
  strings or numbers, optionally with a ``transaction`` member that the result echoes.

Every model forbids keys it does not know, so a misspelt key is an error rather than a
silently ignored write. The value types accept the spellings GivTCP's documentation and its
working code disagree on (``enable``/``enabled``, ``dischargeToPercent``/``exportToPercent``)
and nothing ambiguous: a percentage must be a whole number, a time must be a real time of day.

A number has one form wherever it comes from (raw text, a JSON string or a JSON number):
:data:`NUMBER_TEXT`, plain ASCII decimal (``80``, ``-10``, ``80.5``, `` 80.0 ``). Python's own
``int()``/``float()`` also take ``1_0_0``, ``6e1``, ``inf``, Arabic-Indic and full-width digits;
those are refused with ``invalid_payload``, as are JSON's ``NaN``/``Infinity`` and exponents.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, time
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

from givbridge.commands.results import CommandFailed, ErrorCode, Transaction
from givbridge.evc.registers import CHARGE_CONTROLS, CHARGING_MODES
from givbridge.log import LOG_LEVELS
from givbridge.plant import vocab

#: Longest payload accepted, in bytes: a command is a few dozen bytes, a settings document a
#: few hundred; anything bigger is a mistake or an attack.
MAX_PAYLOAD_BYTES = 4096

TRANSACTION_KEY = "transaction"


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


def _number(value: object) -> int | float:
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
    number = _number(value)
    if isinstance(number, int):
        return number
    if not number.is_integer():
        raise ValueError(f"expected a whole number, got {shown(value)}")
    return int(number)


def rounded_number(value: object) -> int:
    """Any number, rounded to the nearest integer (for watts, where the register steps are coarse anyway)."""
    return round(_number(value))


def decimal_number(value: object) -> float:
    return float(_number(value))


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


# --- models ----------------------------------------------------------------------------------


class Payload(BaseModel):
    """Base of every command payload: unknown keys are errors, values are immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NoPayload(Payload):
    """A command that takes no value; whatever is sent (a button's ``restart``) is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class StatePayload(Payload):
    state: Switch = Field(description=SWITCH_WORDS, examples=["enable"])


class ChargeTargetPayload(Payload):
    chargeToPercent: Percent = Field(description="4-100 %", examples=[80])


class SlotChargeTargetPayload(Payload):
    chargeToPercent: Percent = Field(description="4-100 %", examples=[80])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])


class SlotDischargeTargetPayload(Payload):
    dischargeToPercent: Percent = Field(
        validation_alias=AliasChoices("dischargeToPercent", "exportToPercent"),
        description="4-100 % (api.json's exportToPercent is accepted too)",
        examples=[20],
    )
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])


class ExportTargetPayload(Payload):
    exportToPercent: Percent = Field(description="4-100 %", examples=[20])
    slot: EmsSlotNumber = Field(description="slot 1-3", examples=[1])


class EmsChargeTargetPayload(Payload):
    chargeToPercent: Percent = Field(description="4-100 %", examples=[80])
    slot: EmsSlotNumber = Field(description="slot 1-3", examples=[1])


class EmsDischargeTargetPayload(Payload):
    dischargeToPercent: Percent = Field(description="4-100 %", examples=[20])
    slot: EmsSlotNumber = Field(description="slot 1-3", examples=[1])


class ReservePayload(Payload):
    reservePercent: AnyPercent = Field(description="0-100 %; below 4 is raised to 4 as GivTCP does", examples=[20])


class CutoffPayload(Payload):
    dischargeToPercent: AnyPercent = Field(description="0-100 %; below 4 is raised to 4 as GivTCP does", examples=[4])


class ChargeRatePayload(Payload):
    chargeRate: Watts = Field(
        description="watts, 0 up to the battery's rating (more means the maximum)", examples=[2500]
    )


class DischargeRatePayload(Payload):
    dischargeRate: Watts = Field(
        description="watts, 0 up to the battery's rating (more means the maximum)", examples=[2500]
    )


class ChargeRateAcPayload(Payload):
    chargeRate: AcPercent = Field(description="1-100 % of the AC rating", examples=[50])


class DischargeRateAcPayload(Payload):
    dischargeRate: AcPercent = Field(description="1-100 % of the AC rating", examples=[50])


class ActivePowerRatePayload(Payload):
    activePowerRate: AnyPercent = Field(description="0-100 % of the inverter's rated output", examples=[100])


class BatteryModePayload(Payload):
    mode: BatteryMode = Field(description=", ".join(SETTABLE_MODES), examples=["Eco"])


class PauseModePayload(Payload):
    state: PauseMode = Field(
        description=", ".join(vocab.PAUSE_MODES) + "; enable = PauseBoth, disable = Disabled",
        examples=["PauseCharge"],
    )


class CalibrationPayload(Payload):
    state: Calibration = Field(description="Off, Start or Charge Only (any case)", examples=["Start"])


class ChargeSlotPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:00"])
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])
    chargeToPercent: Percent | None = Field(None, description="optional target 4-100 %", examples=[80])


class DischargeSlotPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:00"])
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])
    dischargeToPercent: AnyPercent | None = Field(
        None, description="optional target 0-100 %, raised to 4 at least", examples=[20]
    )


class WindowPayload(Payload):
    """A start/finish pair with no slot number (the pause slot)."""

    start: SlotTime = Field(description=TIME_WORDS, examples=["16:00"])
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])


class ExportSlotPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:00"])
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])
    slot: EmsSlotNumber = Field(description="slot 1-3", examples=[1])


class SlotStartPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:30"])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])


class SlotEndPayload(Payload):
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])


class PauseStartPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:30"])


class PauseEndPayload(Payload):
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])


class DateTimePayload(Payload):
    dateTime: DateTime = Field(description=DATETIME_WORDS, examples=["01/05/2024 16:30:00"])


class CarChargeBoostPayload(Payload):
    boost: Annotated[int, BeforeValidator(whole_number), Field(ge=0, le=22000)] = Field(
        validation_alias=AliasChoices("boost", "state"), description="0-22000 W", examples=[2500]
    )


class DurationPayload(Payload):
    duration: Duration = Field(description="minutes 1-1440, or Cancel (also Normal or 0)", examples=["30"])


class LogLevelPayload(Payload):
    level: Annotated[str, BeforeValidator(choice(LOG_LEVELS))] = Field(
        description=f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]} (any case)", examples=["debug"]
    )


class SettingsPayload(Payload):
    """A whole givbridge configuration document; checked against givbridge.config when run."""

    model_config = ConfigDict(extra="allow", frozen=True)


# EV charger payloads (commands/evc.py), and the tariff's.
class ChargeControlPayload(Payload):
    mode: Annotated[str, BeforeValidator(choice(CHARGE_CONTROLS))] = Field(
        description="Ready, Start or Stop (any case, so api.json's start/stop too)", examples=["Start"]
    )


# api.json documents state: enable/disable for setChargingMode (a leftover of an on/off solar
# switch): enable turns on the solar-following mode that still guarantees a charge (Hybrid),
# disable goes back to plain grid charging.
_GRID, _HYBRID, _ = CHARGING_MODES
ChargingMode = Annotated[str, BeforeValidator(choice(CHARGING_MODES, {vocab.ENABLE: _HYBRID, vocab.DISABLE: _GRID}))]


class ChargingModePayload(Payload):
    mode: ChargingMode = Field(
        validation_alias=AliasChoices("mode", "state"),
        description="Grid, Hybrid or Solar (any case); api.json's enable means Hybrid, disable Grid",
        examples=["Hybrid"],
    )


class CurrentLimitPayload(Payload):
    current: Annotated[int, BeforeValidator(rounded_number), Field(ge=6, le=80)] = Field(
        description="6-80 A, rounded to whole amps, then held within the charger's own range "
        "(Evse_Min_Current to Evse_Max_Current)",
        examples=[16],
    )


class ImportCapPayload(Payload):
    current: Annotated[int, BeforeValidator(whole_number), Field(ge=0, le=100)] = Field(
        description="0-100 A of grid current (0 removes the cap)", examples=[60]
    )


class SessionEnergyPayload(Payload):
    energy: Annotated[float, BeforeValidator(decimal_number), Field(ge=0, le=100)] = Field(
        description="0-100 kWh, decimals allowed (0 removes the limit)", examples=["20.5"]
    )


class RatePayload(Payload):
    rate: Annotated[str, BeforeValidator(choice(("day", "night")))] = Field(
        description="day or night", examples=["day"]
    )


class LocalControlModePayload(Payload):
    state: Annotated[str, BeforeValidator(choice(("Load", "Battery", "Grid")))] = Field(
        description="Load, Battery or Grid", examples=["Load"]
    )


class PvInputModePayload(Payload):
    state: Annotated[str, BeforeValidator(choice(("Independent", "1x2")))] = Field(
        description="Independent or 1x2", examples=["Independent"]
    )


class ExportLimitPayload(Payload):
    limit: Watts = Field(validation_alias=AliasChoices("limit", "state"), description="watts", examples=[3600])


# --- turning a message into a payload -----------------------------------------------------------


class Message:
    """A decoded command message: a JSON object, or a raw value, plus the transaction to echo."""

    __slots__ = ("object", "raw", "transaction")

    def __init__(self, object_: dict[str, Any] | None, raw: str | None, transaction: Transaction) -> None:
        self.object = object_
        self.raw = raw
        self.transaction = transaction


def decode(payload: bytes | str | Mapping[str, Any] | None) -> Message:
    """Split a message into its form (object or raw) and its transaction.

    Raises :class:`CommandFailed` (``invalid_payload``) for anything over
    :data:`MAX_PAYLOAD_BYTES`, bytes that are not UTF-8, broken JSON, a JSON number that is not
    plain (:data:`NUMBER_TEXT`) or a JSON value that is neither an object nor a scalar.
    """
    if payload is None:
        return Message(None, None, None)
    if isinstance(payload, Mapping):
        document = dict(payload)
        return Message(document, None, _transaction(document))
    raw_bytes = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if len(raw_bytes) > MAX_PAYLOAD_BYTES:
        raise CommandFailed(
            ErrorCode.INVALID_PAYLOAD, f"payload is {len(raw_bytes)} bytes; at most {MAX_PAYLOAD_BYTES} are accepted"
        )
    try:
        text = raw_bytes.decode("utf-8").strip(ASCII_SPACE)
    except UnicodeDecodeError:
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "payload is not UTF-8 text") from None
    if not text.startswith(("{", "[", '"')):
        return Message(None, text, None)
    try:
        value = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, f"payload looks like JSON but does not parse: {exc}") from None
    except ValueError as exc:  # a number literal the one number parser refuses (6e1, NaN, 30 digits)
        raise UnreadablePayload(f"a number in the payload: {exc}", _salvaged_transaction(text)) from None
    except RecursionError:  # "[[[[..." within the size limit is nested deeper than the parser goes
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "payload JSON is nested too deeply") from None
    if isinstance(value, dict):
        return Message(value, None, _transaction(value))
    if isinstance(value, str):  # a quoted raw value, as some tools send it
        return Message(None, value.strip(ASCII_SPACE), None)
    raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "a JSON payload must be an object with the command's keys")


class UnreadablePayload(CommandFailed):
    """``invalid_payload`` for a JSON document refused for one of its numbers, keeping its ``transaction``.

    A client matches answers to requests by their transaction: the refusal must carry it even
    when another number in the document (or the transaction's own spelling) is not plain.
    """

    def __init__(self, message: str, transaction: Transaction) -> None:
        super().__init__(ErrorCode.INVALID_PAYLOAD, message)
        self.transaction = transaction


def _salvaged_transaction(text: str) -> Transaction:
    """The transaction of a document whose numbers the strict parser refused, read leniently; or None."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    try:
        return _transaction(document)
    except CommandFailed:
        return None


def _json_constant(name: str) -> float:
    raise ValueError(f"expected a finite number, got {name}")


def _transaction(document: dict[str, Any]) -> Transaction:
    transaction = document.pop(TRANSACTION_KEY, None)
    if isinstance(transaction, float) and not math.isfinite(transaction):  # NaN cannot be echoed as JSON
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "transaction must be a finite number or a string")
    if transaction is None or (isinstance(transaction, str | int | float) and not isinstance(transaction, bool)):
        return transaction
    raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "transaction must be a string or a number")
