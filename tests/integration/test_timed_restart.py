"""kill -9 of the bridge in the middle of a timed action: the revert still happens, after a restart.

The bridge runs as a real ``givbridge run`` process against a simulator served from this test,
both on one accelerated clock (``GIVBRIDGE_DEV_CLOCK``: a test-only setting that puts every
process on the same scaled time line), and is killed with SIGKILL right after its answer, so it
has no chance to tidy up. Restarted before the end time, it picks the countdown up and reverts
on time; restarted after it, it reverts at once. Either way the simulator's registers end up
exactly as they were before the action.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from givbridge.clock import DEV_CLOCK_ENV, ScaledClock, dev_clock_setting, shared_scaled_clock
from givbridge.commands.timed_record import DOCUMENT
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.store import JsonStore
from tests.brokers import MOSQUITTO, AmqttBroker, Broker, MosquittoBroker, MqttProbe
from tests.integration.bridge_helpers import FAST_POLLING
from tests.integration.sim_helpers import MIDSUMMER_NOON

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = "GivEnergy"
SPEED = 40.0  # clock seconds per real second: a 4-minute action lasts 6 real seconds
#: Polling for a bridge on that clock: a poll every quarter of a real second is plenty.
POLLING = {**FAST_POLLING, "poll_interval": 10, "settings_interval": 30, "backoff_min": 1, "backoff_max": 4}


@dataclass
class Site:
    """A simulator on the shared clock, a broker and a probe; bridges are started per test."""

    clock: ScaledClock
    setting: str  # the GIVBRIDGE_DEV_CLOCK value naming that clock
    sim: SimulatedPlant
    server: SimulatorServer
    broker: Broker
    probe: MqttProbe

    @property
    def serial(self) -> str:
        return self.sim.serial

    def holding(self, registers: Mapping[int, int] | list[int]) -> dict[int, int]:
        return {register: self.sim.holding(register) for register in registers}

    def baseline(self, values: Mapping[int, int]) -> dict[int, int]:
        for register, value in values.items():
            self.sim.set_holding(register, value)
        return dict(values)

    async def answer(self, command: str, payload: str) -> dict[str, Any]:
        mark = self.probe.mark()
        await self.probe.publish(f"{ROOT}/control/{self.serial}/{command}", payload)
        message = await self.probe.wait_for(f"{ROOT}/{self.serial}/response/{command}", timeout=15, after=mark)
        document: dict[str, Any] = json.loads(message.payload)
        return document

    async def reverted(self, command: str, *, after: int, within: float) -> dict[str, Any]:
        message = await self.probe.wait_for(
            f"{ROOT}/{self.serial}/response/{command}",
            lambda m: json.loads(m.payload).get("data", {}).get("state") == "reverted",
            timeout=within,
            after=after,
        )
        document: dict[str, Any] = json.loads(message.payload)
        return document


class BridgeProcess:
    """``givbridge run`` in a child process on the site's clock; its log goes to a file for failures."""

    def __init__(self, site: Site, directory: Path) -> None:
        self.site = site
        self.directory = directory
        self.config = directory / "givbridge.json"
        self.log = directory / "bridge.log"
        mqtt = {k: v for k, v in site.broker.settings(root=ROOT).model_dump(mode="json").items() if v is not None}
        settings = {
            "inverters": [{"host": "127.0.0.1", "port": site.server.port}],
            "mqtt": {**mqtt, "client_id": "givbridge-restart-test"},
            "polling": POLLING,
            "data_dir": str(directory / "data"),
            "timezone": "Europe/London",
        }
        self.config.write_text(json.dumps(settings), encoding="utf-8")
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and return once it publishes the timed-action state of its inverter."""
        mark = self.site.probe.mark()
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "givbridge.cli", "run", "--config", str(self.config), "--log-format", "json"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, DEV_CLOCK_ENV: self.site.setting, "PYTHONUNBUFFERED": "1"},
            )
        await self.wait_for(f"{ROOT}/{self.site.serial}/Control/Force_Charge", after=mark)

    async def wait_for(self, topic: str, *, after: int, within: float = 20) -> str:
        try:
            message = await self.site.probe.wait_for(topic, timeout=within, after=after)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\nbridge log:\n{self.tail()}") from None
        return message.text

    def kill(self) -> None:
        """kill -9: no shutdown, no last save."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout=10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def stored(self) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = JsonStore(self.directory / "data").load(DOCUMENT).get("actions", [])
        return actions


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    epoch = time.time()
    setting = dev_clock_setting(SPEED, MIDSUMMER_NOON, epoch)
    clock = shared_scaled_clock(SPEED, MIDSUMMER_NOON, epoch)
    async with AsyncExitStack() as stack:
        broker: Broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto")) if MOSQUITTO else AmqttBroker()
        await broker.start()
        stack.push_async_callback(broker.stop)
        sim = SimulatedPlant.create("hybrid-gen3", clock=clock, seed=41, tz="Europe/London", start_soc=40)
        server = await stack.enter_async_context(SimulatorServer(sim))
        probe = MqttProbe.for_broker(broker, topics=(f"{ROOT}/{sim.serial}/#",))
        await probe.start()
        stack.push_async_callback(probe.stop)
        yield Site(clock, setting, sim, server, broker, probe)


