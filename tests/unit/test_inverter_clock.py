"""The inverter clock: read as the instant it means across DST changes and year ends, and its skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from givbridge.clock import wall_time_near
from givbridge.plant import build_snapshot
from givbridge.plant.families import FAMILIES
from tests.unit.plant.registers import INVERTER, gen1_two_packs, plant_from

LONDON = ZoneInfo("Europe/London")
ZONES = [LONDON, ZoneInfo("America/New_York"), ZoneInfo("Australia/Sydney"), ZoneInfo("UTC")]


# 2026 and 2027 hold every DST change of these zones twice over; whole seconds, like the registers.
instants = st.integers(
    int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()), int(datetime(2027, 12, 31, tzinfo=UTC).timestamp())
).map(lambda seconds: datetime.fromtimestamp(seconds, UTC))


@given(instant=instants, skew=st.integers(-1799, 1799), zone=st.sampled_from(ZONES))
def test_a_wall_clock_reading_means_the_instant_nearest_ours(instant: datetime, skew: int, zone: ZoneInfo) -> None:
    """An inverter up to half an hour off reads as exactly that far off, even in the hour DST repeats or skips."""
    wall = (instant + timedelta(seconds=skew)).astimezone(zone).replace(tzinfo=None)
    meant = wall_time_near(wall, zone, instant)
    assert (meant - instant).total_seconds() == skew


def test_an_inverter_not_moved_to_summer_time_is_an_hour_behind() -> None:
    # 10:00 BST on the day after the clocks went forward; the inverter still shows GMT (09:00).
    ours = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)
    inverter = wall_time_near(datetime(2026, 3, 30, 9, 0), LONDON, ours)
    assert (inverter - ours).total_seconds() == -3600


def test_the_repeated_autumn_hour_is_read_either_way() -> None:
    reading = datetime(2026, 10, 25, 1, 30)
    first_pass = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 BST
    second_pass = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 01:30 GMT
    # Compared in UTC: Python never calls a time in a repeated hour equal to one in another zone.
    assert wall_time_near(reading, LONDON, first_pass).astimezone(UTC) == first_pass
    assert wall_time_near(reading, LONDON, second_pass).astimezone(UTC) == second_pass


def clock_registers(moment: datetime) -> dict[str, int]:
    return {
        "r35": moment.year - 2000,
        "r36": moment.month,
        "r37": moment.day,
        "r38": moment.hour,
        "r39": moment.minute,
        "r40": moment.second,
    }


@pytest.mark.parametrize(
    ("register_time", "age", "expected"),
    [
        # GivTCP #318: a clock read at 23:59:50 on New Year's Eve, published 30 s later.
        (datetime(2025, 12, 31, 23, 59, 50), 30, datetime(2026, 1, 1, 0, 0, 20)),
        (datetime(2026, 2, 28, 23, 59, 59), 1, datetime(2026, 3, 1, 0, 0, 0)),  # month end
        (datetime(2028, 2, 28, 23, 59, 30), 60, datetime(2028, 2, 29, 0, 0, 30)),  # leap day
    ],
)
def test_year_and_month_rollover_never_break_the_clock(register_time: datetime, age: int, expected: datetime) -> None:
    devices = gen1_two_packs()
    devices[INVERTER].hr(**clock_registers(register_time))
    read_at = register_time.replace(tzinfo=LONDON).astimezone(UTC)
    taken_at = read_at + timedelta(seconds=age)
    snapshot = build_snapshot(
        plant_from(devices), family=FAMILIES["hybrid-gen1"], taken_at=taken_at, tz=LONDON, clock_read_at=read_at
    )
    assert snapshot[f"{snapshot.serial}/Invertor_Time"] == expected.replace(tzinfo=LONDON)


@pytest.mark.parametrize(
    "registers",
    [
        {"r35": 26, "r36": 13, "r37": 1, "r38": 0, "r39": 0, "r40": 0},  # month 13
        {"r35": 26, "r36": 2, "r37": 30, "r38": 0, "r39": 0, "r40": 0},  # 30 February
        {"r35": 0, "r36": 1, "r37": 1, "r38": 0, "r39": 0, "r40": 0},  # never set (year 2000)
    ],
)
def test_an_impossible_clock_is_left_out_not_a_crash(registers: dict[str, int]) -> None:
    devices = gen1_two_packs()
    devices[INVERTER].hr(**registers)
    taken_at = datetime(2026, 6, 5, 11, 20, tzinfo=UTC)
    snapshot = build_snapshot(plant_from(devices), family=FAMILIES["hybrid-gen1"], taken_at=taken_at, tz=LONDON)
    assert f"{snapshot.serial}/Invertor_Time" not in snapshot
    assert snapshot["Power/Power/SOC"] == 83  # the rest of the sample is unaffected


def test_a_clock_read_before_the_autumn_change_runs_on_through_it() -> None:
    # Read at 01:59:30 BST; published 60 s later, when our clock says 01:00:30 GMT. The
    # inverter knows nothing of DST: it shows 02:00:30, an hour ahead of local time now.
    devices = gen1_two_packs()
    devices[INVERTER].hr(**clock_registers(datetime(2026, 10, 25, 1, 59, 30)))
    read_at = datetime(2026, 10, 25, 0, 59, 30, tzinfo=UTC)
    taken_at = read_at + timedelta(seconds=60)
    snapshot = build_snapshot(
        plant_from(devices), family=FAMILIES["hybrid-gen1"], taken_at=taken_at, tz=LONDON, clock_read_at=read_at
    )
    shown = snapshot[f"{snapshot.serial}/Invertor_Time"]
    assert isinstance(shown, datetime)
    assert shown.replace(tzinfo=None) == datetime(2026, 10, 25, 2, 0, 30)
    assert (shown - taken_at).total_seconds() == 3600
