"""A day of random faults in about twenty seconds: invariants hold all day and memory stays flat.

The bridge and the simulator share a :class:`ScaledClock` running a simulated day in ~20 real
seconds, across the inverter's midnight, with a poll due every three simulated minutes (how
many happen depends on the machine: the clock does not wait). A fault script
(:mod:`givbridge.sim.fault_script`) runs on real time, because link faults are measured
against real timeouts: random CRC errors, garbage and all-zero answers throughout, and in
repeating windows silence, refused and dropped connections, frozen values, unpersisted writes
and clock jumps. Commands arrive all the while, one at a time. The rig checks every message
(no counter decreases, no unconfirmed ``ok``, availability only online/offline) and that
nothing crashed.

Memory: traced with :mod:`tracemalloc` from the fifth simulated hour and sampled every
simulated hour from the sixth (the end of the warm-up), after a full garbage collection; what
stays allocated must not keep growing. The bound is on growth (the floor of the last quarter's
samples over that of the second quarter), not on time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from givbridge.clock import ScaledClock
from givbridge.sim.fault_script import FaultScript
from tests.brokers import MosquittoBroker
from tests.conftest import needs_mosquitto
from tests.reliability.rig import TARGET_SOC, Rig, bridge_rig

pytestmark = [pytest.mark.reliability, needs_mosquitto]

DAY = 24 * 3600.0
SPEED = 4320.0  # a simulated day in 20 real seconds
WARM_UP = 6 * 3600.0
SAMPLE_EVERY = 3600.0
#: 06:00 in the inverter's zone (BST): the day's run crosses its midnight.
START = datetime(2026, 6, 20, 5, 0, tzinfo=UTC)
#: Real seconds. Rates apply to every answer; windows repeat on prime periods so they combine differently.
FAULTS = (
    "crc=0.005,garbage=0.05,zero=0.005,"
    "silent=0.6@2/7,refuse=0.5@4/11,drop@1/5,freeze=2@3/13,unpersisted=0.8@5/9,clock-jump=120@6/17"
)
#: Growth allowed in what stays allocated from the second quarter of the day to the last: about
#: 2.5 kB per poll over the ~60 polls in between (one retained snapshot is tens of kB).
GROWTH_LIMIT = 150_000  # bytes


async def sample_memory(
    rig: Rig, caplog: pytest.LogCaptureFixture, began: float, samples: list[tuple[float, int]]
) -> None:
    """Every simulated hour from the end of the warm-up: what stays allocated (tracing from an hour before)."""
    clock = rig.clock
    await clock.sleep(began + WARM_UP - SAMPLE_EVERY - clock.monotonic())
    tracemalloc.start()
    while True:
        await clock.sleep(began + WARM_UP + len(samples) * SAMPLE_EVERY - clock.monotonic())
        # Test-side records that would otherwise grow with the run (the watch keeps every snapshot).
        rig.watch.snapshots.clear()
        rig.checker.forget_results()
        rig.crashes.drain()
        caplog.clear()  # pytest keeps every log record: the warnings of each faulted poll
        rig.server.traffic.clear()  # the simulator's record of every request, for tests of their order
        gc.collect()  # count what is reachable, not cycles waiting for the collector
        samples.append((clock.monotonic() - began, tracemalloc.get_traced_memory()[0]))


async def test_a_day_of_random_faults_keeps_the_invariants_and_memory_flat(
    mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The library warns about every bad frame; pytest would keep each record (test-side memory).
    caplog.set_level(logging.ERROR, logger="givenergy_modbus")
    clock = ScaledClock(speed=SPEED, start=START)
    # A lost answer costs a real timeout: keep it short (the simulator answers within milliseconds).
    polling = {"poll_interval": 180, "settings_interval": 900, "timeout": 0.2, "backoff_min": 5, "backoff_max": 60}
    mqtt = {**mosquitto.settings().model_dump(), "full_refresh_interval": 3600}
    async with bridge_rig(mosquitto, tmp_path, clock=clock, keep_messages=False, polling=polling, mqtt=mqtt) as rig:
        began = clock.monotonic()
        samples: list[tuple[float, int]] = []
        background = [
            asyncio.create_task(FaultScript.parse(FAULTS).run(rig.server.faults)),
            asyncio.create_task(sample_memory(rig, caplog, began, samples)),
        ]
        rng = random.Random(2026)
        sent = 0
        try:
            while clock.monotonic() - began < DAY:
                # One at a time, so an ok can be checked against the register before the next write.
                target = rng.randint(20, 100)
                await rig.checker.command("setChargeTarget", {"chargeToPercent": target}, expect={TARGET_SOC: target})
                sent += 1
                await clock.sleep(rng.uniform(300, 1500))
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            tracemalloc.stop()
        await rig.healthy()
        answer = await rig.set_target(50)
        assert answer["status"] == "ok", answer

    # What the day exercised; how much depends on the machine's speed (the clock does not wait).
    tally, health = rig.checker.tally, rig.runner.health
    assert tally.counter_readings > 100 and tally.ok_results > 3 and tally.error_results > 0, tally
    assert health.polls_ok > 20 and health.polls_failed > 0 and sent > 10, (health, sent)
    # What stays allocated between polls is the floor under the samples (a sample may catch
    # messages in flight): compare the floor of the last quarter with that of the second.
    assert len(samples) >= 12, samples
    second = min(size for at, size in samples if DAY / 4 <= at < DAY / 2)
    last = min(size for at, size in samples if at >= 3 * DAY / 4)
    growth = last - second
    assert growth < GROWTH_LIMIT, f"traced memory grew {growth} bytes over the day: {samples}"
