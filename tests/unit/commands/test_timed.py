"""Timed actions, the pure part: which registers each writes, slot windows on the inverter clock, the
state entities, and the record kept in the data directory."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from givbridge.commands import REGISTRY
from givbridge.commands.decoding import decode
from givbridge.commands.devices import reference_device, reference_devices
from givbridge.commands.executor import parse_payload
from givbridge.commands.results import CommandFailed
from givbridge.commands.timed import (
    FORCE_CHARGE,
    FORCE_EXPORT,
    KINDS,
    SELECT_OPTIONS,
    TEMP_PAUSE_CHARGE,
    TEMP_PAUSE_DISCHARGE,
    applies_to,
    minutes_left,
    next_change,
    slot_window,
)
from givbridge.commands.timed_record import Action, Phase, inverter_time
from givbridge.entities import load_catalogue
from givbridge.sim import PROFILES
from givbridge.sim.writes import value_is_valid

NOON = datetime(2026, 6, 20, 12, 0, 0)


@pytest.mark.parametrize(
    ("clock", "minutes", "window"),
    [
        (datetime(2026, 6, 20, 16, 30, 0), 30, (1630, 1700)),
        (datetime(2026, 6, 20, 16, 30, 20), 30, (1630, 1701)),  # rounded up: the slot outlasts the action
        (datetime(2026, 6, 20, 23, 50, 0), 30, (2350, 20)),  # wraps midnight
        (datetime(2026, 6, 20, 23, 59, 59), 1, (2359, 1)),
        (datetime(2026, 6, 20, 10, 17, 0), 1440, (1017, 1016)),  # a whole day: one minute short (not empty)
        (datetime(2026, 6, 20, 0, 0, 0), 600, (0, 1000)),
    ],
)
def test_slot_windows_follow_the_inverter_clock(clock: datetime, minutes: int, window: tuple[int, int]) -> None:
    assert slot_window(clock, minutes) == window


def test_minutes_left_round_up_and_change_once_a_minute() -> None:
    ends = datetime(2026, 6, 20, 12, 30, tzinfo=UTC)
    assert minutes_left(ends, ends - timedelta(minutes=30)) == 30
    assert minutes_left(ends, ends - timedelta(minutes=29, seconds=59)) == 30
    assert minutes_left(ends, ends - timedelta(seconds=1)) == 1
    assert minutes_left(ends, ends) == 0
    assert minutes_left(ends, ends + timedelta(hours=1)) == 0
    now = ends - timedelta(minutes=29, seconds=10)
    assert next_change(ends, now) == ends - timedelta(minutes=29)
    assert next_change(ends, ends - timedelta(seconds=30)) == ends


def _writes(kind_name: str, family: str, minutes: int = 30) -> dict[int, int]:
    return dict(KINDS[kind_name].writes(reference_device(family), NOON, minutes))


def test_force_charge_writes_what_givtcp_writes_and_the_slot_target() -> None:
    assert _writes("forceCharge", "hybrid-gen3") == {
        111: 50,  # full charge rate
        116: 100,  # charge target
        242: 100,  # charge slot 1's own target (10-slot firmware)
        318: 0,  # pause mode off
        94: 1200,
        95: 1230,
        96: 1,  # the schedule switch last
    }
    assert FORCE_CHARGE.registers(reference_device("hybrid-gen3"))[-1] == 96
    assert _writes("forceCharge", "hybrid-gen1") == {111: 50, 116: 100, 94: 1200, 95: 1230, 96: 1}
    assert _writes("forceCharge", "hybrid-3ph") == {
        1110: 100,
        1111: 100,
        1122: 0,  # force discharge off
        1113: 1200,
        1114: 1230,
        1123: 1,
        1112: 1,
    }


def test_force_export_writes_timed_export_with_the_lowest_reserve() -> None:
    assert _writes("forceExport", "hybrid-gen3", 45) == {
        112: 50,
        110: 4,
        272: 4,  # discharge slot 1's own floor
        318: 0,
        56: 1200,
        57: 1245,
        27: 0,
        59: 1,
    }
    assert _writes("forceExport", "hybrid-3ph") == {
        1108: 100,
        1109: 4,
        1123: 0,
        1118: 1200,
        1119: 1230,
        27: 0,
        59: 1,
        1122: 1,
    }


def test_temp_pause_on_three_phase_uses_the_lowest_valid_rate() -> None:
    assert _writes("tempPauseCharge", "hybrid-gen2") == {111: 0}
    assert _writes("tempPauseDischarge", "hybrid-gen2") == {112: 0}
    assert _writes("tempPauseCharge", "hybrid-3ph") == {1110: 1}
    assert _writes("tempPauseDischarge", "ac-3ph") == {1108: 1}
    profile = PROFILES["hybrid-3ph"]
    assert value_is_valid(profile, 1110, 1) and not value_is_valid(profile, 1110, 0)  # GivTCP's 0 W fails there


def test_every_written_value_is_one_the_simulated_firmware_accepts() -> None:
    for device in reference_devices():
        if device.family.key not in PROFILES:
            continue
        for kind in KINDS.values():
            if not applies_to(kind, device):
                continue
            for register, value in kind.writes(device, NOON, 90):
                assert value_is_valid(PROFILES[device.family.key], register, value), (kind.name, device.family.key)


def test_which_models_can_run_them() -> None:
    for family in ("hybrid-gen1", "hybrid-gen3", "ac", "aio", "hybrid-hv-gen3", "hybrid-3ph", "ac-3ph"):
        assert all(applies_to(kind, reference_device(family)) for kind in KINDS.values()), family
    for family in ("pv", "ems", "gateway"):
        assert not any(applies_to(kind, reference_device(family)) for kind in KINDS.values()), family
    command = REGISTRY.get("forceCharge")
    assert command is not None and command.status == "ready"
    assert "no battery" in (command.applies.reason(reference_device("pv")) or "")


def test_conflicts() -> None:
    gen1, gen3 = reference_device("hybrid-gen1"), reference_device("hybrid-gen3")
    assert FORCE_EXPORT.conflicts_with(FORCE_CHARGE, gen1)  # no shared register, still exclusive
    assert TEMP_PAUSE_CHARGE.conflicts_with(FORCE_CHARGE, gen3)  # both write HR111
    assert FORCE_CHARGE.conflicts_with(TEMP_PAUSE_CHARGE, gen3)
    assert not TEMP_PAUSE_CHARGE.conflicts_with(TEMP_PAUSE_DISCHARGE, gen3)
    assert not TEMP_PAUSE_DISCHARGE.conflicts_with(FORCE_CHARGE, gen3)
    assert not FORCE_CHARGE.conflicts_with(FORCE_CHARGE, gen3)


@pytest.mark.parametrize(
    ("payload", "duration"),
    [
        ("30", 30),
        ("30.0", 30),
        ('{"duration": 1440}', 1440),
        ("Cancel", "Cancel"),
        ("normal", "Cancel"),
        ("0", "Cancel"),
    ],
)
def test_durations(payload: str, duration: int | str) -> None:
    command = REGISTRY.get("forceExport")
    assert command is not None
    assert parse_payload(command, decode(payload)).model_dump() == {"duration": duration}


@pytest.mark.parametrize("payload", ["1441", "-5", "Running", "2.5", "soon", ""])
def test_bad_durations(payload: str) -> None:
    command = REGISTRY.get("tempPauseCharge")
    assert command is not None
    with pytest.raises(CommandFailed) as failure:
        parse_payload(command, decode(payload))
    assert failure.value.code == "invalid_payload"


def test_state_entities_are_defined_as_givtcp_names_them() -> None:
    catalogue = load_catalogue()
    now = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
    for kind in KINDS.values():
        select, number = catalogue[kind.leaf], catalogue[f"{kind.leaf}_Num"]
        assert (select.platform, select.command, select.option_values()) == ("select", kind.name, SELECT_OPTIONS)
        assert (number.platform, number.command, number.min, number.max) == ("number", kind.name, 0, 1440)
        for ends in (None, now + timedelta(minutes=90)):
            state = kind.state(ends, now)
            assert set(state) == {kind.select_path, kind.number_path}
            assert state[kind.select_path] in SELECT_OPTIONS
            assert number.bounds is not None and 0 <= state[kind.number_path] <= 1440  # type: ignore[operator]
    assert FORCE_CHARGE.state(now + timedelta(minutes=90), now) == {
        "Control/Force_Charge": "Running",
        "Control/Force_Charge_Num": 90,
    }
    assert FORCE_CHARGE.state(None, now) == {"Control/Force_Charge": "Normal", "Control/Force_Charge_Num": 0}


def test_the_stored_record_round_trips_and_bad_ones_are_refused() -> None:
    started = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
    action = Action("forceCharge", "SA1234G567", ((111, 30), (116, 80)), started, started + timedelta(minutes=30), 30)
    assert Action.from_record(action.record()) == action
    pending = Action.from_record({**action.record(), "state": "pending", "attempts": 2, "error": "no answer"})
    assert (pending.phase, pending.attempts, pending.error) == (Phase.PENDING, 2, "no answer")
    for broken in (
        {**action.record(), "action": "forceNap"},
        {**action.record(), "baseline": []},
        {**action.record(), "baseline": [[111, 70000]]},
        {**action.record(), "ends": "2026-06-20T11:30:00"},  # no offset
        {key: value for key, value in action.record().items() if key != "serial"},
    ):
        with pytest.raises((KeyError, TypeError, ValueError)):
            Action.from_record(broken)


def test_a_record_from_before_the_written_values_were_kept_still_loads_and_restores_everything() -> None:
    started = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
    action = Action("forceCharge", "SA1234G567", ((111, 30), (116, 80)), started, started + timedelta(minutes=30), 30)
    old = action.record()
    assert "written" not in old  # as saved before givbridge kept what the action wrote
    loaded = Action.from_record(old)
    assert loaded.written is None and loaded.changed() == ((111, 30), (116, 80))
    assert loaded.revert_plan({111: 7, 116: 9}) == ([(111, 30), (116, 80)], {})  # it cannot tell: as before
    kept = replace(action, written=((111, 50), (116, 100)))
    assert Action.from_record(kept.record()) == kept
    with pytest.raises(ValueError, match="register word"):
        Action.from_record({**kept.record(), "written": [[111, 70000]]})


def test_a_revert_writes_back_only_what_the_action_changed_and_still_holds() -> None:
    started = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
    baseline = ((111, 50), (116, 80), (242, 90), (318, 0), (94, 100), (95, 430), (96, 0))
    written = ((111, 50), (116, 100), (242, 100), (318, 0), (94, 1200), (95, 1230), (96, 1))
    ends = started + timedelta(minutes=30)
    action = Action("forceCharge", "SA1234G567", baseline, started, ends, 30, written=written)
    # HR111 and HR318 already held the action's values: the action did not change them.
    assert action.changed() == ((116, 80), (242, 90), (94, 100), (95, 430), (96, 0))
    current = {116: 100, 242: 95, 94: 1200, 95: 430, 96: 1}
    restore, left_alone = action.revert_plan(current)
    # HR242 was set to 95 by someone while it ran: left alone. HR95 is back at its baseline
    # already: nothing to write, and nobody's value is overwritten.
    assert restore == [(116, 80), (94, 100), (96, 0)]
    assert left_alone == {242: 95}


def test_inverter_time_from_the_clock_registers() -> None:
    assert inverter_time({35: 26, 36: 6, 37: 20, 38: 23, 39: 50, 40: 5}) == datetime(2026, 6, 20, 23, 50, 5)
    assert inverter_time({35: 0, 36: 0, 37: 0, 38: 0, 39: 0, 40: 0}) is None  # not a date
    assert inverter_time({}) is None
