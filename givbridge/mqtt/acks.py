"""The broker's acknowledgements the MQTT client is waiting for, by message id.

Lives in the event loop only. A future is resolved, never cancelled, when the connection
ends: a cancelled future would surface in the waiting caller as ``CancelledError``,
indistinguishable from its own task being cancelled.
"""

from __future__ import annotations

import asyncio
import functools


class PendingAcks:
    """PUBACKs (a confirmed publish) and SUBACKs (a resubscription) not yet received."""

    def __init__(self) -> None:
        self._pubacks: dict[int, asyncio.Future[bool]] = {}
        self._subacks: dict[int, asyncio.Future[list[bool]]] = {}

    def expect_puback(self, mid: int, future: asyncio.Future[bool]) -> None:
        """Resolve ``future`` with True when the PUBACK of ``mid`` comes; forgotten once done."""
        self._pubacks[mid] = future
        future.add_done_callback(functools.partial(self._forget_puback, mid))

    def _forget_puback(self, mid: int, future: asyncio.Future[bool]) -> None:
        if self._pubacks.get(mid) is future:
            del self._pubacks[mid]

    def expect_suback(self, mid: int, future: asyncio.Future[list[bool]]) -> None:
        """Resolve ``future`` with the per-filter failures when the SUBACK of ``mid`` comes."""
        self._subacks[mid] = future

    def forget_suback(self, mid: int) -> None:
        self._subacks.pop(mid, None)

    def puback(self, mid: int) -> None:
        future = self._pubacks.get(mid)
        if future is not None and not future.done():
            future.set_result(True)

    def suback(self, mid: int, failures: list[bool]) -> None:
        future = self._subacks.get(mid)
        if future is not None and not future.done():
            future.set_result(failures)

    def fail_all(self) -> None:
        """The connection is gone: every wait ends unacknowledged (False, no SUBACK)."""
        for puback in self._pubacks.values():
            if not puback.done():
                puback.set_result(False)
        for suback in self._subacks.values():
            if not suback.done():
                suback.set_result([])
        self._pubacks.clear()
        self._subacks.clear()
