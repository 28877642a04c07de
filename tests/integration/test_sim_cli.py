"""``givbridge simulate``: the CLI module serves until SIGTERM and exits cleanly."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

from givenergy_modbus.pdu import ReadHoldingRegistersRequest

from tests.integration.sim_helpers import RawLink


async def test_simulate_prints_its_address_serves_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "givbridge.cli", "simulate"),
        *("--model", "hybrid-gen2", "--batteries", "1", "--port", "0", "--latency", "0", "--speed", "60"),
        *("--seed", "4"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        match = re.search(r"hybrid-gen2 (EA\d{4}G\d{3}) .* on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        link = await RawLink.open(int(match.group(2)))
        response = await link.request(
            ReadHoldingRegistersRequest(base_register=0, register_count=60, device_address=0x11)
        )
        assert response.inverter_serial_number == match.group(1)
        await link.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
