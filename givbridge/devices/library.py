"""What givbridge adds to givenergy-modbus, in one place.

* :class:`ObservedPlant`: the library's Plant, also noting refused writes and its verdict on every
  read answer, so the runner's own reads judge a bank exactly as a poll does, and the answers
  still owed to requests that timed out;
* :func:`quiet_library_orphans`: a loop exception handler that quietens a known leak of the
  library's (a future failed on a dropped connection that nobody retrieves);
* :func:`detect_remembered`: the library's detection, hinted with the layout found last time;
* :func:`battery_unchanged_seconds`: how long the packs' data has not changed, from the library's stamps;
* :func:`default_client`: the library client as the runner builds it.

How the runner sends its requests through the library's client is :mod:`givbridge.devices.sending`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog
from givenergy_modbus.client.client import Client
from givenergy_modbus.exceptions import (
    ConnectionLost,
    PlantTopologyMismatch,
)
from givenergy_modbus.model.plant import Plant, PlantCapabilities
from givenergy_modbus.model.register import HR, IR
from givenergy_modbus.pdu import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteHoldingRegisterResponse,
)
from pydantic import Field, PrivateAttr

from givbridge.config import PollingSettings
from givbridge.log import get_logger
from givbridge.store import JsonStore

log = get_logger(__name__)


class ReadVerdict(StrEnum):
    """How a register read answered the runner may be used (see :meth:`ObservedPlant.verdict`)."""

    CLEAN = "clean"  # the library committed it, as a poll would
    REFUSED = "refused"  # the library refused it: a dropout, a splice, an incoherent or corrupt bank
    # A bank too short for the library to judge (under 60 registers), read all zero where it held
    # data: believable only if reading it again agrees.
    UNCONFIRMED_ZERO = "unconfirmed_zero"


@dataclass(slots=True)
class _Owed:
    """The answer still owed to a request that timed out (see :meth:`ObservedPlant.owed`)."""

    future: asyncio.Future[Any]
    sent_at: float
    until: float


class ObservedPlant(Plant):  # type: ignore[misc]  # untyped library base
    """The library's Plant, also noting error responses to writes and the banks it refuses.

    The library's request path retries an error response and finally reports a timeout, so
    on its own a refused write looks like a silent inverter. Noting the error frames as they
    are decoded lets the runner tell "the inverter refused HR(x)" from "no answer".

    The library refuses, without saying so to the caller, the pages a dongle serves in place
    of data: a full bank of zeros over a bank that held data, its known substituted page, a
    spliced or incoherent bank. Its verdict on every read answer is noted here (whether it
    committed the bank), so the runner's own reads judge exactly as the poll path does, and
    ``dropouts`` counts the dropout pages for ``Stats/Dropout_Banks_Rejected``. CRC-failed
    frames never reach a caller: the library drops them and the request times out and retries.
    """

    _refused: dict[int, int] = PrivateAttr(default_factory=dict)
    _verdicts: dict[tuple[int, str, int, int], tuple[Any, ReadVerdict]] = PrivateAttr(default_factory=dict)
    _timing_from: float | None = PrivateAttr(default=None)
    _first_answer_after: float | None = PrivateAttr(default=None)
    #: Monotonic time of the last answer of each shape (the library's ``shape_hash``), corrupt ones included.
    _answered_at: dict[int, float] = PrivateAttr(default_factory=dict)
    #: Requests that timed out but may still be answered, by shape.
    _owed: dict[int, _Owed] = PrivateAttr(default_factory=dict)
    #: When the latest request whose answer came was sent.
    _answered_sent_at: float = PrivateAttr(default=-math.inf)
    dropouts: int = Field(default=0, exclude=True)

    def time_first_answer(self) -> None:
        """Start timing: :attr:`first_answer_after` becomes the seconds until the next read answer."""
        self._timing_from = asyncio.get_running_loop().time()
        self._first_answer_after = None

    @property
    def first_answer_after(self) -> float | None:
        """Seconds from :meth:`time_first_answer` to the first read answer since (None: none yet)."""
        return self._first_answer_after

    def note_answered(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` was answered (see :meth:`owed`)."""
        self._answered_sent_at = max(self._answered_sent_at, sent_at)

    def note_unanswered(
        self, responses: dict[int, asyncio.Future[Any]], shape: int, sent_at: float, patience: float
    ) -> None:
        """A request of ``shape`` sent at ``sent_at`` timed out; its answer may still come, for ``patience`` s.

        ``responses``: the client's futures by shape, which its reader resolves with each answer.
        The library cancels a request's future when it times out, so its late answer would be
        taken by the next request of the same shape; a future of our own stands in for it
        until it comes (:meth:`owed`). Nothing is owed when the request was answered after all
        (a frame that failed its CRC), or when another request of that shape is waiting.
        """
        current = responses.get(shape)
        if (current is not None and not current.done()) or self._answered_at.get(shape, -math.inf) >= sent_at:
            return
        stand_in: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        responses[shape] = stand_in
        self._owed[shape] = _Owed(stand_in, sent_at, time.monotonic() + patience)

    def owed(self, shape: int, current: asyncio.Future[Any] | None) -> tuple[asyncio.Future[Any], float] | None:
        """The still-awaited answer of an earlier request of ``shape``, and until when it may come; or None.

        ``current``: the future the client holds for that shape now. A dongle answers in the
        order it was asked, so an owed answer is settled when it came (or a corrupt frame of
        its shape did), when a request sent after it was answered (it will not come), when the
        connection it was asked on is gone (the client holds another future, or none), or when
        its patience ran out.
        """
        owed = self._owed.get(shape)
        if owed is None:
            return None
        if (
            owed.future is not current
            or owed.future.done()
            or self._answered_at.get(shape, -math.inf) >= owed.sent_at
            or self._answered_sent_at > owed.sent_at
            or time.monotonic() >= owed.until
        ):
            del self._owed[shape]
            return None
        return owed.future, owed.until

    def update(self, pdu: Any, *, received_at: datetime | None = None) -> None:
        self._answered_at[pdu.shape_hash()] = time.monotonic()
        if isinstance(pdu, WriteHoldingRegisterResponse) and pdu.error:
            self._refused[pdu.register] = self._refused.get(pdu.register, 0) + 1
        key = _bank_key(pdu)
        if key is None:
            super().update(pdu, received_at=received_at)
            return
        if self._timing_from is not None and self._first_answer_after is None:
            self._first_answer_after = asyncio.get_running_loop().time() - self._timing_from
        stamped = self.register_block_updated_at.get(key)
        zero_over_data = self._zero_over_data(pdu)
        super().update(pdu, received_at=received_at)
        restamped = self.register_block_updated_at.get(key)
        if restamped is None or restamped is stamped:  # the library committed nothing
            verdict = ReadVerdict.REFUSED
            if zero_over_data or (isinstance(pdu, ReadInputRegistersResponse) and pdu.is_suspicious()):
                self.dropouts += 1
        elif zero_over_data:  # committed only because it is too short for the library to judge
            verdict = ReadVerdict.UNCONFIRMED_ZERO
        else:
            verdict = ReadVerdict.CLEAN
        self._verdicts[key] = (pdu, verdict)

    def _zero_over_data(self, pdu: Any) -> bool:
        """An answer of all zeros for registers the cache holds data in (the library's Pattern B, any size)."""
        values: dict[int, int] = pdu.to_dict()
        if not values or any(values.values()):
            return False
        kind = HR if isinstance(pdu, ReadHoldingRegistersResponse) else IR
        cache = self.register_caches.get(pdu.device_address, {})
        return any(cache.get(kind(register)) for register in values)

    def verdict(self, pdu: Any) -> ReadVerdict:
        """What the library made of the read answer ``pdu`` (REFUSED for one it never saw)."""
        key = _bank_key(pdu)
        noted = self._verdicts.get(key) if key is not None else None
        if noted is None or noted[0] is not pdu:
            return ReadVerdict.REFUSED
        return noted[1]

    def take_refusal(self, register: int) -> bool:
        return self._refused.pop(register, 0) > 0


