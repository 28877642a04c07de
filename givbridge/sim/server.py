"""The simulated Wi-Fi dongle: GivEnergy's transparent Modbus framing over TCP.

Frames are decoded with the library's ``ServerFramer`` and answered with its PDU classes, so
CRCs, padding and envelopes are exactly what the library (and the real dongle) produce.
Like the real dongle and inverter, requests from every connection go through one queue and
are answered in order: each after the configured latency (time in flight, during which
requests overlap), and no sooner than ``service_time`` after the previous answer (the
inverter handles one request at a time). Absent devices stay
silent, missing banks get error responses (see ``SimulatedPlant.read``), and the dongle
sends a heartbeat every ``heartbeat_interval`` seconds, closing a connection that leaves
three in a row unanswered. Faults for the whole dongle are ``server.faults``; each open
connection (``server.connections``) has its own (see :mod:`givbridge.sim.faults`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any

from givenergy_modbus.exceptions import InvalidPduState
from givenergy_modbus.framer import ServerFramer
from givenergy_modbus.pdu import (
    HeartbeatRequest,
    HeartbeatResponse,
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    ReadMeterProductRegistersRequest,
    WriteHoldingRegister,
    WriteHoldingRegisterRequest,
    WriteHoldingRegisterResponse,
)

from givbridge.sim.faults import Faults, LinkFaults
from givbridge.sim.plant import RegisterKind, SimulatedPlant, Unanswered
from givbridge.sim.writes import WriteOutcome

_logger = logging.getLogger(__name__)

SUCCESS_PADDING = 0x8A
ERROR_PADDING = 0x12
#: The data adapter type every captured dongle puts in its heartbeats.
_ADAPTER_TYPE = 1
#: Consecutive unanswered heartbeats after which the dongle closes the socket.
MAX_MISSED_HEARTBEATS = 3


_READ_KINDS = (ReadHoldingRegistersRequest, ReadInputRegistersRequest, ReadMeterProductRegistersRequest)


def _kind_of(request: Any) -> RegisterKind:
    """Which register file a read request asks for: holding, input, or a meter's product registers."""
    if isinstance(request, ReadHoldingRegistersRequest):
        return "HR"
    if isinstance(request, ReadMeterProductRegistersRequest):
        return "MR"
    return "IR"


class _ModelWriteResponse(WriteHoldingRegisterResponse):  # type: ignore[misc]  # untyped library base
    """A write echo checked against the simulated model, not the library's client allowlist.

    The library warns when it encodes an echo for a register outside its global write
    allowlist, but the simulated firmware accepts whatever its model accepts (GivTCP's
    per-slot targets HR242+3n, for one), so only the structural checks apply here.
    """

    def ensure_valid_state(self) -> None:
        WriteHoldingRegister.ensure_valid_state(self)


RequestKey = tuple[str, int, int, int]


def _key_of(request: Any) -> RequestKey:
    """How :attr:`SimulatorServer.requests` names a request."""
    if isinstance(request, WriteHoldingRegisterRequest):
        return ("W", request.device_address, request.register, 1)
    return (_kind_of(request), request.device_address, request.base_register, request.register_count)


class Connection:
    """One client socket, with the faults that apply to it alone."""

    def __init__(self, writer: asyncio.StreamWriter, number: int, rng: random.Random) -> None:
        self.writer = writer
        #: 1 for the first connection the server accepted, 2 for the next, ...
        self.number = number
        self.faults = LinkFaults(self.close, rng)
        self.heartbeat_answered = asyncio.Event()

    def send(self, frame: bytes) -> None:
        """Put bytes on the wire now (tests use it to send the client anything at all)."""
        if not self.writer.is_closing():
            self.writer.write(frame)

    def close(self) -> None:
        self.writer.close()


