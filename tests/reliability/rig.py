"""A bridge under test: simulated inverter + the real Application + a real broker + the invariant checker.

``async with bridge_rig(broker, data_dir) as rig:`` starts the simulator, an
:class:`InvariantChecker` subscribed to everything, a :class:`CrashWatch` on the event loop and
the application, and returns once the inverter is online on MQTT. On the way out it stops
the application and fails the scenario if an invariant broke or anything escaped.

:class:`BridgeProcess` runs ``givbridge run`` as a separate process instead, for scenarios
that kill it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from givbridge.app import Application
from givbridge.clock import ScaledClock
from givbridge.devices.inverter import InverterRunner
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import Broker
from tests.integration.bridge_helpers import FAST_POLLING, Watch, bridge_settings
from tests.reliability.invariants import CrashWatch, InvariantChecker

ZONE = "Europe/London"
#: Noon on a June Saturday in the inverter's zone: the sun is up, so measurements move.
MIDSUMMER_NOON = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
#: Target SOC (HR116): the register most scenarios write and check.
TARGET_SOC = 116


@dataclass
class Rig:
    app: Application
    sim: SimulatedPlant
    server: SimulatorServer
    checker: InvariantChecker
    crashes: CrashWatch
    clock: ScaledClock
    watch: Watch

    @property
    def serial(self) -> str:
        return self.sim.serial

    @property
    def runner(self) -> InverterRunner:
        return self.app.bridge.runners[0]

    def writes(self) -> int:
        """Register writes that have reached the simulated dongle so far."""
        return sum(n for (kind, *_), n in self.server.requests.items() if kind == "W")

    async def polls(self, count: int, *, within: float = 15.0) -> None:
        """Until ``count`` more snapshots have been published."""
        await self.watch.count(len(self.watch.snapshots) + count, within=within)

    async def set_target(self, percent: int, *, within: float = 20.0) -> dict[str, Any]:
        """``setChargeTarget``; an ``ok`` is checked against the simulator's HR116."""
        return await self.checker.command(
            "setChargeTarget", {"chargeToPercent": percent}, expect={TARGET_SOC: percent}, within=within
        )

    async def healthy(self) -> None:
        """Clear every fault and wait until the inverter is online and polled again."""
        self.server.faults.clear()
        for connection in self.server.connections:
            connection.faults.clear()
        await self.checker.went(self.serial, "online")
        await self.polls(2)

    def assert_clean(self) -> None:
        self.checker.assert_clean()
        self.crashes.assert_clean()


@asynccontextmanager
async def bridge_rig(
    broker: Broker,
    data_dir: Path,
    *,
    family: str = "hybrid-gen3",
    clock: ScaledClock | None = None,
    keep_messages: bool = True,
    seed: int = 13,
    batteries: int = 1,
    **overrides: Any,
) -> AsyncIterator[Rig]:
    """A simulated ``family`` and the whole bridge on ``broker``; see the module docstring."""
    clock = clock or ScaledClock(speed=20, start=MIDSUMMER_NOON)
    sim = SimulatedPlant.create(family, batteries=batteries, clock=clock, seed=seed, tz=ZONE, start_soc=50)
    async with AsyncExitStack() as stack:
        crashes = stack.enter_context(CrashWatch())
        server = await stack.enter_async_context(SimulatorServer(sim, seed=seed))
        checker = await InvariantChecker(broker, {sim.serial: sim}, keep_messages=keep_messages).start()
        stack.push_async_callback(checker.stop)
        overrides.setdefault("mqtt", broker.settings().model_dump())
        settings = bridge_settings(data_dir, [server.port], **overrides)
        app = Application(settings, clock=clock)
        watch = Watch(app.bridge.runners[0])
        await app.start()
        stack.push_async_callback(app.stop)
        await checker.went(sim.serial, "online", within=20)
        await checker.went("bridge", "online")
        rig = Rig(app, sim, server, checker, crashes, clock, watch)
        yield rig
    rig.assert_clean()


class BridgeProcess:
    """``givbridge run`` in its own process, against a simulator and a broker; its log goes to a file."""

    def __init__(
        self,
        data_dir: Path,
        sim_port: int | list[int],
        broker: Broker,
        *,
        env: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        **polling: Any,
    ) -> None:
        """One inverter per port in ``sim_port``; ``extra`` adds settings (``evc``, ``plant``...)."""
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.config = data_dir / "givbridge.json"
        self.log = data_dir / "givbridge.log"
        ports = sim_port if isinstance(sim_port, list) else [sim_port]
        settings: dict[str, Any] = {
            "inverters": [{"host": "127.0.0.1", "port": port} for port in ports],
            "mqtt": {"host": broker.host, "port": broker.port},
            "polling": {**FAST_POLLING, **polling},
            "data_dir": str(data_dir),
            "timezone": ZONE,
            "log": {"format": "json", "level": "info"},
            **(extra or {}),
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(settings))
        self._process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        with self.log.open("a") as log:
            log.write(f"--- start {self.starts}\n")
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "givbridge.cli", "run", "--config", str(self.config)),
                stdout=log,
                stderr=log,
                env=self.env,
            )

    async def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final messages; the broker publishes the Last Will."""
        process = self._process
        assert process is not None and process.returncode is None, "the bridge is not running"
        process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL
        self._process = None

    async def stop(self) -> int | None:
        """SIGTERM, as a service manager stops it; its exit status (None if it was not running)."""
        process = self._process
        if process is None or process.returncode is not None:
            return None
        process.send_signal(signal.SIGTERM)
        try:
            status = await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            status = await process.wait()
        self._process = None
        return status

    def errors(self) -> list[str]:
        """Error-level lines of its (JSON) log: a bridge's last nets for bugs log at that level."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines() if self.log.exists() else []:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                found.append(line)
        return found
