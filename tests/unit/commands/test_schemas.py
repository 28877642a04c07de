"""Payload parsing: value types, the raw and JSON forms, transactions and the limits on what is accepted."""

from __future__ import annotations

import math
import re
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from givbridge.commands.decoding import MAX_PAYLOAD_BYTES, UnreadablePayload, decode
from givbridge.commands.executor import parse_payload
from givbridge.commands.results import CommandFailed, ErrorCode
from givbridge.commands.schemas import DurationPayload, PauseModePayload
from givbridge.commands.values import (
    CANCEL,
    NUMBER_TEXT,
    date_time,
    decimal_number,
    duration,
    number_text,
    rounded_number,
    slot_time,
    switch,
    whole_number,
)
from tests.unit.commands.helpers import command


@pytest.mark.parametrize("value", [80, "80", 80.0, "80.0", " 80 ", "\t80\n", "+80", "80.", "80.000"])
def test_whole_numbers_accept_home_assistant_floats(value: object) -> None:
    assert whole_number(value) == 80


# "8e1" was accepted as 80 until the parser became strict: Python's float() takes it, users do not write it.
LOOSE_NUMBERS = [
    *("8e1", "6e1", "1e3", "1E2", "80e0", "1_0_0", "8_0", "0x50", "0o17", "0b1", "inf", "-inf", "Infinity", "nan"),
    *("\uff18\uff10", "\u0668\u0660", "\u06f8\u06f0", "\u0968\u0966", "8\u0660", "\U0001d7ea\U0001d7e2"),
    *("\u300080", "80\u00a0", "80\u2003", "1" * 16, "0." + "1" * 25, "- 80", "80-", "8 0", "80..0", ".", "+", ""),
    *("\u00bd", "\u2155", "\u00b2", "80%", "80W", "1,5"),
]


@pytest.mark.parametrize("value", [80.5, "80.5", True, False, "abc", None, [80], *LOOSE_NUMBERS])
def test_whole_numbers_refuse_the_rest(value: object) -> None:
    with pytest.raises(ValueError):
        whole_number(value)


@pytest.mark.parametrize("value", LOOSE_NUMBERS)
def test_loose_numbers_are_refused_by_every_number_parser(value: str) -> None:
    for parse in (number_text, whole_number, rounded_number, decimal_number, duration):
        with pytest.raises(ValueError, match="plain decimal number"):
            parse(value)


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, 1e15, -1e15, 10**15, -(10**15), 10**400, 1e300, "9" * 16]
)
def test_numbers_that_are_not_finite_or_absurdly_large_are_refused(value: object) -> None:
    for parse in (whole_number, rounded_number, decimal_number):
        with pytest.raises(ValueError):
            parse(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("80", 80), ("-10", -10), ("+3", 3), ("80.5", 80.5), (" 80.0 ", 80.0), (".5", 0.5), ("-0", 0)],
)
def test_number_text_is_an_int_without_a_point_and_a_float_with_one(text: str, expected: float) -> None:
    parsed = number_text(text)
    assert parsed == expected
    assert isinstance(parsed, float) is ("." in text)


def test_decimals_and_rounding_use_the_same_parser() -> None:
    assert decimal_number("20.5") == 20.5
    assert decimal_number(-10) == -10.0
    assert rounded_number("2500.4") == 2500
    assert rounded_number(" 2499.6 ") == 2500


#: What an accepted number looks like: ASCII whitespace, an optional sign, ASCII digits and at most one point.
PLAIN = re.compile(r"[ \t\n\r\f\v]*[-+]?[0-9]*\.?[0-9]*[ \t\n\r\f\v]*")
NUMBERISH = st.text(
    alphabet=st.one_of(
        st.sampled_from("0123456789.+-_eExXbo \t\n"),
        st.characters(categories=["Nd", "No", "Zs"]),  # every script's digits, fractions, spaces
    ),
    max_size=24,
)


@given(text=st.one_of(NUMBERISH, st.from_regex(NUMBER_TEXT, fullmatch=True), st.text(max_size=24)))
def test_every_accepted_number_is_plain_ascii_and_round_trips(text: str) -> None:
    try:
        number = number_text(text)
    except ValueError:
        return
    assert text.isascii() and PLAIN.fullmatch(text), text
    assert "_" not in text and "e" not in text.lower()
    assert number == float(text.strip())  # exactly what the digits say


