"""A cheap, always-on health signal: a small JSON document in the data directory.

The running bridge rewrites ``health.json`` in its data directory every poll interval (atomically,
through :class:`~givbridge.store.JsonStore`, from a worker thread so the event loop never
waits on the disk), and marks it stopped on a clean exit. ``givbridge health`` reads it and
exits 0 only when it is fresh and the bridge is connected to MQTT, so a container
``HEALTHCHECK`` or a monitoring script needs neither the optional HTTP shim nor an open port.
A bridge that hangs stops refreshing the document; one that dies leaves it to go stale.

Inverter availability is in the document for people to read but does not make the bridge
unhealthy: an inverter that is switched off is not fixed by restarting givbridge.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from givbridge import __version__
from givbridge.clock import Clock, SystemClock
from givbridge.log import get_logger
from givbridge.store import JsonStore

if TYPE_CHECKING:
    from givbridge.devices.core import DeviceRunner
    from givbridge.mqtt.client import MqttClient

log = get_logger(__name__)

HEALTH_DOCUMENT = "health"  # <data_dir>/health.json


def default_max_age(interval: float) -> float:
    """How old the document may be: three missed refreshes, plus slack for a slow disk."""
    return 3 * interval + 10


def _device(runner: DeviceRunner) -> dict[str, Any]:
    health = runner.health
    return {
        "host": runner.config.host,
        "port": runner.config.port,
        "serial": runner.serial,
        "connected": health.connected,
        "available": health.available,
        "last_success": health.last_success.isoformat(timespec="seconds") if health.last_success else None,
        "last_error": health.last_error,
    }


class HealthWriter:
    """Keeps ``health.json`` fresh while the application runs."""

    def __init__(
        self,
        store: JsonStore,
        *,
        mqtt: MqttClient,
        runners: Sequence[DeviceRunner],
        interval: float,
        clock: Clock | None = None,
        charger: DeviceRunner | None = None,
    ) -> None:
        self.store = store
        self.mqtt = mqtt
        self.runners = runners
        self.charger = charger
        self.interval = interval
        self.clock = clock or SystemClock()
        self._task: asyncio.Task[None] | None = None

    def document(self, *, running: bool = True) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "running": running,
            "updated": now.isoformat(timespec="seconds"),
            "updated_epoch": now.timestamp(),
            "interval": self.interval,
            "mqtt_connected": self.mqtt.connected,
            "inverters": [_device(runner) for runner in self.runners],
            "ev_charger": _device(self.charger) if self.charger is not None else None,
        }

    async def write(self, *, running: bool = True) -> None:
        document = self.document(running=running)
        try:
            # Not fsynced: after a power cut the bridge that comes back writes a fresh one.
            await asyncio.to_thread(self.store.save, HEALTH_DOCUMENT, document, durable=False)
        except OSError as exc:  # a full or read-only disk must not take the bridge down
            log.warning("cannot write the health document", error=str(exc))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="health document")

    async def stop(self) -> None:
        """Stop refreshing and mark the document stopped, so ``givbridge health`` fails at once."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await self.write(running=False)

    async def _run(self) -> None:
        while True:
            await self.write()
            await self.clock.sleep(self.interval)


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    reason: str


def evaluate(document: Mapping[str, Any], now: datetime, max_age: float | None = None) -> Verdict:
    """Is the bridge that wrote ``document`` healthy at ``now``? Pure, for the CLI and the tests."""
    if not document:
        return Verdict(False, "no health document: givbridge is not running with this data directory")
    try:
        updated = float(document["updated_epoch"])
        interval = float(document.get("interval", 15.0))
    except (KeyError, TypeError, ValueError):
        return Verdict(False, "the health document is not one givbridge wrote")
    limit = default_max_age(interval) if max_age is None else max_age
    age = now.astimezone(UTC).timestamp() - updated
    inverters = document.get("inverters") or []
    available = sum(1 for inverter in inverters if isinstance(inverter, dict) and inverter.get("available"))
    detail = f"updated {age:.0f} s ago, {available}/{len(inverters)} inverters available"
    if not document.get("running", True):
        return Verdict(False, f"givbridge stopped ({detail})")
    if age > limit:
        return Verdict(False, f"stale: {detail}, more than {limit:.0f} s")
    if not document.get("mqtt_connected"):
        return Verdict(False, f"not connected to MQTT ({detail})")
    return Verdict(True, f"healthy: {detail}, MQTT connected")


def check(store: JsonStore, max_age: float | None = None, now: datetime | None = None) -> Verdict:
    """Read and judge the document in ``store``'s directory."""
    return evaluate(store.load(HEALTH_DOCUMENT), now or datetime.now(UTC), max_age)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="the running bridge's data directory (default: from the settings)"
    )
    parser.add_argument(
        "--max-age",
        type=float,
        help="seconds the health document may be old (default: three poll intervals plus 10 s)",
    )


async def main(args: argparse.Namespace) -> int:
    """``givbridge health``: 0 healthy, 1 anything else.

    Docker's HEALTHCHECK knows only 0 and 1 (it reserves 2), so unusable settings are an
    unhealthy 1 here, not the 2 other commands use.
    """
    from givbridge.config_checks import ConfigError
    from givbridge.config_loading import load_settings
    from givbridge.log import configure_logging

    overrides = {"data_dir": args.data_dir} if args.data_dir else None
    try:
        settings = load_settings(args.config, overrides)
    except ConfigError as exc:
        print(f"unhealthy: {exc}")
        return 1
    configure_logging(args.log_level or "warning", args.log_format or "auto")
    verdict = check(JsonStore(settings.data_dir), args.max_age)
    print(verdict.reason)
    return 0 if verdict.healthy else 1
