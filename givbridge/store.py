"""Persistent state as JSON files, replaced atomically.

Anything givbridge must remember across a restart (write counters, pending timed-action
reverts, last good energy counters, tariff accumulators, EV-charger modes) is a small JSON
document in the data directory. A write goes to a temporary file in the same directory,
is fsynced, then renamed over the old one, so a crash or power cut leaves either the old
or the new document and never a torn one. Nothing is ever pickled: a planted file can at
worst be invalid JSON, which is reported and ignored.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from givbridge.clock import Clock
from givbridge.log import get_logger

log = get_logger(__name__)


#: The mode of a private document: readable and writable by the owner only.
PRIVATE_MODE = 0o600


class UnprotectedFile(OSError):
    """The data directory's file system would not keep a private document private (it ignores file modes)."""


class JsonStore:
    """Named JSON documents under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid document name {name!r}")
        return self.directory / f"{name}.json"

    def load(self, name: str) -> dict[str, Any]:
        """The document, or ``{}`` if it does not exist or cannot be read."""
        path = self.path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable state file", path=str(path), error=str(exc))
            return {}
        if not isinstance(data, dict):
            log.warning("ignoring state file that is not a JSON object", path=str(path))
            return {}
        return data

    def save(self, name: str, data: dict[str, Any], *, private: bool = False, durable: bool = True) -> None:
        """Replace the document atomically.

        ``private`` (a document holding secrets): the file is made mode 0600 and the mode is
        checked before anything is written; where it does not hold (a FAT or network file system
        that ignores modes) :class:`UnprotectedFile` is raised and nothing is written or replaced.
        ``durable=False`` skips the fsyncs, for a document that is worthless after a power cut
        (the health beacon, rewritten every poll interval): it is still replaced atomically, so
        a reader never sees a torn one.
        """
        path = self.path(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(data, indent=1, sort_keys=True, default=str).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.directory)
        try:
            if private:
                _make_private(fd, path)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if not durable:
            return
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)


def _make_private(fd: int, path: Path) -> None:
    try:
        os.fchmod(fd, PRIVATE_MODE)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    except OSError as exc:
        os.close(fd)
        raise UnprotectedFile(f"{path} could not be made readable by its owner only: {exc}") from None
    if mode & 0o077:
        os.close(fd)
        raise UnprotectedFile(
            f"{path} would be readable by others (mode {mode:04o}): its file system ignores file modes"
        )


class ThrottledSave:
    """One kind of document saved off the event loop at most every ``interval`` seconds.

    For state that changes every poll (counter memory, tariff figures): often enough to
    survive a crash, rarely enough to spare SD cards. A forced save (a disconnect, a new day)
    goes at once. A failed save is logged, never raised: the next one tries again.
    """

    def __init__(self, store: JsonStore, clock: Clock, interval: float, what: str) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        self.what = what  # for the log: "the counter history"
        self._saved_at: float | None = None

    def reset(self) -> None:
        """The next save goes at once (a new document)."""
        self._saved_at = None

    async def save(self, name: str, data: Callable[[], dict[str, Any]], *, force: bool = False) -> None:
        """Save ``data()`` as ``name`` if forced or due; ``data`` is only called then."""
        now = self.clock.monotonic()
        if not force and self._saved_at is not None and now - self._saved_at < self.interval:
            return
        self._saved_at = now
        try:
            await asyncio.to_thread(self.store.save, name, data())
        except OSError as exc:
            log.warning(f"could not save {self.what}", document=name, error=str(exc))
