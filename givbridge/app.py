"""The running application: device runners, MQTT publishing and commands, started and stopped together.

Lifecycle on MQTT: the broker holds ``<root>/bridge/state = offline`` as our Last Will. On
every (re)connect we publish ``bridge/info``, discovery, each device's full state and its
availability, and only then ``online`` (the broker may have restarted empty, mosquitto
publishes our will when it stops, and a device's availability may be a crashed run's
``online``). A device is ``online`` only over values polled by this process
(:mod:`givbridge.mqtt.availability`). On a clean stop every device and the bridge say
``offline`` before we disconnect.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

from givbridge import __version__
from givbridge.clock import Clock, SystemClock
from givbridge.clock_sync import ClockKeeper
from givbridge.commands import CommandExecutor, CommandResult
from givbridge.commands.scheduler import TimedActions
from givbridge.config import Settings
from givbridge.devices.core import DeviceRunner
from givbridge.devices.supervisor import Bridge
from givbridge.entities import EntityCatalogue, load_catalogue
from givbridge.evc.charger import EvCharger
from givbridge.health import HealthWriter
from givbridge.log import get_logger
from givbridge.mqtt.availability import DeviceAvailability
from givbridge.mqtt.client import MqttClient
from givbridge.mqtt.control import ControlSubscriber, publish_result
from givbridge.mqtt.discovery.publisher import DiscoveryPublisher
from givbridge.mqtt.publications import Publication
from givbridge.mqtt.requests import BridgeRequests
from givbridge.mqtt.state import StatePublisher, ValueStyle
from givbridge.mqtt.topics import OFFLINE, Topics
from givbridge.plant.snapshot import Scalar, Snapshot
from givbridge.plant.summary import PLANT_ID, Member, summarise

if TYPE_CHECKING:
    from givbridge.http.server import HttpServer
    from givbridge.metrics import BridgeMetrics

log = get_logger(__name__)

#: Seconds a command already running at shutdown may take to finish with its true result: a
#: quarter of the two-second shutdown, leaving the devices, the HTTP shim and the final MQTT
#: messages theirs. A write and its read-back often fit (a simulator or a quick dongle); one cut
#: off is answered ``cancelled`` with ``started: true``: it may have been partly applied.
COMMAND_GRACE = 0.5


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
        # The EV charger (settings.evc): its runner and emulated modes, beside the inverters.
        self.charger = (
            EvCharger(settings, clock=self.clock, store=self.bridge.store, inverters=self.bridge.runners)
            if settings.evc is not None
            else None
        )
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
        self.availability = DeviceAvailability(self.mqtt, self.topics, self.bridge.store)
        self._announced: dict[str, object] = {}  # serial -> identity last put in bridge/info
        # The plant summary device (totals across inverters), with two or more inverters.
        self.plant_summary = settings.plant.summary and len(self.bridge.runners) > 1
        # Home Assistant discovery; it subscribes to HA's birth topic, so it exists before start().
        self.discovery = (
            DiscoveryPublisher(
                self.mqtt,
                self.topics,
                settings.mqtt,
                inverters=self._devices(),
                catalogue=self.catalogue,
                store=self.bridge.store,
                republish_states=self._republish_states,
                clock=self.clock,
                currency=settings.tariffs.currency if settings.tariffs else "GBP",
                topology=self.bridge.topology,
                plant_summary=self.plant_summary,
            )
            if settings.mqtt.discovery
            else None
        )
        for runner in self.bridge.runners:
            runner.on_snapshot.connect(self._on_snapshot)
            runner.on_availability.connect(self._on_availability)
        if self.charger is not None:
            self.charger.runner.on_snapshot.connect(self._on_snapshot)
            self.charger.runner.on_availability.connect(self._on_availability)
        self.mqtt.on_connect(self._on_mqtt_connect)
        # Commands: <root>/control/[<serial>/]<command>, answered on <root>/<serial>/response/<command>.
        # Timed actions (forceCharge...): their countdown and reverts, whose results go to the same topics.
        self.timed = TimedActions(self.bridge, clock=self.clock, store=self.bridge.store)
        self.timed.on_state.connect(self._on_timed_state)
        self.timed.on_result.connect(self._on_timed_result)
        self.commands = CommandExecutor(
            self.bridge, settings=settings, clock=self.clock, timed=self.timed, charger=self.charger
        )
        # clock.auto_sync: syncDateTime for inverters whose clock has drifted.
        self.clock_keeper = ClockKeeper(self.bridge, self.commands, settings, clock=self.clock, store=self.bridge.store)
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
            charger=self.charger.runner if self.charger is not None else None,
        )
        self.metrics = self._metrics() if settings.metrics.enabled else None  # served by self.http
        self.http: HttpServer | None = None  # the REST shim, once started (http.enabled)
        self._stopping = False

    async def start(self) -> None:
        self.started_at = self.clock.now()
        await self.mqtt.start()
        await self.timed.start()  # first: resumed actions are in the first snapshots
        await self.bridge.start()
        if self.charger is not None:
            await self.charger.start()
        self.health_writer.start()
        if self.settings.http.enabled or self.metrics is not None:
            await self._start_http()

    def _metrics(self) -> BridgeMetrics:
        """Prometheus metrics of every device and command (metrics.enabled); prometheus_client loads only then."""
        from givbridge.metrics import BridgeMetrics

        # Each device's commands wait for its command lock; the queue counts the waiters per lock.
        locks = {id(runner): runner.command_lock for runner in self.bridge.runners}
        if self.charger is not None:
            locks[id(self.charger.runner)] = self.charger.command_lock
        metrics = BridgeMetrics(
            commands=[name for command in self.commands.registry for name in command.names],
            queue_depth=lambda device: self.commands.queue.waiting(locks[id(device)]),
        )
        for runner in self.bridge.runners:
            metrics.attach(runner, "inverter")
        if self.charger is not None:
            metrics.attach(self.charger.runner, "ev_charger")
        self.commands.on_answered.connect(metrics.command_answered)
        return metrics

    async def _start_http(self) -> None:
        """The GivTCP-compatible REST shim and/or the metrics; the web stack is imported only when one is enabled."""
        from givbridge.http.routes import Services
        from givbridge.http.server import HttpServer

        services = Services(
            self.settings, self.commands, self.bridge.runners, self.health_writer, self.clock, metrics=self.metrics
        )
        self.http = HttpServer(services)
        await self.http.start()

    async def _stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()

    async def stop(self) -> None:
        """Stop polling, say offline, disconnect: well within two seconds. A second call does nothing."""
        if self._stopping:
            return
        self._stopping = True
        # The HTTP shim stops alongside the rest, so requests in flight are answered as the devices stop.
        stopping_http = asyncio.create_task(self._stop_http())
        # Every command gets its answer while the devices still run and MQTT is still connected:
        # waiting ones ``cancelled`` at once, running ones their true result within the grace.
        answering = asyncio.create_task(self.commands.close(grace=COMMAND_GRACE))
        await self.health_writer.stop()
        await self.clock_keeper.stop()
        await self.timed.stop()  # no revert starts while stopping; the data dir keeps what is running
        await answering  # the answers are published (QoS 1, ahead of the final offline messages)
        await self.bridge.stop(timeout=0.8)
        if self.charger is not None:
            await self.charger.stop(timeout=0.5)
        await stopping_http
        if self.discovery is not None:
            await self.discovery.stop()
        final = self.availability.final(self._device_ids())
        final.append(Publication(self.topics.bridge_state, OFFLINE, retain=True))
        await self.mqtt.stop(final=final, timeout=1.0)

    # --------------------------------------------------------------- MQTT side

    async def _on_mqtt_connect(self) -> None:
        self.state.bridge_info(self.info())
        if self.discovery is not None:
            self.discovery.publish_all()  # before the states, which may not be retained
        self._republish_states()
        # Last: until now Home Assistant showed nothing of a previous run's as current.
        self.state.bridge_online()

    def _republish_states(self) -> None:
        """Every device's full state, then its availability, as if nothing had been published."""
        self.state.forget()
        for runner in self._devices():
            if runner.snapshot is not None:
                self.state.publish_snapshot(runner.snapshot)
        self._publish_plant()
        self.availability.restate(self._device_ids())

    async def _on_snapshot(self, snapshot: Snapshot) -> None:
        identity = (snapshot.info.model, snapshot.info.firmware, snapshot.info.battery_serials)
        if self._announced.get(snapshot.serial) != identity:
            self._announced[snapshot.serial] = identity
            self.state.bridge_info(self.info())
        if self.discovery is not None:
            self.discovery.on_snapshot(snapshot)  # a new entity's config goes before its state
        sent = self.state.publish_snapshot(snapshot)
        log.debug("published", serial=snapshot.serial, messages=sent)
        # A device that became available is announced now, after the values it was read with.
        runner = next((runner for runner in self._devices() if runner.serial == snapshot.serial), None)
        if runner is not None and runner.health.available:
            await self.availability.update(snapshot.serial, True)
        await self._update_plant()

    def _devices(self) -> list[DeviceRunner]:
        """Every device runner: the inverters', then the EV charger's."""
        devices: list[DeviceRunner] = list(self.bridge.runners)
        if self.charger is not None:
            devices.append(self.charger.runner)
        return devices

    def _device_ids(self) -> list[str]:
        """Every device with an availability topic that is known now (an inverter once identified)."""
        ids = [runner.serial for runner in self._devices() if runner.serial]
        return [*ids, PLANT_ID] if self.plant_summary else ids

    async def _on_availability(self, runner: DeviceRunner) -> None:
        # Unavailable is said at once; available waits for the snapshot that follows (_on_snapshot).
        if runner.serial and not runner.health.available:
            await self.availability.update(runner.serial, False)
        self.state.bridge_info(self.info())
        await self._update_plant()

    async def _update_plant(self) -> None:
        online = self._publish_plant()
        if online is not None:
            await self.availability.update(PLANT_ID, online)

    def _publish_plant(self) -> bool | None:
        """Recompute the plant summary from every runner's latest state and publish what changed.

        Whether the plant is online (an inverter in it is), or None without a summary.
        """
        if not self.plant_summary:
            return None
        members = [
            Member(runner.snapshot, self.availability.is_online(runner.serial)) for runner in self.bridge.runners
        ]
        summary = summarise(members, self.bridge.topology, grid_meter=self.settings.plant.grid)
        if summary is None:
            return None  # no inverter has been read yet
        if self.discovery is not None:
            self.discovery.on_plant(summary)  # its config before its state
        self.state.publish_snapshot(summary)
        return summary.values["Stats/Inverters_Online"] != 0

    async def _on_timed_state(self, change: tuple[str, Mapping[str, Scalar]]) -> None:
        serial, values = change
        self.state.publish_values(serial, values)

    async def _on_timed_result(self, result: CommandResult) -> None:
        """A timed action's revert (or its failure) on the command's response topic."""
        publish_result(self.mqtt, self.topics, result)

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
            "ev_charger": self._charger_info(),
            "plant_summary": self.plant_summary,
            "config": self.settings.summary(),
        }

    def _charger_info(self) -> dict[str, Any] | None:
        if self.charger is None:
            return None
        runner = self.charger.runner
        return {
            "host": runner.config.host,
            "port": runner.config.port,
            "serial": runner.serial,
            "available": runner.health.available,
            "charging_mode": self.charger.modes.settings.charging_mode,
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
