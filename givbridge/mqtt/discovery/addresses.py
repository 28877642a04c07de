"""Where a published value goes in Home Assistant: its device, its GivTCP unique id, its limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from givbridge.plant.snapshot import Snapshot

LIMIT_SOURCES = {  # symbolic limit -> the inverter-info leaf that resolves it
    "battery_max_power": "Invertor_Max_Bat_Rate",
    "inverter_max_power": "Invertor_Max_Inv_Rate",
}

Scope = Literal["inverter", "battery", "meter"]
Limits = Mapping[str, float | None]

_OBJECT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def object_id_safe(text: str) -> str:
    """``text`` with every character HA refuses in a discovery topic level replaced by ``_``."""
    return _OBJECT_ID_UNSAFE.sub("_", text)


@dataclass(frozen=True, slots=True)
class EntityAddress:
    """Which HA device a GivTCP path belongs to, and the id GivTCP built from it.

    ``holder`` is the middle part of GivTCP's unique id: the inverter serial, a battery
    pack serial, ``Battery_Stack_<n>`` or ``Meter_ID<n>``.
    """

    scope: Scope
    holder: str
    leaf: str

    def unique_id(self, prefix: str) -> str:
        return f"{prefix}_{self.holder}_{self.leaf}"

    def givtcp_object_id(self, serial: str) -> str:
        """GivTCP's per-entity discovery object id (the topic level before ``config``)."""
        if self.holder == serial:
            return f"{serial}_{self.leaf}"
        return f"{serial}_{self.holder}_{self.leaf}"


def address_of(path: str, serial: str) -> EntityAddress:
    """The address of a snapshot path (relative to ``<root>/<serial>/``), by GivTCP's rules."""
    parts = path.split("/")
    leaf = parts[-1]
    if parts[0] == "Battery_Details" and len(parts) == 4:
        return EntityAddress("battery", parts[2], leaf)
    if parts[0] == "Battery_Details" and len(parts) == 3:
        # Stack-level readings: GivTCP's id names the stack; they live on the inverter device.
        return EntityAddress("inverter", parts[1], leaf)
    if parts[0] == "Meter_Details" and len(parts) == 3:
        return EntityAddress("meter", parts[1], leaf)
    return EntityAddress("inverter", serial, leaf)


def default_entity_id(platform: str, unique_id: str) -> str:
    return f"{platform}.{unique_id.lower()}"


def resolved_limits(snapshot: Snapshot) -> dict[str, float | None]:
    """The symbolic number limits (``battery_max_power``...) as this device reports them."""
    limits: dict[str, float | None] = {}
    for name, leaf in LIMIT_SOURCES.items():
        value = snapshot.get(f"{snapshot.serial}/{leaf}")
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        limits[name] = number if number is not None and number > 0 else None
    return limits


def pack_firmware(snapshot: Snapshot) -> dict[str, str]:
    """Each battery pack's firmware version, whichever stack the pack is in."""
    found: dict[str, str] = {}
    for path, value in snapshot.values.items():
        parts = path.split("/")
        is_pack_firmware = len(parts) == 4 and parts[0] == "Battery_Details" and parts[3] == "Battery_Firmware_Version"
        if is_pack_firmware and value is not None:
            found[parts[2]] = str(value)
    return found
