"""Counters that restart lower, against the whole bridge: a glitch is held, a real reset followed once.

The invariant checker allows a published counter to go down only when the bridge counts the
reset in ``Stats/Counter_Resets`` (see ``invariants.py``); these scenarios check which counters
went down, by how much, that each was logged once, and that nothing else moved.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from givbridge.sim import SimulatedPlant
from tests.brokers import MosquittoBroker
from tests.conftest import needs_mosquitto
from tests.reliability.invariants import InvariantChecker
from tests.reliability.rig import MIDSUMMER_NOON, ZONE, Rig, bridge_rig

pytestmark = [pytest.mark.reliability, needs_mosquitto]

PV_TOTAL = "Energy/Total/PV_Energy_Total_kWh"
RESETS = "Stats/Counter_Resets"
REJECTED = "Stats/Rejected_Values"


def topic(rig: Rig, path: str) -> str:
    return f"{rig.checker.root}/{rig.serial}/{path}"


def published(rig: Rig, path: str) -> float:
    return float(rig.checker.latest[topic(rig, path)])


async def first_published(rig: Rig, path: str) -> float:
    """A counter's value once it has one (it is first published when three readings agree)."""
    return float(await rig.checker.value(topic(rig, path), lambda v: True))


async def matched_resets(rig: Rig, *, within: float = 15.0) -> int:
    """Once the bridge has counted resets: how many, each matched by the checker with its decrease."""
    counted = topic(rig, RESETS)
    await rig.checker.value(counted, lambda v: int(v) > 0, within=within)

    def matched(_: str) -> bool:
        return rig.checker.tally.counter_resets == int(rig.checker.latest[counted])

    # The checker pairs a reset with its decrease when an inverter time arrives; after a broker
    # outage the whole republish comes first, so wait for an inverter time published after it.
    clock = topic(rig, f"{rig.serial}/Invertor_Time")
    await rig.checker.value(clock, matched, after=rig.checker.published(clock) + 1, within=within)
    return int(rig.checker.latest[counted])


def assert_logged_once_each(rig: Rig) -> None:
    """Every reset the checker saw was logged exactly once, with the same two values."""
    entries = rig.crashes.logged("counter reset accepted")
    logged = {(entry["counter"], entry["before"], entry["after"]) for entry in entries}
    seen = {(key.split("/", 1)[1], before, after) for key, before, after in rig.checker.resets}
    assert len(entries) == len(rig.checker.resets)
    assert logged == seen


