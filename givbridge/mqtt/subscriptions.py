"""The MQTT client's subscriptions and the handler tasks they start, without the connection.

Filters are remembered with their QoS and handlers so the client can send them again after
every (re)connect (a clean session forgets them). Matching a topic against a filter is the
caller's (the client uses paho's matcher, keeping paho in one module).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

log = structlog.stdlib.get_logger(__name__)

Handler = TypeVar("Handler")
Received = TypeVar("Received")


@dataclass(slots=True)
class _Subscription(Generic[Handler]):
    qos: int
    handlers: list[Handler] = field(default_factory=list)


class SubscriptionRegistry(Generic[Handler]):
    """Topic filter -> the highest QoS asked for and the handlers, in the order they subscribed."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, _Subscription[Handler]] = {}

    def __bool__(self) -> bool:
        return bool(self._subscriptions)

    def add(self, topic_filter: str, handler: Handler, qos: int) -> int | None:
        """Remember ``handler``; the QoS to (re)send the filter with, or None when nothing changed.

        Only a change is sent: a repeated SUBSCRIBE makes the broker resend every retained
        message to the handlers already there.
        """
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        sub = self._subscriptions.get(topic_filter)
        send = sub is None or qos > sub.qos
        if sub is None:
            sub = self._subscriptions[topic_filter] = _Subscription(qos)
        sub.qos = max(sub.qos, qos)
        sub.handlers.append(handler)
        return sub.qos if send else None

    def remove(self, topic_filter: str, handler: Handler | None = None) -> bool:
        """Forget ``handler`` (or every handler) for ``topic_filter``; True when none is left to serve."""
        sub = self._subscriptions.get(topic_filter)
        if sub is None:
            return False
        if handler is not None:
            sub.handlers = [h for h in sub.handlers if h != handler]
            if sub.handlers:
                return False
        del self._subscriptions[topic_filter]
        return True

    def filters(self) -> list[tuple[str, int]]:
        """Every filter with its QoS, to subscribe to again after a (re)connect."""
        return [(topic_filter, sub.qos) for topic_filter, sub in self._subscriptions.items()]

    def matching(self, topic: str, matches: Callable[[str, str], bool]) -> Iterator[tuple[str, Handler]]:
        """(filter, handler) for every handler of every filter ``topic`` matches."""
        for topic_filter, sub in list(self._subscriptions.items()):
            if matches(topic_filter, topic):
                for handler in list(sub.handlers):
                    yield topic_filter, handler


class HandlerTasks:
    """Runs the message handlers: a coroutine one returns runs as a task, kept so it can be
    cancelled at shutdown; a failure (sync or async) is logged, never raised into the client."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def deliver(
        self,
        loop: asyncio.AbstractEventLoop,
        handler: Callable[[Received], Awaitable[None] | None],
        message: Received,
        *,
        topic: str,
        topic_filter: str,
    ) -> None:
        """Call ``handler`` with ``message`` (received on ``topic``, matching ``topic_filter``)."""
        try:
            result = handler(message)
            if inspect.isawaitable(result):
                task = loop.create_task(_await(result), name=f"mqtt-handler {topic}")
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._done, topic_filter, handler))
        except Exception:
            log.exception(
                "mqtt message handler failed",
                topic=topic,
                topic_filter=topic_filter,
                handler=callable_name(handler),
            )

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _done(self, topic_filter: str, handler: object, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "mqtt message handler failed",
                topic_filter=topic_filter,
                handler=callable_name(handler),
                exc_info=exc,
            )


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable


def callable_name(fn: object) -> str:
    """A handler or callback as a log line names it."""
    return str(getattr(fn, "__qualname__", None) or repr(fn))
