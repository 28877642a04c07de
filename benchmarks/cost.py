"""What givbridge costs: CPU and memory against the library alone, and what it publishes.

* :func:`resources`: ``givbridge run`` and the library alone (:mod:`benchmarks.library_alone`)
  each in their own process, one after the other, polling the same simulators (run by
  :mod:`benchmarks.simfarm` in a third process) with the same intervals and pacing. Each is
  measured over the same window: CPU time per poll, peak RSS, and (the bridge) MQTT messages
  and bytes per poll.
* :func:`messages`: the whole application on a simulated clock at the default intervals, for
  at least 20 simulated minutes including full republishes: messages and bytes per poll
  against GivTCP's count and against publishing every value every poll, and the CPU spent in
  the state publish, in steady polls and in full rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    GIVTCP_PER_POLL,
    GIVTCP_RAW_PER_POLL,
    GIVTCP_SOURCE,
    SERVICE_TIME,
    Report,
    free_port,
    gen3_plant,
)
from benchmarks.subject import runner_client
from givbridge.clock import ScaledClock
from givbridge.config import MqttSettings, Settings
from givbridge.mqtt.broker import EmbeddedBroker
from givbridge.mqtt.client import Message, MqttClient
from givbridge.mqtt.state import render
from givbridge.plant.snapshot import Snapshot
from givbridge.sim import SimulatorServer

ROOT = Path(__file__).resolve().parents[1]
ISSUE = "issue 19"
#: Issue 19 item 5: budgets over the library alone, measured in the same run.
CPU_BUDGET = 1.5
RSS_BUDGET_MB = 15.0
RSS_PER_INVERTER_BUDGET_MB = 0.3
#: Polls in the resource runs: short enough for enough polls in the window to time.
POLL_INTERVAL = 2
LATENCY = 0.2


def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS in MB) of a process, from /proc."""
    # The scheduler's nanosecond count per thread, not /proc/PID/stat's 10 ms ticks.
    cpu = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            cpu += int((task / "schedstat").read_text().split()[0]) / 1e9
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    return cpu, rss_kb / 1024


@dataclass
class Measured:
    cpu_seconds: float
    polls: int
    peak_rss_mb: float
    messages: int = 0
    bytes: int = 0
    published: Counter[str] = field(default_factory=Counter)  # messages and bytes, by kind of topic

    @property
    def cpu_ms_per_poll(self) -> float:
        return self.cpu_seconds / max(1, self.polls) * 1000


async def _window(pid: int, window: float, polls: Callable[[], int]) -> Measured:
    cpu_start, peak = _proc_stat(pid)
    polls_start = polls()
    started = time.monotonic()
    while time.monotonic() - started < window:
        await asyncio.sleep(0.5)  # sampling RSS, not waiting for anything
        peak = max(peak, _proc_stat(pid)[1])
    cpu_end, rss = _proc_stat(pid)
    return Measured(cpu_end - cpu_start, polls() - polls_start, max(peak, rss))


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await process.wait()


async def _library_alone(addresses: list[str], window: float, gap: float, jitter: float) -> Measured:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.library_alone", *addresses,
        "--poll-interval", str(POLL_INTERVAL), "--settings-interval", "300",
        "--gap", str(gap), "--jitter", str(jitter), "--timeout", str(LATENCY * 3 + 1),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None and process.stdin is not None
    polls = 0

    async def read() -> None:
        nonlocal polls
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode():
            if line.startswith("polled "):
                polls = int(line.split()[1])

    ready = asyncio.Event()

    async def wait_ready() -> None:
        assert process.stdout is not None
        while (line := (await process.stdout.readline()).decode().strip()) != "ready":
            if not line and process.stdout.at_eof():
                raise RuntimeError("the library-alone process ended before it was ready")
        ready.set()

    try:
        await asyncio.wait_for(wait_ready(), timeout=900)
        reader = asyncio.create_task(read())
        await asyncio.sleep(POLL_INTERVAL)  # settle after the first full polls
        measured = await _window(process.pid, window, lambda: polls)
        reader.cancel()
        return measured
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        finally:
            await _end(process)


