"""Publishing discovery: what goes out when, what is left alone, and how stale entities go.

The lifecycle is described in the package docstring (:mod:`givbridge.mqtt.discovery`); the
documents come from :mod:`~givbridge.mqtt.discovery.documents`, the record of what was sent
from :mod:`~givbridge.mqtt.discovery.record`, GivTCP's migration from
:mod:`~givbridge.mqtt.discovery.migration`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Iterable, Sequence

from givbridge.clock import Clock, SystemClock
from givbridge.commands.access import AccessPolicy
from givbridge.config import MqttSettings
from givbridge.devices.context import DeviceContext
from givbridge.devices.core import DeviceRunner
from givbridge.entities import EntityCatalogue
from givbridge.log import get_logger
from givbridge.mqtt.client import Message, MqttClient
from givbridge.mqtt.discovery.addresses import Limits, pack_firmware, resolved_limits
from givbridge.mqtt.discovery.documents import (
    BRIDGE_OWNER,
    PLANT_OWNER,
    DeviceConfig,
    DiscoveryBuilder,
    InverterDiscovery,
)
from givbridge.mqtt.discovery.migration import GivtcpMigration
from givbridge.mqtt.discovery.record import DiscoveryRecord, Learned, Published
from givbridge.mqtt.state import MESSAGES_PATH
from givbridge.mqtt.topics import ONLINE, DiscoveryTopics, Topics
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.topology import PlantTopology
from givbridge.store import JsonStore

log = get_logger(__name__)

DISCOVERY_QOS = 1  # discovery must not be lost silently; states use mqtt.qos
BIRTH_DELAY = (1.0, 5.0)  # seconds: HA's advice, so many bridges do not answer a restart at once


class DiscoveryPublisher:
    """Keeps Home Assistant's view of the bridge and its inverters in step; see the package docstring.

    Construct it before the MQTT client starts (it subscribes to HA's birth topic, and with
    ``migrate_givtcp_discovery`` to GivTCP's old config topics). The application calls
    :meth:`publish_all` on every broker connection, :meth:`on_snapshot` for every snapshot and
    :meth:`stop` on shutdown. ``republish_states`` is called after discovery was re-sent for
    HA (birth, migration): a fresh entity needs a state, and states may not be retained.
    """

    def __init__(
        self,
        client: MqttClient,
        topics: Topics,
        settings: MqttSettings,
        *,
        inverters: Sequence[DeviceRunner],
        catalogue: EntityCatalogue,
        store: JsonStore,
        republish_states: Callable[[], None],
        clock: Clock | None = None,
        rng: random.Random | None = None,
        topology: PlantTopology | None = None,
        plant_summary: bool = False,
        currency: str = "GBP",
    ) -> None:
        self.client = client
        self.builder = DiscoveryBuilder(
            topics=topics,
            discovery_topics=DiscoveryTopics(settings.discovery_prefix),
            catalogue=catalogue,
            slot_entities=settings.slot_entities,
            legacy_object_id=settings.legacy_object_id,
            currency=currency,
            # Only MQTT's half of the policy decides what HA is offered; HTTP's credentials play no part.
            policy=AccessPolicy(None, (), mqtt_admin=settings.admin, mqtt_admin_token=settings.admin_token),
        )
        self.inverters = inverters
        self.topology = topology or PlantTopology()
        self.plant_summary = plant_summary  # whether a plant device exists (its topic is kept)
        self._plant: Snapshot | None = None  # the latest plant summary
        self._republish_states = republish_states
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self.record = DiscoveryRecord(store)
        # topic -> digest of the payload sent on this broker connection. A digest, not the text:
        # an inverter's document is ~0.7 MB (GivTCP's 1,440-option slot selects), kept per inverter.
        self._sent: dict[str, bytes] = {}
        self._signatures: dict[str, object] = {}  # serial -> what its last publish was built from
        self._limits: dict[str, dict[str, float | None]] = {}  # serial -> last known number limits
        self._warned: dict[str, tuple[str, ...]] = {}
        self._announced: set[str] = set()  # serials discovered in this process
        self._birth_task: asyncio.Task[None] | None = None
        client.subscribe(self.builder.discovery_topics.birth, self._on_birth)
        self.migration: GivtcpMigration | None = None
        if settings.migrate_givtcp_discovery:
            self.migration = GivtcpMigration(
                client,
                self.builder.discovery_topics,
                self.record,
                clock=self._clock,
                announce=self._announce_migrated,
                announced=lambda: self._announced,
                serials=lambda: [inverter.serial for inverter in self.inverters],
                clear=lambda topic: self._send(topic, None),
                republish_states=republish_states,
            )

    # ------------------------------------------------------------------ entry points

    def publish_all(self) -> None:
        """Send every document again (a new broker connection, or HA came back) and tidy up."""
        self._sent.clear()
        self._signatures.clear()
        if not self._send_device(self.builder.bridge(), force=True):
            return
        self._remove_foreign()
        for inverter in self.inverters:
            if inverter.snapshot is not None:
                self._refresh(inverter, inverter.snapshot, force=True)
        if self._plant is not None:
            self._refresh_plant(self._plant, force=True)
        self._remove_orphans()

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """Publish what is new about the device of ``snapshot`` (nothing, on most polls)."""
        inverter = next((i for i in self.inverters if i.serial == snapshot.serial), None)
        if inverter is None:
            return
        self._refresh(inverter, snapshot, force=False)
        # A controller's report may have just made its units read-only (or given them back).
        for unit in self.topology.units_of(snapshot.serial):
            managed = next((i for i in self.inverters if i.serial == unit), None)
            if managed is not None and managed.snapshot is not None:
                self._refresh(managed, managed.snapshot, force=False)
        self._remove_orphans()

    def on_plant(self, snapshot: Snapshot) -> None:
        """Publish the plant summary's device when what it is built from changed."""
        self._plant = snapshot
        self._refresh_plant(snapshot, force=False)

    async def stop(self) -> None:
        """Cancel pending republishes and migrations, then write the record one last time."""
        if self._birth_task is not None:
            self._birth_task.cancel()
            await asyncio.gather(self._birth_task, return_exceptions=True)
        if self.migration is not None:
            await self.migration.stop()
        await self.record.close()

    # ------------------------------------------------------------------ one inverter

    def _refresh(self, inverter: DeviceRunner, snapshot: Snapshot, *, force: bool) -> None:
        serial = snapshot.serial
        if not self.client.connected or (self.migration is not None and self.migration.migrating(serial)):
            return  # publish_all sends everything on the next connection; a migration publishes itself
        learned_changed = self._learn(serial, snapshot)
        limits = self._limits_for(serial, snapshot)
        if learned_changed:
            self.record.save()
        owner = self.topology.owner_of(serial)
        # What the documents are built from; most polls change none of it and publish nothing.
        signature = (
            snapshot.info,
            tuple(limits.items()),
            len(self.record.learned[serial].paths),  # the learned set only grows while the model stays
            inverter.prefix,
            inverter.config.name,
            tuple(sorted(pack_firmware(snapshot).items())),
            owner.serial if owner else None,
        )
        if not force and self._signatures.get(serial) == signature:
            return
        discovery = self._build(inverter, snapshot, limits)
        first = serial not in self._announced
        if first and self.migration is not None and self.migration.begin(serial, discovery.legacy_topics):
            return  # the migration publishes the documents between its steps
        if self._apply(serial, discovery.devices, force=force):
            self._signatures[serial] = signature
            self._announced.add(serial)

    def _build(self, inverter: DeviceRunner, snapshot: Snapshot, limits: Limits) -> InverterDiscovery:
        serial = snapshot.serial
        owner = self.topology.owner_of(serial)
        discovery = self.builder.inverter(
            snapshot,
            prefix=inverter.prefix,
            paths=self.record.learned[serial].paths,
            name=inverter.config.name,
            limits=limits,
            controlled_by=owner.serial if owner else None,
            context=_context_of(inverter),
        )
        problems = discovery.undefined + discovery.unresolved
        if problems and self._warned.get(serial) != problems:
            self._warned[serial] = problems
            log.warning(
                "values left out of discovery",
                serial=serial,
                without_definition=list(discovery.undefined),
                limit_unknown=list(discovery.unresolved),
            )
        return discovery

    def _announce_migrated(self, serial: str) -> bool:
        """Publish an inverter's documents between the migration's steps; False if they did not go out."""
        inverter = next((i for i in self.inverters if i.serial == serial), None)
        snapshot = inverter.snapshot if inverter is not None else None
        if inverter is None or snapshot is None or not self.client.connected:
            return False
        discovery = self._build(inverter, snapshot, self._limits_for(serial, snapshot))
        if not self._apply(serial, discovery.devices, force=True):
            return False
        self._announced.add(serial)
        return True

    def _refresh_plant(self, snapshot: Snapshot, *, force: bool) -> None:
        if not self.client.connected:
            return  # publish_all sends it on the next connection
        if self._learn(PLANT_OWNER, snapshot):
            self.record.save()
        signature = len(self.record.learned[PLANT_OWNER].paths)
        if not force and self._signatures.get(PLANT_OWNER) == signature:
            return
        if self._apply(
            PLANT_OWNER, [self.builder.plant(snapshot, self.record.learned[PLANT_OWNER].paths)], force=force
        ):
            self._signatures[PLANT_OWNER] = signature

    def _learn(self, serial: str, snapshot: Snapshot) -> bool:
        """Add the snapshot's paths to what the device publishes; True if that grew or was reset."""
        family = snapshot.info.family
        learned = self.record.learned.get(serial)
        if learned is None or learned.family != family:
            # A different model behind this serial: what the old one published says nothing now.
            self.record.learned[serial] = Learned(family, {*snapshot.values, MESSAGES_PATH})
            return True
        if MESSAGES_PATH in learned.paths and learned.paths.issuperset(snapshot.values):
            return False  # the usual poll: nothing new (asked without building a set of its paths)
        learned.paths |= {*snapshot.values, MESSAGES_PATH}
        return True

    def _limits_for(self, serial: str, snapshot: Snapshot) -> dict[str, float | None]:
        # A limit missing from one poll keeps its last value, so its entity is not removed.
        known = self._limits.setdefault(serial, {})
        for name, value in resolved_limits(snapshot).items():
            if value is not None or name not in known:
                known[name] = value
        return dict(sorted(known.items()))

    # ------------------------------------------------------------------ publishing and removal

    def _send(self, topic: str, payload: str | None) -> bool:
        return self.client.publish(topic, payload, retain=True, qos=DISCOVERY_QOS)

    def _send_device(self, config: DeviceConfig, *, force: bool) -> bool:
        """Publish one document, removing the components it no longer has first."""
        previous = self.record.published.get(config.topic)
        current = config.components
        stale = {}
        if previous is not None:
            stale = {key: platform for key, platform in previous.components.items() if current.get(key) != platform}
        if stale:
            if not self._send(config.topic, config.text(removed=stale)):
                return False
            log.info("removing entities from discovery", topic=config.topic, entities=sorted(stale))
        text = config.text()
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if force or stale or self._sent.get(config.topic) != digest:
            if not self._send(config.topic, text):
                return False
            self._sent[config.topic] = digest
        record = Published(config.owner, current)
        if previous != record:
            self.record.published[config.topic] = record
            self.record.save()
        return True

    def _apply(self, owner: str, devices: Sequence[DeviceConfig], *, force: bool) -> bool:
        """Publish an inverter's documents and empty the topics of its devices that are gone."""
        for config in devices:
            if not self._send_device(config, force=force):
                return False
        expected = {config.topic for config in devices}
        gone = [t for t, record in self.record.published.items() if record.owner == owner and t not in expected]
        return self._remove(gone)

    def _remove(self, topics: Iterable[str]) -> bool:
        removed = False
        for topic in list(topics):
            if not self._send(topic, None):
                return False
            log.info("removing device from discovery", topic=topic)
            del self.record.published[topic]
            self._sent.pop(topic, None)
            removed = True
        if removed:
            self.record.save()
        return True

    def _remove_foreign(self) -> None:
        """Topics from another discovery prefix or another bridge root: left over from a config change."""
        discovery_topics = self.builder.discovery_topics
        bridge_topic = discovery_topics.device(self.builder.bridge_identifier)
        self._remove(
            topic
            for topic, record in self.record.published.items()
            if not discovery_topics.is_ours(topic) or (record.owner == BRIDGE_OWNER and topic != bridge_topic)
        )

    def _remove_orphans(self) -> None:
        """Devices of inverters no longer configured, once every configured one has been identified."""
        serials = [inverter.serial for inverter in self.inverters]
        if any(serial is None for serial in serials) or not self.client.connected:
            return  # an inverter not yet identified may be the one that owns them
        live = {serial for serial in serials if serial is not None}
        if self.plant_summary:
            live.add(PLANT_OWNER)
        owners = {record.owner for record in self.record.published.values()} - {BRIDGE_OWNER}
        for owner in sorted(owners - live):
            log.info("removing an inverter that is no longer configured from discovery", serial=owner)
            self._remove([t for t, record in self.record.published.items() if record.owner == owner])
        forgotten = set(self.record.learned) - live
        for serial in forgotten:
            del self.record.learned[serial]
        if forgotten:
            self.record.save()

    # ------------------------------------------------------------------ Home Assistant's birth

    def _on_birth(self, message: Message) -> None:
        # A retained birth is somebody's leftover, not HA starting now; the connection
        # publish already covered whatever it could mean.
        if message.retain or message.text.strip().lower() != ONLINE:
            return
        if self._birth_task is not None and not self._birth_task.done():
            return  # a republish is already on its way
        self._birth_task = asyncio.get_running_loop().create_task(self._after_birth(), name="discovery after birth")

    async def _after_birth(self) -> None:
        await self._clock.sleep(self._rng.uniform(*BIRTH_DELAY))
        log.info("home assistant started; sending discovery and state again")
        self.publish_all()
        self._republish_states()


def _context_of(inverter: DeviceRunner) -> DeviceContext | None:
    """What the commands know of an inverter runner's device; None before it is identified.

    Not part of :class:`DeviceRunner`: the EV charger's runner has none (its commands are
    actions, not register plans).
    """
    context = getattr(inverter, "context", None)
    return context if isinstance(context, DeviceContext) else None
