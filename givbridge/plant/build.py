"""Turn a polled givenergy-modbus ``Plant`` into an immutable :class:`Snapshot`.

:func:`build_snapshot` is the single entry point. It picks the builder for the device's
family from ``_BUILDERS``, then merges the values only the bridge knows (``Stats/*``, the
timed ``Control/Force_*`` and ``Control/Temp_Pause_*`` states, ``Energy/Rates/*``) supplied
as ``extras``. Register-derived values always win the argument: an extra that names a path
the builder produced is a programming error and raises :class:`ExtrasConflict`.

Families are built by separate modules so each can follow its own register map:
``single_phase.py`` (single-phase hybrids and AC), ``hv.py`` (the single-phase HV models,
All-in-One and HV Gen3, built on it), ``three_phase.py``, ``ems.py``, ``gateway.py`` and
``pv.py``; each declares its ``FAMILIES`` and gets a line in ``_BUILDERS``. ``aio-hybrid``,
``aio-commercial`` and ``ems-commercial`` have no builder: nothing is known of their registers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any, Protocol

from givbridge.plant import ems, gateway, hv, pv, single_phase, three_phase
from givbridge.plant._library import PlantNotReady, PlantView, read_plant
from givbridge.plant.families import Family, family_for
from givbridge.plant.sections import DeviceValues
from givbridge.plant.snapshot import Scalar, Snapshot

__all__ = ["ExtrasConflict", "PlantNotReady", "UnsupportedFamily", "build_snapshot", "supported_families"]


class FamilyBuilder(Protocol):
    """What a per-family builder module provides."""

    def __call__(self, view: PlantView, family: Family, *, taken_at: datetime, tz: tzinfo) -> DeviceValues: ...


_BUILDERS: Mapping[str, FamilyBuilder] = {
    **dict.fromkeys(single_phase.FAMILIES, single_phase.build_single_phase),
    **dict.fromkeys(hv.FAMILIES, hv.build_hv_single_phase),
    **dict.fromkeys(three_phase.FAMILIES, three_phase.build_three_phase),
    **dict.fromkeys(ems.FAMILIES, ems.build_ems),
    **dict.fromkeys(gateway.FAMILIES, gateway.build_gateway),
    **dict.fromkeys(pv.FAMILIES, pv.build_pv),
}


class UnsupportedFamily(ValueError):
    """No snapshot builder exists (yet) for this model family."""


class ExtrasConflict(ValueError):
    """Bridge-supplied extras tried to replace values read from the inverter."""


def supported_families() -> frozenset[str]:
    """Family keys :func:`build_snapshot` can build."""
    return frozenset(_BUILDERS)


def build_snapshot(
    plant: Any,
    *,
    family: Family,
    taken_at: datetime,
    tz: tzinfo,
    extras: Mapping[str, Scalar] | None = None,
    clock_read_at: datetime | None = None,
) -> Snapshot:
    """Build the GivTCP-shaped snapshot of one device.

    ``plant`` is a detected givenergy-modbus ``Plant``; ``family`` is what
    :func:`~givbridge.plant.families.family_for` resolved for it; ``taken_at`` is when the
    poll completed (timezone-aware); ``tz`` is the site's zone, which the inverter clock and
    the completion times are expressed in. ``extras`` maps GivTCP paths to bridge-owned
    values; None values are dropped like undecodable register values. ``clock_read_at`` is
    when the bank with the inverter clock was read (same time base as ``taken_at``): the
    settings banks are read less often than measurements, and the published inverter time
    is advanced by that age so it is the inverter's time at ``taken_at``.

    Raises :class:`PlantNotReady` before the inverter identity has been read,
    :class:`UnsupportedFamily` for families without a builder, and :class:`ExtrasConflict`.
    """
    if taken_at.tzinfo is None or taken_at.utcoffset() is None:
        raise ValueError("taken_at must be timezone-aware")
    builder = _BUILDERS.get(family.key)
    if builder is None:
        raise UnsupportedFamily(f"no snapshot builder for family {family.key!r} yet")
    view = read_plant(plant, clock_read_at=clock_read_at)
    detected = family_for(view.device_type_code, view.arm_firmware)
    if detected.key != family.key:
        raise ValueError(f"plant reports family {detected.key!r}, asked to build it as {family.key!r}")

    device = builder(view, family, taken_at=taken_at, tz=tz)
    values: dict[str, Scalar] = dict(device.values)
    if extras:
        clashes = sorted(path for path in extras if path in values)
        if clashes:
            raise ExtrasConflict(f"extras would overwrite register-derived values: {', '.join(clashes)}")
        for path, value in extras.items():
            _check_path(path)
            if value is not None:
                values[path] = value
    return Snapshot(info=device.info, taken_at=taken_at, values=values, raw=device.raw)


def _check_path(path: str) -> None:
    # Extras become MQTT topic levels and JSON keys: no empty levels, no wildcards.
    levels = path.split("/")
    if len(levels) < 2 or any(not level or level.strip() != level for level in levels):
        raise ValueError(f"extras path {path!r} must be '<Group>/.../<Name>' with non-empty levels")
    if any(char in path for char in "#+"):
        raise ValueError(f"extras path {path!r} contains an MQTT wildcard")
