"""How the runner sends its requests through the library's client.

* :func:`ask`: one request and its answer, retried as the library would, never taking the late
  answer of an earlier request of the same shape for its own;
* :func:`read_bank`: a holding-register bank read until the library would believe it;
* :func:`poll_requests`: the requests the library's ``load_config`` / ``refresh`` would send;
* :func:`send_in_turn`: a poll's requests pipelined as the library would send them, with room
  between any two of them for a write to go first.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from givenergy_modbus.client.client import Client
from givenergy_modbus.exceptions import ConnectionLost
from givenergy_modbus.model.plant import Plant
from givenergy_modbus.pdu import ReadHoldingRegistersRequest, ReadHoldingRegistersResponse

from givbridge.config import PollingSettings
from givbridge.devices.library import ObservedPlant, ReadVerdict
from givbridge.devices.outcome import UncleanRead, Unreachable

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
            if attempt.task is None:
                continue
            if not attempt.task.done():
                attempt.task.cancel()
            elif not attempt.task.cancelled():
                # Settled too when a connection lost ends the batch: its failure is that one's.
                attempt.task.exception()
    return results


def _withdraw(client: Client, request: Any) -> None:
    """Settle the queued, unsent ``request`` with :class:`Withdrawn`: the producer skips it."""
    future = client.expected_responses.get(request.expected_response().shape_hash())
    if future is not None and not future.done():
        future.set_exception(Withdrawn())
