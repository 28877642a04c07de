"""The configured EV charger as the application sees it: its runner and its modes, started and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from givbridge.clock import Clock
from givbridge.config import Settings
from givbridge.devices.core import DeviceRunner
from givbridge.evc.modes import ModesController
from givbridge.evc.runner import ChargerRunner
from givbridge.store import JsonStore


class EvCharger:
    """``settings.evc``'s charger: :attr:`runner` reads and writes it, :attr:`modes` emulates its modes.

    ``inverters`` are the bridge's inverter runners; the modes act on the live values of the one
    named by ``evc.inverter`` (else the first). Commands to the charger run one at a time
    (:attr:`commands`), like an inverter's.
    """

    def __init__(
        self, settings: Settings, *, clock: Clock, store: JsonStore, inverters: Sequence[DeviceRunner]
    ) -> None:
        assert settings.evc is not None
        self.runner = ChargerRunner(settings, clock=clock, store=store)
        self.modes = ModesController(
            self.runner,
            inverters,
            store,
            clock,
            interval=settings.evc.poll_interval,
            inverter_serial=settings.evc.inverter,
        )
        self.command_lock = asyncio.Lock()  # one command at a time (the executor takes it)
        self._task: asyncio.Task[None] | None = None

    @property
    def serial(self) -> str | None:
        return self.runner.serial

    async def start(self) -> None:
        await self.modes.load()  # the first snapshot already carries the saved settings
        self._task = asyncio.get_running_loop().create_task(self.runner.run(), name="ev charger")
        self.modes.start()

    async def stop(self, timeout: float = 1.0) -> None:  # noqa: ASYNC109 (bounded shutdown is the contract)
        await self.modes.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout)
            self._task = None
