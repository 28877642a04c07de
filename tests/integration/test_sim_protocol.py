"""What the simulated dongle puts on the wire: answers, errors, silence, pacing, heartbeats, writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from givenergy_modbus.pdu import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    WriteHoldingRegisterRequest,
)

from givbridge.clock import ScaledClock
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.integration.sim_helpers import FAST_DETECT, MIDSUMMER_NOON, RawLink, UncheckedWrite, library_client


def _plant(family: str = "hybrid-gen1", batteries: int = 1) -> SimulatedPlant:
    return SimulatedPlant.create(family, batteries=batteries, clock=ScaledClock(start=MIDSUMMER_NOON), seed=5)


@pytest.fixture
async def gen1() -> AsyncIterator[tuple[SimulatedPlant, SimulatorServer, RawLink]]:
    sim = _plant()
    async with SimulatorServer(sim) as server:
        link = await RawLink.open(server.port)
        yield sim, server, link
        await link.close()


def _hr(base: int, count: int = 60, address: int = 0x11) -> ReadHoldingRegistersRequest:
    return ReadHoldingRegistersRequest(base_register=base, register_count=count, device_address=address)


def _ir(base: int, count: int = 60, address: int = 0x11) -> ReadInputRegistersRequest:
    return ReadInputRegistersRequest(base_register=base, register_count=count, device_address=address)


async def test_answers_carry_the_dongle_and_inverter_serials(
    gen1: tuple[SimulatedPlant, SimulatorServer, RawLink],
) -> None:
    sim, _server, link = gen1
    for request in (_hr(0), _ir(60, address=0x32), _ir(60, address=0x34)):
        response = await link.request(request)
        assert not response.error
        assert response.data_adapter_serial_number == sim.dongle_serial
        assert response.inverter_serial_number == sim.serial
        assert response.padding == 0x8A
        assert not response.crc_failed


async def test_missing_banks_error_and_absent_devices_stay_silent(
    gen1: tuple[SimulatedPlant, SimulatorServer, RawLink],
) -> None:
    _sim, _server, link = gen1
    for request in (_hr(1000), _hr(170, 20), _ir(0, address=0x33)):  # no such bank / runs off the end
        response = await link.request(request)
        assert response.error, request
        assert response.padding == 0x12
        assert (response.base_register, response.register_count) == (request.base_register, request.register_count)
    for request in (_hr(300), _hr(240), _ir(60, 30, address=0x01), _hr(0, address=0x40)):
        assert await link.ask(request, wait=0.1) is None, request  # Gen1 ignores these outright
    empty_slot = await link.request(_ir(60, address=0x35))
    assert empty_slot.register_values == [0] * 60


async def test_the_inverter_also_answers_at_its_legacy_addresses(
    gen1: tuple[SimulatedPlant, SimulatorServer, RawLink],
) -> None:
    sim, _server, link = gen1
    canonical = await link.request(_hr(0))
    for address in (0x31, 0x32):
        alias = await link.request(_hr(0, address=address))
        assert alias.register_values[:35] == canonical.register_values[:35]
    pack = await link.request(_ir(60, address=0x32))
    assert pack.register_values[50:55] == canonical.register_values[8:13]  # pack 1's serial, mirrored in HR8-12
    assert pack.register_values[40] == sim.input(100, address=0x32)


async def test_latency_overlaps_but_the_inverter_serves_one_request_at_a_time() -> None:
    async with SimulatorServer(_plant(), latency=0.12, service_time=0.05) as server:
        first, second = await RawLink.open(server.port), await RawLink.open(server.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        answered: list[float] = []

        async def ask(link: RawLink, base: int) -> None:
            await link.request(_ir(base))
            answered.append(loop.time() - started)

        await asyncio.gather(ask(first, 0), ask(second, 180))
        await first.close()
        await second.close()
    # Both in flight together (not 2 x 0.12 s), but the inverter answers them 0.05 s apart.
    assert answered[0] >= 0.12
    assert answered[1] - answered[0] >= 0.045
    assert answered[1] < 0.24


async def test_fan_out_sends_every_response_to_every_client() -> None:
    async with SimulatorServer(_plant(), fan_out=True) as server:
        asking, listening = await RawLink.open(server.port), await RawLink.open(server.port)
        answer = await asking.request(_ir(0))
        overheard = await listening.response()
        await asking.close()
        await listening.close()
    assert overheard is not None
    assert overheard.register_values == answer.register_values


async def test_heartbeats_keep_answering_clients_and_close_silent_ones() -> None:
    async with SimulatorServer(_plant(), heartbeat_interval=0.05, heartbeat_timeout=0.05) as server:
        client = await library_client(server.port)
        silent = await RawLink.open(server.port)
        try:
            assert await silent.closed_by_peer(wait=5.0)
            assert silent.heartbeats_seen == 3
            assert client.connected and server.connection_count == 1
            await client.detect(**FAST_DETECT)  # the answering client's link still works
        finally:
            await client.close()
            await silent.close()


async def test_writes_are_stored_echoed_or_refused_per_model() -> None:
    async with SimulatorServer(_plant("hybrid-gen2")) as server:
        sim, link = server.plant, await RawLink.open(server.port)
        stored = await link.request(WriteHoldingRegisterRequest(116, 80))
        assert (stored.register, stored.value, stored.error) == (116, 80, False)
        assert sim.holding(116) == 80
        # Gen2 firmware echoes the per-slot discharge target but keeps nothing (batpred #4517).
        echoed = await link.request(UncheckedWrite(272, 30))
        assert (echoed.value, echoed.error) == (30, False)
        assert sim.holding(272) == 0
        for register, value in ((116, 3), (94, 2460), (95, 1275), (96, 2), (0, 1), (242, 50), (163, 1)):
            refused = await link.request(UncheckedWrite(register, value))
            assert refused.error and refused.padding == 0x12, (register, value)
        assert sim.holding(94) == 2330
        pause = await link.request(UncheckedWrite(318, 2))
        assert not pause.error and sim.holding(318) == 2
        await link.close()


async def test_gen1_has_no_pause_registers_and_gen3_takes_per_slot_targets() -> None:
    async with SimulatorServer(_plant("hybrid-gen1")) as server:
        link = await RawLink.open(server.port)
        assert (await link.request(UncheckedWrite(318, 1))).error
        await link.close()
    async with SimulatorServer(_plant("hybrid-gen3")) as server:
        link = await RawLink.open(server.port)
        for register, value in ((242, 80), (243, 1300), (244, 1400), (272, 20), (319, 100)):
            assert not (await link.request(UncheckedWrite(register, value))).error
            assert server.plant.holding(register) == value
        await link.close()


async def test_writing_the_clock_moves_the_inverter_time(
    gen1: tuple[SimulatedPlant, SimulatorServer, RawLink],
) -> None:
    sim, _server, link = gen1
    assert (await link.request(WriteHoldingRegisterRequest(38, 3))).value == 3
    assert (await link.request(WriteHoldingRegisterRequest(36, 2))).value == 2
    assert (await link.request(WriteHoldingRegisterRequest(37, 31))).value == 31  # clamped to 28 February
    response = await link.request(_hr(0))
    assert isinstance(response, ReadHoldingRegistersResponse)
    year, month, day, hour = response.register_values[35:39]
    assert (year, month, day, hour) == (26, 2, 28, 3)
    assert sim.inverter_time().month == 2


async def test_reboot_goes_quiet_then_resumes_with_registers_kept() -> None:
    clock = ScaledClock(start=MIDSUMMER_NOON)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=1)
    sim.set_holding(116, 77)
    async with SimulatorServer(sim) as server:
        link = await RawLink.open(server.port)
        ack = await link.request(WriteHoldingRegisterRequest(163, 100))
        assert not ack.error
        assert await link.ask(_hr(0), wait=0.15) is None
        assert await link.ask(WriteHoldingRegisterRequest(116, 50), wait=0.15) is None
        clock.advance(sim.reboot_seconds)
        response = await link.request(_hr(60))
        await link.close()
    assert response.register_values[116 - 60] == 77


async def test_a_stopped_simulator_comes_back_on_the_same_port() -> None:
    server = SimulatorServer(_plant())
    await server.start()
    port = server.port
    link = await RawLink.open(port)
    await server.stop()
    assert await link.closed_by_peer(wait=1.0)
    await server.start()
    try:
        assert server.port == port
        again = await RawLink.open(port)
        assert not (await again.request(_hr(0))).error
        await again.close()
    finally:
        await server.stop()
        await link.close()