async def _bridge(
    addresses: list[str], serials: set[str], broker: EmbeddedBroker, window: float, data: str
) -> Measured:
    config = Path(data) / "givbridge.yaml"
    inverters = "\n".join(f"  - host: {a.split(':')[0]}\n    port: {a.split(':')[1]}" for a in addresses)
    config.write_text(
        f"inverters:\n{inverters}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
        f"polling:\n  poll_interval: {POLL_INTERVAL}\n  settings_interval: 300\n  timeout: {LATENCY * 3 + 1}\n"
        f"data_dir: {data}\nlog:\n  level: warning\n"
    )
    online: set[str] = set()
    ready = asyncio.Event()
    counts: Counter[str] = Counter()

    def seen(message: Message) -> None:
        size = len(message.topic) + len(message.payload)
        kind = _kind_of_topic(message.topic, serials)
        counts.update({"messages": 1, "bytes": size, f"{kind} messages": 1, f"{kind} bytes": size})
        parts = message.topic.split("/")
        if len(parts) > 1 and parts[1] in serials:  # not the plant summary
            if parts[2:] == ["Stats", "Last_Updated_Time"]:
                counts["polls"] += 1
            elif parts[2:] == ["availability"] and message.text == "online":
                online.add(parts[1])
                if len(online) >= len(serials):
                    ready.set()

    watcher = MqttClient(MqttSettings(host=broker.host, port=broker.port, client_id="bench-resources"))
    watcher.subscribe("#", seen)
    await watcher.start()
    bridge = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "givbridge.cli", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.wait_for(ready.wait(), timeout=900)
        await asyncio.sleep(POLL_INTERVAL * 2)  # settle after the first full polls and discovery
        before = Counter(counts)
        measured = await _window(bridge.pid, window, lambda: counts["polls"])
        measured.published = counts - before
        measured.messages = measured.published["messages"]
        measured.bytes = measured.published["bytes"]
        return measured
    finally:
        await watcher.stop()
        await _end(bridge)  # before its data directory goes


async def resources(report: Report, count: int, window: float, baseline: dict[str, Any]) -> None:
    """``givbridge run`` against the library alone, same simulators, same window."""
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    farm = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.simfarm", "--count", str(count),
        "--latency", str(LATENCY), "--service-time", str(SERVICE_TIME),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert farm.stdout is not None and farm.stdin is not None
    addresses: list[str] = []
    serials: set[str] = set()
    while (line := (await farm.stdout.readline()).decode().strip()) != "ready":
        address, serial = line.split()
        addresses.append(address)
        serials.add(serial)
    pacing = runner_client("127.0.0.1", 1, None, Settings().polling.request_gap)  # type: ignore[arg-type]
    try:
        library = await _library_alone(addresses, window, pacing.tx_message_wait, pacing.tx_jitter)
        with tempfile.TemporaryDirectory() as data:
            bridge = await _bridge(addresses, serials, broker, window, data)
    finally:
        farm.stdin.close()
        await farm.wait()
        await broker.stop()
    _report_resources(report, count, library, bridge, baseline)


def _report_resources(
    report: Report, count: int, library: Measured, bridge: Measured, baseline: dict[str, Any]
) -> None:
    setup = f"{count} inverter{'s' if count > 1 else ''}"
    cpu_ratio = bridge.cpu_ms_per_poll / library.cpu_ms_per_poll if library.cpu_ms_per_poll else float("inf")
    report.add(
        "cost",
        f"CPU per poll, {setup}, polls every {POLL_INTERVAL} s",
        f"{cpu_ratio:.2f} x library ({bridge.cpu_ms_per_poll:.1f} ms vs {library.cpu_ms_per_poll:.1f} ms; "
        f"{bridge.polls} and {library.polls} polls)",
        f"<= {CPU_BUDGET} x library",
        f"library alone, same simulators and window, this run; budget {ISSUE} item 5",
        cpu_ratio <= CPU_BUDGET,
        "snapshot build, hygiene and publish cost more than the library's decoding" if cpu_ratio > CPU_BUDGET else "",
    )
    above = bridge.peak_rss_mb - library.peak_rss_mb
    report.point("CPU per poll, givbridge (ms)", count, bridge.cpu_ms_per_poll)
    report.point("CPU per poll, library alone (ms)", count, library.cpu_ms_per_poll)
    report.point("RSS, givbridge (MB)", count, bridge.peak_rss_mb)
    report.point("RSS, library alone (MB)", count, library.peak_rss_mb)
    report.point("MQTT messages per poll, givbridge", count, bridge.messages / max(1, bridge.polls))
    report.point("MQTT kB per poll, givbridge", count, bridge.bytes / max(1, bridge.polls) / 1000)
    report.add(
        "cost",
        f"MQTT per poll, {setup}",
        f"{bridge.messages / max(1, bridge.polls):.1f} messages, "
        f"{bridge.bytes / max(1, bridge.polls) / 1000:.1f} kB (topic + payload)",
        "-",
        "see the messages section for the ratios",
        None,
        _per_poll_by_kind(bridge.published, max(1, bridge.polls)),
    )
    if count == 1:
        baseline["one"] = (bridge.peak_rss_mb, library.peak_rss_mb)
        report.add(
            "cost",
            "RSS above the library alone, 1 inverter",
            f"{above:.1f} MB ({bridge.peak_rss_mb:.1f} vs {library.peak_rss_mb:.1f} MB)",
            f"<= {RSS_BUDGET_MB:.0f} MB",
            f"library alone, same simulators, this run; budget {ISSUE} item 5",
            above <= RSS_BUDGET_MB,
            "the import floor: givbridge's catalogue, command registry and their models"
            if above > RSS_BUDGET_MB
            else "",
        )
        return
    if "one" not in baseline:
        return
    bridge_one, library_one = baseline["one"]
    per_bridge = (bridge.peak_rss_mb - bridge_one) / (count - 1)
    per_library = (library.peak_rss_mb - library_one) / (count - 1)
    per_above = per_bridge - per_library
    report.add(
        "cost",
        f"RSS per added inverter above the library's, 1 -> {count}",
        f"{per_above:.2f} MB ({per_bridge:.2f} vs {per_library:.2f} MB per inverter)",
        f"<= {RSS_PER_INVERTER_BUDGET_MB} MB",
        f"library alone, same simulators, this run; budget {ISSUE} item 5",
        per_above <= RSS_PER_INVERTER_BUDGET_MB,
    )