@given(number=st.integers(-(10**15) + 1, 10**15 - 1))
def test_every_integer_as_text_and_as_json_is_itself(number: int) -> None:
    assert number_text(str(number)) == number
    assert whole_number(number) == number
    assert decode(f'{{"value": {number}}}').object == {"value": number}


@given(number=st.floats(min_value=-1e14, max_value=1e14).filter(lambda f: "e" not in repr(f)))
def test_every_float_written_plainly_is_itself(number: float) -> None:
    assert number_text(repr(number)) == number
    assert decimal_number(repr(number)) == number


@given(
    digits=st.text(alphabet="0123456789", min_size=2, max_size=8),
    cut=st.integers(1, 7),
    spoiler=st.one_of(
        st.just("_"),
        st.sampled_from(["e", "E", "e+", "e-"]).map(lambda e: e + "1"),
        st.characters(categories=["Nd"]).filter(lambda c: not c.isascii()),
    ),
)
def test_underscores_exponents_and_unicode_digits_are_always_refused(digits: str, cut: int, spoiler: str) -> None:
    cut = min(cut, len(digits) - 1)
    text = digits[:cut] + spoiler + digits[cut:] if not spoiler.startswith(("e", "E")) else digits + spoiler
    with pytest.raises(ValueError, match="plain decimal number"):
        number_text(text)


@pytest.mark.parametrize("word", ["enable", "Enabled", "ON", "true", "1", 1, True, "yes"])
def test_switch_on_spellings(word: object) -> None:
    assert switch(word) is True


@pytest.mark.parametrize("word", ["disable", "DISABLED", "off", "False", "0", 0, False, "no"])
def test_switch_off_spellings(word: object) -> None:
    assert switch(word) is False


@pytest.mark.parametrize("word", ["maybe", "", 2, None, "enable please"])
def test_switch_refuses_anything_else(word: object) -> None:
    with pytest.raises(ValueError, match="enable or disable"):
        switch(word)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16:30", time(16, 30)),
        ("16:30:00", time(16, 30)),  # a Home Assistant select option
        ("16:30:45", time(16, 30)),  # seconds dropped, as GivTCP's [:5]
        ("9:05", time(9, 5)),
        ("00:00", time(0, 0)),
        ("23:59:59", time(23, 59)),
    ],
)
def test_slot_times(text: str, expected: time) -> None:
    assert slot_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        *("24:00", "24:61", "16:60", "9", "1630", "16:3", "16:30:60", "", "noon", 1630, "16:30\n:00"),
        *("\uff11\uff16:\uff13\uff10", "1\u0666:30", "16:\u0663\u0660", "\u300016:30", "+16:30", "16:30:0_0"),
    ],
)
def test_slot_times_refuse_what_is_not_a_time_of_day(text: object) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        slot_time(text)


def test_date_times_in_givtcps_format_and_iso() -> None:
    assert date_time("01/05/2024 16:30:05") == datetime(2024, 5, 1, 16, 30, 5)
    assert date_time("2024-05-01T16:30:05") == datetime(2024, 5, 1, 16, 30, 5)
    aware = date_time("2024-05-01T16:30:05+02:00")
    assert aware.utcoffset() == timedelta(hours=2)
    unicode_digits = ("1\uff15/05/2024 16:30:00", "2024-05-0\u0661T16:30:00", "01/05/2024 1\u0666:30:00")
    for bad in ("31/02/2024 10:00:00", "2024-13-01T00:00:00", "yesterday", "", *unicode_digits):
        with pytest.raises(ValueError, match="DD/MM/YYYY"):
            date_time(bad)


