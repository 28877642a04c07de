"""``kill -9`` of a running ``givbridge run`` mid-command: nothing false is ever reported, and it recovers.

The bridge runs as its own process against a simulator in this one and a real mosquitto (the
Last Will is part of what is checked). A command is sent with the dongle slow to answer, and
the bridge is killed at a chosen point of it:

* a plain command, once its write has reached the inverter, or once its read-back has been
  asked for: it was never answered (let alone ``ok``); the broker publishes the bridge's will;
  after a restart the bridge comes back online on its own, publishes what the inverter really
  holds, and takes commands again;
* a timed action (``forceCharge``), between two of its writes: the baseline was saved before
  the first, so after a restart the pending revert completes and the inverter ends exactly as
  it was before the action. (``tests/integration/test_timed_restart.py`` kills it after its
  answer instead.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from givbridge.clock import DEV_CLOCK_ENV, ScaledClock, dev_clock_setting, shared_scaled_clock
from givbridge.commands.timed_record import DOCUMENT
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.server import RequestKey
from givbridge.store import JsonStore
from tests.brokers import MosquittoBroker
from tests.conftest import needs_mosquitto
from tests.reliability.invariants import CrashWatch, InvariantChecker
from tests.reliability.rig import MIDSUMMER_NOON, TARGET_SOC, ZONE, BridgeProcess

pytestmark = [pytest.mark.reliability, needs_mosquitto]


def _write(key: RequestKey) -> bool:
    return key[0] == "W"


def _read_holding(key: RequestKey) -> bool:
    return key[0] == "HR"


async def test_kill_9_mid_command_never_reports_ok_and_the_bridge_recovers(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=ScaledClock(), seed=17, tz=ZONE, start_soc=50)
    serial = sim.serial
    state = f"GivEnergy/{serial}/Control/Target_SOC"
    polled = f"GivEnergy/{serial}/Stats/Last_Updated_Time"
    with CrashWatch() as crashes:
        async with SimulatorServer(sim) as server:
            checker = await InvariantChecker(mosquitto, {serial: sim}).start()
            # Answers may take 1 s while the kill is staged: the bridge waits up to 3 s for them.
            bridge = BridgeProcess(tmp_path / "bridge", server.port, mosquitto, timeout=3.0)
            try:
                await bridge.start()
                await checker.went(serial, "online", within=30)
                stages: list[tuple[int, Callable[[RequestKey], bool] | None]] = [(60, None), (75, _read_holding)]
                for target, then in stages:
                    mark = checker.mark("bridge")
                    server.faults.extra_latency = 1.0
                    seen = server.requests.copy()
                    transaction = checker.send(
                        "setChargeTarget", {"chargeToPercent": target}, serial=serial, expect={TARGET_SOC: target}
                    )
                    await server.requested(_write, after=seen)  # the write is on its way to the inverter
                    if then is not None:
                        await server.requested(then, after=server.requests.copy())  # ... or being read back
                    await bridge.kill()
                    await checker.went("bridge", "offline", after=mark, within=10)  # the Last Will
                    server.faults.extra_latency = 0.0

                    polls = checker.published(polled)
                    await bridge.start()
                    await checker.went("bridge", "online", after=mark + 1, within=30)
                    await checker.value(polled, lambda v: True, after=polls, within=30)  # read the inverter again
                    await checker.went(serial, "online")
                    await checker.value(state, lambda v: v == str(sim.holding(TARGET_SOC)))
                    assert transaction not in checker.results, checker.results[transaction]
                    answer = await checker.command(
                        "setChargeTarget", {"chargeToPercent": target + 1}, expect={TARGET_SOC: target + 1}
                    )
                    assert answer["status"] == "ok", answer
                assert checker.tally.confirmed_ok_results == 2
                assert await bridge.stop() == 0
            finally:
                await bridge.stop()
                await checker.stop()
    checker.assert_clean()
    crashes.assert_clean()
    assert not bridge.errors(), "\n".join(bridge.errors())


async def test_kill_9_between_a_timed_actions_writes_leaves_a_revert_that_completes(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    # One time line for both processes, 40 times real time: the 2-minute action lasts 3 real seconds.
    speed, epoch = 40.0, time.time()
    clock = shared_scaled_clock(speed, MIDSUMMER_NOON, epoch)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=19, tz=ZONE, start_soc=40)
    # forceCharge writes the charge rate (HR111), the targets (HR116, HR242), pause mode (HR318),
    # slot 1 (HR94-95) and the charge schedule (HR96); as they were before, they must end.
    baseline = {111: 30, 116: 75, 242: 80, 318: 1, 94: 130, 95: 500, 96: 0}
    for register, value in baseline.items():
        sim.set_holding(register, value)
    serial = sim.serial
    response = f"GivEnergy/{serial}/response/forceCharge"
    with CrashWatch() as crashes:
        async with SimulatorServer(sim) as server:
            checker = await InvariantChecker(mosquitto, {serial: sim}).start()
            env = {DEV_CLOCK_ENV: dev_clock_setting(speed, MIDSUMMER_NOON, epoch)}
            polling = {"poll_interval": 10, "settings_interval": 30, "timeout": 2.0, "backoff_min": 1, "backoff_max": 4}
            bridge = BridgeProcess(tmp_path / "bridge", server.port, mosquitto, env=env, **polling)
            try:
                await bridge.start()
                await checker.went(serial, "online", within=30)
                mark = checker.mark("bridge")
                server.faults.extra_latency = 0.4  # each write takes a while: time to kill between two
                seen = server.requests.copy()
                transaction = checker.send("forceCharge", {"duration": 2}, serial=serial)
                await server.requested(lambda key: key[0] == "W", after=seen)
                first = server.requests.copy()
                await server.requested(lambda key: key[0] == "W", after=first)  # the second write is in flight
                await bridge.kill()
                await checker.went("bridge", "offline", after=mark, within=10)
                server.faults.extra_latency = 0.0
                assert sim.holding(111) != baseline[111], "the kill came before the first write landed"

                reverts = checker.published(response)
                await bridge.start()
                await checker.value(response, lambda v: json.loads(v)["data"].get("state") == "reverted", after=reverts)
                assert {register: sim.holding(register) for register in baseline} == baseline
                assert JsonStore(bridge.data_dir).load(DOCUMENT).get("actions", []) == []
                assert transaction not in checker.results, checker.results[transaction]
                assert await bridge.stop() == 0
            finally:
                await bridge.stop()
                await checker.stop()
    checker.assert_clean()
    crashes.assert_clean()
    assert not bridge.errors(), "\n".join(bridge.errors())
