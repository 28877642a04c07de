"""Where one poll's CPU goes outside the library: build, hygiene, publish, observers.

    .venv/bin/python -m benchmarks.poll_cost                 # 40 polls, a hybrid Gen3 + 2 packs
    .venv/bin/python -m benchmarks.poll_cost --polls 100 --profile 25

Runs the whole application in this process against a simulator with no latency and a
``mosquitto`` broker (child processes, so their CPU is not counted), asks for ``--polls``
full reads back to back (``refresh_all``), and prints the CPU time per poll of each stage
of the pipeline that follows the library's decoding, measured by ``cProfile`` (cumulative
time of the stage's entry point), and the process's CPU time per poll without the
profiler. The library's own share is the rest of the poll (its decoding of the frames).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from givbridge.app import Application
from givbridge.config import Settings
from givbridge.log import configure_logging
from givbridge.plant.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[1]

# (label, file suffix, function name): the entry points of the pipeline's stages.
STAGES = [
    ("build_snapshot (families)", "plant/build.py", "build_snapshot"),
    ("hygiene", "plant/hygiene.py", "clean"),
    ("snapshot listeners (all)", "bridge.py", "emit"),
    ("discovery per poll", "discovery/publisher.py", "on_snapshot"),
    ("state publish", "mqtt/state.py", "publish_snapshot"),
    ("  json document", "mqtt/state.py", "text"),
    ("mqtt client publish", "mqtt/client.py", "publish"),
]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _polls(app: Application, polls: int) -> float:
    """CPU seconds (this process) spent on ``polls`` full polls of the first inverter."""
    runner = app.bridge.runners[0]
    started = time.process_time()
    for _ in range(polls):
        await runner.refresh_all()
    return time.process_time() - started


def _mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A mosquitto listening on 127.0.0.1 only, and its port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    config = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")  # it would switch to a user that cannot read our temp dir
    config.write_text("\n".join(lines) + "\n")
    return subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL), port


async def _wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError("mosquitto did not start")


async def measure(polls: int, profile_polls: int, batteries: int) -> None:
    configure_logging("warning")
    workdir = Path(tempfile.mkdtemp(prefix="poll-cost-"))
    broker, broker_port = _mosquitto(workdir)
    await _wait_listening(broker_port)
    farm = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "benchmarks.simfarm", "--count", "1", "--batteries", str(batteries)),
        *("--latency", "0", "--service-time", "0"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert farm.stdout is not None and farm.stdin is not None
    address = (await farm.stdout.readline()).decode().split()[0]
    await farm.stdout.readline()  # ready
    host, port = address.split(":")
    try:
        with tempfile.TemporaryDirectory() as data:
            settings = Settings(
                inverters=[{"host": host, "port": int(port)}],
                data_dir=Path(data),
                mqtt={"host": "127.0.0.1", "port": broker_port},
                polling={"poll_interval": 3600, "settings_interval": 3600, "request_gap": 0},
            )
            app = Application(settings)
            first = asyncio.Event()

            async def arrived(_: Snapshot) -> None:
                first.set()

            app.bridge.runners[0].on_snapshot.connect(arrived)
            await app.start()
            try:
                await asyncio.wait_for(first.wait(), timeout=60)
                await _polls(app, 5)  # warm up: counters confirmed, discovery sent
                cpu = await _polls(app, polls)
                profiler = cProfile.Profile()
                profiler.enable()
                await _polls(app, profile_polls)
                profiler.disable()
            finally:
                await app.stop()
    finally:
        farm.stdin.close()
        await farm.wait()
        broker.terminate()
        broker.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"process CPU per full poll (no profiler, {polls} polls): {cpu / polls * 1000:.2f} ms")
    stats = pstats.Stats(profiler)
    table = stats.stats  # type: ignore[attr-defined]
    print(f"cumulative CPU per poll under cProfile ({profile_polls} polls):")
    for label, suffix, name in STAGES:
        total = sum(
            row[3] for (path, _line, function), row in table.items() if path.endswith(suffix) and function == name
        )
        print(f"  {label:<28} {total / profile_polls * 1000:7.2f} ms")
    if os.environ.get("POLL_COST_DETAIL"):
        stats.sort_stats("cumulative").print_stats("givbridge", 40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=40)
    parser.add_argument("--profile", type=int, default=20, help="polls run under cProfile")
    parser.add_argument("--batteries", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(measure(args.polls, args.profile, args.batteries))


if __name__ == "__main__":
    main()
