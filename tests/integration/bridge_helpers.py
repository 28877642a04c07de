"""Helpers to run givbridge against the simulator in-process and await what it does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from givbridge.clock import ScaledClock
from givbridge.config import Settings
from givbridge.devices.inverter import InverterRunner
from givbridge.plant.snapshot import Snapshot

#: Polling fast enough for tests under a scaled clock, with a simulator that answers at once.
FAST_POLLING: dict[str, Any] = {
    "poll_interval": 2,
    "settings_interval": 10,
    "timeout": 0.5,
    "retries": 0,
    "offline_after": 2,
    "request_gap": 0.0,
    "probe_timeout": 0.05,
    "backoff_min": 0.1,
    "backoff_max": 0.5,
}


def bridge_settings(data_dir: Path, sim_ports: list[int], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "inverters": [{"host": "127.0.0.1", "port": port} for port in sim_ports],
        "data_dir": data_dir,
        "polling": dict(FAST_POLLING),
        "timezone": "Europe/London",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings(**values)


def fast_clock(speed: float = 20.0) -> ScaledClock:
    """Ten simulated seconds of polling in half a real second."""
    return ScaledClock(speed=speed)


class Watch:
    """Records a runner's snapshots and availability changes; lets a test await them."""

    def __init__(self, runner: InverterRunner) -> None:
        self.runner = runner
        self.snapshots: list[Snapshot] = []
        self.availability: list[bool] = []
        self._changed = asyncio.Condition()
        runner.on_snapshot.connect(self._on_snapshot)
        runner.on_availability.connect(self._on_availability)

    async def _on_snapshot(self, snapshot: Snapshot) -> None:
        async with self._changed:
            self.snapshots.append(snapshot)
            self._changed.notify_all()

    async def _on_availability(self, runner: InverterRunner) -> None:
        async with self._changed:
            self.availability.append(runner.health.available)
            self._changed.notify_all()

    async def snapshot(
        self, predicate: Callable[[Snapshot], bool] = lambda s: True, *, after: int = 0, within: float = 10.0
    ) -> Snapshot:
        """The first snapshot (from index ``after``) matching ``predicate``."""

        def found() -> Snapshot | None:
            return next((s for s in self.snapshots[after:] if predicate(s)), None)

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: found() is not None)
            result = found()
            assert result is not None
            return result

    async def count(self, n: int, *, within: float = 10.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.snapshots) >= n)

    async def available(self, value: bool, *, within: float = 10.0) -> None:
        """Until the runner reports ``value`` as its latest availability."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: bool(self.availability) and self.availability[-1] is value)


async def start(runner: InverterRunner) -> asyncio.Task[None]:
    return asyncio.create_task(runner.run(), name=f"test runner {runner.label}")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def first_snapshot(runner: InverterRunner, *, within: float = 10.0) -> Snapshot:
    """The runner's latest snapshot, waiting for its first one if there is none yet."""
    if runner.snapshot is not None:
        return runner.snapshot
    watch = Watch(runner)  # connected before any await: no snapshot can slip past
    return await watch.snapshot(within=within)


def ok(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The data of a command's ``ok`` result (fails the test on any other)."""
    assert answer["status"] == "ok", answer
    data: dict[str, Any] = answer["data"]
    return data


def error(answer: Mapping[str, Any], code: str) -> str:
    """The message of a command's error result with ``code`` (fails the test on any other)."""
    assert answer["status"] == "error", answer
    assert answer["error"]["code"] == code, answer
    message: str = answer["error"]["message"]
    return message
