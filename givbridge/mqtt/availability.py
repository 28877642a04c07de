"""Each device's ``<root>/<id>/availability``: ``online`` only over values read since the bridge started.

Home Assistant shows a device's entities (``availability_mode: all``) while ``<root>/bridge/state``
and the device's own availability both say ``online``. Both are retained, so what a previous run
left on the broker is what Home Assistant sees until the bridge says otherwise, and the broker's
Last Will covers only ``bridge/state``: after a ``kill -9`` each device's topic still reads
``online`` over its old values, which would show as current the moment a restarted bridge said
``online`` again. So:

* a device is announced ``online`` only after values from a poll made by this process were
  published, never before them (a device that becomes available is announced by the snapshot
  that follows); ``offline`` goes out as soon as it stops being available;
* on every broker connection each device says again what it is, ``offline`` for every device
  not announced in this process, and the application says ``bridge/state`` = ``online`` only
  after that;
* which topics a run may have left ``online`` is kept in the data directory
  (``availability.json``), written before the first ``online`` goes to a topic, so after a crash
  the next run corrects devices it has not identified yet (an inverter is identified only by
  its first poll), and ones no longer configured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from givbridge.log import get_logger
from givbridge.mqtt.client import MqttClient
from givbridge.mqtt.publications import Publication
from givbridge.mqtt.topics import OFFLINE, ONLINE, Topics
from givbridge.store import JsonStore

log = get_logger(__name__)

DOCUMENT = "availability"  # <data_dir>/availability.json: {"topics": [every topic ever said online]}


class DeviceAvailability:
    """What each device's availability topic says, and the record of where ``online`` was said."""

    def __init__(self, client: MqttClient, topics: Topics, store: JsonStore) -> None:
        self.client = client
        self.topics = topics
        self.store = store
        self._online: set[str] = set()  # devices announced online by this process and still available
        saved = store.load(DOCUMENT).get("topics")
        self._remembered: set[str] = {t for t in saved if isinstance(t, str)} if isinstance(saved, list) else set()

    def is_online(self, device: str | None) -> bool:
        """Whether ``device`` has been announced ``online`` (its fresh values are out) and still is."""
        return device in self._online

    async def update(self, device: str, available: bool) -> None:
        """Announce a change; call with ``available`` only once the device's fresh values are published."""
        if available == (device in self._online):
            return
        topic = self.topics.availability(device)
        if available:
            self._online.add(device)
            await self._remember(topic)
            if device not in self._online:
                return  # it went unavailable (and said so) while the record was written
        else:
            self._online.discard(device)
        self.client.publish(topic, ONLINE if available else OFFLINE, retain=True)

    def restate(self, devices: Iterable[str]) -> None:
        """Say again what every device is (a broker connection, Home Assistant's birth).

        ``devices`` are those known now; every topic in the record is included, so what a previous
        run left ``online`` reads ``offline`` until this run has fresh values for it.
        """
        # Not one whose record is still being written: its ``online`` follows once it is.
        online = {self.topics.availability(device) for device in self._online} & self._remembered
        for topic in sorted(self._topics(devices)):
            self.client.publish(topic, ONLINE if topic in online else OFFLINE, retain=True)

    def final(self, devices: Iterable[str]) -> list[Publication]:
        """``offline`` for every device, as the last messages of a clean stop."""
        return [Publication(topic, OFFLINE, retain=True) for topic in sorted(self._topics(devices))]

    def _topics(self, devices: Iterable[str]) -> set[str]:
        return self._remembered | {self.topics.availability(device) for device in devices}

    async def _remember(self, topic: str) -> None:
        """Record ``topic`` before it first says ``online``: a crash afterwards leaves nothing unknown."""
        if topic in self._remembered:
            return
        try:
            await asyncio.to_thread(self.store.save, DOCUMENT, {"topics": sorted(self._remembered | {topic})})
        except OSError as exc:  # a full or read-only disk must not keep the device offline
            log.warning("cannot record the availability topic; a crash may leave it online", error=str(exc))
        self._remembered.add(topic)
