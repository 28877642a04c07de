"""An awaitable fan-out of values to async listeners.

A listener that raises is logged and the others still run: one broken consumer (a publisher,
a tracker) must not stop a device's values reaching everyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from givbridge.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class Signal(Generic[T]):
    """An awaitable fan-out of values to async listeners; a failing listener is logged, not fatal."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[[T], Awaitable[None]]] = []

    def connect(self, listener: Callable[[T], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def emit(self, value: T) -> None:
        for listener in list(self._listeners):
            try:
                await listener(value)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("listener failed", signal=self.name, listener=getattr(listener, "__qualname__", None))
