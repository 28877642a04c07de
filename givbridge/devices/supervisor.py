"""The supervisor: starts, supervises and stops every inverter runner, and keeps the plant topology."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from givbridge.clock import Clock, SystemClock
from givbridge.config import Settings
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.library import quiet_library_orphans
from givbridge.log import get_logger
from givbridge.plant.snapshot import Scalar, Snapshot
from givbridge.plant.topology import PlantTopology
from givbridge.store import JsonStore
from givbridge.tariffs import Tariffs

log = get_logger(__name__)


TOPOLOGY_DOCUMENT = "topology"


class Bridge:
    """Starts, supervises and stops every device runner.

    It also keeps the :class:`~givbridge.plant.topology.PlantTopology`: which runners'
    inverters are controlled by another runner's Gateway or EMS, learnt from the
    controllers' snapshots before anyone else sees them, and remembered in the data dir.
    """

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.store = JsonStore(settings.data_dir)
        self.runners = [
            InverterRunner(settings, i, clock=self.clock, store=self.store)
            for i, inverter in enumerate(settings.inverters)
            if inverter.enabled
        ]
        self.topology = PlantTopology.from_record(self.store.load(TOPOLOGY_DOCUMENT))
        for runner in self.runners:
            runner.peers = self.runners
            # A pipeline stage before the snapshot is published, so whoever receives it sees the
            # topology it implies (a Gateway's units read-only from its first snapshot on).
            runner.add_enricher(self._learn_topology)
        # What energy costs (tariffs:): each runner's Energy/Rates/* (a later pipeline stage) and the
        # switchRate command's state.
        self.tariffs = Tariffs(settings.tariffs, clock=self.clock, store=self.store) if settings.tariffs else None
        if self.tariffs is not None:
            for runner in self.runners:
                tracker = self.tariffs.track(runner, tz=runner.tz, serial=runner.config.serial)
                runner.add_enricher(tracker.enrich)
        self._tasks: list[asyncio.Task[None]] = []

    async def _learn_topology(self, snapshot: Snapshot) -> Mapping[str, Scalar]:
        """Learn who controls whom from a controller's snapshot; it adds no values."""
        changed = self.topology.observe(snapshot.info)
        serials = [runner.serial for runner in self.runners]
        if all(serials):  # every runner identified: a controller not among them is no longer configured
            changed |= self.topology.retain(serial for serial in serials if serial)
        if not changed:
            return {}
        log.info(
            "plant topology",
            managed={unit: owner.serial for unit, owner in self.topology.owners.items()},
        )
        try:
            await asyncio.to_thread(self.store.save, TOPOLOGY_DOCUMENT, self.topology.record())
        except OSError as exc:
            log.warning("could not remember the plant topology", error=str(exc))
        return {}

    def runner_for(self, serial: str) -> InverterRunner | None:
        for runner in self.runners:
            if runner.serial == serial:
                return runner
        return None

    async def start(self) -> None:
        quiet_library_orphans(asyncio.get_running_loop())
        for runner in self.runners:
            self._tasks.append(asyncio.create_task(runner.run(), name=f"runner {runner.label}"))

    async def stop(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109 (bounded shutdown is the contract)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        self._tasks.clear()
        if self.tariffs is not None:
            await self.tariffs.save_all()
