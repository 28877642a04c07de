"""``givbridge simulate --model <family>`` for every simulated family, and the meters' product registers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import re

import pytest
from givenergy_modbus.pdu import ReadHoldingRegistersRequest, ReadMeterProductRegistersRequest

from givbridge.sim import PROFILES, SimulatedPlant, SimulatorServer, cli
from tests.integration.sim_helpers import RawLink


class _Announcements(io.StringIO):
    """Standard output that wakes a waiter whenever the simulator prints its address."""

    def __init__(self) -> None:
        super().__init__()
        self.printed = asyncio.Event()

    def write(self, text: str) -> int:
        self.printed.set()
        return super().write(text)


async def test_simulate_serves_every_model() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    for family in sorted(PROFILES):
        args = parser.parse_args(["--model", family, "--port", "0", "--latency", "0", "--seed", "2"])
        out = _Announcements()
        with contextlib.redirect_stdout(out):
            task = asyncio.create_task(cli.main(args))
            await asyncio.wait_for(out.printed.wait(), timeout=5)
        try:
            match = re.search(r" on 127\.0\.0\.1:(\d+)", out.getvalue())
            assert match, out.getvalue()
            link = await RawLink.open(int(match.group(1)))
            request = ReadHoldingRegistersRequest(base_register=0, register_count=60, device_address=0x11)
            response = await link.request(request)
            assert f"{response.register_values[0]:04x}" == f"{PROFILES[family].device_type_code:04x}", family
            await link.close()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_simulate_refuses_a_battery_count_the_model_cannot_have(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert await cli.main(parser.parse_args(["--model", "pv", "--batteries", "2", "--port", "0"])) == 2
    assert "batteries must be 0-0 on pv" in capsys.readouterr().err


async def test_meters_answer_their_product_registers_over_the_wire() -> None:
    sim = SimulatedPlant.create("gateway", seed=3)
    async with SimulatorServer(sim) as server:
        link = await RawLink.open(server.port)
        try:
            response = await link.request(
                ReadMeterProductRegistersRequest(base_register=60, register_count=9, device_address=0x02)
            )
            silent = await link.ask(
                ReadMeterProductRegistersRequest(base_register=60, register_count=9, device_address=0x11), wait=0.2
            )
        finally:
            await link.close()
    assert not response.error
    assert response.register_values[7:] == [2, 9600]  # its Modbus id and baud rate
    assert silent is None
