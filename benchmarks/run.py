"""givbridge benchmarks: how close to the physical limits the bridge runs.

    .venv/bin/python -m benchmarks.run            # full run, a few minutes
    .venv/bin/python -m benchmarks.run --quick    # shorter windows, fewer inverters

Prints a table and writes docs/benchmarks.md. Everything runs on 127.0.0.1 against the
simulator, which answers one request at a time after an injected latency, like a real
dongle (about 0.2 s on Gateway/AIO dongles, 1.1 s on Gen3 ones). Figures are ratios
against the limit each one is measured against:

* refresh: wall time of a poll / (requests x latency), the time a dongle that answers one
  request at a time needs at the least; and requests per poll / distinct banks read, the
  fewest requests that poll can cost;
* commands: MQTT publish to confirmed result, against 2 x latency + 50 ms;
* resources: RSS and CPU of a `givbridge run` process with 1, 10 and 50 inverters polled
  every 10 s, with the simulators in another process;
* messages: MQTT messages per poll in steady state / publishing every value every poll.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from givbridge.bridge import InverterRunner
from givbridge.clock import SystemClock
from givbridge.config import MqttSettings, Settings
from givbridge.mqtt.broker import EmbeddedBroker
from givbridge.mqtt.client import Message, MqttClient
from givbridge.plant.snapshot import Snapshot
from givbridge.sim import SimulatedPlant, SimulatorServer

ROOT = Path(__file__).resolve().parents[1]
# The inverter's own time per request (the part that does not overlap): 60 registers over
# its internal serial link.
SERVICE_TIME = 0.1
TARGETS = {
    "refresh": 1.05,
    "rss_1_mb": 60.0,
    "rss_50_mb": 120.0,
    "cpu_per_inverter_pct": 2.0,
    "messages_ratio": 0.10,
}


@dataclass
class Row:
    section: str
    case: str
    figure: str
    target: str
    verdict: str
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, case: str, figure: str, target: str, ok: bool | None, note: str = "") -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "missed")
        self.rows.append(Row(section, case, figure, target, verdict, note))

    def table(self) -> str:
        head = "| section | case | measured | target | verdict | note |\n|---|---|---|---|---|---|\n"
        return head + "\n".join(
            f"| {r.section} | {r.case} | {r.figure} | {r.target} | {r.verdict} | {r.note} |" for r in self.rows
        )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- refresh


async def refresh(report: Report, latency: float, request_gap: float | None, polls: int) -> None:
    """Poll a simulated Gen3 with two packs back to back and time each poll."""
    sim = SimulatedPlant.create("hybrid-gen3", batteries=2, clock=SystemClock(), seed=1, tz="Europe/London")
    async with SimulatorServer(sim, latency=latency, service_time=SERVICE_TIME) as server:
        # Scheduled polls are all fast ones; full ones are asked for with refresh_all().
        polling: dict[str, Any] = {"poll_interval": 2, "settings_interval": 3600, "timeout": latency * 3 + 1}
        if request_gap is not None:
            polling["request_gap"] = request_gap
        with tempfile.TemporaryDirectory() as data:
            settings = Settings(
                inverters=[{"host": "127.0.0.1", "port": server.port}], data_dir=Path(data), polling=polling
            )
            runner = InverterRunner(settings, 0)
            samples: list[tuple[bool, float, Counter[tuple[str, int, int, int]]]] = []
            done = asyncio.Event()
            last = Counter(server.requests)

            async def on_snapshot(_: Snapshot) -> None:
                nonlocal last
                now = Counter(server.requests)
                health = runner.health
                if health.last_poll_seconds is not None:
                    samples.append((health.last_poll_full, health.last_poll_seconds, now - last))
                last = now
                if sum(1 for full, _, _ in samples[1:] if not full) >= polls:
                    done.set()

            runner.on_snapshot.connect(on_snapshot)
            task = asyncio.create_task(runner.run())
            try:
                await asyncio.wait_for(done.wait(), timeout=polls * (latency * 20 + 5))
                for _ in range(max(2, polls // 3)):
                    await runner.refresh_all()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    gap = "library pacing" if request_gap is None else f"request_gap {request_gap} s"
    for full in (False, True):
        picked = [(d, r) for f, d, r in samples[1:] if f is full]  # the first poll follows detection
        if not picked:
            continue
        kind = "full poll" if full else "fast poll"
        reads = [sum(n for key, n in r.items() if key[0] != "W") for _, r in picked]
        distinct = [len([key for key in r if key[0] != "W"]) for _, r in picked]
        wall = statistics.median(d for d, _ in picked)
        requests = statistics.median(reads)
        ratio = wall / (requests * latency)
        report.add(
            "refresh",
            f"{kind}, latency {latency} s, {gap}",
            f"{ratio:.2f} ({wall:.2f} s for {requests:.0f} requests)",
            f"<= {TARGETS['refresh']}",
            ratio <= TARGETS["refresh"],
        )
        report.add(
            "refresh",
            f"{kind} requests / distinct banks, latency {latency} s",
            f"{statistics.median(r / d for r, d in zip(reads, distinct, strict=True)):.2f}",
            "1.00",
            all(r == d for r, d in zip(reads, distinct, strict=True)),
        )


# --------------------------------------------------------------------------- commands


async def commands(report: Report, latency: float, rounds: int) -> None:
    """MQTT publish of setChargeTarget to its confirmed result, through the whole application."""
    from givbridge.app import Application

    sim = SimulatedPlant.create("hybrid-gen3", batteries=2, clock=SystemClock(), seed=2, tz="Europe/London")
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    try:
        async with SimulatorServer(sim, latency=latency, service_time=SERVICE_TIME) as server:
            with tempfile.TemporaryDirectory() as data:
                settings = Settings(
                    inverters=[{"host": "127.0.0.1", "port": server.port}],
                    data_dir=Path(data),
                    mqtt={"host": broker.host, "port": broker.port, "discovery": False},
                    polling={"poll_interval": 15, "settings_interval": 300, "timeout": latency * 3 + 1},
                )
                app = Application(settings)
                await app.start()
                client = MqttClient(MqttSettings(host=broker.host, port=broker.port, client_id="bench-commands"))
                results: asyncio.Queue[Message] = asyncio.Queue()
                client.subscribe(f"GivEnergy/{sim.serial}/response/#", results.put_nowait)
                await client.start()
                await client.wait_connected(10)
                try:
                    runner = app.bridge.runners[0]
                    if runner.snapshot is None:
                        first = asyncio.Event()

                        async def arrived(_: Snapshot) -> None:
                            first.set()

                        runner.on_snapshot.connect(arrived)
                        await asyncio.wait_for(first.wait(), timeout=60)
                    times = []
                    for index in range(rounds):
                        target = 60 + index % 30
                        started = time.monotonic()
                        client.publish(f"GivEnergy/control/{sim.serial}/setChargeTarget", str(target), qos=1)
                        message = await asyncio.wait_for(results.get(), timeout=latency * 20 + 10)
                        times.append(time.monotonic() - started)
                        if json.loads(message.payload).get("status") != "ok":
                            raise RuntimeError(f"command failed: {message.text}")
                finally:
                    await client.stop()
                    await app.stop()
    finally:
        await broker.stop()
    limit = 2 * latency + 0.05
    median = statistics.median(times)
    report.add(
        "commands",
        f"setChargeTarget, latency {latency} s (median of {rounds})",
        f"{median:.2f} s = {median / limit:.2f} x limit",
        f"<= 2 x latency + 50 ms = {limit:.2f} s",
        median <= limit,
        "a write and the read-back of its bank: two requests",
    )


# --------------------------------------------------------------------------- resources


def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS in MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return cpu, rss_kb / 1024


async def resources(report: Report, count: int, window: float) -> dict[str, float]:
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    farm = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "benchmarks.simfarm", "--count", str(count)),
        *("--latency", "0.2", "--service-time", str(SERVICE_TIME)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert farm.stdout is not None and farm.stdin is not None
    addresses = []
    while (line := (await farm.stdout.readline()).decode().strip()) != "ready":
        addresses.append(line.split()[0])
    bridge = None
    try:
        with tempfile.TemporaryDirectory() as data:
            config = Path(data) / "givbridge.yaml"
            inverters = "\n".join(f"  - host: {a.split(':')[0]}\n    port: {a.split(':')[1]}" for a in addresses)
            config.write_text(
                f"inverters:\n{inverters}\n"
                f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
                f"polling:\n  poll_interval: 10\n  settings_interval: 300\n"
                f"data_dir: {data}\nlog:\n  level: warning\n"
            )
            online: set[str] = set()
            ready = asyncio.Event()

            def seen(message: Message) -> None:
                if message.text == "online":
                    online.add(message.topic)
                    if len(online) >= count:
                        ready.set()

            watcher = MqttClient(MqttSettings(host=broker.host, port=broker.port, client_id="bench-resources"))
            watcher.subscribe("GivEnergy/+/availability", seen)
            await watcher.start()
            bridge = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "givbridge.cli", "run", "--config", str(config),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.wait_for(ready.wait(), timeout=180)
            await asyncio.sleep(15)  # settle after the first full polls
            cpu_start, _ = _proc_stat(bridge.pid)
            started = time.monotonic()
            peak = 0.0
            while time.monotonic() - started < window:
                await asyncio.sleep(1)
                peak = max(peak, _proc_stat(bridge.pid)[1])
            cpu_end, _ = _proc_stat(bridge.pid)
            await watcher.stop()
    finally:
        if bridge is not None and bridge.returncode is None:
            bridge.terminate()
            await bridge.wait()
        farm.stdin.close()
        await farm.wait()
        await broker.stop()
    cpu_pct = (cpu_end - cpu_start) / (time.monotonic() - started) * 100
    per_inverter = cpu_pct / count
    if count == 1:
        report.add("resources", "RSS, 1 inverter", f"{peak:.0f} MB", f"<= {TARGETS['rss_1_mb']:.0f} MB",
                   peak <= TARGETS["rss_1_mb"])  # fmt: skip
    if count == 50:
        report.add("resources", "RSS, 50 inverters", f"{peak:.0f} MB", f"<= {TARGETS['rss_50_mb']:.0f} MB",
                   peak <= TARGETS["rss_50_mb"])  # fmt: skip
    if count not in (1, 50):
        report.add("resources", f"RSS, {count} inverters", f"{peak:.0f} MB", "(between the two)", None)
    report.add(
        "resources",
        f"CPU per inverter, {count} polled every 10 s",
        f"{per_inverter:.2f} % of a core ({cpu_pct:.1f} % in all)",
        f"<= {TARGETS['cpu_per_inverter_pct']} %",
        per_inverter <= TARGETS["cpu_per_inverter_pct"],
    )
    return {"rss_mb": peak, "cpu_pct": cpu_pct}


# --------------------------------------------------------------------------- messages


async def messages(report: Report, polls: int) -> None:
    """Messages per poll in steady state, against publishing every value every poll."""
    from givbridge.app import Application

    sim = SimulatedPlant.create("hybrid-gen3", batteries=2, clock=SystemClock(), seed=3, tz="Europe/London")
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    counts: list[int] = []
    try:
        async with SimulatorServer(sim, latency=0.0) as server:
            with tempfile.TemporaryDirectory() as data:
                settings = Settings(
                    inverters=[{"host": "127.0.0.1", "port": server.port}],
                    data_dir=Path(data),
                    mqtt={"host": broker.host, "port": broker.port, "discovery": False},
                    polling={"poll_interval": 2, "settings_interval": 300, "request_gap": 0},
                )
                app = Application(settings)
                done = asyncio.Event()

                async def count(_: Snapshot) -> None:
                    counts.append(app.state.messages_last_poll(sim.serial))
                    if len(counts) > polls:
                        done.set()

                await app.start()
                app.bridge.runners[0].on_snapshot.connect(count)  # after the publisher: sees its count
                try:
                    await asyncio.wait_for(done.wait(), timeout=polls * 10)
                finally:
                    await app.stop()
    finally:
        await broker.stop()
    full = counts[0]
    steady = statistics.mean(counts[3:])  # after counters have confirmed their first readings
    ratio = steady / full
    report.add(
        "messages",
        f"per poll, steady state, Gen3 + 2 packs ({polls} polls)",
        f"{steady:.1f} of {full} = {ratio:.3f}",
        f"<= {TARGETS['messages_ratio']:.2f} of publishing everything",
        ratio <= TARGETS["messages_ratio"],
    )


# --------------------------------------------------------------------------- main


async def run(quick: bool) -> Report:
    report = Report()
    for latency in (0.2, 1.1):
        await refresh(report, latency, None, polls=4 if quick else 12)
    await refresh(report, 0.2, 0.0, polls=4 if quick else 12)
    for latency in (0.2, 1.1):
        await commands(report, latency, rounds=3 if quick else 10)
    await messages(report, polls=10 if quick else 40)
    for count in (1, 10) if quick else (1, 10, 50):
        await resources(report, count, window=15 if quick else 60)
    return report


def write_doc(report: Report, quick: bool) -> Path:
    path = ROOT / "docs" / "benchmarks.md"
    path.parent.mkdir(exist_ok=True)
    body = (__doc__ or "").strip()
    path.write_text(
        "# Benchmarks\n\n"
        "Generated by `.venv/bin/python -m benchmarks.run`"
        + (" --quick" if quick else "")
        + f" on {time.strftime('%Y-%m-%d')} (2 cores).\n\n```\n{body}\n```\n\n{report.table()}\n\n"
        + NOTES
    )
    return path


NOTES = """## Where a target is missed

See the notes below the table; each names the cause and what would change it.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="givbridge benchmarks")
    parser.add_argument("--quick", action="store_true", help="shorter windows and at most 10 inverters")
    args = parser.parse_args()
    report = asyncio.run(run(args.quick))
    print(report.table())
    print(f"\nwritten to {write_doc(report, args.quick)}")


if __name__ == "__main__":
    main()