def test_choices_ignore_case_and_spacing() -> None:
    mode = command("setBatteryMode")
    assert parse_payload(mode, decode("eco (paused)")).model_dump() == {"mode": "Eco (Paused)"}
    assert parse_payload(mode, decode("TIMED export")).model_dump() == {"mode": "Timed Export"}
    calibration = command("setBatteryCalibration")
    for spelling in ("charge only", "CHARGE_ONLY", "Charge Only"):
        assert parse_payload(calibration, decode(spelling)).model_dump() == {"state": "Charge Only"}
    assert parse_payload(calibration, decode("stop")).model_dump() == {"state": "Off"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [("enable", "PauseBoth"), ("disable", "Disabled"), ("pausecharge", "PauseCharge"), ("2", "PauseDischarge")],
)
def test_pause_mode_maps_api_json_words(given: str, expected: str) -> None:
    assert PauseModePayload.model_validate({"state": given}).state == expected


@pytest.mark.parametrize(
    ("given", "expected"), [("30", 30), (45.0, 45), ("Cancel", CANCEL), ("normal", CANCEL), ("0", CANCEL)]
)
def test_durations(given: object, expected: object) -> None:
    assert duration(given) == expected
    assert DurationPayload.model_validate({"duration": given}).duration == expected


@pytest.mark.parametrize(
    "given", [1441, "1441", 1441.0, "1440.5", -1, "-30", 10**6, "1e3", "6e1", "\uff16\uff10", True]
)
def test_duration_limits(given: object) -> None:
    with pytest.raises(ValueError):
        duration(given)


def test_the_documented_maximum_holds_for_every_form() -> None:
    assert _parse("forceCharge", "1440") == {"duration": 1440}
    assert _parse("forceCharge", {"duration": 1440.0}) == {"duration": 1440}
    for name in ("forceCharge", "forceExport", "tempPauseCharge", "tempPauseDischarge"):
        for payload in ("1441", '{"duration": 1441}', '{"duration": "1441"}', "1e3", '{"duration": 1e3}'):
            with pytest.raises(CommandFailed) as failed:
                parse_payload(command(name), decode(payload))
            assert failed.value.code is ErrorCode.INVALID_PAYLOAD, (name, payload)


# --- messages ---------------------------------------------------------------------------------


def test_raw_and_json_forms_and_transaction() -> None:
    raw = decode(b" 80 ")
    assert (raw.object, raw.raw, raw.transaction) == (None, "80", None)
    document = decode('{"chargeToPercent": "80", "transaction": "abc-1"}')
    assert (document.object, document.transaction) == ({"chargeToPercent": "80"}, "abc-1")
    assert decode('{"chargeToPercent": 80, "transaction": 17}').transaction == 17
    assert decode({"chargeToPercent": 80, "transaction": 2.5}).transaction == 2.5
    quoted = decode('"enable"')
    assert (quoted.object, quoted.raw) == (None, "enable")
    assert decode(None).raw is None


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe\x00",  # not UTF-8
        "x" * (MAX_PAYLOAD_BYTES + 1),
        '{"chargeToPercent": 80',  # broken JSON
        "[80]",  # JSON, but not an object
        '{"chargeToPercent": 80, "transaction": true}',
        '{"chargeToPercent": 80, "transaction": {"id": 1}}',
        '{"chargeToPercent": 6e1}',  # JSON numbers are written plainly too
        '{"chargeToPercent": 8E1}',
        '{"chargeToPercent": 80.0e0}',
        '{"chargeToPercent": NaN}',
        '{"chargeToPercent": Infinity}',
        '{"chargeToPercent": -Infinity}',
        '{"chargeToPercent": 1' + "0" * 20 + "}",
        '{"chargeToPercent": 80, "transaction": 1e3}',
    ],
)
def test_messages_refused_before_parsing(payload: str | bytes) -> None:
    with pytest.raises(CommandFailed) as failed:
        decode(payload)
    assert failed.value.code is ErrorCode.INVALID_PAYLOAD


def test_a_message_of_exactly_the_limit_is_accepted() -> None:
    assert decode("8" * MAX_PAYLOAD_BYTES).raw == "8" * MAX_PAYLOAD_BYTES


def _parse(name: str, payload: Any) -> dict[str, Any]:
    return parse_payload(command(name), decode(payload)).model_dump()


