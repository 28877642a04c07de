"""The library's hygiene signals reach the diagnostics: dropped all-zero banks are counted, counters hold."""

from __future__ import annotations

from pathlib import Path

from givbridge.clock import ScaledClock
from givbridge.devices.inverter import InverterRunner
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.store import JsonStore
from tests.integration.bridge_helpers import Watch, bridge_settings, start, stop
from tests.integration.sim_helpers import MIDSUMMER_NOON

PV_TOTAL = "Energy/Total/PV_Energy_Total_kWh"
DROPOUTS = "Stats/Dropout_Banks_Rejected"


async def test_all_zero_banks_are_counted_and_never_published(tmp_path: Path) -> None:
    clock = ScaledClock(speed=20, start=MIDSUMMER_NOON)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=4, tz="Europe/London")
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            healthy = await watch.snapshot(lambda s: PV_TOTAL in s)
            assert healthy[DROPOUTS] == 0
            assert isinstance(healthy.get("Stats/Battery_Data_Unchanged"), float)  # the packs' data age
            server.faults.zero_bank(0x11, "IR", 0)  # the measurements bank: every counter and power reads 0
            mark = len(watch.snapshots)
            during = await watch.snapshot(lambda s: s[DROPOUTS] >= 3, after=mark)
            server.faults.clear()
            after = await watch.snapshot(lambda s: s[DROPOUTS] == during[DROPOUTS], after=len(watch.snapshots))
        finally:
            await stop(task)
    published = [s[PV_TOTAL] for s in watch.snapshots if PV_TOTAL in s]
    assert all(isinstance(v, float) and v > 0 for v in published)  # the zeros never got through
    assert published == sorted(published)
    assert after[PV_TOTAL] >= healthy[PV_TOTAL]
    assert runner.health.available


async def test_a_restart_judges_counters_against_the_remembered_ones(tmp_path: Path) -> None:
    clock = ScaledClock(speed=20, start=MIDSUMMER_NOON)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=4, tz="Europe/London")
    async with SimulatorServer(sim) as server:
        settings = bridge_settings(tmp_path, [server.port])
        first = InverterRunner(settings, 0, clock=clock)
        watch = Watch(first)
        task = await start(first)
        try:
            # A fresh bridge publishes a counter once three readings agree.
            assert PV_TOTAL not in await watch.snapshot()
            last = await watch.snapshot(lambda s: PV_TOTAL in s)
        finally:
            await stop(task)  # disconnecting saves the memory
        remembered = JsonStore(tmp_path).load(f"counters-{last.serial}")
        assert remembered[PV_TOTAL][0] >= last[PV_TOTAL]

        second = InverterRunner(settings, 0, clock=clock)
        watch = Watch(second)
        task = await start(second)
        try:
            # The restarted one has a baseline at once: its first sample is checked against it, not taken on trust.
            resumed = await watch.snapshot()
        finally:
            await stop(task)
    assert resumed[PV_TOTAL] >= remembered[PV_TOTAL][0]
