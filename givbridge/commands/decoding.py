"""How a command message becomes the form a payload model validates.

A payload arrives in one of GivTCP's two forms:

* **raw**: the bare value, as GivTCP's MQTT topics and Home Assistant's entities send it
  (``80``, ``80.0`` from a number entity, ``enable``, ``16:30`` or ``16:30:00`` from a
  time-slot select, ``Eco (Paused)``). A command's ``raw_field`` says which field it fills.
* **JSON object** with the keys of GivTCP's api.json (``{"chargeToPercent": 80}``), values as
  strings or numbers, optionally with a ``transaction`` member that the result echoes.

JSON number literals go through the same strict parser as every numeric field
(:func:`givbridge.commands.values.parse_number`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from givbridge.commands.results import CommandFailed, ErrorCode, Transaction
from givbridge.commands.values import ASCII_SPACE, parse_number

#: Longest payload accepted, in bytes: a command is a few dozen bytes, a settings document a
#: few hundred; anything bigger is a mistake or an attack.
MAX_PAYLOAD_BYTES = 4096

TRANSACTION_KEY = "transaction"


class Message:
    """A decoded command message: a JSON object, or a raw value, plus the transaction to echo."""

    __slots__ = ("object", "raw", "transaction")

    def __init__(self, object_: dict[str, Any] | None, raw: str | None, transaction: Transaction) -> None:
        self.object = object_
        self.raw = raw
        self.transaction = transaction


def decode(payload: bytes | str | Mapping[str, Any] | None) -> Message:
    """Split a message into its form (object or raw) and its transaction.

    Raises :class:`CommandFailed` (``invalid_payload``) for anything over
    :data:`MAX_PAYLOAD_BYTES`, bytes that are not UTF-8, broken JSON, a JSON number that is not
    plain (:data:`NUMBER_TEXT`) or a JSON value that is neither an object nor a scalar.
    """
    if payload is None:
        return Message(None, None, None)
    if isinstance(payload, Mapping):
        document = dict(payload)
        return Message(document, None, _transaction(document))
    raw_bytes = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if len(raw_bytes) > MAX_PAYLOAD_BYTES:
        raise CommandFailed(
            ErrorCode.INVALID_PAYLOAD, f"payload is {len(raw_bytes)} bytes; at most {MAX_PAYLOAD_BYTES} are accepted"
        )
    try:
        text = raw_bytes.decode("utf-8").strip(ASCII_SPACE)
    except UnicodeDecodeError:
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "payload is not UTF-8 text") from None
    if not text.startswith(("{", "[", '"')):
        return Message(None, text, None)
    try:
        value = json.loads(text, parse_int=parse_number, parse_float=parse_number, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, f"payload looks like JSON but does not parse: {exc}") from None
    except ValueError as exc:  # a number literal the one number parser refuses (6e1, NaN, 30 digits)
        raise UnreadablePayload(f"a number in the payload: {exc}", _salvaged_transaction(text)) from None
    except RecursionError:  # "[[[[..." within the size limit is nested deeper than the parser goes
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "payload JSON is nested too deeply") from None
    if isinstance(value, dict):
        return Message(value, None, _transaction(value))
    if isinstance(value, str):  # a quoted raw value, as some tools send it
        return Message(None, value.strip(ASCII_SPACE), None)
    raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "a JSON payload must be an object with the command's keys")


class UnreadablePayload(CommandFailed):
    """``invalid_payload`` for a JSON document refused for one of its numbers, keeping its ``transaction``.

    A client matches answers to requests by their transaction: the refusal must carry it even
    when another number in the document (or the transaction's own spelling) is not plain.
    """

    def __init__(self, message: str, transaction: Transaction) -> None:
        super().__init__(ErrorCode.INVALID_PAYLOAD, message)
        self.transaction = transaction


def _salvaged_transaction(text: str) -> Transaction:
    """The transaction of a document whose numbers the strict parser refused, read leniently; or None."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    try:
        return _transaction(document)
    except CommandFailed:
        return None


def _json_constant(name: str) -> float:
    raise ValueError(f"expected a finite number, got {name}")


def _transaction(document: dict[str, Any]) -> Transaction:
    transaction = document.pop(TRANSACTION_KEY, None)
    if isinstance(transaction, float) and not math.isfinite(transaction):  # NaN cannot be echoed as JSON
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "transaction must be a finite number or a string")
    if transaction is None or (isinstance(transaction, str | int | float) and not isinstance(transaction, bool)):
        return transaction
    raise CommandFailed(ErrorCode.INVALID_PAYLOAD, "transaction must be a string or a number")
