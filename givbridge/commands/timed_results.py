"""What a timed action answers: the result documents of its start, cancel and revert, and the
error a failure to revert is reported with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from givbridge.commands.results import CommandFailed, CommandResult, ErrorCode
from givbridge.commands.timed import TimedKind
from givbridge.commands.timed_record import Action
from givbridge.devices.outcome import Unreachable
from givbridge.plant.snapshot import Scalar, Snapshot


@dataclass(frozen=True, slots=True)
class Reverted:
    """A revert that was carried out: its result document, and what the inverter would not take back."""

    data: dict[str, Any]
    refused: tuple[tuple[int, int], ...]  # baseline values the inverter would not take back


def result_names(values: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """Snapshot paths as the leaf names results use."""
    return {path.rsplit("/", 1)[-1]: value for path, value in values.items()}


def read_back(kind: TimedKind, snapshot: Snapshot | None) -> dict[str, Scalar]:
    """The values ``kind`` writes as ``snapshot`` (rebuilt from a read-back) holds them, by leaf name."""
    if snapshot is None:
        return {}
    return result_names({path: snapshot[path] for path in kind.reported if path in snapshot})


def register_values(pairs: Iterable[tuple[int, int]]) -> dict[str, int]:
    """(register, value) pairs as a result lists them: {"HR59": 1}."""
    return {f"HR{register}": value for register, value in pairs}


def problem_of(exc: BaseException) -> tuple[ErrorCode, str]:
    """The error code and message a failed start or revert is answered with."""
    if isinstance(exc, CommandFailed):
        return exc.code, exc.message
    if isinstance(exc, Unreachable):
        return ErrorCode.UNREACHABLE, str(exc) or "the inverter did not answer"
    if isinstance(exc, PermissionError):
        return ErrorCode.READ_ONLY, str(exc)
    return ErrorCode.INTERNAL, f"internal error: {exc!r}"


def refusal(action: Action, reverted: Reverted) -> str:
    """Why a revert did not restore everything."""
    listed = ", ".join(f"HR{register}={value}" for register, value in reverted.refused)
    return f"{action.kind} was reverted except {listed}, which the inverter would not take back"


def revert_result(action: Action, reverted: Reverted) -> CommandResult:
    """The result a revert publishes on the command's response topic."""
    if reverted.refused:
        failure = CommandFailed(ErrorCode.REJECTED, refusal(action, reverted), reverted.data)
        return CommandResult.failure(action.kind, None, action.serial, failure)
    return CommandResult.success(action.kind, None, action.serial, reverted.data)
