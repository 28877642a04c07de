"""Fault scripts (``givbridge simulate --faults``): the syntax, its errors, and the schedule it makes."""

from __future__ import annotations

import itertools
import re

import pytest

from givbridge.cli import build_parser
from givbridge.sim.fault_script import FaultItem, FaultScript, FaultSpecError


def test_items_parse_to_their_canonical_form() -> None:
    script = FaultScript.parse(" silent=30@60/600, crc=0.05,drop/2m,clock-jump=-1h@5m,latency=0.5,refuse@10 ")
    assert str(script) == "silent=30@60/600,crc=0.05,drop/120,clock-jump=-3600@300,latency=0.5,refuse@10"
    assert script.items[0] == FaultItem("silent", 30.0, 60.0, 600.0)
    assert [item.kind for item in script.items] == ["window", "setting", "event", "event", "setting", "window"]
    assert FaultScript.parse(str(script)).items == script.items


def test_the_schedule_merges_every_item_in_time_order() -> None:
    script = FaultScript.parse("silent=30@60/600,drop/250,crc=0.1,freeze=10@100")
    steps = [(step.at, str(step.item), step.on) for step in itertools.islice(script.schedule(), 9)]
    assert steps == [
        (0.0, "drop/250", True),
        (0.0, "crc=0.1", True),
        (60.0, "silent=30@60/600", True),
        (90.0, "silent=30@60/600", False),
        (100.0, "freeze=10@100", True),
        (110.0, "freeze=10@100", False),
        (250.0, "drop/250", True),
        (500.0, "drop/250", True),
        (660.0, "silent=30@60/600", True),
    ]
    assert [step.at for step in FaultScript.parse("refuse@5,latency=1").schedule()] == [0.0, 5.0]  # both end


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("crc=0.1,,drop", "empty item"),
        ("flood=3", "no fault called 'flood' (known: clock-jump, crc, drop"),
        ("silent=30@60@90", "is not NAME[=VALUE][@START][/EVERY]"),
        ("latency", "needs a value"),
        ("clock-jump@60", "needs a value"),
        ("drop=3", "takes no value"),
        ("crc=1.5", "probability between 0 and 1"),
        ("garbage=often", "probability between 0 and 1"),
        ("zero=nan", "probability between 0 and 1"),
        ("latency=-1", "must not be negative"),
        ("latency=fast", "number of seconds"),
        ("latency=1e999", "number of seconds"),
        ("silent=0", "more than zero seconds"),
        ("silent=30@-5", "must not be negative"),
        ("silent/60", "needs a duration"),
        ("silent=60/60", "shorter than the interval"),
        ("drop/0", "more than zero"),
        ("crc=0.1/60", "cannot repeat"),
        ("clock-jump=0", "changes nothing"),
        ("crc=0.1,crc=0.2", "crc given more than once"),
    ],
)
def test_a_script_that_cannot_mean_anything_is_refused_saying_why(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=re.escape(message)):
        FaultScript.parse(spec)


def test_simulate_refuses_a_bad_script_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["simulate", "--faults", "silent=30@60/20"])
    assert exited.value.code == 2
    assert "argument --faults: 'silent=30@60/20': the window (30 s) must be shorter than the interval" in (
        capsys.readouterr().err
    )
    assert str(parser.parse_args(["simulate", "--faults", "drop/60"]).faults) == "drop/60"