# --------------------------------------------------------------------------- messages


#: The simulated clock's speed in the message run: 15 s polls every 0.75 real seconds.
SPEED = 20.0
WARM_UP = 120.0  # simulated seconds before counting: detection and the first full rounds


def _kind_of_topic(topic: str, serials: set[str]) -> str:
    if topic.startswith("homeassistant/"):
        return "discovery"
    if "/bridge/" in topic or topic.endswith("/availability"):
        return "bridge and availability"
    if topic.split("/")[1] not in serials:
        return "plant summary"
    if topic.endswith("/json"):
        return "JSON document"
    return "state leaves"


def _per_poll_by_kind(published: Counter[str], polls: int) -> str:
    kinds = sorted({key.rsplit(" ", 1)[0] for key in published if " " in key})
    return "; ".join(
        f"{kind}: {published[kind + ' messages'] / polls:.1f} msgs, {published[kind + ' bytes'] / polls / 1000:.1f} kB"
        for kind in kinds
    )


async def messages(report: Report, minutes: float) -> None:
    """Messages and bytes per poll at the default intervals, over ``minutes`` simulated minutes."""
    from givbridge.app import Application

    clock = ScaledClock(speed=SPEED, start=datetime(2026, 6, 20, 9, 0, tzinfo=UTC))
    sim = gen3_plant(3, clock=clock)
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    received: Counter[str] = Counter()
    counting = False
    polls: list[dict[str, Any]] = []

    def seen(message: Message) -> None:
        if counting:
            kind = _kind_of_topic(message.topic, {sim.serial})
            size = len(message.topic) + len(message.payload)
            received.update({"messages": 1, "bytes": size, f"{kind} messages": 1, f"{kind} bytes": size})

    watcher = MqttClient(MqttSettings(host=broker.host, port=broker.port, client_id="bench-messages"))
    watcher.subscribe("#", seen)
    await watcher.start()
    await watcher.wait_connected(10)
    try:
        # Latency and pacing are real time and do not change what is published: none here, so
        # that a simulated 15 s poll interval (0.75 real seconds) is never overrun.
        async with SimulatorServer(sim, latency=0.0) as server:
            with tempfile.TemporaryDirectory() as data:
                settings = Settings(
                    inverters=[{"host": "127.0.0.1", "port": server.port}],
                    data_dir=Path(data),
                    mqtt={"host": broker.host, "port": broker.port},
                    polling={"request_gap": 0},
                )
                app = Application(settings, clock=clock)
                publish = app.state.publish_snapshot
                previous: dict[str, str | None] = {}

                def timed(snapshot: Snapshot) -> int:
                    started = time.thread_time()
                    sent = publish(snapshot)
                    cpu = time.thread_time() - started
                    if snapshot.serial == sim.serial and counting:
                        rendered = {
                            p: render(v, app.state.style(p.rsplit("/", 1)[-1])) for p, v in snapshot.values.items()
                        }
                        changed = sum(1 for p, r in rendered.items() if r is not None and previous.get(p) != r)
                        previous.clear()
                        previous.update(rendered)
                        polls.append({"sent": sent, "cpu": cpu, "changed": changed, "values": len(rendered)})
                    elif snapshot.serial == sim.serial:
                        previous.clear()
                        previous.update(
                            {p: render(v, app.state.style(p.rsplit("/", 1)[-1])) for p, v in snapshot.values.items()}
                        )
                    return sent

                app.state.publish_snapshot = timed  # type: ignore[method-assign]  # the measurement hook
                await app.start()
                try:
                    await clock.sleep(WARM_UP)
                    counting = True
                    await clock.sleep(minutes * 60)
                    counting = False
                finally:
                    await app.stop()
    finally:
        await watcher.stop()
        await broker.stop()
    _report_messages(report, minutes, polls, received, settings)


