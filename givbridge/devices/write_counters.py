"""How many register writes an inverter has taken, counted as GivTCP counts them and kept on disk.

``Stats/Write_Count`` tracks EEPROM wear. While Real Time Control is on, writes to the
registers GivTCP lists as not wearing the EEPROM count as ``Stats/Safe_Write_Count`` instead.
"""

from __future__ import annotations

import asyncio

from givbridge.store import JsonStore

# GivTCP's list of registers whose writes do not wear EEPROM while Real Time Control is on;
# writes to them then count as "safe" (Safe_Write_Count) rather than Write_Count.
RTC_SAFE_REGISTERS = frozenset(
    {20, 27, 50, 56, 57, 59, 94, 95, 96, 110, 111, 112, 116, 318, 319, 320}
    | {1002, 1108, 1110, 1111, 1112, 1114, 1118, 1119, 1122, 1123, 1141}
)
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
