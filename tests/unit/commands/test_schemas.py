"""Payload parsing: value types, the raw and JSON forms, transactions and the limits on what is accepted."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import pytest

from givbridge.commands.executor import parse_payload
from givbridge.commands.results import CommandFailed, ErrorCode
from givbridge.commands.schemas import (
    CANCEL,
    MAX_PAYLOAD_BYTES,
    DurationPayload,
    PauseModePayload,
    date_time,
    decode,
    duration,
    slot_time,
    switch,
    whole_number,
)
from tests.unit.commands.helpers import command


@pytest.mark.parametrize("value", [80, "80", 80.0, "80.0", " 80 ", "8e1"])
def test_whole_numbers_accept_home_assistant_floats(value: object) -> None:
    assert whole_number(value) == 80


@pytest.mark.parametrize("value", [80.5, "80.5", True, "abc", "", None, "nan", "inf", [80]])
def test_whole_numbers_refuse_the_rest(value: object) -> None:
    with pytest.raises(ValueError):
        whole_number(value)


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


@pytest.mark.parametrize("text", ["24:00", "24:61", "16:60", "9", "1630", "16:3", "16:30:60", "", "noon", 1630])
def test_slot_times_refuse_what_is_not_a_time_of_day(text: object) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        slot_time(text)


def test_date_times_in_givtcps_format_and_iso() -> None:
    assert date_time("01/05/2024 16:30:05") == datetime(2024, 5, 1, 16, 30, 5)
    assert date_time("2024-05-01T16:30:05") == datetime(2024, 5, 1, 16, 30, 5)
    aware = date_time("2024-05-01T16:30:05+02:00")
    assert aware.utcoffset() == timedelta(hours=2)
    for bad in ("31/02/2024 10:00:00", "2024-13-01T00:00:00", "yesterday", ""):
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


def test_duration_limits() -> None:
    with pytest.raises(ValueError):
        duration(1441)


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
    ],
)
def test_invalid_payloads_say_what_is_accepted(name: str, payload: Any, says: str) -> None:
    with pytest.raises(CommandFailed) as failed:
        parse_payload(command(name), decode(payload))
    assert failed.value.code is ErrorCode.INVALID_PAYLOAD
    assert says in failed.value.message
    if name != "settings":
        assert "Accepted:" in failed.value.message or "accepted:" in failed.value.message
