"""What every command ends with: exactly one result document.

A command either succeeded, and its ``data`` holds the values read back from the inverter
afterwards (keyed by GivTCP leaf name), or failed with one of a small set of error codes.
The same :class:`CommandResult` is published on MQTT and will be returned by the HTTP shim,
which uses :attr:`CommandResult.http_status` for its status line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from typing import Any

Transaction = str | int | float | None
"""A caller's correlation id, echoed unchanged in the result."""


class ErrorCode(StrEnum):
    INVALID_PAYLOAD = "invalid_payload"  # the payload cannot mean anything for this command
    INVALID_TOPIC = "invalid_topic"  # an MQTT control topic that cannot name a command (MQTT only)
    UNKNOWN_COMMAND = "unknown_command"
    UNKNOWN_INVERTER = "unknown_inverter"  # no configured inverter has that serial
    UNSUPPORTED = "unsupported"  # the model (or givbridge, for now) cannot do this
    READ_ONLY = "read_only"  # givbridge runs with read_only: true
    NOT_PERSISTED = "not_persisted"  # acknowledged, but the read-back shows other values
    REJECTED = "rejected"  # the inverter refused the write
    UNREACHABLE = "unreachable"  # not connected, no answer, or not back in time
    BUSY = "busy"  # the device's command queue is full; nothing was written
    EXPIRED = "expired"  # waited longer than control.command_expiry for its device; never written
    CANCELLED = "cancelled"  # givbridge stopped before the command (or while it) ran
    INTERNAL = "internal"  # a bug in givbridge; logged with a traceback
    UNAUTHORIZED = "unauthorized"  # HTTP: no token, or the wrong one
    FORBIDDEN = "forbidden"  # the caller may not run this command (see givbridge.commands.access)


HTTP_STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.INVALID_PAYLOAD: 400,
    ErrorCode.INVALID_TOPIC: 400,
    ErrorCode.UNKNOWN_COMMAND: 404,
    ErrorCode.UNKNOWN_INVERTER: 404,
    ErrorCode.UNSUPPORTED: 409,
    ErrorCode.READ_ONLY: 423,
    ErrorCode.NOT_PERSISTED: 502,
    ErrorCode.REJECTED: 502,
    ErrorCode.UNREACHABLE: 504,
    ErrorCode.BUSY: 503,
    ErrorCode.EXPIRED: 504,
    ErrorCode.CANCELLED: 503,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
}
HTTP_OK = 200


class CommandFailed(Exception):
    """Raised anywhere in a command's handling to end it with an error result.

    ``details`` are extra JSON-safe members of the error object (for ``not_persisted``,
    the registers with the wanted and actual values).
    """

    def __init__(self, code: ErrorCode, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: Mapping[str, Any] = details or {}


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The one answer to one command."""

    command: str
    transaction: Transaction
    serial: str | None  # the device answered for, when known (names the MQTT response topic)
    data: Mapping[str, Any] | None = None
    error: CommandFailed | None = field(default=None)

    @classmethod
    def success(
        cls, command: str, transaction: Transaction, serial: str | None, data: Mapping[str, Any]
    ) -> CommandResult:
        return cls(command, transaction, serial, data=data)

    @classmethod
    def failure(cls, command: str, transaction: Transaction, serial: str | None, error: CommandFailed) -> CommandResult:
        return cls(command, transaction, serial, error=error)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def code(self) -> ErrorCode | None:
        return self.error.code if self.error is not None else None

    @property
    def http_status(self) -> int:
        return HTTP_OK if self.error is None else HTTP_STATUS[self.error.code]

    def document(self) -> dict[str, Any]:
        """The result as a JSON object: ``status``, ``command``, ``transaction``, then ``data`` or ``error``."""
        document: dict[str, Any] = {
            "status": "ok" if self.error is None else "error",
            "command": self.command,
            "transaction": self.transaction,
        }
        if self.error is None:
            document["data"] = json_safe(dict(self.data or {}))
        else:
            document["error"] = {
                "code": self.error.code.value,
                "message": self.error.message,
                **json_safe(dict(self.error.details)),
            }
        return document

    def to_json(self) -> str:
        return json.dumps(self.document(), separators=(",", ":"))


def json_safe(value: Any) -> Any:
    """``value`` with times as ``HH:MM:SS``, datetimes as ISO-8601 and floats to 3 places, recursively."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, float):
        return round(value, 3)
    return value
