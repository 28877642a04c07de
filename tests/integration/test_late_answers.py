"""An answer that comes after its request timed out is never taken for a later request's.

The library matches answers to requests by shape (a bank, a register), so the late answer of a
request that timed out would settle the next request of the same shape: a retry, the next
poll, or a write's read-back (judging the write by a read sent before it). Against the
simulator over TCP with a dongle slower than the timeout; judged from the order the simulator
received and answered requests (``SimulatorServer.traffic``), never from how long anything took.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from givenergy_modbus.client.client import Client
from givenergy_modbus.pdu import ReadHoldingRegistersRequest

from givbridge.clock import ScaledClock
from givbridge.config import PollingSettings
from givbridge.devices.library import ObservedPlant
from givbridge.devices.sending import ask
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.server import RequestKey

INVERTER = 0x11
BANK: RequestKey = ("HR", INVERTER, 60, 60)
#: Answers take a second: over twice the timeout, and later than a retry would be sent.
LATENCY = 1.0
POLLING = PollingSettings(timeout=0.4, retries=1, request_gap=0.0)


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[SimulatorServer, Client, ObservedPlant]]:
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=ScaledClock(), seed=3, tz="Europe/London")
    plant = ObservedPlant()
    async with SimulatorServer(sim) as server:
        client = Client("127.0.0.1", server.port, tx_message_wait=0.0, tx_jitter=0.0, plant=plant)
        await client.connect()
        try:
            yield server, client, plant
        finally:
            await client.close()


def request() -> ReadHoldingRegistersRequest:
    return ReadHoldingRegistersRequest(base_register=BANK[2], register_count=BANK[3], device_address=INVERTER)


async def test_a_retry_is_sent_only_once_the_late_answer_came_and_is_not_answered_by_it() -> None:
    async with connected() as (server, client, plant):
        server.faults.extra_latency = LATENCY
        before = len(server.traffic)
        with pytest.raises(TimeoutError):
            await ask(client, plant, request(), POLLING)
        events = [event for event, key in server.traffic[before:] if key == BANK]
        # The retry left only after the first attempt's answer had been sent: that answer was
        # waited for and set aside, not taken for the retry's.
        assert events[:3] == ["received", "answered", "received"]
        assert plant.retry_count.get(INVERTER) == 1


async def test_the_next_request_of_a_shape_does_not_take_an_earlier_ones_late_answer() -> None:
    async with connected() as (server, client, plant):
        once = POLLING.model_copy(update={"retries": 0})
        server.faults.extra_latency = LATENCY
        with pytest.raises(TimeoutError):
            await ask(client, plant, request(), once)
        # The dongle is quick again, but the first answer is still on its way.
        server.faults.extra_latency = 0.0
        before = len(server.traffic)
        response = await ask(client, plant, request(), once)
        events = [event for event, key in server.traffic[before:] if key == BANK]
        # Sent after the late answer went out, and answered by its own answer.
        assert events[:2] == ["answered", "received"]
        assert response.base_register == BANK[2] and plant.retry_count.get(INVERTER) is None