@pytest_asyncio.fixture(loop_scope="module")
async def bridge(site: Site, tmp_path: Path) -> AsyncIterator[BridgeProcess]:
    process = BridgeProcess(site, tmp_path)
    try:
        yield process
    finally:
        await process.stop()


async def test_killed_and_restarted_before_the_end_it_counts_down_and_reverts_on_time(
    site: Site, bridge: BridgeProcess
) -> None:
    baseline = site.baseline({111: 30, 116: 75, 242: 80, 318: 1, 94: 130, 95: 500, 96: 0})
    await bridge.start()
    answer = await site.answer("forceCharge", "4")
    assert answer["status"] == "ok", (answer, bridge.tail())
    bridge.kill()  # at once: the answer means the action and its baseline are on disk
    [stored] = bridge.stored()
    assert stored["state"] == "running" and dict(map(tuple, stored["baseline"])) == baseline
    ends = datetime.fromisoformat(stored["ends"])
    assert site.holding([116, 96, 111]) == {116: 100, 96: 1, 111: 50}
    await bridge.process.wait()  # type: ignore[union-attr]

    mark = site.probe.mark()
    await bridge.start()
    assert site.clock.now() < ends, "the restart took too long to test a resumed countdown"
    assert await bridge.wait_for(f"{ROOT}/{site.serial}/Control/Force_Charge", after=mark) == "Running"
    assert site.holding([116, 96]) == {116: 100, 96: 1}  # resumed, not reverted early
    event = await site.reverted("forceCharge", after=mark, within=30)
    assert site.clock.now() >= ends
    assert event["data"]["reason"] == "ended"
    assert site.holding(baseline) == baseline
    assert bridge.stored() == []


async def test_killed_and_restarted_after_the_end_it_reverts_at_once(site: Site, bridge: BridgeProcess) -> None:
    baseline = site.baseline({112: 45})
    await bridge.start()
    answer = await site.answer("tempPauseDischarge", "1")
    assert answer["status"] == "ok", (answer, bridge.tail())
    bridge.kill()
    [stored] = bridge.stored()
    ends = datetime.fromisoformat(stored["ends"])
    await bridge.process.wait()  # type: ignore[union-attr]
    assert site.holding([112]) == {112: 0}

    await site.clock.sleep((ends - site.clock.now()).total_seconds() + 5)  # the end passes with no bridge
    assert site.holding([112]) == {112: 0}  # nobody reverted it while the bridge was down
    mark = site.probe.mark()
    await bridge.start()
    event = await site.reverted("tempPauseDischarge", after=mark, within=20)
    assert event["data"]["reason"] == "ended while givbridge was not running"
    assert site.holding(baseline) == baseline
    assert bridge.stored() == []
