"""Everything givbridge knows about turning givenergy-modbus's Plant into named values."""

from givbridge.plant.snapshot import DeviceInfo, Scalar, Snapshot

__all__ = ["DeviceInfo", "Scalar", "Snapshot"]
