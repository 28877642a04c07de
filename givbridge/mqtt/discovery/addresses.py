"""Where a published value goes in Home Assistant: its device, its GivTCP unique id, its limits."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from givbridge.commands import rates
from givbridge.evc.registers import CHARGER_FAMILY
from givbridge.evc.registers import path as charger_path
from givbridge.plant.families import FAMILIES
from givbridge.plant.snapshot import Snapshot

LIMIT_SOURCES = {  # symbolic limit -> the inverter-info leaf that resolves it
    "battery_max_power": "Invertor_Max_Bat_Rate",
    "inverter_max_power": "Invertor_Max_Inv_Rate",
}
CHARGER_LIMIT_SOURCES = {  # symbolic limit -> the charger's leaf, and whether it rounds up (a minimum)
    "charger_min_current": ("Evse_Min_Current", True),
    "charger_max_current": ("Evse_Max_Current", False),
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

    def object_id(self, prefix: str, serial: str) -> str:
        """The entity id HA is asked for (before the platform and lower-casing).

        GivTCP's unique id where it names a serial: the inverter's values and each pack's or HV
        module's. A stack's or meter's unique id names only ``Battery_Stack_<n>`` or
        ``Meter_ID<n>``, the same on every inverter, so its entity id is the inverter's serial,
        the leaf, then the holder: ``givtcp_<serial>_Stack_SOC_kWh_Battery_Stack_1``. The holder
        goes last so that no id but the inverter's own ends in ``_soc_kwh``, which Predbat's
        serial detection (``sensor.givtcp_(.+)_soc_kwh``) would take for an inverter.
        """
        if self.scope == "battery" or self.holder == serial:
            return self.unique_id(prefix)
        return f"{prefix}_{serial}_{self.leaf}_{self.holder}"

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


def default_entity_id(platform: str, object_id: str) -> str:
    return f"{platform}.{object_id.lower()}"


def _positive(value: object) -> float | None:
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return number if number is not None and number > 0 else None


def resolved_limits(snapshot: Snapshot) -> dict[str, float | None]:
    """The symbolic number limits (``battery_max_power``...) as this device reports them.

    A charger has its current range; an inverter its rated powers and the watts a step of its
    battery rate register is worth (see :func:`givbridge.commands.rates.battery_rate_step`).
    """
    if snapshot.info.family == CHARGER_FAMILY:
        limits: dict[str, float | None] = {}
        for name, (leaf, minimum) in CHARGER_LIMIT_SOURCES.items():
            amps = _positive(snapshot.get(charger_path(leaf)))
            limits[name] = None if amps is None else float(math.ceil(amps) if minimum else math.floor(amps))
        return limits
    limits = {name: _positive(snapshot.get(f"{snapshot.serial}/{leaf}")) for name, leaf in LIMIT_SOURCES.items()}
    family = FAMILIES.get(snapshot.info.family)
    three_phase = family is not None and family.phases == 3
    step = rates.battery_rate_step(snapshot, three_phase=three_phase)
    limits["battery_rate_step"] = round(step, 3) if step else None
    limits["battery_rate_min"] = rates.lowest_battery_rate(snapshot, three_phase=three_phase)
    limits["battery_rate_max"] = rates.highest_battery_rate(snapshot, three_phase=three_phase)
    return limits


def pack_firmware(snapshot: Snapshot) -> dict[str, str]:
    """Each battery pack's firmware version, whichever stack the pack is in."""
    found: dict[str, str] = {}
    for path, value in snapshot.values.items():
        # Discovery asks on every poll: split only the few paths that can be a pack's firmware.
        if value is None or not path.endswith("/Battery_Firmware_Version") or not path.startswith("Battery_Details/"):
            continue
        parts = path.split("/")
        if len(parts) == 4:  # Battery_Details/<stack>/<pack>/Battery_Firmware_Version
            found[parts[2]] = str(value)
    return found
