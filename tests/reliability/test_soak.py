"""Days of scripted faults in about a minute, judged from the MQTT record and from ``/metrics``.

The bridge and the simulator share a :class:`ScaledClock` running ``SOAK_DAYS`` simulated days
(3 by default) at 4320 times real speed, a poll due every three simulated minutes (how many
happen depends on the machine: the clock does not wait; here about one every ten), across the
inverter's midnight once a day. Link faults are measured against real timeouts (a silence
only becomes an outage after the bridge has waited for answers), so the episodes follow one
another as fast as the bridge can live through them: about one every simulated hour or two. In
turn: a silence and refused connections long enough to go offline, a dropped connection, bursts
of bad CRCs, all-zero answers and garbage, frozen values, writes acknowledged but not kept, an
inverter clock jump, a broker restart and a genuine counter reset (a dongle that comes back
with its lifetime counters lower). A command is sent every few simulated minutes all the while,
one at a time.

What must hold:

* the MQTT record (:mod:`tests.reliability.invariants`): no counter goes back but for a reset
  the bridge counted, derived counters held, every ``ok`` held by the inverter, nothing crashed;
* every outage is seen: the device goes offline after exactly ``offline_after`` failed polls
  (read from the metrics the moment availability changes) and reconnects are counted;
* every outage is recovered within the bounds of issue 20: a returned inverter online within
  one poll interval (on the bridge's clock) plus 5 real seconds of its accepting connections
  again; a returned broker gets ``bridge/state`` and every retained topic back within 5 s;
* the CRC and dropout counters move only in their own bursts, and no counter in ``/metrics``
  ever goes back;
* every command is answered exactly once, and the metrics count the same answers by status;
* memory stays flat: the memory blocks Python holds (:func:`sys.getallocatedblocks`, the
  count CPython's own leak hunting uses; free to read, where tracing every allocation would
  slow the bridge down tenfold), sampled every simulated hour after a six-hour warm-up and a
  full collection, must show no upward trend beyond a small bound: the median of the slopes
  between every two samples (robust to a sample that catches messages in flight), never a time.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from benchmarks.promql import Scrape, parse_exposition, sample_key
from givbridge.clock import ScaledClock
from givbridge.devices.inverter import InverterRunner
from tests.brokers import MosquittoBroker
from tests.conftest import needs_mosquitto
from tests.integration.http_helpers import client
from tests.reliability.rig import TARGET_SOC, Rig, bridge_rig, retained_topics

pytestmark = [pytest.mark.reliability, needs_mosquitto]

DAY = 24 * 3600.0
DAYS = float(os.environ.get("SOAK_DAYS", "3"))  # at least 1: a day of memory samples is needed
SPEED = 4320.0  # a simulated day in 20 real seconds
POLL_INTERVAL = 180.0
OFFLINE_AFTER = 2
WARM_UP = 6 * 3600.0
SAMPLE_EVERY = 3600.0
#: 06:00 in the inverter's zone (BST): every simulated day crosses its midnight.
START = datetime(2026, 6, 20, 5, 0, tzinfo=UTC)
#: Real seconds a returned inverter or broker may take beyond the bridge's own schedule (issue 20).
RETURN_ALLOWANCE = 5.0
#: How often a burst corrupts an answer: enough to be counted, few enough to poll through.
BURST_RATE = 0.15
BURST_POLLS = 6
#: The steepest trend allowed in the blocks Python holds, per simulated hour. Runs measure 10-25
#: (test-side records: the samples themselves, the checker's bounded histories filling up; more
#: in a one-day run); keeping five small objects of every snapshot measures over 100.
GROWTH_PER_HOUR = 50  # blocks
#: Metric samples that only ever count up (counters and histogram series).
_MONOTONIC_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
CRC = "givbridge_crc_errors_total"
DROPOUTS = "givbridge_dropout_banks_rejected_total"
#: The episodes that may move each counter (garbage before an answer can break its CRC too) ...
MAY_MOVE = {CRC: frozenset({"crc", "garbage"}), DROPOUTS: frozenset({"zero"})}
#: ... and the burst that must.
MUST_MOVE = {CRC: "crc", DROPOUTS: "zero"}
BRIDGE_STATE = "GivEnergy/bridge/state"


class Change(NamedTuple):
    """What ``/metrics`` said the moment a device's availability changed."""

    available: float
    failed_polls: float
    reconnects: float


