"""Fault injection per connection, random faults, scripts, and ``givbridge simulate --faults``.

The device-wide faults themselves are covered, one by one, in ``test_sim_faults.py``.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator

import pytest
from givenergy_modbus.pdu import ReadHoldingRegistersRequest, ReadInputRegistersRequest, WriteHoldingRegisterRequest

from givbridge.clock import ScaledClock
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.fault_script import FaultScript
from tests.brokers import wait_until
from tests.integration.sim_helpers import MIDSUMMER_NOON, RawLink

IR0 = ReadInputRegistersRequest(base_register=0, register_count=60, device_address=0x11)


@pytest.fixture
async def served() -> AsyncIterator[tuple[SimulatedPlant, SimulatorServer, ScaledClock]]:
    clock = ScaledClock(start=MIDSUMMER_NOON)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=21, start_soc=60)
    async with SimulatorServer(sim, seed=5) as server:
        yield sim, server, clock


async def two_links(server: SimulatorServer) -> tuple[RawLink, RawLink]:
    first = await RawLink.open(server.port)
    await wait_until(lambda: server.connection_count == 1, 2.0, "the first connection")
    second = await RawLink.open(server.port)
    await wait_until(lambda: server.connection_count == 2, 2.0, "the second connection")
    return first, second


async def test_a_connections_own_faults_leave_the_others_alone(
    served: tuple[SimulatedPlant, SimulatorServer, ScaledClock],
) -> None:
    sim, server, _clock = served
    first, second = await two_links(server)
    bridge, other = server.connections
    assert (bridge.number, other.number) == (1, 2)

    bridge.faults.silence()
    assert await first.ask(IR0, wait=0.3) is None
    assert (await second.request(IR0)).register_values[59] == sim.input(59)
    # Requests lost on a silent link never reach the inverter: this write is not applied.
    assert await first.ask(WriteHoldingRegisterRequest(116, 42), wait=0.3) is None
    assert sim.holding(116) != 42
    bridge.faults.end_silence()
    assert await first.ask(IR0) is not None

    bridge.faults.corrupt_crc(1)
    bridge.faults.inject_garbage(1, b"\x07\x07")
    await first.request(IR0)
    await second.request(IR0)
    assert first.received.count(b"\x07\x07") == 1 and b"\x07\x07" not in second.received

    loop = asyncio.get_running_loop()
    bridge.faults.extra_latency = 0.3
    started = loop.time()
    await first.request(IR0)
    assert loop.time() - started >= 0.3
    started = loop.time()
    await second.request(IR0)
    assert loop.time() - started < 0.3

    bridge.faults.drop_connections()
    assert await first.closed_by_peer(wait=2.0)
    assert server.connections == (other,)
    assert await second.ask(IR0) is not None
    await first.close()
    await second.close()


async def test_random_faults_follow_their_rates(served: tuple[SimulatedPlant, SimulatorServer, ScaledClock]) -> None:
    sim, server, _clock = served
    link = await RawLink.open(server.port)
    server.faults.zero_rate = 1.0
    assert set((await link.request(IR0)).register_values) == {0}
    server.faults.zero_rate = 0.0
    assert (await link.request(IR0)).register_values[59] == sim.input(59)

    server.faults.garbage_rate = 1.0
    before = len(link.received)
    for _ in range(5):  # every answer still decodes: the noise never contains a frame marker
        await link.request(IR0)
    noise = link.received[before:].split(b"\x59\x59\x00\x01")[0]
    assert noise and b"\x59" not in noise
    server.faults.garbage_rate = 0.0

    server.faults.crc_rate = 1.0
    response = await link.request(ReadHoldingRegistersRequest(base_register=0, register_count=60, device_address=0x11))
    assert getattr(response, "crc_failed", False)
    # Corrupted by the device and the link at once: still corrupt, not inverted back to valid.
    server.connections[0].faults.corrupt_crc(1)
    response = await link.request(ReadHoldingRegistersRequest(base_register=0, register_count=60, device_address=0x11))
    assert getattr(response, "crc_failed", False)
    with pytest.raises(ValueError, match="probability"):
        server.faults.crc_rate = 1.5
    server.faults.clear()
    assert server.faults.crc_rate == 0.0
    await link.close()


async def test_a_script_switches_faults_on_and_off_on_its_clock(
    served: tuple[SimulatedPlant, SimulatorServer, ScaledClock],
) -> None:
    sim, server, _ = served
    clock = ScaledClock(speed=400)  # the script's own time: 400 s pass every real second
    link = await RawLink.open(server.port)
    script = FaultScript.parse("refuse=60@20,unpersisted=100@40,clock-jump=-2h@80,drop@200")
    inverter_time = sim.inverter_time()
    running = asyncio.create_task(script.run(server.faults, clock))
    try:
        await wait_until(lambda: server.faults.refuse_connections, 2.0, "refuse on at 20 s")
        await wait_until(lambda: server.faults.writes_not_persisted, 2.0, "unpersisted on at 40 s")
        await wait_until(lambda: not server.faults.refuse_connections, 2.0, "refuse off at 80 s")
        assert (sim.inverter_time() - inverter_time).total_seconds() < -7000
        await wait_until(lambda: not server.faults.writes_not_persisted, 2.0, "unpersisted off at 140 s")
        assert await link.closed_by_peer(wait=2.0)  # dropped at 200 s
        await asyncio.wait_for(running, 2.0)  # nothing repeats: the script ends
    finally:
        running.cancel()
        await link.close()


async def test_simulate_runs_its_fault_script() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "givbridge.cli",
        *("simulate", "--model", "hybrid-gen2", "--port", "0", "--latency", "0", "--faults", "refuse"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        match = re.search(r" on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        assert (await asyncio.wait_for(process.stdout.readline(), timeout=5)).decode().strip() == "faults: refuse"
        link = await RawLink.open(int(match.group(1)))
        assert await link.closed_by_peer(wait=5.0)
        await link.close()
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
