"""How commands wait for their device: a bounded queue, an expiry, and an answer at shutdown.

A command that changes a device holds the device's lock (an inverter runner's or the EV
charger's ``command_lock``) from its plan to its read-back, so commands to one device run one
at a time. :class:`CommandQueue` guards the wait for that lock:

* at most ``control.queue_limit`` commands wait for one device; one more is answered ``busy``
  at once and nothing of it is written (a flood is refused, not carried out minutes late);
* a command that has not got its device within ``control.command_expiry`` seconds (on the
  bridge's clock) is answered ``expired`` and gives up its place, so it is never written later;
* :meth:`CommandQueue.close` (at shutdown) answers every waiting command ``cancelled`` with
  nothing written, lets the commands already running finish within a grace, and cuts off the
  rest with a ``cancelled`` answer that says they may have been partly applied.

Timed actions' reverts take the same locks directly: they are not commands, so they are
never counted, refused or expired here, and a full queue cannot hold a revert back for more
than the commands already admitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from givbridge.clock import Clock
from givbridge.commands.results import CommandFailed, ErrorCode
from givbridge.config import ControlSettings
from givbridge.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")

#: Seconds a caller answered ``busy`` is told to wait before trying again.
RETRY_AFTER = 5
#: Real seconds :meth:`CommandQueue.close` waits for cut-off commands to hand back their answers.
ANSWER_BOUND = 0.2


class CommandQueue:
    """Admission of commands to their devices; see the module docstring."""

    def __init__(self, settings: ControlSettings, clock: Clock) -> None:
        self.limit = settings.queue_limit
        self.expiry = settings.command_expiry
        self._clock = clock
        self._waiting: dict[asyncio.Lock, int] = {}  # commands waiting for each device's lock
        self._closing = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()  # every command being carried out
        self._answering = 0  # run() calls that have not returned yet
        self._answered = asyncio.Event()  # set whenever _answering drops to zero

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def waiting(self, lock: asyncio.Lock) -> int:
        """Commands waiting for ``lock`` now (the one holding it is not counted)."""
        return self._waiting.get(lock, 0)

    async def run(self, command: Coroutine[Any, Any, T]) -> T:
        """Carry out ``command`` (a command's steps after validation) so :meth:`close` can answer it.

        Raises ``cancelled`` once givbridge is stopping, without running it.
        """
        if self.closing:
            command.close()
            raise _stopping()
        task = asyncio.ensure_future(command)
        self._running.add(task)
        self._answering += 1
        self._answered.clear()
        try:
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:  # the caller went away: so does the command
                task.cancel()
                raise
            if task.cancelled():  # cut off by close()
                raise CommandFailed(
                    ErrorCode.CANCELLED,
                    "givbridge stopped while this command was being carried out; a change it makes may have "
                    "been partly applied (read the device's state to see what it holds)",
                    {"started": True},
                )
            return task.result()
        finally:
            self._running.discard(task)
            self._answering -= 1
            if self._answering == 0:
                self._answered.set()  # the caller answers before close() resumes: no await is left

    @asynccontextmanager
    async def turn(self, lock: asyncio.Lock, device: str) -> AsyncIterator[None]:
        """Hold ``lock`` (the device's) for the block, after a bounded, expiring wait for it."""
        if self.closing:
            raise _stopping()
        waiting = self._waiting.get(lock, 0)
        # While the device is free, one of those counted is about to take it rather than wait
        # (its turn has not run yet): it is not one of the queue_limit waiting.
        if waiting >= self.limit + (0 if lock.locked() else 1):
            raise CommandFailed(
                ErrorCode.BUSY,
                f"{waiting} commands are already waiting for {device} (control.queue_limit); nothing was written. "
                f"Try again in {RETRY_AFTER} s",
                {"retry_after": RETRY_AFTER},
            )
        self._waiting[lock] = waiting + 1
        try:
            await self._acquire(lock, device, expires=self._clock.monotonic() + self.expiry)
        finally:
            self._waiting[lock] -= 1
            if not self._waiting[lock]:
                del self._waiting[lock]
        try:
            yield
        finally:
            lock.release()

    async def close(self, grace: float) -> None:
        """Answer every command: waiting ones at once, running ones after at most ``grace`` seconds.

        Returns once every command's answer has been handed back to its caller (who publishes it
        in the same step), or, should a command ignore its cancellation, after a short bound.
        """
        self._closing.set()  # waiting commands wake up and answer cancelled
        running = set(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("cut off commands still running at shutdown", commands=len(late), grace=grace)
        if self._answering:
            try:
                async with asyncio.timeout(ANSWER_BOUND):
                    await self._answered.wait()
            except TimeoutError:
                log.error("commands left unanswered at shutdown", commands=self._answering)

    async def _acquire(self, lock: asyncio.Lock, device: str, *, expires: float) -> None:
        """Take ``lock``, unless the clock reaches ``expires`` or shutdown comes first: then raise, not holding it."""
        # Even a lock that looks free may have a waiter about to take it (woken, not yet running):
        # asyncio.Lock is fair, so this may still wait, and always under the expiry.
        acquiring = asyncio.ensure_future(lock.acquire())
        expiry = asyncio.ensure_future(self._until(expires))
        stopping = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({acquiring, expiry, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            _give_up(lock, acquiring)
            raise
        finally:
            expiry.cancel()
            stopping.cancel()
        if self.closing:
            _give_up(lock, acquiring)
            raise _stopping()
        if acquiring.done():
            return  # its turn came in time: it starts now, however long it then takes
        _give_up(lock, acquiring)
        log.warning("command expired waiting for its device", device=device, seconds=self.expiry)
        raise CommandFailed(
            ErrorCode.EXPIRED,
            f"{device} was busy or not answering for {self.expiry:g} s (control.command_expiry), so this command "
            "could not start; it was not written and never will be",
        )

    async def _until(self, moment: float) -> None:
        """Until the clock's monotonic time reaches ``moment`` (fixed on arrival, not when this starts)."""
        await self._clock.sleep(moment - self._clock.monotonic())


def _give_up(lock: asyncio.Lock, acquiring: asyncio.Future[Any]) -> None:
    """Leave the wait for ``lock``: hand back the lock if it was already ours, else stop waiting."""
    if not acquiring.done():
        acquiring.cancel()  # asyncio.Lock then wakes the next waiter if the turn had reached this one
    elif not acquiring.cancelled() and acquiring.exception() is None:
        lock.release()


def _stopping() -> CommandFailed:
    return CommandFailed(
        ErrorCode.CANCELLED,
        "givbridge is stopping; this command was not carried out and nothing was written",
        {"started": False},
    )
