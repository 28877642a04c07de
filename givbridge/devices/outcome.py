"""What became of a write: the device layer's exceptions and the outcome judged from a read-back.

Shared by every device runner, so the command layer turns one set of errors and one
:class:`WriteOutcome` into results whichever device wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from givbridge.plant.snapshot import Snapshot
from givbridge.plant.writes import (
    RegisterWrite,
    WritePlan,
)


class Unreachable(Exception):
    """The inverter is not connected or did not answer."""


class UncleanRead(Unreachable):
    """The inverter answered a read of a bank only with data the poll path would not believe.

    A dropout page, a spliced or incoherent bank (refused by the library, as on every poll), or
    a short bank read all-zero over one that held data and not confirmed by reading it again.
    Nothing may be planned or judged from such a read: it is retried, then this is raised.
    """


class NotWritable(Exception):
    """The plan touches registers this model does not allow givbridge to write."""

    def __init__(self, registers: list[int]) -> None:
        super().__init__(f"registers {registers} are not writable on this model")
        self.registers = registers


class WriteStatus(StrEnum):
    OK = "ok"  # every expected value read back
    NOT_PERSISTED = "not_persisted"  # acknowledged, but the read-back shows another value
    REJECTED = "rejected"  # the inverter answered the write with an error


@dataclass(frozen=True, slots=True)
class Mismatch:
    register: int
    wanted: int
    actual: int | None


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What happened to a :class:`WritePlan`, established by reading the registers back."""

    status: WriteStatus
    written: tuple[RegisterWrite, ...]  # writes that went on the wire
    skipped: tuple[RegisterWrite, ...]  # already held, not re-written
    readback: Mapping[int, int]  # register -> value read back afterwards
    mismatches: tuple[Mismatch, ...] = ()
    rejected: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is WriteStatus.OK

    @classmethod
    def judge(
        cls,
        plan: WritePlan,
        readback: Mapping[int, int],
        *,
        written: Sequence[RegisterWrite],
        skipped: Sequence[RegisterWrite] = (),
        rejected: Sequence[int] = (),
    ) -> WriteOutcome:
        """The outcome of ``plan`` from what was read back: a refusal first, then any value not held."""
        mismatches = tuple(
            Mismatch(w.register, w.value, readback.get(w.register))
            for w in plan.expected
            if readback.get(w.register) != w.value
        )
        if rejected:
            status = WriteStatus.REJECTED
        elif mismatches:
            status = WriteStatus.NOT_PERSISTED
        else:
            status = WriteStatus.OK
        return cls(status, tuple(written), tuple(skipped), readback, mismatches, tuple(rejected))


@dataclass(frozen=True, slots=True)
class Applied:
    """A plan carried out: its outcome, and the device's snapshot rebuilt from the read-back.

    ``snapshot`` is None when the read-back sample was rejected (the state stays as it was).
    """

    outcome: WriteOutcome
    snapshot: Snapshot | None
