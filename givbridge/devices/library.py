"""What givbridge adds to givenergy-modbus, in one place.

* :class:`ObservedPlant`: the library's Plant, also noting refused writes and its verdict on every
  read answer, so the runner's own reads judge a bank exactly as a poll does;
* :func:`quiet_library_orphans`: a loop exception handler that quietens a known leak of the
  library's (a future failed on a dropped connection that nobody retrieves);
* :func:`read_bank`: a holding-register bank read until the library would believe it;
* :func:`detect_remembered`: the library's detection, hinted with the layout found last time;
* :func:`battery_unchanged_seconds`: how long the packs' data has not changed, from the library's stamps;
* :func:`default_client`: the library client as the runner builds it;
* :func:`poll_requests`: the requests the library's ``load_config`` / ``refresh`` would send;
* :func:`send_in_turn`: a poll's requests pipelined as the library would send them, with room
  between any two of them for a write to go first.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteHoldingRegisterResponse,
)
from pydantic import Field, PrivateAttr

from givbridge.config import PollingSettings
from givbridge.devices.outcome import UncleanRead, Unreachable
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


#: Seconds before a request that timed out is sent again (the library's own default: a retry
#: fired at once tends to land in the same silent window of the dongle).
RETRY_DELAY = 0.5


def late_patience(polling: PollingSettings) -> float:
    """How long after a request timed out its answer may still come, and hold back another request of its shape.

    Two more timeouts: an answer up to three times as late as the timeout is still recognised
    as late, however the retries fall. Only a dongle that answers nothing at all (a silence, an
    outage) waits this long before a retry, and then a retry is better sent later than sooner
    (silent windows last seconds); otherwise the answers of the requests sent after it settle
    the wait as soon as they come.
    """
    return 2 * polling.timeout


async def settle_late_answer(client: Client, plant: ObservedPlant, shape: int) -> None:
    """Wait for the late answer still owed to an earlier request of ``shape``, until it comes or may no longer.

    The library matches an answer to a request by its shape alone (a bank, a register): the
    late answer of a request that timed out would otherwise be taken for the answer of the
    next request of the same shape, be it a poll's retry (making a dongle slower than the
    timeout look healthy) or a write's read-back (judging a write by a read sent before it).
    """
    owed = plant.owed(shape, client.expected_responses.get(shape))
    if owed is not None:
        future, until = owed
        await asyncio.wait({future}, timeout=max(0.0, until - time.monotonic()))


async def ask(client: Client, plant: ObservedPlant, request: Any, polling: PollingSettings) -> Any:
    """Send ``request`` and return its answer: how the runner sends each read and write of its own.

    A timeout is retried ``polling.retries`` times after :data:`RETRY_DELAY` (counted in the
    library's ``record_retry``), as the library would, and every attempt first lets the late
    answer of an earlier request of the same shape come (:func:`settle_late_answer`), so that
    it is never taken for this one's. An error
    response is retried the same way; the last attempt's timeout is raised.
    """
    shape = request.expected_response().shape_hash()
    tries = 0
    while True:
        await settle_late_answer(client, plant, shape)
        sent_at = time.monotonic()
        try:
            response = await client.send_request_and_await_response(
                request, timeout=polling.timeout, retries=0, retry_delay=0, warn_timeout=tries >= polling.retries
            )
        except TimeoutError:
            plant.note_unanswered(client.expected_responses, shape, sent_at, late_patience(polling))
            if tries >= polling.retries:
                raise
        else:
            plant.note_answered(sent_at)
            return response
        tries += 1
        plant.record_retry(request.device_address)
        await asyncio.sleep(RETRY_DELAY)


# A read answered with a bank the poll path would not believe is read again this many times
# more than ``polling.retries`` (such an answer costs a round trip, not a timeout).
UNCLEAN_READ_RETRIES = 2
# A bank too short for the library's dropout judgement, read all zero where it held data, is
# believed only when this many answers in a row agree.
ZERO_CONFIRMATIONS = 3


async def read_bank(
    client: Client, plant: ObservedPlant, request: ReadHoldingRegistersRequest, polling: PollingSettings
) -> dict[int, int]:
    """The bank ``request`` reads, as the poll path would believe it, read again while it is not.

    An answer the library refuses is read again, up to ``polling.retries`` + :data:`UNCLEAN_READ_RETRIES`
    times (each attempt itself retries a silence or a bad CRC as a poll does). A short bank read
    all zero over data is believed only when :data:`ZERO_CONFIRMATIONS` answers in a row agree.
    Raises :class:`~givbridge.devices.outcome.UncleanRead` (saying what the last answer was) when
    no answer could be believed, :class:`~givbridge.devices.outcome.Unreachable` for an answer
    that is not a read of holding registers.
    """
    zeros = 0
    verdict = ReadVerdict.REFUSED
    for _ in range(polling.retries + UNCLEAN_READ_RETRIES + 1):
        response = await ask(client, plant, request, polling)
        if not isinstance(response, ReadHoldingRegistersResponse):
            bank = f"HR({request.base_register},{request.register_count})"
            raise Unreachable(f"unexpected answer to a read of {bank}: {response}")
        values: dict[int, int] = response.to_dict()
        verdict = plant.verdict(response)
        if verdict is ReadVerdict.REFUSED:
            zeros = 0
            continue
        if verdict is ReadVerdict.UNCONFIRMED_ZERO or (zeros and not any(values.values())):
            zeros += 1
            if zeros < ZERO_CONFIRMATIONS:
                continue
        return values
    last = "a dropout or corrupt bank" if verdict is ReadVerdict.REFUSED else "unconfirmed zeros"
    raise UncleanRead(f"data that cannot be believed (last: {last})")


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


class _RequestCollector:
    """Stands in for a connected :class:`Client` to collect the reads one of its polls would send.

    ``Client.load_config`` and ``Client.refresh`` build their request lists from the plant's
    capabilities (the banks each model has, those detect marked absent) and hand them to
    ``_execute_reads``; running them against this collector yields exactly those lists with
    nothing sent, so the runner polls what the library would, in its order.
    """

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.requests: list[Any] = []

    async def _execute_reads(self, requests: list[Any], **_: Any) -> None:
        self.requests.extend(requests)


async def poll_requests(plant: Plant) -> tuple[list[Any], list[Any]]:
    """The settings reads of the library's ``load_config`` and the measurement reads of its ``refresh``."""
    settings = _RequestCollector(plant)
    await Client.load_config(settings)
    measurements = _RequestCollector(plant)
    await Client.refresh(measurements)
    return settings.requests, measurements.requests


#: Event-loop steps a request takes from ``send_request_and_await_response`` into the client's queue.
_STEPS_TO_QUEUE = 3


class Withdrawn(Exception):
    """A request taken back before it reached the wire, so that a write could go first."""


@dataclass(slots=True)
class _Attempt:
    index: int
    request: Any
    tries: int = 0
    not_before: float = 0.0
    sent_at: float = 0.0
    task: asyncio.Task[Any] | None = field(default=None, compare=False)

    @property
    def shape(self) -> int:
        shape: int = self.request.expected_response().shape_hash()
        return shape


async def send_in_turn(
    client: Client,
    requests: Sequence[Any],
    polling: PollingSettings,
    *,
    write_waiting: asyncio.Event,
    serve_writes: Callable[[], Awaitable[None]],
    retry_delay: float = RETRY_DELAY,
) -> list[Any]:
    """Send ``requests`` pipelined at the client's pacing; the answers (or exceptions), in order.

    The library's client, given a batch, queues every frame at once and its producer sends them
    ``tx_message_wait`` (+ jitter) apart, so several are in flight together. Here each frame is
    queued as soon as the one before it has been written, so the producer never waits for
    one (the same wire timing) but at most one frame of the poll is ever queued unsent. When
    ``write_waiting`` is set, that frame is taken back (the library skips a queued frame whose
    answer is settled, without spending a gap on it) and ``serve_writes`` runs the waiting
    writes; their frames then leave at the producer's next turn, and the poll resumes with
    the frame it took back. Timeouts are retried here, ``polling.retries`` times after
    ``retry_delay`` as the library would (and counted in its ``record_retry``), so that no
    retry of the poll ever reaches the wire while a write is being served; and, as by
    :func:`ask`, no request is sent while the late answer of an earlier one of its shape may
    still come (the other requests go on meanwhile).

    ConnectionLost ends the batch at once; any other failure of one request is its result.
    """
    plant: ObservedPlant = client.plant
    pending: deque[_Attempt] = deque(_Attempt(i, r) for i, r in enumerate(requests))
    results: list[Any] = [None] * len(requests)
    in_flight: list[_Attempt] = []

    def harvest() -> None:
        for attempt in [a for a in in_flight if a.task is not None and a.task.done()]:
            in_flight.remove(attempt)
            task = attempt.task
            assert task is not None
            if task.cancelled():  # replaced by a same-shaped request of someone else: read again
                error: BaseException | None = TimeoutError("request replaced")
            else:
                error = task.exception()
            if isinstance(error, ConnectionLost):
                raise error
            if isinstance(error, Withdrawn):
                pending.appendleft(attempt)
            elif isinstance(error, TimeoutError) and attempt.tries < polling.retries:
                note(attempt)
                attempt.tries += 1
                attempt.not_before = time.monotonic() + retry_delay
                plant.record_retry(attempt.request.device_address)
                pending.append(attempt)
            else:
                if isinstance(error, TimeoutError):
                    note(attempt)
                elif error is None:
                    plant.note_answered(attempt.sent_at)
                results[attempt.index] = error if error is not None else task.result()

    def note(attempt: _Attempt) -> None:
        plant.note_unanswered(client.expected_responses, attempt.shape, attempt.sent_at, late_patience(polling))

    def late(attempt: _Attempt) -> tuple[asyncio.Future[Any], float] | None:
        """The late answer ``attempt`` must let come first (see :func:`settle_late_answer`)."""
        return plant.owed(attempt.shape, client.expected_responses.get(attempt.shape))

    async def first_of(watched: Sequence[asyncio.Future[Any]], *owned: Awaitable[Any], delay: float | None) -> None:
        """Until one of ``watched`` (left running) or ``owned`` (cancelled after) is done, or ``delay`` passed."""
        mine = {asyncio.ensure_future(a) for a in owned}
        if delay is not None:
            mine.add(asyncio.ensure_future(asyncio.sleep(delay)))
        try:
            await asyncio.wait(mine | set(watched), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in mine:
                waiter.cancel()

    try:
        while pending or in_flight:
            harvest()
            if write_waiting.is_set():
                await serve_writes()
                continue
            waits = [(a, late(a)) for a in pending]
            ready = next((a for a, owed in waits if owed is None and a.not_before <= time.monotonic()), None)
            if ready is None:
                if not pending and not in_flight:
                    break
                # Each waiting request may go at its retry time, once its late answer came or may no longer come.
                earliest = min((max(a.not_before, owed[1] if owed else 0.0) for a, owed in waits), default=None)
                await first_of(
                    [*(a.task for a in in_flight if a.task is not None), *(owed[0] for _, owed in waits if owed)],
                    write_waiting.wait(),
                    delay=None if earliest is None else max(0.0, earliest - time.monotonic()),
                )
                continue
            pending.remove(ready)
            ready.sent_at = time.monotonic()
            ready.task = asyncio.ensure_future(
                client.send_request_and_await_response(
                    ready.request,
                    timeout=polling.timeout,
                    retries=0,
                    retry_delay=0,
                    # Warned of (and counted) by the library only when it is the last attempt, as it would.
                    warn_timeout=ready.tries >= polling.retries,
                )
            )
            in_flight.append(ready)
            # Until the producer has written it (the queue's work is all done), or it is over,
            # or a write is waiting. The request reaches the queue a step or two after it starts
            # (the library puts it there from a task of its own): waiting for the queue's work
            # before then would find none and let the whole poll into the queue.
            for _ in range(_STEPS_TO_QUEUE):
                if ready.task.done() or client.tx_queue.qsize() > 0:
                    break
                await asyncio.sleep(0)
            await first_of([ready.task], client.tx_queue.join(), write_waiting.wait(), delay=None)
            if write_waiting.is_set() and not ready.task.done() and client.tx_queue.qsize() > 0:
                _withdraw(client, ready.request)
    finally:
        for attempt in in_flight:
            if attempt.task is not None and not attempt.task.done():
                attempt.task.cancel()
    return results


def _withdraw(client: Client, request: Any) -> None:
    """Settle the queued, unsent ``request`` with :class:`Withdrawn`: the producer skips it."""
    future = client.expected_responses.get(request.expected_response().shape_hash())
    if future is not None and not future.done():
        future.set_exception(Withdrawn())