class SimulatorServer:
    """Serves one :class:`SimulatedPlant` over TCP the way its Wi-Fi dongle would."""

    def __init__(
        self,
        plant: SimulatedPlant,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        jitter: float = 0.0,
        service_time: float = 0.0,
        heartbeat_interval: float = 180.0,
        heartbeat_timeout: float = 5.0,
        fan_out: bool = False,
        seed: int = 0,
    ) -> None:
        self.plant = plant
        self.host = host
        self.latency = latency
        self.jitter = jitter
        #: Time the inverter itself spends on each request, one request at a time.
        self.service_time = service_time
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        #: Send every response to every connected client, as the HF-A21 does in multi-session mode.
        self.fan_out = fan_out
        self._requested_port = port
        self._rng = random.Random(seed)
        self.faults = Faults(plant, self._drop_connections, self._rng)
        self._server: asyncio.Server | None = None
        self._connections: dict[Connection, None] = {}  # in the order they were accepted
        self._numbers = itertools.count(1)
        self._handlers: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[tuple[Connection, Any, float]] = asyncio.Queue()
        self._request_seen = asyncio.Event()
        self._free_at = 0.0  # loop time when the inverter finished its last request
        self._worker: asyncio.Task[None] | None = None
        #: Every request received, keyed ("HR"|"IR"|"MR", device address, base, count) for reads and
        #: ("W", device address, register, 1) for writes: what the dongle was asked, for tests
        #: and benchmarks that count load on it.
        self.requests: Counter[RequestKey] = Counter()
        #: Every connection the dongle accepted, refused ones included (a refused one is reset at once).
        self.connection_attempts = 0
        self._attempt_seen = asyncio.Event()
        #: The same requests in the order they arrived ("received") and were answered ("answered"):
        #: for tests of what a client sends while its earlier requests are still in flight.
        self.traffic: list[tuple[str, RequestKey]] = []

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not listening; call start() first")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def connections(self) -> tuple[Connection, ...]:
        """The open connections, oldest first; each has its own ``faults``."""
        return tuple(self._connections)

    async def requested(self, match: Callable[[RequestKey], bool], *, after: Counter[RequestKey] | None = None) -> None:
        """Until a request whose key (as in :attr:`requests`) satisfies ``match`` has been received.

        With ``after`` (a copy of :attr:`requests` taken earlier), only requests received since then count.
        """
        baseline = after if after is not None else Counter()
        while not any(match(key) and count > baseline[key] for key, count in self.requests.items()):
            self._request_seen.clear()
            await self._request_seen.wait()

    async def attempted(self, count: int) -> None:
        """Until :attr:`connection_attempts` has reached ``count``."""
        while self.connection_attempts < count:
            self._attempt_seen.clear()
            await self._attempt_seen.wait()

    async def start(self) -> None:
        """Listen; after a stop(), start() listens on the same port again (a dongle coming back)."""
        self._server = await asyncio.start_server(self._handle, self.host, self._requested_port)
        self._requested_port = self.port
        self._worker = asyncio.create_task(self._answer_requests(), name="sim-inverter")
        _logger.info("simulated %s %s listening on %s:%d", self.plant.family, self.plant.serial, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for their handlers to finish."""
        if self._server is not None:
            self._server.close()
        self._drop_connections()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- connections ---------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connection_attempts += 1
        self._attempt_seen.set()
        if self.faults.refuse_connections:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None  # start_server runs every handler in its own task
        self._handlers.add(task)
        connection = Connection(writer, next(self._numbers), self._rng)
        self._connections[connection] = None
        heartbeat = asyncio.create_task(self._heartbeat(connection), name="sim-heartbeat")
        framer = ServerFramer()
        try:
            while data := await reader.read(4096):
                async for message in framer.decode(data):
                    self._receive(connection, message)
        except ConnectionError:
            _logger.debug("client reset the connection")
        finally:
            heartbeat.cancel()
            self._connections.pop(connection, None)
            connection.close()
            self._handlers.discard(task)

    def _receive(self, connection: Connection, message: Any) -> None:
        if isinstance(message, HeartbeatResponse):
            connection.heartbeat_answered.set()
            return
        if isinstance(message, InvalidPduState) and isinstance(message.pdu, WriteHoldingRegisterRequest):
            # The library decodes the write in full but refuses it against its own client-side
            # allowlist; whether the register is writable is the simulated model's call.
            message = message.pdu
        if not isinstance(message, (WriteHoldingRegisterRequest, *_READ_KINDS)):
            _logger.debug("ignoring %s", message)
            return
        key = _key_of(message)
        self.requests[key] += 1
        self.traffic.append(("received", key))
        self._queue.put_nowait((connection, message, asyncio.get_running_loop().time()))
        self._request_seen.set()

    def _drop_connections(self) -> None:
        for connection in list(self._connections):
            connection.close()

    async def _heartbeat(self, connection: Connection) -> None:
        frame = HeartbeatRequest(
            data_adapter_serial_number=self.plant.dongle_serial, data_adapter_type=_ADAPTER_TYPE
        ).encode()
        missed = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            connection.heartbeat_answered.clear()
            connection.send(frame)
            try:
                async with asyncio.timeout(self.heartbeat_timeout):
                    await connection.heartbeat_answered.wait()
                missed = 0
            except TimeoutError:
                missed += 1
                if missed >= MAX_MISSED_HEARTBEATS:
                    _logger.info("closing a connection after %d unanswered heartbeats", missed)
                    connection.close()
                    return

    # -- the inverter --------------------------------------------------------------

    async def _answer_requests(self) -> None:
        """Answer queued requests in order: each after the latency, one service time apart.

        A dongle's latency is mostly transport: requests overlap in flight (a Gen3 dongle
        answers five staggered reads in ~2.1 s at ~1.1 s each, peers.md 4.1), while the
        inverter behind it handles them one at a time, ``service_time`` each.
        """
        loop = asyncio.get_running_loop()
        device = self.faults
        while True:
            connection, request, arrived = await self._queue.get()
            link = connection.faults
            spread = self.jitter + device.extra_jitter + link.extra_jitter
            delay = self.latency + device.extra_latency + link.extra_latency
            delay += self._rng.uniform(0, spread) if spread else 0.0
            answer_at = max(arrived + delay, self._free_at + self.service_time)
            if answer_at > loop.time():
                await asyncio.sleep(answer_at - loop.time())
            self._free_at = loop.time()
            self.traffic.append(("answered", _key_of(request)))
            if device.silent or link.silent:
                continue  # lost on the way: the inverter never sees it
            frame = self.response_to(request)
            if frame is None:
                continue
            # Corrupted by the device, by the link, or both: inverted once (twice would restore it).
            device_corrupts = device.take_crc_corruption()
            frame = device.take_garbage() + frame
            for target in list(self._connections) if self.fan_out else [connection]:
                if target.faults.silent:
                    continue
                link_corrupts = target.faults.take_crc_corruption()
                on_wire = _bad_crc(frame) if device_corrupts or link_corrupts else frame
                target.send(target.faults.take_garbage() + on_wire)

    def response_to(self, request: Any) -> bytes | None:
        """The encoded answer to one request, or None when the inverter stays silent.

        The plant carries a write out as it answers it; tests call this directly for frames
        exactly as the dongle would send them (no socket needed).
        """
        address: int = request.device_address
        response: Any
        if isinstance(request, WriteHoldingRegisterRequest):
            outcome = self.plant.write(address, request.register, request.value)
            if outcome is None:
                return None
            rejected = outcome is WriteOutcome.REJECTED
            response = _ModelWriteResponse(
                register=request.register,
                value=request.value,
                device_address=address,
                error=rejected,
                padding=ERROR_PADDING if rejected else SUCCESS_PADDING,
            )
        else:
            kind = _kind_of(request)
            values = self.plant.read(address, kind, request.base_register, request.register_count)
            if values is Unanswered.SILENT:
                return None
            response = request.expected_response()
            if values is Unanswered.ERROR:
                response.error = True
                response.padding = ERROR_PADDING
                response.register_values = []
            else:
                zeroed = self.faults.take_zeroed(address, kind, request.base_register)
                response.register_values = [0] * len(values) if zeroed else values
                response.padding = SUCCESS_PADDING
        response.data_adapter_serial_number = self.plant.dongle_serial
        # Battery pages too carry the inverter's serial: the inverter answers them from its own
        # cache of the BMS (every LV capture agrees). HV modules would carry their own.
        response.inverter_serial_number = self.plant.serial
        frame: bytes = response.encode()
        return frame


def _bad_crc(frame: bytes) -> bytes:
    """``frame`` with its CRC (the last two bytes) inverted."""
    return frame[:-2] + bytes(b ^ 0xFF for b in frame[-2:])
