"""Scripted faults, observed through the library client and through a raw socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from givenergy_modbus.client.client import Client
from givenergy_modbus.exceptions import CommunicationError, RefreshFailed
from givenergy_modbus.model.register import IR
from givenergy_modbus.pdu import ReadInputRegistersRequest, WriteHoldingRegisterRequest

from givbridge.clock import ScaledClock
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.integration.sim_helpers import FAST_DETECT, MIDSUMMER_NOON, RawLink, library_client

IR0 = (0x11, "IR", 0, 60)


@pytest.fixture
async def detected() -> AsyncIterator[tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock]]:
    clock = ScaledClock(start=MIDSUMMER_NOON)
    sim = SimulatedPlant.create("hybrid-gen2", batteries=1, clock=clock, seed=9, start_soc=70)
    async with SimulatorServer(sim) as server:
        client = await library_client(server.port)
        await client.detect(**FAST_DETECT)
        yield sim, server, client, clock
        await client.close()


async def test_a_silent_window_times_reads_out_until_it_ends(
    detected: tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock],
) -> None:
    _sim, server, client, _clock = detected
    server.faults.silence(60)
    with pytest.raises(RefreshFailed):
        await client.refresh(timeout=0.1, retries=0)
    assert client.connected and server.connection_count == 1  # silent, not disconnected
    server.faults.end_silence()
    await client.refresh(timeout=0.5, retries=0)

    server.faults.silence(0.3)  # a short window that retries outlast
    await client.refresh(timeout=0.15, retries=6, retry_delay=0)


async def test_corrupt_crc_frames_are_rejected_by_the_library(
    detected: tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock],
) -> None:
    _sim, server, client, _clock = detected
    server.faults.corrupt_crc(1)
    await client.refresh(timeout=0.2, retries=1, retry_delay=0)
    assert client.plant.crc_failure_count == {0x11: 1}  # the first response, IR(0,60) at the inverter


async def test_garbage_before_frames_is_skipped(
    detected: tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock],
) -> None:
    _sim, server, client, _clock = detected
    server.faults.inject_garbage(3)
    await client.refresh(timeout=0.5, retries=0)  # would time out if the framer choked on the noise
    link = await RawLink.open(server.port)
    server.faults.inject_garbage(1, b"\x01\x02\x03")
    await link.request(ReadInputRegistersRequest(base_register=0, register_count=60, device_address=0x11))
    assert link.received.startswith(b"\x01\x02\x03\x59\x59")
    await link.close()


async def test_an_all_zero_bank_is_refused_and_last_good_kept(
    detected: tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock],
) -> None:
    sim, server, client, _clock = detected
    await client.refresh(timeout=0.5)
    stamped = client.plant.register_block_updated_at[IR0]
    server.faults.zero_bank(0x11, "IR", 0)
    await client.refresh(timeout=0.5)
    assert client.plant.register_block_updated_at[IR0] == stamped
    assert client.plant.register_caches[0x11][IR(59)] == sim.input(59) == 70


async def test_frozen_values_stop_changing_until_thawed(
    detected: tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock],
) -> None:
    _sim, server, client, clock = detected
    server.faults.frozen = True
    before = (await client.refresh(timeout=0.5)).inverter
    clock.advance(1800)
    during = (await client.refresh(timeout=0.5)).inverter
    for name in ("e_pv_total", "p_pv1", "p_load_demand", "battery_soc"):
        assert getattr(during, name) == getattr(before, name), name
    server.faults.frozen = False
    clock.advance(600)
    after = (await client.refresh(timeout=0.5)).inverter
    assert after.e_pv_total > before.e_pv_total


async def test_writes_can_be_acknowledged_without_being_kept(
    detected: tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock],
) -> None:
    sim, server, client, _clock = detected
    server.faults.writes_not_persisted = True
    await client.one_shot_command([WriteHoldingRegisterRequest(116, 55)])  # raises if it were refused
    assert sim.holding(116) == 100
    server.faults.writes_not_persisted = False
    await client.one_shot_command([WriteHoldingRegisterRequest(116, 55)])
    assert sim.holding(116) == 55


async def test_a_clock_jump_shows_in_the_inverter_time(
    detected: tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock],
) -> None:
    _sim, server, client, _clock = detected
    before = (await client.load_config(timeout=0.5)).inverter.system_time
    server.faults.jump_clock(-2 * 3600)
    after = (await client.load_config(timeout=0.5)).inverter.system_time
    assert -7205 < (after - before).total_seconds() < -7195


async def test_dropped_connections_close_and_refused_ones_reset(
    detected: tuple[SimulatedPlant, SimulatorServer, Client, ScaledClock],
) -> None:
    _sim, server, client, _clock = detected
    consumer = client.network_consumer_task
    assert consumer is not None
    server.faults.drop_connections()
    await asyncio.wait_for(consumer, timeout=2.0)  # the client sees EOF
    assert not client.connected and server.connection_count == 0

    server.faults.refuse_connections = True
    refused = await RawLink.open(server.port)
    assert await refused.closed_by_peer(wait=2.0)
    await refused.close()
    with pytest.raises((CommunicationError, TimeoutError)):
        await client.connect()
        await client.detect(**FAST_DETECT)

    server.faults.refuse_connections = False
    await client.connect()
    await client.detect(**FAST_DETECT)