def _report_messages(
    report: Report, minutes: float, polls: list[dict[str, Any]], received: Counter[str], settings: Settings
) -> None:
    if not polls:
        report.add("messages", "no poll counted", "-", "-", "-", False)
        return
    interval = settings.polling.poll_interval
    full_every = settings.mqtt.full_refresh_interval
    per_poll = received["messages"] / len(polls)
    bytes_per_poll = received["bytes"] / len(polls)
    every_value = max(p["sent"] for p in polls)  # a full round: every value of the tree
    fulls = [p for p in polls if p["sent"] >= every_value * 0.9]
    steady = [p for p in polls if p["sent"] < every_value * 0.9]
    setup = (
        f"hybrid Gen3 + 2 packs, {interval:.0f} s polls, full republish every {full_every:.0f} s, "
        f"{minutes:.0f} simulated min, {len(polls)} polls, {len(fulls)} full rounds"
    )
    report.add(
        "messages",
        f"MQTT messages per poll / GivTCP's ({setup})",
        f"{per_poll / GIVTCP_PER_POLL:.3f} ({per_poll:.1f} vs {GIVTCP_PER_POLL}; "
        f"{GIVTCP_PER_POLL - GIVTCP_RAW_PER_POLL} without raw/)",
        "comparison",
        GIVTCP_SOURCE,
        None,
        "all messages the broker delivered, discovery and plant summary included",
    )
    report.add(
        "messages",
        "MQTT messages per poll / publishing every value every poll",
        f"{per_poll / every_value:.3f} ({per_poll:.1f} vs {every_value})",
        "comparison",
        "a full round of this run (every value, the JSON document, the count)",
        None,
    )
    changed = statistics.mean(p["changed"] for p in polls)
    floor = changed + every_value * interval / full_every
    report.add(
        "messages",
        "MQTT messages per poll / on-change floor",
        f"{per_poll / floor:.2f} ({per_poll:.1f} vs {floor:.1f})",
        "<= 1.00 (deadbands may go below)",
        "values whose payload changed, plus the full rounds spread over their polls, this run",
        per_poll <= floor,
    )
    split = _per_poll_by_kind(received, len(polls))
    report.add(
        "messages",
        "MQTT per poll (topic + payload bytes)",
        f"{per_poll:.1f} messages, {bytes_per_poll / 1000:.1f} kB",
        "-",
        "-",
        None,
        split,
    )
    if steady and fulls:
        steady_cpu = statistics.median(p["cpu"] for p in steady) * 1000
        full_cpu = statistics.median(p["cpu"] for p in fulls) * 1000
        steady_sent = statistics.median(p["sent"] for p in steady)
        share = steady_sent / every_value
        report.add(
            "publish",
            "CPU of the state publish, steady poll / full round",
            f"{steady_cpu / full_cpu:.2f} ({steady_cpu:.2f} ms vs {full_cpu:.2f} ms)",
            f"<= {max(0.1, share * 2):.2f}: twice its share of the messages ({steady_sent:.0f} of {every_value})",
            f"{ISSUE} item 5 (work in proportion to what changed); the share is this run's, the 2x allowance ours",
            steady_cpu / full_cpu <= max(0.1, share * 2),
            "the JSON document of the whole tree and every leaf's rendering run every poll"
            if steady_cpu / full_cpu > max(0.1, share * 2)
            else "",
        )
        report.point("publish CPU, steady poll (ms)", 1, steady_cpu)