@dataclass
class Metrics:
    """``/metrics`` of the running bridge: scraped over HTTP, and read in-process at availability changes."""

    rig: Rig
    url: str
    scrapes: int = 0
    last: Scrape = field(default_factory=dict)
    #: The metrics at each availability change since the current outage began.
    changes: list[Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rig.runner.on_availability.connect(self._changed)

    def value(self, samples: Scrape, name: str, **labels: str) -> float:
        return samples.get(sample_key(name, device=self.rig.serial, **labels), 0.0)

    def now(self) -> Scrape:
        """What a scrape would return at this moment (the same exposition, without a socket between)."""
        metrics = self.rig.app.metrics
        assert metrics is not None
        return parse_exposition(metrics.exposition().decode())

    async def _changed(self, runner: InverterRunner) -> None:
        samples = self.now()
        self.changes.append(
            Change(
                available=self.value(samples, "givbridge_device_available"),
                failed_polls=self.value(samples, "givbridge_polls_total", outcome="failed"),
                reconnects=self.value(samples, "givbridge_reconnects_total"),
            )
        )

    async def scrape(self) -> Scrape:
        """``GET /metrics``; fails if any counter went back since the previous scrape."""
        async with client() as http:
            response = await http.get(self.url)
        assert response.status_code == 200, response.text
        samples = parse_exposition(response.text)
        regressed = {
            str(dict(key)): (self.last[key], value)
            for key, value in samples.items()
            if dict(key)["__name__"].endswith(_MONOTONIC_SUFFIXES) and key in self.last and value < self.last[key]
        }
        assert not regressed, f"counters went back in /metrics: {regressed}"
        self.last = samples
        self.scrapes += 1
        return samples


@dataclass
class Soak:
    rig: Rig
    broker: MosquittoBroker
    metrics: Metrics
    commands: Commands
    #: Each counter of :data:`MAY_MOVE` as the last episode left it.
    quiet: dict[str, float] = field(default_factory=dict)
    outages: int = 0
    slowest_return: float = 0.0  # real seconds from an inverter's return to its being online
    slowest_broker_return: float = 0.0  # and from the broker's to bridge/state online
    resets: int = 0

    async def episode(self, name: str, fault: Callable[[], Awaitable[None]]) -> None:
        """Run one fault, let the bridge settle and check the counters moved only where they may."""
        start = await self.metrics.scrape()
        for counter, value in self.quiet.items():
            assert self.metrics.value(start, counter) == value, f"{counter} moved between episodes, before {name}"
        try:
            await fault()
            await self.rig.healthy()
        except TimeoutError:
            raise AssertionError(f"stalled in a {name} episode: {self.rig.runner.health}") from None
        end = await self.metrics.scrape()
        assert self.metrics.value(end, "givbridge_device_available") == 1, name
        for counter, episodes in MAY_MOVE.items():
            moved = self.metrics.value(end, counter) - self.metrics.value(start, counter)
            if name == MUST_MOVE[counter]:
                assert moved > 0, f"a {name} burst did not move {counter}"
            elif name not in episodes:
                assert moved == 0, f"{counter} moved by {moved} during a {name} episode"
            self.quiet[counter] = self.metrics.value(end, counter)

    async def outage(self, begin: Callable[[], Awaitable[None] | None], end: Callable[[], None]) -> None:
        """A fault that must take the device offline after ``offline_after`` failed polls; then its return."""
        rig, serial = self.rig, self.rig.serial
        mark = rig.checker.mark(serial)
        before = self.metrics.now()
        failed = self.metrics.value(before, "givbridge_polls_total", outcome="failed")
        reconnects = self.metrics.value(before, "givbridge_reconnects_total")
        self.metrics.changes.clear()  # only this outage's (a long run must not keep them all)
        began = begin()
        if began is not None:
            await began
        await rig.checker.went(serial, "offline", after=mark, within=30)
        offline = next(change for change in self.metrics.changes if not change.available)
        assert offline.failed_polls - failed == OFFLINE_AFTER, (failed, offline)
        returned = time.monotonic()
        end()
        await rig.checker.went(serial, "online", after=mark + 1, within=30)
        took = time.monotonic() - returned
        # The bridge's own schedule allows one poll interval (on its clock) before it looks again.
        # At this speed a reconnect backoff (at most backoff_max on the same clock) is itself well
        # under the 5 s: the bound holds with or without a probe at poll cadence, and catches a
        # return that is not noticed at all, or only after real timeouts pile up.
        assert took <= POLL_INTERVAL / SPEED + RETURN_ALLOWANCE, f"online {took:.1f} s after the inverter returned"
        back = next(change for change in reversed(self.metrics.changes) if change.available)
        assert back.reconnects > reconnects, "the outage's reconnects were not counted"
        self.outages += 1
        self.slowest_return = max(self.slowest_return, took)

    async def burst(self, set_rate: Callable[[float], None]) -> None:
        set_rate(BURST_RATE)
        await self.rig.polls(BURST_POLLS, within=60)
        set_rate(0.0)

    async def silent(self) -> None:
        faults = self.rig.server.faults
        await self.outage(faults.silence, faults.end_silence)

    async def refuse(self) -> None:
        faults = self.rig.server.faults

        def begin() -> None:
            faults.refuse_connections = True
            faults.drop_connections()

        def end() -> None:
            faults.refuse_connections = False

        await self.outage(begin, end)

    async def drop(self) -> None:
        mark = self.rig.checker.mark(self.rig.serial)
        before = self.metrics.value(self.metrics.now(), "givbridge_reconnects_total")
        self.rig.server.faults.drop_connections()
        await self.rig.polls(2, within=30)
        assert self.metrics.value(self.metrics.now(), "givbridge_reconnects_total") > before
        assert self.rig.checker.mark(self.rig.serial) == mark, "one dropped connection is not an outage"

    async def crc(self) -> None:
        faults = self.rig.server.faults
        await self.burst(lambda rate: setattr(faults, "crc_rate", rate))

    async def zero(self) -> None:
        faults = self.rig.server.faults
        await self.burst(lambda rate: setattr(faults, "zero_rate", rate))

    async def garbage(self) -> None:
        faults = self.rig.server.faults
        await self.burst(lambda rate: setattr(faults, "garbage_rate", rate))

    async def freeze(self) -> None:
        self.rig.server.faults.frozen = True
        await self.rig.polls(BURST_POLLS, within=30)
        self.rig.server.faults.frozen = False

    async def unpersisted(self) -> None:
        self.rig.server.faults.writes_not_persisted = True
        answer = await self.rig.set_target(self.rig.sim.holding(TARGET_SOC) % 80 + 20)
        assert answer["status"] == "error", answer  # acknowledged but not kept: never an ok
        self.rig.server.faults.writes_not_persisted = False

    async def clock_jump(self) -> None:
        self.rig.server.faults.jump_clock(120)
        await self.rig.polls(2, within=30)

    async def broker_restart(self) -> None:
        async with self.commands.turn:
            await self._broker_restart()

    async def _broker_restart(self) -> None:
        rig = self.rig
        before = await retained_topics(self.broker)
        await self.broker.stop()
        await rig.polls(2, within=30)  # polling goes on with the broker away
        mark = rig.checker.published(BRIDGE_STATE)
        await self.broker.start()  # empty: persistence is off
        returned = time.monotonic()
        await rig.checker.value(BRIDGE_STATE, lambda v: v == "online", after=mark, within=30)
        took = time.monotonic() - returned
        # "online" is published last on a connection, after every retained topic.
        after = await retained_topics(self.broker)
        assert sorted(set(before) - set(after)) == [], "retained topics missing after the broker returned"
        assert took <= RETURN_ALLOWANCE, f"bridge/state back {took:.1f} s after the broker returned"
        self.slowest_broker_return = max(self.slowest_broker_return, took)

    async def counter_reset(self) -> None:
        rig = self.rig
        counted = f"{rig.checker.root}/{rig.serial}/Stats/Counter_Resets"
        previous = int(rig.checker.latest.get(counted, "0"))
        mark = rig.checker.published(counted)
        await rig.server.stop()
        rig.sim.restart_counters(0.5)  # the dongle comes back with every lifetime counter halved
        await rig.server.start()
        await rig.checker.value(counted, lambda v: int(v) > previous, after=mark, within=60)
        self.resets += 1


async def sample_memory(
    rig: Rig, caplog: pytest.LogCaptureFixture, began: float, samples: list[tuple[float, int]]
) -> None:
    """Every simulated hour from the end of the warm-up: the memory blocks Python holds after a full collection."""
    clock = rig.clock
    while True:
        await clock.sleep(began + WARM_UP + len(samples) * SAMPLE_EVERY - clock.monotonic())
        # Test-side records that would otherwise grow with the run (the watch keeps every snapshot,
        # the simulator every write).
        rig.watch.snapshots.clear()
        rig.sim.write_log.clear()
        rig.checker.forget_results()
        rig.crashes.drain()
        rig.checker.resets.clear()
        caplog.clear()  # paho logs each broker restart; pytest keeps every record
        gc.collect()  # count what is reachable, not cycles waiting for the collector
        samples.append((clock.monotonic() - began, sys.getallocatedblocks()))


@dataclass
class Commands:
    """One command at a time, every few simulated minutes, until told to stop after its current one."""

    rig: Rig
    sent: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: Held around each command; a broker restart holds it so no command (or its answer) is lost with it.
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self) -> None:
        rng = random.Random(2026)
        while not self.stop.is_set():
            target = rng.randint(20, 100)
            # The checker fails the run if an ok is not held by the inverter; an outage answers an error.
            async with self.turn:
                await self.rig.checker.command(
                    "setChargeTarget", {"chargeToPercent": target}, expect={TARGET_SOC: target}, within=60
                )
                self.sent += 1
            await self.rig.clock.sleep(rng.uniform(120, 600))