async def test_one_misread_poll_is_held_and_is_no_reset(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    async with bridge_rig(mosquitto, tmp_path) as rig:
        before = await first_published(rig, PV_TOTAL)
        rejected = rig.checker.published(topic(rig, REJECTED))
        rig.server.faults.misread_counters(0.5)  # the next answer shows every counter halved
        await rig.checker.value(topic(rig, REJECTED), lambda v: int(v) > 0, after=rejected)
        await rig.polls(4)
        assert published(rig, PV_TOTAL) >= before
        assert rig.checker.tally.counter_resets == 0 and not rig.crashes.logged("counter reset accepted")
        assert rig.checker.published(topic(rig, RESETS)) <= 1  # its first value, 0, at most


async def test_a_restarted_inverter_with_lower_counters_is_followed_once(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with bridge_rig(mosquitto, tmp_path) as rig:
        before = await first_published(rig, PV_TOTAL)
        # A firmware reset: the dongle goes away and comes back with every lifetime counter halved.
        await rig.server.stop()
        rig.sim.restart_counters(0.5)
        await rig.server.start()
        await matched_resets(rig)
        keys = [key for key, *_ in rig.checker.resets]
        assert len(keys) == len(set(keys)), "a counter was reset twice"
        assert f"{rig.serial}/{PV_TOTAL}" in keys
        assert all("/Energy/Total/" in key or key.endswith("/Battery_Cycles") for key in keys), keys
        after = published(rig, PV_TOTAL)
        assert before / 2 - 1 < after < before / 2 + 1
        assert_logged_once_each(rig)


async def test_a_reset_during_a_broker_outage_reaches_home_assistant_when_it_returns(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with bridge_rig(mosquitto, tmp_path) as rig:
        before = await first_published(rig, PV_TOTAL)
        # Every counter's first value has reached the checker before the broker goes: after the
        # outage it must see them go down, not appear.
        clock = topic(rig, f"{rig.serial}/Invertor_Time")
        await rig.checker.value(clock, lambda v: True, after=rig.checker.published(clock) + 1)
        await mosquitto.stop()
        rig.sim.restart_counters(0.5)
        # Accepted while nothing could be published ...
        await rig.watch.snapshot(lambda s: int(s.values.get(RESETS, 0)) > 0, after=len(rig.watch.snapshots))
        assert not rig.app.mqtt.connected
        await mosquitto.start()
        # ... and published, lower, once the broker is back: Home Assistant sees the reset.
        await rig.checker.value(topic(rig, PV_TOTAL), lambda v: float(v) < before, within=20)
        assert await matched_resets(rig) == rig.watch.snapshots[-1].values[RESETS]
        assert f"{rig.serial}/{PV_TOTAL}" in [key for key, *_ in rig.checker.resets]
        assert_logged_once_each(rig)


async def test_a_reset_of_one_pack_resets_only_that_packs_counter(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    async with bridge_rig(mosquitto, tmp_path, batteries=2) as rig:
        first, second = rig.sim.battery_serials
        cycles = {serial: f"Battery_Details/Battery_Stack_1/{serial}/Battery_Cycles" for serial in (first, second)}
        kept, reset = await first_published(rig, cycles[first]), await first_published(rig, cycles[second])
        assert reset >= 10  # enough to halve
        rig.sim.restart_counters(0.5, pack=1)  # the second pack's BMS restarts its count
        assert await matched_resets(rig) == 1
        assert list(rig.checker.resets) == [(f"{rig.serial}/{cycles[second]}", reset, float(int(reset / 2)))]
        assert published(rig, cycles[first]) == kept
        assert_logged_once_each(rig)


async def test_the_checker_lets_a_counter_go_back_only_for_a_counted_reset(mosquitto: MosquittoBroker) -> None:
    """The invariant itself, fed by hand: a decrease needs a counted reset, and a counted reset a decrease."""
    sim = SimulatedPlant.create("hybrid-gen3", seed=13, tz=ZONE)
    checker = await InvariantChecker(mosquitto, {sim.serial: sim}).start()
    base, times = f"{checker.root}/{sim.serial}", itertools.count()
    clock = f"{base}/{sim.serial}/Invertor_Time"

    async def snapshot(values: dict[str, str] | None = None) -> None:
        for path, value in (values or {}).items():
            await checker.probe.publish(f"{base}/{path}", value)
        moment = (MIDSUMMER_NOON + timedelta(minutes=next(times))).astimezone(ZoneInfo(ZONE)).isoformat()
        await checker.probe.publish(clock, moment)
        await checker.value(clock, lambda v: v == moment)

    try:
        await snapshot({PV_TOTAL: "100.0", RESETS: "0"})
        await snapshot({RESETS: "1"})  # the count may come a snapshot before its decrease ...
        await snapshot({PV_TOTAL: "50.0"})
        await snapshot({PV_TOTAL: "50.1"})
        assert checker.tally.counter_resets == 1 and list(checker.resets) == [(f"{sim.serial}/{PV_TOTAL}", 100.0, 50.0)]
        await snapshot({PV_TOTAL: "40.0"})  # ... but a decrease nobody counted is a violation
        for _ in range(3):
            await snapshot()
        assert checker.violation_count == 1 and "no counter reset was counted" in checker.violations[0]
        await snapshot({RESETS: "2"})  # and so is a reset counted with no counter going down
        for _ in range(3):
            await snapshot()
        assert checker.violation_count == 2 and "no counter went down" in checker.violations[1]
    finally:
        await checker.stop()
