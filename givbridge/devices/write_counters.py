"""How many register writes an inverter has taken, counted as GivTCP counts them and kept on disk.

``Stats/Write_Count`` tracks EEPROM wear. While Real Time Control is on, writes to the
registers GivTCP lists as not wearing the EEPROM count as ``Stats/Safe_Write_Count`` instead.
"""

from __future__ import annotations

import asyncio

from givbridge.plant.registers import RTC_SAFE_REGISTERS
from givbridge.store import JsonStore

_KEYS = ("write_count", "safe_write_count")


class WriteCounters:
    """One inverter's write counts, persisted in ``writes-<serial>`` in the data directory."""

    def __init__(self, store: JsonStore) -> None:
        self.store = store
        self._serial: str | None = None
        self._counts = dict.fromkeys(_KEYS, 0)

    @staticmethod
    def document(serial: str) -> str:
        return f"writes-{serial}"

    @property
    def write_count(self) -> int:
        return self._counts["write_count"]

    @property
    def safe_write_count(self) -> int:
        return self._counts["safe_write_count"]

    async def load(self, serial: str) -> None:
        """Continue the counts last saved for ``serial``."""
        stored = await asyncio.to_thread(self.store.load, self.document(serial))
        self._serial = serial
        self._counts = {key: int(stored.get(key, 0)) for key in _KEYS}

    async def count(self, register: int, *, rtc_on: bool) -> None:
        """Count one write of ``register`` (``rtc_on``: Real Time Control was on) and save the counts."""
        assert self._serial is not None, "loaded when the inverter was identified"
        key = "safe_write_count" if rtc_on and register in RTC_SAFE_REGISTERS else "write_count"
        self._counts[key] += 1
        await asyncio.to_thread(self.store.save, self.document(self._serial), dict(self._counts))