@pytest.mark.timeout(60 + 40 * DAYS)
async def test_days_of_scripted_faults_keep_every_bound_and_memory_flat(
    mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The library warns about every bad frame; pytest would keep each record (test-side memory).
    caplog.set_level(logging.ERROR, logger="givenergy_modbus")
    # paho logs an error with a traceback each time the broker goes; pytest's report keeps them all.
    caplog.set_level(logging.CRITICAL, logger="paho")
    clock = ScaledClock(speed=SPEED, start=START)
    # A lost answer costs a real timeout: keep it short (the simulator answers within milliseconds).
    polling = {
        "poll_interval": POLL_INTERVAL,
        "settings_interval": 900,
        "timeout": 0.2,
        "offline_after": OFFLINE_AFTER,
        "backoff_min": 5,
        "backoff_max": 60,
    }
    mqtt = {**mosquitto.settings().model_dump(), "full_refresh_interval": 3600}
    metrics_settings = {"enabled": True, "port": 0}
    async with bridge_rig(
        mosquitto, tmp_path, clock=clock, keep_messages=False, polling=polling, mqtt=mqtt, metrics=metrics_settings
    ) as rig:
        assert rig.app.http is not None and rig.app.http.port is not None
        metrics = Metrics(rig, f"http://127.0.0.1:{rig.app.http.port}/metrics")
        commands = Commands(rig)
        soak = Soak(rig, mosquitto, metrics, commands)
        episodes: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("silent", soak.silent),
            ("crc", soak.crc),
            ("drop", soak.drop),
            ("zero", soak.zero),
            ("refuse", soak.refuse),
            ("garbage", soak.garbage),
            ("freeze", soak.freeze),
            ("broker", soak.broker_restart),
            ("unpersisted", soak.unpersisted),
            ("clock-jump", soak.clock_jump),
            ("reset", soak.counter_reset),
        ]
        began = clock.monotonic()
        samples: list[tuple[float, int]] = []
        sender = asyncio.create_task(commands.run())
        sampler = asyncio.create_task(sample_memory(rig, caplog, began, samples))
        done: dict[str, int] = {}
        try:
            index = 0
            while clock.monotonic() - began < DAYS * DAY:
                name, fault = episodes[index % len(episodes)]
                await soak.episode(name, fault)
                done[name] = done.get(name, 0) + 1
                index += 1
                for task in (sender, sampler):
                    assert not task.done() or task.exception() is None, task.exception()
            commands.stop.set()
            await asyncio.wait_for(sender, 120)
        finally:
            sender.cancel()
            sampler.cancel()
            await asyncio.gather(sender, sampler, return_exceptions=True)
        await rig.healthy()
        final = await metrics.scrape()
        days = (clock.now() - START).total_seconds() / DAY

    # The MQTT record: the rig has checked every invariant on the way out; every reset it
    # allowed was one the bridge counted, and the scripted ones were among them.
    tally = rig.checker.tally
    counted = int(float(rig.checker.latest[f"GivEnergy/{rig.serial}/Stats/Counter_Resets"]))
    assert soak.resets >= 1 and counted >= soak.resets and tally.counter_resets == counted, (soak.resets, tally)
    assert days >= DAYS, f"only {days:.1f} simulated days (each crosses a midnight)"
    assert all(done.get(name, 0) >= 1 for name, _ in episodes), done
    assert soak.outages >= 2, soak.outages
    # Every command answered exactly once, and counted in /metrics by the same statuses.
    answered = tally.ok_results + tally.error_results
    assert answered == commands.sent + done.get("unpersisted", 0), (answered, commands.sent, tally)
    counted_by_status = {
        dict(key)["status"]: value
        for key, value in final.items()
        if dict(key)["__name__"] == "givbridge_command_results_total" and value
    }
    assert counted_by_status == {
        **({"ok": float(tally.ok_results)} if tally.ok_results else {}),
        **{code: float(n) for code, n in tally.error_codes.items()},
    }, (counted_by_status, tally)
    assert tally.confirmed_ok_results == tally.ok_results > 10, tally
    # Memory: the median of the slopes between every two samples (Theil-Sen), so that a sample
    # catching messages in flight, or a broker's reconnection, moves it little.
    assert len(samples) >= 12, samples
    slope = statistics.median((b - a) / (u - t) for (t, a), (u, b) in itertools.combinations(samples, 2))
    per_hour = slope * 3600
    assert per_hour < GROWTH_PER_HOUR, f"memory grew by {per_hour:.0f} blocks a simulated hour: {samples}"