def _bank_key(pdu: Any) -> tuple[int, str, int, int] | None:
    """The library's key for the bank a read answer carries (as in ``register_block_updated_at``)."""
    if isinstance(pdu, ReadHoldingRegistersResponse):
        kind = "HR"
    elif isinstance(pdu, ReadInputRegistersResponse):
        kind = "IR"
    else:
        return None
    if pdu.error or getattr(pdu, "crc_failed", False):
        return None
    return (pdu.device_address, kind, pdu.base_register, pdu.register_count)


def is_library_orphan(context: Mapping[str, Any]) -> bool:
    """An event-loop error report that is a known givenergy-modbus 2.13 leak, not a fault.

    When the dongle drops the connection while a request is still queued for sending, the
    library's ``_abort_connection`` fails both of that request's futures with ConnectionLost;
    the sender gets it from one and then ``cancel()``s the other, which is already done, so
    nobody retrieves its exception and asyncio reports it when the future is collected.
    """
    return context.get("message") == "Future exception was never retrieved" and isinstance(
        context.get("exception"), ConnectionLost
    )


def quiet_library_orphans(loop: asyncio.AbstractEventLoop) -> None:
    """Log :func:`is_library_orphan` reports at debug level instead of as errors with a traceback.

    Without this, every dropped dongle connection ends in an ERROR "Future exception was never
    retrieved" with a ConnectionLost traceback, though the runner already counted the drop and
    reconnects. Every other report still goes to the loop's previous handler. Idempotent.
    """
    previous = loop.get_exception_handler()
    if not isinstance(previous, _OrphanFilter):
        loop.set_exception_handler(_OrphanFilter(previous))


@dataclass(frozen=True, slots=True)
class _OrphanFilter:
    """The loop exception handler :func:`quiet_library_orphans` installs in front of ``previous``."""

    previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_library_orphan(context):
            log.debug("unanswered request of a dropped connection", error=str(context["exception"]))
        elif self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def default_client(host: str, port: int, plant: Plant, request_gap: float) -> Client:
    # The library's jitter on top of the gap spreads bursts; it scales with the gap so a
    # small gap (a local simulator) is not dominated by it.
    return Client(
        host, port, connect_timeout=5.0, plant=plant, tx_message_wait=request_gap, tx_jitter=request_gap * 0.4
    )


