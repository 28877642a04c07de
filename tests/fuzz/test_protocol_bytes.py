"""Fuzzing the wire: any bytes from a dongle, into the library's framer and into the bridge's connection.

The material is what a dongle really sends (every bank a Gen3 hybrid answers, write echoes,
refusals and heartbeats, encoded by the simulator exactly as on the wire), mutated the ways
a noisy link mangles it (flipped bits, changed, lost, repeated and inserted bytes, cut
frames, fake frame starts with random headers), mixed with noise and split into arbitrary
chunks. Two properties:

* the library's client framer turns any stream into messages or framing errors and nothing
  else, and every response it produces goes into the bridge's plant model without raising
  (the client's reader task does exactly that; an exception there would end it);
* sent down the bridge's live connection, no stream leaves the device runner stuck: the
  client still answers the dongle's heartbeat, the next read returns what the inverter
  holds, and the connection did not have to be rebuilt.

Case counts follow the Hypothesis profile: ``ci`` (300, the default) or
``HYPOTHESIS_PROFILE=nightly`` (10,000 per property).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
import pytest_asyncio
from givenergy_modbus.exceptions import ExceptionBase
from givenergy_modbus.framer import HEADER_START_MARKER, ClientFramer
from givenergy_modbus.pdu import (
    BasePDU,
    HeartbeatRequest,
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    TransparentResponse,
    WriteHoldingRegisterRequest,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from givbridge.clock import ScaledClock
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.library import ObservedPlant
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.integration.bridge_helpers import bridge_settings, first_snapshot, start, stop
from tests.integration.sim_helpers import UncheckedWrite
from tests.reliability.invariants import CrashWatch
from tests.reliability.rig import ZONE

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(60 + settings().max_examples // 40),  # the nightly profile takes minutes
]

START = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
SEED = 29
#: More than the longest frame the framer waits for (a 300-byte length field plus the header):
#: sent after a fuzzed stream, it completes any partial frame left in the client's buffer.
FLUSH = bytes(310)


def _plant() -> SimulatedPlant:
    return SimulatedPlant.create("hybrid-gen3", batteries=2, clock=ScaledClock(start=START), seed=SEED, tz=ZONE)


def _frames() -> list[bytes]:
    """One of everything a Gen3 hybrid's dongle sends, encoded as on the wire."""
    plant = _plant()
    encoder = SimulatorServer(plant)  # never started: it only encodes answers
    requests = [
        *(ReadHoldingRegistersRequest(base_register=b, register_count=60, device_address=0x11) for b in (0, 60, 240)),
        *(ReadInputRegistersRequest(base_register=b, register_count=60, device_address=0x11) for b in (0, 180)),
        ReadInputRegistersRequest(base_register=60, register_count=60, device_address=0x32),
        ReadInputRegistersRequest(base_register=60, register_count=60, device_address=0x33),
        ReadHoldingRegistersRequest(base_register=600, register_count=60, device_address=0x11),  # an error answer
        WriteHoldingRegisterRequest(116, 80),
        UncheckedWrite(0, 1),  # refused
    ]
    frames = [frame for frame in (encoder.response_to(request) for request in requests) if frame is not None]
    heartbeat = HeartbeatRequest(data_adapter_serial_number=plant.dongle_serial, data_adapter_type=1).encode()
    return [*frames, heartbeat]


FRAMES = _frames()


@st.composite
def mutated(draw: st.DrawFn, frame: bytes) -> bytes:
    """``frame`` after a few of the things a noisy link does to bytes."""
    data = bytearray(frame)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        match draw(st.sampled_from(["flip", "set", "delete", "insert", "cut", "repeat"])):
            case "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "set":
                data[at] = draw(st.integers(0, 255))
            case "delete":
                del data[at : at + draw(st.integers(1, 8))]
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            case "cut":
                del data[at:]
            case "repeat":
                data[at:at] = data[at : at + draw(st.integers(1, 30))]
    return bytes(data)


def _fake_header(length: int, unit: int, function: int, body: bytes) -> bytes:
    return bytes(HEADER_START_MARKER) + length.to_bytes(2, "big") + bytes([unit, function]) + body


PIECES = st.one_of(
    st.sampled_from(FRAMES),
    st.sampled_from(FRAMES).flatmap(mutated),
    st.sampled_from(FRAMES).flatmap(mutated),
    st.binary(max_size=120),
    st.builds(_fake_header, st.integers(0, 0xFFFF), st.integers(0, 3), st.integers(0, 3), st.binary(max_size=80)),
)


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """A few pieces back to back, split into the chunks a socket read might return."""
    data = b"".join(draw(st.lists(PIECES, min_size=1, max_size=6)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return [chunk for chunk in (data[a:b] for a, b in pairwise([0, *cuts, len(data)])) if chunk]


# --- the framer and the plant model ---------------------------------------------------------------


@given(chunks=streams())
async def test_any_stream_decodes_to_messages_or_framing_errors_the_plant_accepts(chunks: list[bytes]) -> None:
    framer = ClientFramer()
    plant = ObservedPlant()
    for chunk in chunks:
        async for message in framer.decode(chunk):
            assert isinstance(message, BasePDU | ExceptionBase), message
            if isinstance(message, TransparentResponse):
                plant.update(message)  # as the client's reader does with every response


# --- the bridge's live connection -----------------------------------------------------------------


@dataclass
class Link:
    sim: SimulatedPlant
    server: SimulatorServer
    runner: InverterRunner


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def link(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Link]:
    sim = _plant()  # the same device the fuzzed frames came from
    # Real time and minute polls: after the first, only the test's own reads touch the link.
    polling = {"poll_interval": 60, "settings_interval": 600, "timeout": 1.0}
    with CrashWatch() as crashes:
        async with SimulatorServer(sim) as server:
            data_dir: Path = tmp_path_factory.mktemp("bridge")
            runner = InverterRunner(bridge_settings(data_dir, [server.port], polling=polling), 0, clock=sim.clock)
            task = await start(runner)
            try:
                await first_snapshot(runner, within=15)
                yield Link(sim, server, runner)
            finally:
                await stop(task)
    crashes.assert_clean()


@given(chunks=streams())
async def test_any_stream_on_the_bridges_connection_leaves_it_usable(link: Link, chunks: list[bytes]) -> None:
    runner, server = link.runner, link.server
    reconnects = runner.health.reconnects
    [connection] = server.connections
    for chunk in chunks:
        connection.send(chunk)
    # In order on the stream: the client has read everything before it when it answers this.
    connection.heartbeat_answered.clear()
    heartbeat = HeartbeatRequest(data_adapter_serial_number=link.sim.dongle_serial, data_adapter_type=1)
    connection.send(FLUSH + heartbeat.encode())
    await asyncio.wait_for(connection.heartbeat_answered.wait(), 5)
    registers = [20, 110, 116]
    assert await runner.read_holding(registers) == {r: link.sim.holding(r) for r in registers}
    assert runner.health.reconnects == reconnects, "garbage made the bridge rebuild its connection"
