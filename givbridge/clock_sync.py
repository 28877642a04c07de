"""Automatic inverter clock sync (``clock.auto_sync``).

Timed slots run on the inverter's clock, which drifts and knows nothing of DST (GivTCP
#108, #378; GivEnergy's own portal is what usually sets it). With ``auto_sync`` on, a
device whose ``Stats/Clock_Skew`` stays beyond ``sync_threshold`` gets the ``syncDateTime``
command: the same planner, write, read-back and clock check as when a user sends it, so the
bridge's clock in the configured time zone (DST included) is written and confirmed.

The skew must last for one settings interval first (the clock registers are read with the
settings, so a second independent read has confirmed it), and each inverter is synced at
most once per ``sync_interval`` hours whatever the outcome, remembered across restarts
(``clock-<serial>`` in the data directory): if something else keeps setting the clock
another way (the GivEnergy portal with another zone), the two do not fight over the
inverter's EEPROM. Every attempt and its result is logged. Read-only mode turns it off.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from givbridge.clock import Clock
from givbridge.commands.executor import CommandExecutor
from givbridge.config import Settings
from givbridge.devices.supervisor import Bridge
from givbridge.log import get_logger
from givbridge.plant.snapshot import Snapshot
from givbridge.store import JsonStore

log = get_logger(__name__)

SYNC_COMMAND = "syncDateTime"
SKEW_PATH = "Stats/Clock_Skew"


class ClockKeeper:
    """Syncs the inverter clocks that have drifted; see the module docstring."""

    def __init__(
        self, bridge: Bridge, commands: CommandExecutor, settings: Settings, *, clock: Clock, store: JsonStore
    ) -> None:
        self.settings = settings.clock
        self.commands = commands
        self.clock = clock
        self.store = store
        self.confirm_after = timedelta(seconds=settings.polling.settings_interval)
        self.interval = timedelta(hours=self.settings.sync_interval)
        self._over_since: dict[str, datetime] = {}  # serial -> first snapshot with the skew beyond the threshold
        self._last_attempt: dict[str, datetime | None] = {}  # serial -> loaded from the data dir on first use
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.enabled = self.settings.auto_sync and not settings.read_only
        if self.settings.auto_sync and settings.read_only:
            log.warning("clock.auto_sync is ignored: givbridge runs read-only")
        if self.enabled:
            for runner in bridge.runners:
                runner.on_snapshot.connect(self.observe)

    async def observe(self, snapshot: Snapshot) -> None:
        """Start a sync if this snapshot shows a lasting skew and none is due to wait."""
        serial = snapshot.serial
        skew = snapshot.get(SKEW_PATH)
        if isinstance(skew, bool) or not isinstance(skew, int | float) or abs(skew) <= self.settings.sync_threshold:
            self._over_since.pop(serial, None)
            return
        now = self.clock.now()
        first = self._over_since.setdefault(serial, now)
        if now - first < self.confirm_after or serial in self._tasks:
            return
        last = await self._last(serial)
        if last is not None and timedelta(0) <= now - last < self.interval:
            return
        # The sync waits for this device's job queue, which this listener is called from:
        # run it on its own so the poll that brought the snapshot can finish.
        task = asyncio.create_task(self._sync(serial, float(skew), now), name=f"clock sync {serial}")
        self._tasks[serial] = task
        task.add_done_callback(lambda _: self._tasks.pop(serial, None))

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _sync(self, serial: str, skew: float, now: datetime) -> None:
        self._last_attempt[serial] = now
        try:
            await asyncio.to_thread(self.store.save, _document(serial), {"last_attempt": now.isoformat()})
        except OSError as exc:
            log.warning("could not remember the clock sync", serial=serial, error=str(exc))
        log.warning("inverter clock is off; syncing it", serial=serial, skew_seconds=skew)
        result = await self.commands.execute(SYNC_COMMAND, None, serial=serial)
        if result.ok:
            time = (result.data or {}).get("Invertor_Time")
            log.info("inverter clock synced", serial=serial, skew_seconds=skew, inverter_time=str(time))
        else:
            log.warning(
                "inverter clock sync failed",
                serial=serial,
                skew_seconds=skew,
                error=result.code,
                message=result.error.message if result.error else None,
                retry_after_hours=self.settings.sync_interval,
            )
        self._over_since.pop(serial, None)

    async def _last(self, serial: str) -> datetime | None:
        if serial not in self._last_attempt:
            stored = await asyncio.to_thread(self.store.load, _document(serial))
            raw = stored.get("last_attempt")
            try:
                moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
            except ValueError:
                moment = None
            self._last_attempt[serial] = moment if moment is not None and moment.tzinfo is not None else None
        return self._last_attempt[serial]


def _document(serial: str) -> str:
    return f"clock-{serial}"
