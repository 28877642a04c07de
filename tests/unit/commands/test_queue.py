"""The command queue's promises on a bare lock: bounded, expiring, answered at shutdown, never leaking the lock.

A device's lock is held here by the test itself, as a timed action's revert (or a command on a
silent inverter) holds it; the end-to-end scenarios are in tests/reliability/test_command_queue.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from givbridge.clock import ScaledClock
from givbridge.commands.queue import CommandQueue
from givbridge.commands.results import CommandFailed, ErrorCode
from givbridge.config import ControlSettings


def make_queue(limit: int = 2, expiry: float = 60.0) -> tuple[CommandQueue, ScaledClock]:
    clock = ScaledClock()
    return CommandQueue(ControlSettings(queue_limit=limit, command_expiry=expiry), clock), clock


async def command(queue: CommandQueue, lock: asyncio.Lock, started: list[str], name: str) -> str:
    """A command's steps: take the device, record that it started."""

    async def steps() -> str:
        async with queue.turn(lock, "the device"):
            started.append(name)
            return name

    return await queue.run(steps())


async def until(condition: Callable[[], bool]) -> None:
    """Let the started tasks run until ``condition`` holds (turns of the event loop; no time passes)."""
    for _ in range(100):
        await asyncio.sleep(0)  # one turn of the event loop
        if condition():
            return
    raise AssertionError("the tasks never got there")


async def until_waiting(queue: CommandQueue, lock: asyncio.Lock, count: int) -> None:
    await until(lambda: queue.waiting(lock) == count)


async def test_a_full_queue_refuses_at_once_and_the_admitted_run_in_order() -> None:
    queue, _ = make_queue(limit=2)
    lock, started = asyncio.Lock(), []
    await lock.acquire()
    admitted = [asyncio.create_task(command(queue, lock, started, f"c{i}")) for i in range(2)]
    await until_waiting(queue, lock, 2)
    with pytest.raises(CommandFailed) as refused:
        await command(queue, lock, started, "extra")
    assert refused.value.code is ErrorCode.BUSY
    assert refused.value.details["retry_after"] > 0
    assert started == []
    lock.release()
    assert await asyncio.gather(*admitted) == ["c0", "c1"]
    assert started == ["c0", "c1"] and not lock.locked()


async def test_a_command_that_cannot_start_in_time_expires_and_never_runs() -> None:
    queue, clock = make_queue(expiry=30)
    lock, started = asyncio.Lock(), []
    await lock.acquire()
    late = asyncio.create_task(command(queue, lock, started, "late"))
    await until_waiting(queue, lock, 1)
    clock.advance(31)
    with pytest.raises(CommandFailed) as expired:
        await late
    assert expired.value.code is ErrorCode.EXPIRED
    assert queue.waiting(lock) == 0
    lock.release()
    assert await command(queue, lock, started, "next") == "next"
    assert started == ["next"]  # the expired one never ran, not even once the device was free


async def test_close_answers_waiting_commands_and_cuts_off_a_running_one() -> None:
    queue, _ = make_queue(limit=3)
    lock, started = asyncio.Lock(), []
    forever = asyncio.Event()

    async def stuck() -> str:
        async with queue.turn(lock, "the device"):
            started.append("stuck")
            await forever.wait()  # a write the inverter never answers
            return "stuck"

    running = asyncio.create_task(queue.run(stuck()))
    await until(lock.locked)
    waiting = [asyncio.create_task(command(queue, lock, started, f"w{i}")) for i in range(3)]
    await until_waiting(queue, lock, 3)
    await queue.close(grace=0.01)
    outcomes = await asyncio.gather(running, *waiting, return_exceptions=True)
    assert all(isinstance(o, CommandFailed) and o.code is ErrorCode.CANCELLED for o in outcomes), outcomes
    cut_off, *never_ran = outcomes
    assert isinstance(cut_off, CommandFailed) and cut_off.details == {"started": True}
    assert all(isinstance(o, CommandFailed) and o.details == {"started": False} for o in never_ran)
    assert started == ["stuck"] and not lock.locked()
    with pytest.raises(CommandFailed) as after:  # and a command arriving now does not run
        await command(queue, lock, started, "after")
    assert after.value.code is ErrorCode.CANCELLED


async def test_a_caller_that_goes_away_leaves_neither_its_place_nor_the_lock() -> None:
    queue, _ = make_queue()
    lock, started = asyncio.Lock(), []
    await lock.acquire()
    gone = asyncio.create_task(command(queue, lock, started, "gone"))
    await until_waiting(queue, lock, 1)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert queue.waiting(lock) == 0
    lock.release()
    assert await command(queue, lock, started, "next") == "next"
    assert started == ["next"] and not lock.locked()


async def test_reverts_taking_the_lock_directly_are_not_counted() -> None:
    queue, _ = make_queue(limit=1)
    lock, started = asyncio.Lock(), []
    await lock.acquire()
    revert = asyncio.create_task(lock.acquire())  # a timed action's revert waits too
    admitted = asyncio.create_task(command(queue, lock, started, "c"))
    await until_waiting(queue, lock, 1)
    lock.release()
    await revert  # FIFO: the revert, queued first, goes first
    assert started == []
    lock.release()
    assert await admitted == "c"


async def test_a_burst_at_a_free_device_runs_one_and_queues_the_limit() -> None:
    queue, _ = make_queue(limit=2)
    lock, started = asyncio.Lock(), []
    burst = [asyncio.create_task(command(queue, lock, started, f"c{i}")) for i in range(6)]
    outcomes = await asyncio.gather(*burst, return_exceptions=True)
    assert outcomes[:3] == ["c0", "c1", "c2"]  # the first takes the free device, two wait
    assert all(isinstance(o, CommandFailed) and o.code is ErrorCode.BUSY for o in outcomes[3:]), outcomes
    assert started == ["c0", "c1", "c2"]
