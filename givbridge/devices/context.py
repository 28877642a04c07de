"""What a command planner may know about a device besides its values (pure data, no connection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from givenergy_modbus.model.plant import PlantCapabilities

from givbridge.plant.families import Family


@dataclass(frozen=True)
class DeviceContext:
    """What a command planner may know about the device besides its values."""

    serial: str
    family: Family
    capabilities: PlantCapabilities
    writable: frozenset[int]

    @property
    def model(self) -> Any:
        return self.capabilities.device_type

    @property
    def arm_firmware(self) -> int | None:
        firmware = self.capabilities.arm_firmware_version
        return int(firmware) if firmware is not None else None
