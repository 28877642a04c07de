"""Clock, JSON store, reconnect backoff, library error reports and the write plan/allowlist rules."""

from __future__ import annotations

import asyncio
import gc
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from givenergy_modbus.exceptions import ConnectionLost
from givenergy_modbus.model.inverter import Model

from givbridge.clock import ScaledClock, local_zone
from givbridge.devices.library import quiet_library_orphans
from givbridge.plant.families import FAMILIES
from givbridge.plant.writes import (
    RegisterWrite,
    RegisterWriteRequest,
    WritePlan,
    blocks_for,
    holding_block,
    unwritable,
    writable_registers,
)
from givbridge.runtime.backoff import Backoff
from givbridge.store import JsonStore

START = datetime(2026, 6, 21, 11, 0, tzinfo=UTC)


def test_scaled_clock_runs_faster_and_jumps() -> None:
    clock = ScaledClock(speed=3600, start=START)
    clock.advance(7200)
    assert (clock.now() - START).total_seconds() >= 7200
    assert clock.monotonic() >= 7200
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_scaled_clock_sleep_is_in_clock_time() -> None:
    clock = ScaledClock(speed=1000, start=START)
    before = clock.monotonic()
    await clock.sleep(50)  # 50 clock seconds = 0.05 real seconds
    assert clock.monotonic() - before >= 50


async def test_scaled_clock_advance_wakes_sleepers() -> None:
    clock = ScaledClock(speed=1, start=START)
    sleeper = asyncio.create_task(clock.sleep(3600))
    await asyncio.sleep(0)
    clock.advance(3600)
    await asyncio.wait_for(sleeper, timeout=2)


def test_local_zone_prefers_explicit_then_falls_back() -> None:
    assert str(local_zone("America/New_York")) == "America/New_York"
    assert str(local_zone("Not/AZone")) != "Not/AZone"


def test_store_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    store = JsonStore(tmp_path / "state")
    assert store.load("writes-SA1") == {}
    store.save("writes-SA1", {"write_count": 3})
    store.save("writes-SA1", {"write_count": 4})
    assert store.load("writes-SA1") == {"write_count": 4}
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["writes-SA1.json"]


def test_a_store_document_saved_without_fsync_is_still_replaced_whole(tmp_path: Path) -> None:
    store = JsonStore(tmp_path / "state")
    store.save("health", {"running": True}, durable=False)
    store.save("health", {"running": False}, durable=False)
    assert store.load("health") == {"running": False}
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["health.json"]  # no temporary file left


def test_store_ignores_garbage(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    store.path("bad").write_text("{not json")
    store.path("list").write_text(json.dumps([1, 2]))
    assert store.load("bad") == {}
    assert store.load("list") == {}
    with pytest.raises(ValueError):
        store.path("../escape")


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    backoff = Backoff(2, 60, rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        base = min(60, 2 * 2**attempt)
        assert base <= delay <= min(60, base * 1.2)
    assert delays[-1] == 60
    backoff.reset()
    assert backoff.next() < 2.5


async def test_a_dropped_connections_orphaned_future_is_not_reported_but_anything_else_is() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        quiet_library_orphans(loop)
        quiet_library_orphans(loop)  # a second runner start wraps nothing twice
        for exc in (ConnectionLost("connection lost"), ValueError("a real bug")):
            future = loop.create_future()
            future.set_exception(exc)  # and nobody retrieves it
            del future
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert [type(context["exception"]) for context in reported] == [ValueError]


def test_write_plan_expects_the_last_value_per_register() -> None:
    plan = WritePlan.of([(116, 100), (20, 1), (116, 80)], "target")
    assert {(w.register, w.value) for w in plan.expected} == {(116, 80), (20, 1)}
    assert plan.registers == {20, 116}
    with pytest.raises(ValueError):
        RegisterWrite(116, 70000)
    with pytest.raises(ValueError):
        RegisterWrite(20, True)


def test_readback_banks() -> None:
    assert holding_block(20) == (0, 60)
    assert holding_block(116) == (60, 60)
    assert holding_block(272) == (240, 60)
    assert holding_block(1111) == (1060, 60)
    assert blocks_for([20, 27, 116, 319]) == [(0, 60), (60, 60), (300, 60)]
    with pytest.raises(ValueError):
        holding_block(9999)


def test_allowlist_extends_the_library_only_where_documented() -> None:
    gen1 = writable_registers(Model.HYBRID_GEN1, 449, FAMILIES["hybrid-gen1"])
    gen3 = writable_registers(Model.HYBRID_GEN3, 318, FAMILIES["hybrid-gen3"])
    assert {20, 27, 94, 95, 96, 110, 111, 112, 116} <= gen1
    assert not {242, 272, 318} & gen1  # Gen1: two slots, no pause registers
    assert {242, 243, 244, 272, 299, 318, 319, 320} <= gen3
    assert 5004 not in gen3  # factory reset stays installer-only
    plan = WritePlan.of([(116, 80), (272, 20)])
    assert unwritable(plan, gen1) == [272]
    assert unwritable(plan, gen3) == []


def test_extension_registers_encode_and_others_stay_guarded() -> None:
    assert RegisterWriteRequest(272, 20).encode()
    assert RegisterWriteRequest(116, 80).encode()
    with pytest.raises(Exception, match="not safe"):
        RegisterWriteRequest(5004, 1).encode()
    with pytest.raises(Exception, match="16-bit"):
        RegisterWriteRequest(272, 70000).encode()
