"""The charger's emulated modes at work: the controller that runs a pass and carries out its decision.

Each pass takes the charger's latest snapshot and the *live* inverter snapshot, asks the pure
rules of :mod:`givbridge.evc.rules` what to do, and writes it to the charger through its
runner's one write path (stop first, then the limit, then start). The settings are saved in
the data directory (:data:`STORE_DOCUMENT`) and published with every charger snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from givbridge.clock import Clock
from givbridge.devices.core import DeviceRunner
from givbridge.devices.outcome import Unreachable
from givbridge.evc import registers as reg
from givbridge.evc.rules import (
    STALE_AFTER,
    START,
    STOP,
    ChargerView,
    Decision,
    Memory,
    ModeSettings,
    SiteView,
    decide,
    surplus_amps,
)
from givbridge.log import get_logger
from givbridge.plant.snapshot import Scalar, Snapshot
from givbridge.plant.writes import WritePlan
from givbridge.store import JsonStore

if TYPE_CHECKING:
    pass

log = get_logger(__name__)

STORE_DOCUMENT = "evc-modes"


# --------------------------------------------------------------------------- the controller


class Charger(DeviceRunner, Protocol):
    """What the controller needs of the charger's runner: a device, that can also republish its values."""

    async def republish(self) -> None: ...


@dataclass
class PassRecord:
    """One controller pass, kept for diagnostics and tests."""

    at: float
    decision: Decision
    surplus: float | None
    applied: bool


class ModesController:
    """Runs :func:`decide` every ``interval`` seconds and carries out its decisions through the charger."""

    def __init__(
        self,
        charger: Charger,
        inverters: Sequence[DeviceRunner],
        store: JsonStore,
        clock: Clock,
        *,
        interval: float,
        inverter_serial: str | None = None,
    ) -> None:
        self.charger = charger
        self.inverters = inverters
        self.store = store
        self.clock = clock
        self.interval = interval
        self.inverter_serial = inverter_serial
        self.settings = ModeSettings()
        self.memory = Memory()
        self.history: list[PassRecord] = []
        self._loaded = False
        self._pass_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._warned: str | None = None
        charger.add_extras(self.settings_values)

    def settings_values(self) -> dict[str, Scalar]:
        return self.settings.values()

    async def load(self) -> None:
        """Read the saved settings (once; later calls do nothing)."""
        if not self._loaded:
            stored = await asyncio.to_thread(self.store.load, STORE_DOCUMENT)
            self.settings = ModeSettings.from_document(stored)
            self._loaded = True

    async def update(self, *, act: bool = True, **changes: Any) -> ModeSettings:
        """Change settings, save them (atomically, then read back), publish them, and (``act``) run a pass.

        Raises OSError when the settings could not be saved; nothing changes then.
        """
        await self.load()
        settings = replace(self.settings, **changes)
        await asyncio.to_thread(self.store.save, STORE_DOCUMENT, settings.document())
        stored = ModeSettings.from_document(await asyncio.to_thread(self.store.load, STORE_DOCUMENT))
        if stored != settings:
            raise OSError(f"the data directory kept {stored.document()} instead")
        self.settings = settings
        log.info("charger mode settings changed", **settings.document())
        await self.charger.republish()
        if act:
            with contextlib.suppress(Unreachable):
                await self.step()
        return settings

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ev charger modes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        await self.load()
        while True:
            await self.clock.sleep(self.interval)
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Unreachable as exc:
                log.warning("charger mode pass could not reach the charger", error=str(exc))
            except Exception:
                log.exception("charger mode pass failed")

    def site(self) -> SiteView | None:
        """The live inverter's values, or None when there are none fresh enough to act on."""
        inverter = self._inverter()
        snapshot = inverter.snapshot if inverter is not None else None
        if snapshot is None or self._age(snapshot) > self._stale_after():
            return None
        return SiteView.from_snapshot(snapshot)

    def _age(self, snapshot: Snapshot) -> float:
        return (self.clock.now() - snapshot.taken_at).total_seconds()

    def _stale_after(self) -> float:
        return max(STALE_AFTER, 3 * self.interval)

    def _inverter(self) -> DeviceRunner | None:
        for inverter in self.inverters:
            if self.inverter_serial is None or inverter.serial == self.inverter_serial:
                return inverter
        return None

    async def step(self) -> Decision:
        """One pass now: decide from the latest snapshots and carry the decision out."""
        await self.load()
        async with self._pass_lock:
            snapshot = self.charger.snapshot
            if snapshot is None:
                return Decision(reason="the charger has not been read yet")
            if self._age(snapshot) > self._stale_after():
                return Decision(reason="the charger's values are stale: nothing changed")
            view = ChargerView.from_snapshot(snapshot)
            site = self.site()
            decision = decide(self.settings, view, site, self.memory, self.clock.monotonic())
            surplus = surplus_amps(view, site) if site is not None else None
            if decision.reason != self._warned and "no live inverter values" in decision.reason:
                log.warning("charger modes need the inverter's live values", mode=self.settings.charging_mode)
            self._warned = decision.reason
            applied = False
            if decision.acts:
                log.info(
                    "charger mode decision",
                    limit=decision.limit,
                    control=decision.control,
                    reason=decision.reason,
                )
                applied = await self._carry_out(decision)
            self.history.append(PassRecord(self.clock.monotonic(), decision, surplus, applied))
            del self.history[:-500]
            return decision

    async def _carry_out(self, decision: Decision) -> bool:
        """Stop first (so a lowered limit never outlives a stop), then the limit, then start."""
        plans: list[WritePlan] = []
        if decision.control == STOP:
            plans.append(reg.charge_control_plan(STOP))
        if decision.limit is not None:
            plans.append(reg.current_limit_plan(decision.limit))
        if decision.control == START:
            plans.append(reg.charge_control_plan(START))
        for plan in plans:
            try:
                outcome = (await self.charger.apply(plan)).outcome
            except PermissionError:
                log.warning("charger modes cannot act: givbridge is read-only")
                return False
            if not outcome.ok:
                log.warning("the charger did not take a mode decision", plan=plan.description, status=outcome.status)
                return False
        return True
