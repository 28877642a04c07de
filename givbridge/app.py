"""The running application: device runners, MQTT publishing and commands, started and stopped together.

Lifecycle on MQTT: the broker holds ``<root>/bridge/state = offline`` as our Last Will. On
every (re)connect we publish ``online``, ``bridge/info``, each device's availability and its
full state (the broker may have restarted empty, and mosquitto publishes our will when it
stops). On a clean stop every device and the bridge say ``offline`` before we disconnect.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

from givbridge import __version__
from givbridge.bridge import Bridge, InverterRunner
from givbridge.clock import Clock, SystemClock
from givbridge.commands import CommandExecutor
from givbridge.config import Settings
from givbridge.entities import EntityCatalogue, load_catalogue
from givbridge.health import HealthWriter
from givbridge.log import get_logger
from givbridge.mqtt.client import MqttClient, Publication
from givbridge.mqtt.control import ControlSubscriber
from givbridge.mqtt.discovery import DiscoveryPublisher
from givbridge.mqtt.requests import BridgeRequests
from givbridge.mqtt.state import StatePublisher, ValueStyle
from givbridge.mqtt.topics import OFFLINE, Topics
from givbridge.plant.snapshot import Snapshot

log = get_logger(__name__)


def style_lookup(catalogue: EntityCatalogue) -> Callable[[str], ValueStyle]:
    """Rendering and deadband for each leaf, from its entity definition."""
    styles: dict[str, ValueStyle] = {
        key: ValueStyle(precision=definition.precision, deadband=definition.publish_deadband)
        for key, definition in catalogue.definitions.items()
    }
    default = ValueStyle()

    def lookup(leaf: str) -> ValueStyle:
        return styles.get(leaf, default)

    return lookup


class Application:
    """Device runners plus the MQTT layer that publishes them."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.started_at: datetime | None = None
        self.bridge = Bridge(settings, clock=self.clock)
        self.catalogue = load_catalogue()
        self.topics = Topics(settings.mqtt.root)
        self.mqtt = MqttClient(
            settings.mqtt,
            will=Publication(self.topics.bridge_state, OFFLINE, retain=True),
            clock=self.clock,
        )
        self.state = StatePublisher(
            self.mqtt,
            self.topics,
            retain=settings.mqtt.retain,
            full_refresh_interval=settings.mqtt.full_refresh_interval,
            style=style_lookup(self.catalogue),
            publish_raw=settings.mqtt.publish_raw,
            clock=self.clock,
        )
        self._announced: dict[str, object] = {}  # serial -> identity last put in bridge/info
        # Home Assistant discovery; it subscribes to HA's birth topic, so it exists before start().
        self.discovery = (
            DiscoveryPublisher(
                self.mqtt,
                self.topics,
                settings.mqtt,
                inverters=self.bridge.runners,
                catalogue=self.catalogue,
                store=self.bridge.store,
                republish_states=self._republish_states,
                clock=self.clock,
            )
            if settings.mqtt.discovery
            else None
        )
        for runner in self.bridge.runners:
            runner.on_snapshot.connect(self._on_snapshot)
            runner.on_availability.connect(self._on_availability)
        self.mqtt.on_connect(self._on_mqtt_connect)
        # Commands: <root>/control/[<serial>/]<command>, answered on <root>/<serial>/response/<command>.
        self.commands = CommandExecutor(self.bridge, settings=settings, clock=self.clock)
        self.control = ControlSubscriber(self.mqtt, self.topics, self.commands)
        self.control.attach()
        # The bridge device's restart button and log-level select, through the same executor.
        self.requests = BridgeRequests(self.mqtt, self.topics, self.commands, self._announce)
        self.requests.attach()
        # health.json in the data dir, for `givbridge health` (container HEALTHCHECK) without the HTTP shim.
        self.health_writer = HealthWriter(
            self.bridge.store,
            mqtt=self.mqtt,
            runners=self.bridge.runners,
            interval=settings.polling.poll_interval,
            clock=self.clock,
        )

    async def start(self) -> None:
        self.started_at = self.clock.now()
        await self.mqtt.start()
        await self.bridge.start()
        self.health_writer.start()

    async def stop(self) -> None:
        """Stop polling, say offline, disconnect: well within two seconds."""
        await self.health_writer.stop()
        await self.bridge.stop(timeout=0.8)
        if self.discovery is not None:
            await self.discovery.stop()
        final = [
            Publication(self.topics.availability(runner.serial), OFFLINE, retain=True)
            for runner in self.bridge.runners
            if runner.serial
        ]
        final.append(Publication(self.topics.bridge_state, OFFLINE, retain=True))
        await self.mqtt.stop(final=final, timeout=1.0)

    # --------------------------------------------------------------- MQTT side

    async def _on_mqtt_connect(self) -> None:
        self.state.bridge_online()
        self.state.bridge_info(self.info())
        if self.discovery is not None:
            self.discovery.publish_all()  # before the states, which may not be retained
        self._republish_states()

    def _republish_states(self) -> None:
        """Every device's availability and full state, as if nothing had been published."""
        self.state.forget()
        for runner in self.bridge.runners:
            if runner.serial:
                self.state.device_availability(runner.serial, runner.health.available)
            if runner.snapshot is not None:
                self.state.publish_snapshot(runner.snapshot)

    async def _on_snapshot(self, snapshot: Snapshot) -> None:
        identity = (snapshot.info.model, snapshot.info.firmware, snapshot.info.battery_serials)
        if self._announced.get(snapshot.serial) != identity:
            self._announced[snapshot.serial] = identity
            self.state.bridge_info(self.info())
        if self.discovery is not None:
            self.discovery.on_snapshot(snapshot)  # a new entity's config goes before its state
        sent = self.state.publish_snapshot(snapshot)
        log.debug("published", serial=snapshot.serial, messages=sent)

    async def _on_availability(self, runner: InverterRunner) -> None:
        if runner.serial:
            self.state.device_availability(runner.serial, runner.health.available)
        self.state.bridge_info(self.info())

    def _announce(self) -> None:
        self.state.bridge_info(self.info())

    def info(self) -> dict[str, Any]:
        """``<root>/bridge/info``: what is running, without secrets."""
        inverters = []
        for runner in self.bridge.runners:
            snapshot = runner.snapshot
            inverters.append(
                {
                    "host": runner.config.host,
                    "port": runner.config.port,
                    "prefix": runner.prefix,
                    "serial": runner.serial,
                    "model": snapshot.info.model if snapshot else None,
                    "family": snapshot.info.family if snapshot else None,
                    "firmware": snapshot.info.firmware if snapshot else None,
                    "batteries": list(snapshot.info.battery_serials) if snapshot else [],
                    "available": runner.health.available,
                }
            )
        return {
            "version": __version__,
            "log_level": self.settings.log.level,  # the state of the bridge device's log-level select
            "started": self.started_at.isoformat(timespec="seconds") if self.started_at else None,
            "inverters": inverters,
            "config": self.settings.summary(),
        }


async def run_until_signalled(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    stop_timeout: float = 2.0,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, then stop within ``stop_timeout`` seconds."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):  # not the main thread / platform
            loop.add_signal_handler(sig, stopping.set)
    try:
        await start()
        if ready is not None:
            ready()
        await stopping.wait()
        log.info("stopping")
    finally:
        try:
            async with asyncio.timeout(stop_timeout):
                await stop()
        except TimeoutError:
            log.warning("shutdown took too long; exiting anyway")
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
