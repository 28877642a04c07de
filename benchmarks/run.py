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
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from givbridge.clock import SystemClock
from givbridge.config import MqttSettings, Settings
from givbridge.devices.inverter import InverterRunner
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


#: (command, payload for round i, what it costs at the least, its limit in latencies)
COMMAND_CASES: tuple[tuple[str, Callable[[int], str], str, int], ...] = (
    ("setBatteryReserve", lambda i: str(20 + i % 30), "one register: the write and the read-back of its bank", 2),
    (
        "setChargeTarget",
        lambda i: str(60 + i % 30),
        "HR116 and its enable flag HR20, in two banks: the write and two read-backs in flight together",
        2,
    ),
)


async def commands(report: Report, latency: float, rounds: int) -> None:
    """MQTT publish of a command to its confirmed result, through the whole application."""
    from givbridge.app import Application

    sim = SimulatedPlant.create("hybrid-gen3", batteries=2, clock=SystemClock(), seed=2, tz="Europe/London")
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    times: dict[str, list[float]] = {}
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
                    for name, payload, _, _ in COMMAND_CASES:
                        for index in range(rounds):
                            started = time.monotonic()
                            client.publish(f"GivEnergy/control/{sim.serial}/{name}", payload(index), qos=1)
                            message = await asyncio.wait_for(results.get(), timeout=latency * 20 + 10)
                            times.setdefault(name, []).append(time.monotonic() - started)
                            if json.loads(message.payload).get("status") != "ok":
                                raise RuntimeError(f"command failed: {message.text}")
                finally:
                    await client.stop()
                    await app.stop()
    finally:
        await broker.stop()
    for name, _, cost, latencies in COMMAND_CASES:
        limit = latencies * latency + 0.05
        median = statistics.median(times[name])
        report.add(
            "commands",
            f"{name}, latency {latency} s (median of {rounds})",
            f"{median:.2f} s = {median / limit:.2f} x limit",
            f"<= 2 x latency + 50 ms = {limit:.2f} s",
            median <= limit,
            cost,
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


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await process.wait()


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
    addresses, serials = [], set()
    while (line := (await farm.stdout.readline()).decode().strip()) != "ready":
        address, serial = line.split()
        addresses.append(address)
        serials.add(serial)
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
                if message.text == "online" and message.topic.split("/")[1] in serials:  # not the plant summary
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
            await asyncio.wait_for(ready.wait(), timeout=900)
            await asyncio.sleep(15)  # settle after the first full polls
            cpu_start, _ = _proc_stat(bridge.pid)
            started = time.monotonic()
            peak = 0.0
            while time.monotonic() - started < window:
                await asyncio.sleep(1)
                peak = max(peak, _proc_stat(bridge.pid)[1])
            cpu_end, _ = _proc_stat(bridge.pid)
            elapsed = time.monotonic() - started
            await watcher.stop()
            await _end(bridge)  # before its data directory goes
    finally:
        if bridge is not None:
            await _end(bridge)
        farm.stdin.close()
        await farm.wait()
        await broker.stop()
    cpu_pct = (cpu_end - cpu_start) / elapsed * 100
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


async def run(quick: bool, only: str | None = None) -> Report:
    report = Report()
    polls, rounds, window = (4, 3, 15) if quick else (12, 10, 60)
    cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        *((f"refresh {lat} s", functools.partial(refresh, report, lat, None, polls)) for lat in (0.2, 1.1)),
        ("refresh 0.2 s, no gap", functools.partial(refresh, report, 0.2, 0.0, polls)),
        *((f"commands {lat} s", functools.partial(commands, report, lat, rounds)) for lat in (0.2, 1.1)),
        ("messages", functools.partial(messages, report, 10 if quick else 40)),
        *(
            (f"resources {n}", functools.partial(resources, report, n, window))
            for n in ((1, 10) if quick else (1, 10, 50))
        ),
    ]
    for name, case in cases:
        if only is not None and not name.startswith(only):
            continue
        print(f"running {name}", file=sys.stderr, flush=True)
        try:
            await case()
        except Exception as exc:  # one broken case must not lose the others' figures
            report.add(name, "failed", repr(exc)[:120], "-", False)
    return report


def write_doc(report: Report, quick: bool) -> Path:
    path = ROOT / "docs" / "benchmarks.md"
    path.parent.mkdir(exist_ok=True)
    body = (__doc__ or "").strip()
    path.write_text(
        "# Benchmarks\n\n"
        "Generated by `.venv/bin/python -m benchmarks.run`"
        + (" --quick" if quick else "")
        + f" on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores).\n\n```\n{body}\n```\n\n{report.table()}\n\n"
        + notes(report)
    )
    return path


#: Why a section's target can be missed, shown under the table for each section that missed one.
CAUSES = {
    "refresh": """**Refresh at 0.2 s latency, with the library's pacing.** givenergy-modbus sends a request no
sooner than `polling.request_gap` (0.25 s, plus up to 40 % jitter) after the previous one, so a
poll costs about 0.3 s per request whatever the latency: below 0.3 s of latency the pacing, not
the dongle, is the floor. The same poll with `request_gap: 0` is well under the limit (the
"request_gap 0.0 s" rows). The gap is kept by default because real dongles drop or mix up
answers to requests that arrive back to back (see the reference notes on dongle limits);
users of fast Gateway/AIO dongles can lower it. At 1.1 s the requests overlap in flight and
the ratio is far below 1.""",
    "commands": """**Command latency.** A command is a write, then the read-back that confirms it, so it can
never be faster than two round trips; the limit of 2 x latency + 50 ms leaves no room for the
library's request pacing (0.25-0.35 s between requests, above the 0.2 s latency), for a poll
request already on the wire when the command arrives (it is answered first: the dongle serves
one request at a time), or for the simulated inverter's 0.1 s service time per request. A
command whose registers sit in two banks (setChargeTarget: HR116 and its enable flag HR20)
reads both back; they are sent together, but the inverter answers them one after the other.""",
    "resources": """**Memory of one inverter.** Most of the resident set is the import floor, not per-inverter
state: importing the dependencies alone (Python, pydantic-settings, structlog, paho-mqtt,
PyYAML and above all givenergy-modbus, whose client pulls in its whole register model) peaks
at about 52 MB before givbridge's own modules (the entity catalogue, the command registry and
their pydantic models, about 9 MB more) are loaded. The 10- and 50-inverter rows show what
each further inverter costs: well under a megabyte. `MALLOC_ARENA_MAX` and `malloc_trim` made
no real difference; trimming the floor would mean lazy imports inside the library.""",
}


def notes(report: Report) -> str:
    missed = [row for row in report.rows if row.verdict == "missed"]
    if not missed:
        return "## Where a target is missed\n\nNowhere in this run.\n"
    parts = ["## Where a target is missed\n"]
    for section in dict.fromkeys(row.section for row in missed):
        rows = "; ".join(f"{row.case}: {row.figure}, target {row.target}" for row in missed if row.section == section)
        cause = CAUSES.get(section, "No known cause: look into it.")
        parts.append(f"{cause}\n\nMissed here: {rows}.\n")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description="givbridge benchmarks")
    parser.add_argument("--quick", action="store_true", help="shorter windows and at most 10 inverters")
    parser.add_argument(
        "--only", metavar="CASE", help="run the cases whose name starts with CASE (e.g. 'resources 50'); no doc"
    )
    args = parser.parse_args()
    report = asyncio.run(run(args.quick, args.only))
    print(report.table())
    if args.only is None:
        print(f"\nwritten to {write_doc(report, args.quick)}")


if __name__ == "__main__":
    main()
