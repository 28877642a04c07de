"""The command queue under pressure: a flood, a device that does not answer, and a shutdown.

Every scenario runs the whole bridge against the simulator and a real mosquitto; commands are
published by the invariant checker, which also fails the run on any ``ok`` the inverter does
not hold. Writes are counted where they land, at the simulated dongle.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from givbridge.sim.server import RequestKey
from tests.brokers import MosquittoBroker
from tests.conftest import needs_mosquitto
from tests.integration.bridge_helpers import error, ok
from tests.reliability.rig import TARGET_SOC, Rig, bridge_rig

pytestmark = [pytest.mark.reliability, needs_mosquitto]

#: Long enough that a request lost to a silent inverter keeps its command running until the
#: test drops the connection (the limit of polling.timeout).
PATIENT = {"timeout": 30.0}


def target_writes(rig: Rig, since: Counter[RequestKey]) -> int:
    """Writes of the charge target (HR116) that reached the simulated dongle since ``since``."""
    return sum(n - since[key] for key, n in rig.server.requests.items() if key[0] == "W" and key[2] == TARGET_SOC)


def send_target(rig: Rig, percent: int) -> str:
    return rig.checker.send("setChargeTarget", {"chargeToPercent": percent}, serial=rig.serial)


def cancelled(answer: dict[str, Any], *, started: bool) -> None:
    error(answer, "cancelled")
    assert answer["error"]["started"] is started, answer


async def stuck_on_a_silent_inverter(rig: Rig, percent: int) -> str:
    """Silence the inverter and send a command, which takes the device and waits for an answer."""
    rig.server.faults.silence()
    return send_target(rig, percent)


async def test_a_flood_is_refused_at_once_and_only_the_queue_is_written(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    limit, flood = 4, 40
    async with bridge_rig(mosquitto, tmp_path, control={"queue_limit": limit}) as rig:
        rig.server.faults.extra_latency = 0.05  # a slow dongle
        seen = rig.server.requests.copy()
        # The device is held as a change in progress holds it (a timed action's revert takes this
        # lock too): every command of the flood arrives while it is busy.
        async with rig.runner.command_lock:
            sent = [send_target(rig, 20 + i) for i in range(flood)]
            # MQTT keeps one publisher's order, so the first `limit` wait and the rest are refused,
            # answered while the device is still held: at once, not after the queue.
            for transaction in sent[limit:]:
                message = error(await rig.checker.result(transaction), "busy")
                assert "queue_limit" in message
            assert rig.app.commands.queue.waiting(rig.runner.command_lock) == limit
            assert target_writes(rig, seen) == 0
        answers = [await rig.checker.result(transaction) for transaction in sent[:limit]]
        assert [ok(answer)["Target_SOC"] for answer in answers] == [20 + i for i in range(limit)]
        assert rig.sim.holding(TARGET_SOC) == 20 + limit - 1
        assert target_writes(rig, seen) == limit  # nothing of the refused commands was written
        assert rig.checker.tally.error_codes["busy"] == flood - limit


async def test_a_command_that_cannot_start_in_time_expires_and_is_never_written(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    # 30 s on the rig's clock (20x) is 1.5 real seconds.
    async with bridge_rig(mosquitto, tmp_path, polling=PATIENT, control={"command_expiry": 30}) as rig:
        first = await stuck_on_a_silent_inverter(rig, 31)
        late = send_target(rig, 33)
        message = error(await rig.checker.result(late), "expired")
        assert "command_expiry" in message
        # The first command's write went out (and was lost) by now, or never will: it waits behind
        # a read the silence holds, which the dropped connection below fails.
        seen = rig.server.requests.copy()
        # The inverter answers again: the stuck command fails, the expired one stays unwritten.
        rig.server.faults.drop_connections()
        error(await rig.checker.result(first), "unreachable")
        await rig.healthy()
        answer = await rig.set_target(44)
        assert ok(answer)["Target_SOC"] == 44
        assert target_writes(rig, seen) == 1  # the last command's: the expired one was never written
        assert rig.sim.holding(TARGET_SOC) == 44


async def test_at_shutdown_every_command_is_answered(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    limit = 5
    async with bridge_rig(mosquitto, tmp_path, polling=PATIENT, control={"queue_limit": limit}) as rig:
        before = rig.sim.holding(TARGET_SOC)
        running = await stuck_on_a_silent_inverter(rig, 31)
        waiting = [send_target(rig, 50 + i) for i in range(limit)]
        refused = send_target(rig, 70)
        error(await rig.checker.result(refused), "busy")  # so every one before it is waiting
        # The running command's write went out (lost to the silence) by now, or waits behind a read
        # the silence holds and never will.
        seen = rig.server.requests.copy()
        await rig.app.stop()
        for transaction in waiting:  # published before the bridge disconnected
            cancelled(await rig.checker.result(transaction), started=False)
        # The one holding the device could not finish within the grace: cut off, and says so.
        answer = await rig.checker.result(running)
        cancelled(answer, started=True)
        assert "partly applied" in answer["error"]["message"]
        assert target_writes(rig, seen) == 0
        assert rig.sim.holding(TARGET_SOC) == before
        rig.server.faults.clear()
