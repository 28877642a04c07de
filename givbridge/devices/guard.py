"""A device's data hygiene (:class:`~givbridge.plant.hygiene.SampleGuard`) with its memory kept on disk."""

from __future__ import annotations

import asyncio

from givbridge.clock import Clock
from givbridge.plant.hygiene import SampleGuard
from givbridge.store import JsonStore, ThrottledSave

# How often the hygiene's counter memory is written to disk (and always on disconnect):
# often enough to survive a crash, rarely enough to spare SD cards.
COUNTER_SAVE_INTERVAL = 60.0


class GuardMemory:
    """A device's :class:`SampleGuard`, with its last good values kept in the data dir.

    Restored when the device is identified and saved at most every
    :data:`COUNTER_SAVE_INTERVAL` (at once when forced, as on a disconnect), so a restart
    cannot publish a spike either. Both kinds of device runner keep one.
    """

    def __init__(self, store: JsonStore, clock: Clock) -> None:
        self.store = store
        self.guard: SampleGuard | None = None
        self._serial: str | None = None
        self._saver = ThrottledSave(store, clock, COUNTER_SAVE_INTERVAL, "the counter history")

    @staticmethod
    def document(serial: str) -> str:
        return f"counters-{serial}"

    async def start(self, serial: str, guard: SampleGuard) -> None:
        """Guard ``serial``'s values with ``guard``, restored from what was last saved for it."""
        guard.restore(await asyncio.to_thread(self.store.load, self.document(serial)))
        self.guard, self._serial = guard, serial
        self._saver.reset()

    async def save(self, *, force: bool = False) -> None:
        if self.guard is None or self._serial is None:
            return
        await self._saver.save(self.document(self._serial), self.guard.state, force=force)
