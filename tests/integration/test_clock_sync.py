"""clock.auto_sync against the simulator over TCP: a drifted inverter clock is set, read back, and not fought over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from givbridge.clock import ScaledClock
from givbridge.clock_sync import ClockKeeper
from givbridge.commands.executor import CommandExecutor
from givbridge.devices.supervisor import Bridge
from givbridge.plant.snapshot import Snapshot
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.store import JsonStore
from tests.integration.bridge_helpers import FAST_POLLING, Watch, bridge_settings

ZONE = "Europe/London"
LONDON = ZoneInfo(ZONE)
SYNC = {"auto_sync": True, "sync_threshold": 60, "sync_interval": 1}
SETTINGS_INTERVAL = FAST_POLLING["settings_interval"]


@dataclass
class Rig:
    sim: SimulatedPlant
    server: SimulatorServer
    bridge: Bridge
    keeper: ClockKeeper
    watch: Watch
    clock: ScaledClock

    def skew(self) -> float:
        """The simulated inverter's clock minus ours, in seconds."""
        return (self.sim.inverter_time() - self.clock.now()).total_seconds()

    def writes(self) -> int:
        return sum(n for (kind, *_), n in self.server.requests.items() if kind == "W")

    async def skew_published(self, predicate: Any, *, within: float = 10.0) -> Snapshot:
        """The first snapshot from now on whose Stats/Clock_Skew satisfies ``predicate``."""
        mark = len(self.watch.snapshots)

        def matches(snapshot: Snapshot) -> bool:
            skew = snapshot.get("Stats/Clock_Skew")
            return isinstance(skew, float) and bool(predicate(skew))

        return await self.watch.snapshot(matches, after=mark, within=within)


@asynccontextmanager
async def rig(tmp_path: Path, *, start: datetime, inverter_offset: float, **settings: Any) -> AsyncIterator[Rig]:
    clock = ScaledClock(speed=40, start=start)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=5, tz=ZONE)
    sim.shift_clock(inverter_offset)
    async with SimulatorServer(sim) as server:
        config = bridge_settings(tmp_path, [server.port], clock=SYNC, **settings)
        bridge = Bridge(config, clock=clock)
        executor = CommandExecutor(bridge)
        keeper = ClockKeeper(bridge, executor, config, clock=clock, store=bridge.store)
        watch = Watch(bridge.runners[0])
        await bridge.start()
        try:
            yield Rig(sim, server, bridge, keeper, watch, clock)
        finally:
            await keeper.stop()
            await bridge.stop()


async def test_a_drifted_clock_is_synced_once_and_read_back(tmp_path: Path) -> None:
    async with rig(tmp_path, start=datetime(2026, 6, 20, 11, 0, tzinfo=UTC), inverter_offset=900) as r:
        await r.skew_published(lambda skew: skew > 850)
        synced = await r.skew_published(lambda skew: abs(skew) < 15)
        assert abs(r.skew()) < 5  # the simulator's own clock, not just what the bridge says
        assert r.writes() == 6  # HR35-40, once
        record = JsonStore(tmp_path).load(f"clock-{synced.serial}")
        assert datetime.fromisoformat(record["last_attempt"]) <= synced.taken_at

        # It drifts again within the hour: left alone (at most one sync per sync_interval) ...
        r.sim.shift_clock(600)
        drifted = await r.skew_published(lambda skew: skew > 550)
        later = drifted.taken_at + timedelta(seconds=3 * SETTINGS_INTERVAL)  # three more reads of the clock
        await r.watch.snapshot(lambda s: s.taken_at >= later, after=len(r.watch.snapshots))
        await r.skew_published(lambda skew: skew > 550)
        assert r.writes() == 6
        # ... until the hour is up.
        r.clock.advance(3600)
        await r.skew_published(lambda skew: abs(skew) < 15, within=15)
        assert r.writes() == 12


async def test_after_the_spring_change_the_clock_is_set_to_summer_time(tmp_path: Path) -> None:
    # 09:00 BST on the morning the clocks went forward; the inverter still keeps GMT (08:00).
    start = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    async with rig(tmp_path, start=start, inverter_offset=-3600) as r:
        before = await r.skew_published(lambda skew: skew < -3500)
        shown = before[f"{before.serial}/Invertor_Time"]
        assert isinstance(shown, datetime) and shown.hour == 8  # the wall clock it showed
        await r.skew_published(lambda skew: abs(skew) < 15)
        now = r.clock.now().astimezone(LONDON)
        wall = r.sim.inverter_time()
        assert abs((wall.replace(tzinfo=None) - now.replace(tzinfo=None)).total_seconds()) < 5
        assert wall.replace(tzinfo=None).hour == now.hour  # BST on the inverter's display too


async def test_a_small_skew_or_read_only_mode_writes_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path / "small", start=datetime(2026, 6, 20, 11, 0, tzinfo=UTC), inverter_offset=30) as r:
        for _ in range(3):
            await r.skew_published(lambda skew: 20 < skew < 40)
        assert r.writes() == 0
    async with rig(
        tmp_path / "ro", start=datetime(2026, 6, 20, 11, 0, tzinfo=UTC), inverter_offset=900, read_only=True
    ) as r:
        assert not r.keeper.enabled
        for _ in range(3):
            await r.skew_published(lambda skew: skew > 850)
        assert r.writes() == 0
