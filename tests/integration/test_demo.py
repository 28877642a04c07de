"""``givbridge demo``, the README's main job, run as a user runs it: a real process on a free port.

It must show live, changing data within 10 s of starting, carry out the command its banner
suggests (answered ``ok`` after the read-back), stop cleanly on Ctrl-C, and say clearly
why when it cannot start (its port taken, a battery count the model cannot have).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.brokers import HOST, MqttProbe, free_port

ROOT = "GivEnergy"


@asynccontextmanager
async def demo(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A running ``givbridge demo`` and the banner it printed once it was ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "givbridge.cli", "demo", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not lines or "Stop with Ctrl-C." not in lines[-1]:
                line = (await process.stdout.readline()).decode()
                assert line, f"demo exited before it was ready: {''.join(lines)}"
                lines.append(line)
        yield process, "".join(lines)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_the_demo_shows_changing_data_within_ten_seconds_and_takes_a_command() -> None:
    port = free_port()
    async with demo("--port", str(port), "--speed", "30", "--poll-interval", "2") as (process, banner):
        serial = re.search(r"Inverter\s+simulated .* (\w{10}), 2 battery pack", banner)
        assert serial, banner
        assert f"mosquitto_sub -h {HOST} -p {port} -t '{ROOT}/#' -v" in banner
        probe = MqttProbe(HOST, port, topics=(f"{ROOT}/#",))
        await probe.start()
        try:
            # Live data: the first measurements, then one of them moving (publish-on-change
            # sends a measurement again only when it changed).
            measurements = f"{ROOT}/{serial.group(1)}/Power/#"
            await probe.wait_for(measurements, timeout=10)
            await probe.wait_for(measurements, lambda m: len(probe.messages(m.topic)) > 1 and not m.retain, timeout=10)
            await probe.publish(f"{ROOT}/control/{serial.group(1)}/setChargeTarget", "80")
            answer = await probe.wait_for(f"{ROOT}/{serial.group(1)}/response/setChargeTarget", timeout=15)
            assert json.loads(answer.payload)["status"] == "ok", answer.text
        finally:
            await probe.stop()
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await process.wait() == 0


async def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "givbridge.cli", "demo", "--port", str(taken.getsockname()[1]),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    assert process.returncode == 2
    assert "givbridge demo:" in err.decode() and "Traceback" not in err.decode()


@pytest.mark.parametrize(("args", "packs"), [(("--model", "pv"), 0), (("--model", "ac", "--batteries", "1"), 1)])
async def test_other_models_start_with_the_batteries_they_can_have(args: tuple[str, ...], packs: int) -> None:
    async with demo("--port", str(free_port()), *args) as (_, banner):
        assert f"{packs} battery pack(s)" in banner


async def test_a_battery_count_the_model_cannot_have_is_refused() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "givbridge.cli", "demo", "--model", "pv", "--batteries", "2",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == 2
    assert "batteries must be" in err.decode() and "Traceback" not in err.decode()
