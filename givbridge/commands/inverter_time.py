"""The inverter's clock (HR35-40: year - 2000, month, day, hour, minute, second, local wall time).

The clock keeps running while it is written and read back, so the read-back cannot be
compared register by register: the runner confirms the date registers and
:func:`clock_check` confirms the whole time is within :data:`CLOCK_TOLERANCE` of where it
should be by then.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from givbridge.commands import devices as dev
from givbridge.commands.schemas import DateTimePayload, NoPayload
from givbridge.commands.spec import Command, PlanInput, Planned, ReadbackCheck, invalid
from givbridge.plant import registers as reg
from givbridge.plant.writes import RegisterWrite, WritePlan

GROUP = "Clock"

#: How far the clock read back may be from the one written, allowing for the time the writes take.
CLOCK_TOLERANCE = timedelta(seconds=15)


def clock_plan(wall_time: datetime, planned_at: datetime, description: str) -> Planned:
    """Write ``wall_time`` (the inverter's local time, naive) to HR35-40."""
    if not 2000 <= wall_time.year <= 2099:
        raise invalid(f"the inverter clock holds years 2000-2099, not {wall_time.year}")
    values = (
        wall_time.year - 2000,
        wall_time.month,
        wall_time.day,
        wall_time.hour,
        wall_time.minute,
        wall_time.second,
    )
    writes = tuple(RegisterWrite(register, value) for register, value in zip(reg.CLOCK, values, strict=True))
    plan = WritePlan(
        writes,
        expect=writes[:3],  # the date; the time of day is checked with a tolerance
        skip_unchanged=False,  # a second that happens to match must still be written
        description=description,
    )
    return Planned(plan, check=clock_check(wall_time, planned_at))


def clock_check(
    wall_time: datetime,
    planned_at: datetime,
    *,
    registers: Sequence[int] = reg.CLOCK,
    year_base: int = 2000,
    device: str = "the inverter",
) -> ReadbackCheck:
    """A read-back check that the clock in ``registers`` (year - ``year_base``, month, day, hour,
    minute, second) shows ``wall_time`` plus the time since ``planned_at``, within the tolerance."""

    def check(readback: Mapping[int, int], now: datetime) -> str | None:
        try:
            year, month, day, hour, minute, second = (readback[r] for r in registers)
            found = datetime(year + year_base, month, day, hour, minute, second)
        except (KeyError, ValueError):
            return f"{device}'s clock read back is not a valid date and time"
        expected = wall_time + (now - planned_at)
        if abs(found - expected) > CLOCK_TOLERANCE:
            return f"{device}'s clock reads {found:%Y-%m-%d %H:%M:%S}, expected about {expected:%Y-%m-%d %H:%M:%S}"
        return None

    return check


def plan_set_date_time(payload: DateTimePayload, given: PlanInput) -> Planned:
    wall_time = payload.dateTime
    if wall_time.tzinfo is not None:  # an instant: show it on the inverter in the site's zone
        wall_time = wall_time.astimezone(given.now.tzinfo)
    return clock_plan(wall_time.replace(tzinfo=None, microsecond=0), given.now, f"clock {wall_time:%Y-%m-%d %H:%M:%S}")


def plan_sync_date_time(payload: NoPayload, given: PlanInput) -> Planned:
    wall_time = given.now.replace(tzinfo=None, microsecond=0)
    return clock_plan(wall_time, given.now, "clock sync")


_CLOCK_APPLIES = dev.applies("inverters", registers=dev.fixed_registers(*reg.CLOCK))
_clock = functools.partial(Command, group=GROUP, applies=_CLOCK_APPLIES, updates=("{serial}/Invertor_Time",))

COMMANDS: tuple[Command, ...] = (
    _clock(
        name="setDateTime",
        summary="Set the inverter clock.",
        payload=DateTimePayload,
        raw_field="dateTime",
        plan=plan_set_date_time,
        notes="Broken in GivTCP (a log line raises before the write). givbridge takes DD/MM/YYYY HH:MM:SS or "
        "ISO-8601; a time with an offset is converted to the configured time zone first.",
    ),
    _clock(
        name="syncDateTime",
        summary="Set the inverter clock to the bridge's time in the configured time zone.",
        payload=NoPayload,
        plan=plan_sync_date_time,
        notes="GivTCP uses the container's naive local time (wrong without TZ); givbridge uses the "
        "configured timezone (else the host's, else Europe/London). The payload is ignored.",
    ),
)
