"""What discovery has told the broker and learned, kept in the data directory across restarts.

The JSON document ``discovery`` holds the topics published (with each one's owner and
components, so a stale one can be removed after a restart), the paths each device has
published (the union that decides its entities) and the inverters whose GivTCP discovery
has been migrated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from givbridge.log import get_logger
from givbridge.store import JsonStore

log = get_logger(__name__)

STORE_DOCUMENT = "discovery"


@dataclass
class Published:
    """What the broker holds (as far as we know) on one discovery topic."""

    owner: str
    components: dict[str, str]  # key -> platform


@dataclass
class Learned:
    """The paths an inverter has published since its model last changed."""

    family: str
    paths: set[str] = field(default_factory=set)


class DiscoveryRecord:
    """The record, loaded once; :meth:`save` after each change, :meth:`close` on shutdown."""

    def __init__(self, store: JsonStore) -> None:
        self._store = store
        self.published: dict[str, Published]  # topic -> what it holds
        self.learned: dict[str, Learned]  # serial (or the plant) -> its paths
        self.migrated: set[str]  # serials whose GivTCP discovery was moved over
        self.published, self.learned, self.migrated = self._load()
        self._save_task: asyncio.Task[None] | None = None
        self._dirty = False

    def save(self) -> None:
        """Write the record soon, off the event loop; one writer at a time, the latest state wins."""
        self._dirty = True
        if self._save_task is None or self._save_task.done():
            self._save_task = asyncio.get_running_loop().create_task(self._flush(), name="discovery record")

    async def close(self) -> None:
        """Wait for a write under way, then write what changed since."""
        if self._save_task is not None:
            await asyncio.gather(self._save_task, return_exceptions=True)
        if self._dirty:
            await self._flush()

    def _load(self) -> tuple[dict[str, Published], dict[str, Learned], set[str]]:
        document = self._store.load(STORE_DOCUMENT)
        published: dict[str, Published] = {}
        learned: dict[str, Learned] = {}
        try:
            for topic, record in dict(document.get("published", {})).items():
                published[str(topic)] = Published(str(record["owner"]), dict(record["components"]))
            for serial, record in dict(document.get("inverters", {})).items():
                learned[str(serial)] = Learned(str(record["family"]), {str(p) for p in record["paths"]})
            migrated = {str(serial) for serial in document.get("givtcp_migrated", [])}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Forgetting means old configs are not cleaned up, never that something is removed.
            log.warning("ignoring an unreadable discovery record", error=repr(exc))
            return {}, {}, set()
        return published, learned, migrated

    async def _flush(self) -> None:
        while self._dirty:
            self._dirty = False
            await asyncio.to_thread(self._store.save, STORE_DOCUMENT, self._document())

    def _document(self) -> dict[str, Any]:
        return {
            "published": {
                topic: {"owner": record.owner, "components": record.components}
                for topic, record in sorted(self.published.items())
            },
            "inverters": {
                serial: {"family": learned.family, "paths": sorted(learned.paths)}
                for serial, learned in sorted(self.learned.items())
            },
            "givtcp_migrated": sorted(self.migrated),
        }
