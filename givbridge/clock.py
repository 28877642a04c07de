"""Time as every givbridge component sees it.

The bridge, the simulator and the tests all ask a :class:`Clock` for the time instead of
calling ``datetime.now()`` or ``asyncio.sleep()`` directly. In production that is the
:class:`SystemClock`; tests and the soak benchmark use a :class:`ScaledClock` so that an
hour of inverter life (a timed force-charge, a midnight counter reset, a battery filling
up) passes in seconds without a single real sleep being stretched or shortened by hand.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Clock(Protocol):
    """Wall time, monotonic time and sleeping, all on the same time base."""

    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale that advances with :meth:`now`."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """A clock that runs ``speed`` times faster than real time from a chosen start.

    ``ScaledClock(speed=60)`` makes a minute pass every real second; ``sleep(60)`` returns
    after one real second. Time can also be moved forward instantly with :meth:`advance`
    (a clock jump), which wakes nobody early: sleepers wake when their own deadline, on
    this clock, has passed.
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start_wall = start if start is not None else datetime.now(UTC)
        if self._start_wall.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._start_real = time.monotonic()
        self._offset = 0.0  # seconds added by advance()

    def monotonic(self) -> float:
        return (time.monotonic() - self._start_real) * self.speed + self._offset

    def now(self) -> datetime:
        return self._start_wall + timedelta(seconds=self.monotonic())

    def advance(self, seconds: float) -> None:
        """Jump this clock forward by ``seconds`` without any real time passing."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._offset += seconds

    async def sleep(self, seconds: float) -> None:
        deadline = self.monotonic() + max(0.0, seconds)
        # Re-check after each real sleep: advance() may have brought the deadline closer.
        while (remaining := deadline - self.monotonic()) > 0:  # noqa: ASYNC110 (this is the clock itself)
            await asyncio.sleep(min(remaining / self.speed, 0.25))


#: Test and development only: run ``givbridge run`` on a shared accelerated clock. The value is
#: ``<speed>@<start>@<epoch>``: the clock read ``start`` (ISO-8601 with an offset) at the Unix
#: time ``epoch`` and runs ``speed`` times faster than real time. Every process given the same
#: value is on the same time line, so a test can kill the bridge and start it again (its
#: timed actions resuming) against a simulator on that clock without waiting real minutes.
DEV_CLOCK_ENV = "GIVBRIDGE_DEV_CLOCK"


def shared_scaled_clock(speed: float, start: datetime, epoch: float) -> ScaledClock:
    """A :class:`ScaledClock` that read ``start`` at Unix time ``epoch``, the same in every process."""
    return ScaledClock(speed=speed, start=start + timedelta(seconds=(time.time() - epoch) * speed))


def dev_clock_setting(speed: float, start: datetime, epoch: float) -> str:
    """The :data:`DEV_CLOCK_ENV` value for :func:`shared_scaled_clock` ``(speed, start, epoch)``."""
    return f"{speed}@{start.isoformat()}@{epoch}"


def clock_from_environment(environ: Mapping[str, str] | None = None) -> Clock:
    """The system clock, unless :data:`DEV_CLOCK_ENV` asks for a shared accelerated one (tests only)."""
    value = (os.environ if environ is None else environ).get(DEV_CLOCK_ENV)
    if not value:
        return SystemClock()
    try:
        speed, start, epoch = value.split("@")
        clock = shared_scaled_clock(float(speed), datetime.fromisoformat(start), float(epoch))
    except ValueError as exc:
        raise ValueError(f"{DEV_CLOCK_ENV} must be <speed>@<ISO start with offset>@<unix epoch>: {exc}") from None
    return clock


def wall_time_near(wall: datetime, zone: tzinfo, near: datetime) -> datetime:
    """The instant a zone-less wall-clock reading in ``zone`` stands for, taken nearest to ``near``.

    An inverter clock shows local time without saying which side of a DST change it is on:
    in the autumn hour that happens twice (01:30 in October, London) and in the spring hour
    that never happens (01:30 in March), either reading has two candidate instants. The one
    closer to ``near`` (our own clock) is the only sensible reading, so the skew a DST change
    causes is measured as what it is and never as an extra hour.
    """
    naive = wall.replace(tzinfo=None)
    candidates = (naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1))
    # Compared in UTC: two datetimes sharing a tzinfo subtract as wall times, ignoring fold.
    reference = near.astimezone(UTC)
    return min(candidates, key=lambda moment: abs((moment.astimezone(UTC) - reference).total_seconds()))


def local_zone(name: str | None = None) -> ZoneInfo:
    """The IANA zone the inverter clocks run in.

    GivEnergy inverters keep local time with no zone of their own. An explicit setting wins;
    then ``TZ`` and the host's ``/etc/localtime``; otherwise Europe/London, where almost all
    of them are installed (a container without TZ would otherwise read every inverter clock
    as UTC and misplace a force-charge slot by an hour in summer).
    """
    candidates = [name, os.environ.get("TZ")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for candidate in candidates:
        if candidate:
            try:
                return ZoneInfo(candidate.lstrip(":"))
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("Europe/London")
