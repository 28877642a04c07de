"""Moving an inverter's entities from GivTCP's discovery to givbridge's without losing them.

GivTCP published one retained config per entity at
``<discovery_prefix>/<platform>/GivEnergy/<serial>_<name>/config``, with the same
``unique_id`` values givbridge uses. HA refuses a second entity with a unique id that is
already loaded, so before an inverter's first discovery givbridge follows HA's migration
procedure: ``{"migrate_discovery": true}`` to each old topic (HA unloads the entity but keeps
its registry entry: entity id, name, area, history), then the device documents (HA attaches
the same unique ids to the existing entries), then empty retained payloads to the old topics.

The old topics are those GivTCP used for the entities givbridge publishes (once per
inverter, remembered in the record) plus any old retained config for one of our inverters
seen on the broker, which also retires GivTCP entities givbridge has no counterpart for:
they stay in HA's registry as orphans the user can delete, rather than ghosts fed by stale
retained state. Retained old configs that show up later (GivTCP started again by mistake)
are migrated and cleared too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Coroutine, Iterable
from typing import Any

from givbridge.clock import Clock
from givbridge.log import get_logger
from givbridge.mqtt.client import Message, MqttClient
from givbridge.mqtt.discovery.record import DiscoveryRecord
from givbridge.mqtt.topics import DiscoveryTopics

log = get_logger(__name__)

MIGRATION_SETTLE = 2.0  # seconds for HA to act on one migration step before the next
LEGACY_BATCH_WINDOW = 1.0  # seconds to gather retained GivTCP configs into one migration batch

MIGRATE_PAYLOAD = json.dumps({"migrate_discovery": True})


class GivtcpMigration:
    """HA's migration procedure, per inverter and for old configs that appear on the broker.

    Construct it before the MQTT client starts: it subscribes to GivTCP's config topics. The
    publisher asks :meth:`begin` before an inverter's first discovery and leaves the inverter
    alone while :meth:`migrating` says so; the migration publishes its documents through
    ``announce`` (serial -> whether its documents went out).
    """

    def __init__(
        self,
        client: MqttClient,
        discovery_topics: DiscoveryTopics,
        record: DiscoveryRecord,
        *,
        clock: Clock,
        announce: Callable[[str], bool],
        announced: Callable[[], Collection[str]],
        serials: Callable[[], Iterable[str | None]],
        clear: Callable[[str], bool],
        republish_states: Callable[[], None],
    ) -> None:
        self.client = client
        self._topics = discovery_topics
        self._record = record
        self._clock = clock
        self._announce = announce
        self._announced = announced
        self._serials = serials
        self._clear = clear
        self._republish_states = republish_states
        self._migrating: set[str] = set()
        self._legacy: dict[str, str] = {}  # observed GivTCP config topic -> its object id
        self._tasks: set[asyncio.Task[None]] = set()
        self._legacy_task: asyncio.Task[None] | None = None
        client.subscribe(discovery_topics.givtcp_filter, self._on_config)

    def migrating(self, serial: str) -> bool:
        """Whether a migration is publishing this inverter's discovery itself."""
        return serial in self._migrating

    def begin(self, serial: str, legacy_topics: Iterable[str]) -> bool:
        """Migrate an inverter not yet discovered in this process; False when there is nothing to move.

        ``legacy_topics`` are GivTCP's topics of the entities givbridge is about to publish.
        """
        old = self._take_legacy(serial)
        if serial not in self._record.migrated:
            old |= set(legacy_topics)
        if not old:
            return False
        self._migrating.add(serial)  # now, so the next snapshot does not start a second one
        self._spawn(self._migrate_then_publish(serial, old), f"discovery migration {serial}")
        return True

    async def stop(self) -> None:
        """Cancel migrations under way; the next start begins them again."""
        tasks = [t for t in (*self._tasks, self._legacy_task) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _migrate_then_publish(self, serial: str, old_topics: set[str]) -> None:
        try:
            # Any step failing means the broker connection went: the next connection starts
            # over (retained old configs are delivered again on the new subscription).
            if not await self._send_migrate(old_topics):
                return
            await self._clock.sleep(MIGRATION_SETTLE)
            if not self._announce(serial):
                return
            await self._clock.sleep(MIGRATION_SETTLE)
            for topic in sorted(old_topics):
                if not self._clear(topic):
                    return
            self._record.migrated.add(serial)
            self._record.save()
            log.info("moved GivTCP's discovery to givbridge", serial=serial, old_topics=len(old_topics))
        finally:
            self._migrating.discard(serial)
        self._republish_states()
        self._schedule_legacy()  # old configs seen while this ran

    async def _send_migrate(self, topics: Iterable[str]) -> bool:
        sends = [self.client.publish_confirmed(t, MIGRATE_PAYLOAD, retain=True, qos=1) for t in sorted(topics)]
        return all(await asyncio.gather(*sends))

    def _on_config(self, message: Message) -> None:
        object_id = self._topics.givtcp_object_id(message.topic)
        if object_id is None:
            return
        if not message.payload or _is_migration(message.payload):
            self._legacy.pop(message.topic, None)  # our own migration and clearing, echoed back
            return
        self._legacy[message.topic] = object_id
        self._schedule_legacy()

    def _take_legacy(self, serial: str) -> set[str]:
        taken = {topic for topic, object_id in self._legacy.items() if object_id.startswith(f"{serial}_")}
        for topic in taken:
            del self._legacy[topic]
        return taken

    def _schedule_legacy(self) -> None:
        if self._legacy and (self._legacy_task is None or self._legacy_task.done()):
            self._legacy_task = asyncio.get_running_loop().create_task(self._retire_legacy(), name="givtcp retire")

    async def _retire_legacy(self) -> None:
        """Migrate and clear old GivTCP configs of inverters that already have givbridge's discovery."""
        while True:
            await self._clock.sleep(LEGACY_BATCH_WINDOW)
            ready = set()
            for serial in set(self._announced()) - self._migrating:
                ready |= self._take_legacy(serial)
            serials = list(self._serials())
            if all(serial is not None for serial in serials):
                ours = tuple(f"{serial}_" for serial in serials)
                self._legacy = {t: o for t, o in self._legacy.items() if o.startswith(ours)}  # not ours: leave alone
            if not ready:
                return
            if not await self._send_migrate(ready):
                return
            await self._clock.sleep(MIGRATION_SETTLE)
            for topic in sorted(ready):
                self._clear(topic)
            log.warning(
                "retired GivTCP discovery configs that appeared on the broker; is GivTCP still running?",
                topics=len(ready),
            )

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _is_migration(payload: bytes) -> bool:
    try:
        document = json.loads(payload)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("migrate_discovery") is True
