"""Helpers for driving the simulator over real sockets on 127.0.0.1.

``RawLink`` is a bare connection that speaks the dongle protocol without the library
client's retries, pacing or automatic heartbeat replies, for exact assertions about what
the simulator puts on the wire. ``library_client`` gives the givenergy-modbus ``Client``
with pacing turned off so tests stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from givenergy_modbus.client.client import Client
from givenergy_modbus.framer import ClientFramer
from givenergy_modbus.pdu import HeartbeatRequest, TransparentResponse, WriteHoldingRegisterRequest

#: A June Saturday at 11:00 UTC (noon in the inverter's Europe/London time).
MIDSUMMER_NOON = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
#: 01:00 Europe/London in January, dark and inside the factory charge slot (23:30-05:30).
WINTER_NIGHT = datetime(2026, 1, 15, 1, 0, tzinfo=UTC)

#: detect() settings for a simulator: absent meters time out fast, answered banks come back at once.
FAST_DETECT: dict[str, Any] = {"timeout": 1.0, "retries": 1, "probe_timeout": 0.03, "probe_retries": 0}


class UncheckedWrite(WriteHoldingRegisterRequest):  # type: ignore[misc]  # untyped library base
    """A write the library would refuse to encode (its allowlist), as GivTCP sends for HR242+ or a test for HR0."""

    def ensure_valid_state(self) -> None:
        """Skip the client-side allowlist: the simulator under test decides."""


async def library_client(port: int) -> Client:
    client = Client("127.0.0.1", port, connect_timeout=1.0, tx_message_wait=0.0, tx_jitter=0.0)
    await client.connect()
    return client


class RawLink:
    """One TCP connection to the simulator, read frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = ClientFramer()
        self._pending: list[Any] = []
        self.heartbeats_seen = 0
        self.received = b""

    @classmethod
    async def open(cls, port: int) -> RawLink:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _next_message(self) -> Any | None:
        """The next decoded frame (or framing exception); None once the simulator closes or resets."""
        while not self._pending:
            try:
                data = await self.reader.read(4096)
            except ConnectionError:
                return None
            if not data:
                return None
            self.received += data
            self._pending.extend([m async for m in self.framer.decode(data)])
        return self._pending.pop(0)

    async def response(self, wait: float = 1.0) -> Any | None:
        """The next transparent response, skipping (and counting) heartbeats; None if none comes in time."""
        try:
            async with asyncio.timeout(wait):
                while (message := await self._next_message()) is not None:
                    if isinstance(message, HeartbeatRequest):
                        self.heartbeats_seen += 1
                    elif isinstance(message, TransparentResponse):
                        return message
        except TimeoutError:
            pass
        return None

    async def ask(self, pdu: Any, wait: float = 1.0) -> Any | None:
        """Send ``pdu``; its response, or None if nothing answers within ``wait`` seconds."""
        self.writer.write(pdu.encode())
        await self.writer.drain()
        return await self.response(wait)

    async def request(self, pdu: Any) -> Any:
        """Send ``pdu`` and return its response, failing the test if none comes."""
        response = await self.ask(pdu)
        assert response is not None, f"no response to {pdu}"
        return response

    async def closed_by_peer(self, wait: float) -> bool:
        """Read (counting heartbeats) until the simulator closes the connection; False if still open."""
        try:
            async with asyncio.timeout(wait):
                while (message := await self._next_message()) is not None:
                    if isinstance(message, HeartbeatRequest):
                        self.heartbeats_seen += 1
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
