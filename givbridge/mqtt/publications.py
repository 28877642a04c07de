"""What the MQTT client sends: payloads, messages to send later, and their wire bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Payload = str | bytes | None
"""What can be published: text (sent as UTF-8), raw bytes, or ``None`` for an empty payload,
which on a retained topic clears it."""


@dataclass(frozen=True, slots=True)
class Publication:
    """A message to send later: the Last Will, or one of the final messages of ``MqttClient.stop``."""

    topic: str
    payload: Payload = None
    retain: bool = False
    qos: Literal[0, 1, 2] = 1


def encode_payload(payload: Payload) -> bytes:
    """The bytes a payload is sent as."""
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return bytes(payload)