#: Probe patience, in round trips of the connection: a battery or meter sits behind the same
#: dongle and on the same inverter bus as the request that was timed, so when present it answers
#: in about that round trip; two absorb a round trip that doubles from one request to the next
#: (a dongle's latency wanders with its Wi-Fi), while an absent address still costs only two
#: round trips per attempt, never more than a request to a device known to be there.
PROBE_ROUND_TRIPS = 2.0


def probe_patience(polling: PollingSettings, round_trip: float | None) -> float:
    """How long a detect waits for a device that may not exist, given the link's ``round_trip``.

    The configured ``probe_timeout`` at least; :data:`PROBE_ROUND_TRIPS` round trips on a slower
    link, but never longer than ``timeout``, the wait for a device known to be there.
    """
    if round_trip is None:
        return polling.probe_timeout
    return max(polling.probe_timeout, min(polling.timeout, PROBE_ROUND_TRIPS * round_trip))


async def detect_remembered(
    client: Client,
    plant: ObservedPlant,
    prior: PlantCapabilities | None,
    store: JsonStore,
    document: str,
    polling: PollingSettings,
    *,
    log: structlog.stdlib.BoundLogger,
) -> PlantCapabilities:
    """The device's layout: a fast check of ``prior`` (else the one in ``document``), else a full probe.

    A full detect probes every possible battery and meter address, most of which stay silent
    until the probe times out; remembering what was found turns later detects into a quick
    confirmation. What is found is saved in ``document`` for the next start, with the round trip
    of the connection's first answer (``plant`` times it).

    The check of a remembered layout waits for each device as long as the link needs
    (:func:`probe_patience`), from the round trip remembered with it: on a dongle slower than
    ``probe_timeout`` a present pack would otherwise miss its probe and the whole sweep would
    run. A check that still comes up short on a link this connection measured slower than its
    patience allowed for (its first answer took longer than the check waited) is repeated once
    with patience from that measurement before the layout is believed changed.
    """
    remembered = await asyncio.to_thread(store.load, document)
    if prior is None:
        stored = remembered.get("capabilities")
        if isinstance(stored, dict):
            try:
                prior = PlantCapabilities.from_dict(stored)
            except Exception as exc:  # a stale or hand-edited file: detect afresh
                log.info("ignoring the remembered device layout", error=str(exc))
    stored_round_trip = remembered.get("round_trip")
    round_trip = float(stored_round_trip) if isinstance(stored_round_trip, int | float) else None

    async def detect(hint: PlantCapabilities | None, patience: float) -> PlantCapabilities:
        caps: PlantCapabilities = await client.detect(
            prior=hint, timeout=polling.timeout, retries=polling.retries + 2, probe_timeout=patience
        )
        return caps

    plant.time_first_answer()
    caps: PlantCapabilities
    if prior is None:
        caps = await detect(None, polling.probe_timeout)
    else:
        patience = probe_patience(polling, round_trip)
        try:
            caps = await detect(prior, patience)
        except PlantTopologyMismatch:
            # Believed unless the link itself proved slower than the patience the check had.
            slower = (plant.first_answer_after or 0.0) > patience
            recheck = probe_patience(polling, plant.first_answer_after) if slower else None
            caps = await _detect_again(detect, prior, recheck, polling.probe_timeout, log=log)
    measured_round_trip = plant.first_answer_after
    saved: dict[str, Any] = {"capabilities": caps.to_dict()}
    if measured_round_trip is not None:
        saved["round_trip"] = round(measured_round_trip, 3)
    await asyncio.to_thread(store.save, document, saved)
    return caps


async def _detect_again(
    detect: Callable[[PlantCapabilities | None, float], Awaitable[PlantCapabilities]],
    prior: PlantCapabilities,
    recheck: float | None,
    fresh_patience: float,
    *,
    log: structlog.stdlib.BoundLogger,
) -> PlantCapabilities:
    """After the check of ``prior`` failed: once more with ``recheck`` patience if given, else afresh.

    A fresh detect probes every address with ``fresh_patience`` (the configured one, as on a first start).
    """
    if recheck is not None:
        log.info("the remembered layout was checked too impatiently; checking again", patience=recheck)
        try:
            return await detect(prior, recheck)
        except PlantTopologyMismatch:
            pass
    log.info("device layout changed since it was last seen; detecting afresh")
    return await detect(None, fresh_patience)


def battery_unchanged_seconds(plant: Plant, capabilities: PlantCapabilities) -> float | None:
    """How long the LV packs' data has read byte-identical (the longest of them), in seconds.

    A frozen BMS cache reads the same for hours, but so can a healthy idle pack between the
    dongle's refreshes: this is a number to watch, not a verdict (the library makes none either).
    Measured on the library's own clock, which stamped the banks.
    """
    ages = [plant.content_unchanged_seconds(address, "IR", 60, 60) for address in capabilities.lv_battery_addresses]
    known = [age for age in ages if age is not None]
    return float(round(max(known))) if known else None
