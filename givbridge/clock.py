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
from datetime import UTC, datetime, timedelta
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
