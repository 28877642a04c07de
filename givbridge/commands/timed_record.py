"""A running timed action as it is kept in memory and in the data directory, and how it is put back.

:class:`Action` is one action's record: its baseline (what the registers held before it
wrote), what it wrote, when it ends and whether its revert is pending. It is saved in
:data:`DOCUMENT` before anything is written, so a crash at any moment leaves a revert
behind, and :meth:`Action.revert_plan` decides what a revert writes back. The scheduler that
runs actions is :mod:`givbridge.commands.scheduler`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from givbridge.commands.timed import KINDS
from givbridge.plant import registers as reg

#: The data-directory document holding every running action (``timed-actions.json``).
DOCUMENT = "timed-actions"
RECORD_FORMAT = 1

Key = tuple[str, str]  # (inverter serial, command name)


class Phase(StrEnum):
    RUNNING = "running"  # written; counting down
    PENDING = "pending"  # due (ended, cancelled or replaced) but not reverted yet: retrying


@dataclass
class Action:
    """One running timed action, as kept in memory and in :data:`DOCUMENT`."""

    kind: str
    serial: str
    baseline: tuple[tuple[int, int], ...]  # (register, value) as read before the first write, in writing order
    started: datetime
    ends: datetime  # on the bridge's clock
    minutes: int
    phase: Phase = Phase.RUNNING
    reason: str = "ended"  # why it is (to be) reverted
    attempts: int = 0  # failed revert attempts
    error: str | None = None  # the last one's problem
    # (register, value) the action wrote last; None for a record saved before givbridge kept it.
    written: tuple[tuple[int, int], ...] | None = None

    @property
    def key(self) -> Key:
        return (self.serial, self.kind)

    def changed(self) -> tuple[tuple[int, int], ...]:
        """The baseline of the registers the action changed (in writing order): what a revert may write back."""
        if self.written is None:
            return self.baseline
        wrote = dict(self.written)
        return tuple((register, value) for register, value in self.baseline if wrote.get(register, value) != value)

    def revert_plan(self, current: Mapping[int, int]) -> tuple[list[tuple[int, int]], dict[int, int]]:
        """What to write back, given the ``current`` values of :meth:`changed`, and what to leave alone.

        A register still holding what the action wrote goes back to its baseline. One holding
        something else was changed by someone since: it is left alone (returned with its value),
        unless it already holds its baseline again, which needs no write either.
        """
        changed = self.changed()
        if self.written is None:  # an old record: it cannot tell, so it restores as before
            return list(changed), {}
        wrote = dict(self.written)
        restore = [(register, value) for register, value in changed if current[register] == wrote[register]]
        left = {
            register: current[register]
            for register, value in changed
            if current[register] not in (wrote[register], value)
        }
        return restore, left

    def record(self) -> dict[str, Any]:
        return {
            "action": self.kind,
            "serial": self.serial,
            "baseline": [list(pair) for pair in self.baseline],
            "started": self.started.isoformat(),
            "ends": self.ends.isoformat(),
            "minutes": self.minutes,
            "state": self.phase.value,
            "reason": self.reason,
            "attempts": self.attempts,
            "error": self.error,
            **({"written": [list(pair) for pair in self.written]} if self.written is not None else {}),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Action:
        """The action a record describes; raises ValueError (or KeyError/TypeError) when it is not one."""
        kind = str(record["action"])
        if kind not in KINDS:
            raise ValueError(f"unknown timed action {kind!r}")
        baseline = tuple((int(register), int(value)) for register, value in record["baseline"])
        if not baseline or any(not 0 <= value <= 0xFFFF for _, value in baseline):
            raise ValueError("the baseline is empty or holds a value that is not a register word")
        written = record.get("written")
        wrote = None if written is None else tuple((int(register), int(value)) for register, value in written)
        if wrote is not None and any(not 0 <= value <= 0xFFFF for _, value in wrote):
            raise ValueError("a written value is not a register word")
        started, ends = datetime.fromisoformat(record["started"]), datetime.fromisoformat(record["ends"])
        if started.tzinfo is None or ends.tzinfo is None:
            raise ValueError("times must carry their offset")
        return cls(
            kind=kind,
            serial=str(record["serial"]),
            baseline=baseline,
            started=started,
            ends=ends,
            minutes=int(record["minutes"]),
            phase=Phase(record.get("state", Phase.RUNNING)),
            reason=str(record.get("reason") or "ended"),
            attempts=int(record.get("attempts") or 0),
            error=record.get("error"),
            written=wrote,
        )


def inverter_time(values: Mapping[int, int]) -> datetime | None:
    """The inverter's wall-clock time from HR35-40, or None when they do not hold a date."""
    try:
        year, month, day, hour, minute, second = (values[r] for r in reg.CLOCK)
        return datetime(2000 + year, month, day, hour, minute, second)
    except (KeyError, ValueError):
        return None