def test_raw_value_fills_the_commands_raw_field_and_its_name_fixes_the_slot() -> None:
    assert _parse("setChargeTarget", "80.0") == {"chargeToPercent": 80}
    assert _parse("setChargeTarget3", "55") == {"chargeToPercent": 55, "slot": 3}
    assert _parse("setDischargeStart2", "16:30:00") == {"start": time(16, 30), "slot": 2}
    assert _parse("setChargeSlot2", '{"start": "01:00", "finish": "04:30"}') == {
        "start": time(1),
        "finish": time(4, 30),
        "slot": 2,
        "chargeToPercent": None,
    }


def test_documented_and_working_spellings_are_both_accepted() -> None:
    assert _parse("setDischargeTarget", {"exportToPercent": "45", "slot": "1"}) == {"dischargeToPercent": 45, "slot": 1}
    assert _parse("setDischargeTarget", {"dischargeToPercent": 45, "slot": 1}) == {"dischargeToPercent": 45, "slot": 1}
    assert _parse("setForceCharge", {"state": "enabled"}) == {"state": True}
    assert _parse("setCarChargeBoost", {"state": "2500"}) == {"boost": 2500}


def test_buttons_ignore_their_payload() -> None:
    assert _parse("syncDateTime", "restart") == {}
    assert _parse("rebootInverter", "restart") == {}
    assert _parse("readData", {"anything": 1}) == {}


@pytest.mark.parametrize(
    ("name", "payload", "says"),
    [
        ("setChargeTarget", "101", "less than or equal to 100"),
        ("setChargeTarget", "3", "greater than or equal to 4"),
        ("setChargeTarget", {"chargeToPercent": True}, "not true/false"),
        ("setChargeTarget", {"chargeToPercnt": 80}, "is required"),
        ("setChargeTarget", {"chargeToPercent": 80, "bogus": 1}, "not a key"),
        ("setChargeTarget", "", "is required"),
        ("setChargeTarget3", {"chargeToPercent": 80, "slot": 4}, "is for slot 3"),
        ("setChargeSlot1", "16:00", "takes a JSON object"),
        ("settings", "debug", "takes a JSON object"),
        ("setBatteryMode", "Export (Paused)", "expected one of"),
        ("setChargeRate", "-5", "greater than or equal to 0"),
        ("setChargeTarget", "1_0_0", "plain decimal number"),
        ("setChargeTarget", "\uff16\uff10", "plain decimal number"),
        ("setChargeTarget", "\u0666\u0660", "plain decimal number"),
        ("setChargeTarget", "6e1", "plain decimal number"),
        ("setChargeTarget", {"chargeToPercent": "0x50"}, "plain decimal number"),
        ("setChargeTarget", {"chargeToPercent": math.nan}, "finite"),
        ("setBatteryReserve", "\u300020", "plain decimal number"),
        ("forceCharge", "1e3", "plain decimal number"),
        ("setChargeRate", "inf", "plain decimal number"),
        ("setChargeTarget", "8" * 400, "(400 characters)"),  # the message does not echo the whole payload
    ],
)
def test_invalid_payloads_say_what_is_accepted(name: str, payload: Any, says: str) -> None:
    with pytest.raises(CommandFailed) as failed:
        parse_payload(command(name), decode(payload))
    assert failed.value.code is ErrorCode.INVALID_PAYLOAD
    assert says in failed.value.message
    if name != "settings":
        assert "Accepted:" in failed.value.message or "accepted:" in failed.value.message


@pytest.mark.parametrize(
    ("document", "transaction"),
    [
        ('{"chargeToPercent": 6e1, "transaction": "t-1"}', "t-1"),
        ('{"slot": 1e2, "transaction": 7}', 7),
        ('{"chargeToPercent": 60, "transaction": 4978118168253495766193566384128}', 4978118168253495766193566384128),
        ('{"chargeToPercent": 6e1, "transaction": [1]}', None),  # not a transaction at all
    ],
)
def test_a_document_refused_for_a_number_keeps_its_transaction(document: str, transaction: object) -> None:
    with pytest.raises(UnreadablePayload) as refused:
        decode(document)
    assert refused.value.code is ErrorCode.INVALID_PAYLOAD
    assert refused.value.transaction == transaction
