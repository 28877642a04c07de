"""Everything givbridge knows about turning givenergy-modbus's Plant into named values."""

from givbridge.plant.build import ExtrasConflict, PlantNotReady, UnsupportedFamily, build_snapshot
from givbridge.plant.snapshot import DeviceInfo, Scalar, Snapshot

__all__ = [
    "DeviceInfo",
    "ExtrasConflict",
    "PlantNotReady",
    "Scalar",
    "Snapshot",
    "UnsupportedFamily",
    "build_snapshot",
]
