"""GivEnergy model families as givbridge names them.

A *family* is givbridge's key for "what kind of device is this": it selects the simulator
profile (``givbridge simulate --model hybrid-gen3``), the GivTCP value set the snapshot
builder produces, the commands that apply and the discovery entities. The library
(givenergy-modbus) resolves a device to a ``Model`` from HR(0) (device type code) and
HR(21) (ARM firmware); :func:`family_for` maps that, plus the two device-type prefixes the
library folds into the coarse ``HYBRID`` family (22xx Gen3+, 23xx PV-only), to a family.

``givtcp_type`` is exactly what GivTCP v3.5 publishes as ``Invertor_Type`` (its own model
enum name, capitalised): Predbat compares it (``Ac``, ``Hybrid_gen1``, ``Hybrid_gen2``) to
decide which controls a unit really has, so it must not drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from givenergy_modbus.model.inverter import Model, resolve_model


@dataclass(frozen=True, slots=True)
class Family:
    key: str  # givbridge family key
    display: str  # human model name, used for the HA device model
    givtcp_type: str  # GivTCP's Invertor_Type value
    phases: int
    has_battery: bool  # can a battery be attached at all


FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        Family("hybrid-gen1", "Hybrid Gen1", "Hybrid_gen1", 1, True),
        Family("hybrid-gen2", "Hybrid Gen2", "Hybrid_gen2", 1, True),
        Family("hybrid-gen3", "Hybrid Gen3", "Hybrid_gen3", 1, True),
        Family("hybrid-gen3-plus", "Hybrid Gen3+", "Hybrid_gen3_plus", 1, True),
        Family("hybrid-gen4", "Hybrid Gen4", "Hybrid_gen4", 1, True),
        Family("polar", "Polar", "Polar", 1, True),
        Family("pv", "PV inverter", "Pv", 1, False),
        Family("ac", "AC-coupled", "Ac", 1, True),
        Family("aio", "All-in-One", "All_in_one", 1, True),
        Family("aio-hybrid", "All-in-One Hybrid", "All_in_one_hybrid", 3, True),
        Family("aio-commercial", "All-in-One Commercial", "Aio_commercial", 3, True),
        Family("hybrid-hv-gen3", "Hybrid HV Gen3", "Hybrid_hv_gen3", 1, True),
        Family("hybrid-3ph", "Three-phase Hybrid", "Hybrid_3ph", 3, True),
        Family("ac-3ph", "Three-phase AC", "Ac_3ph", 3, True),
        Family("ems", "EMS", "Ems", 1, False),
        Family("ems-commercial", "EMS Commercial", "Ems_commercial", 1, False),
        Family("gateway", "Gateway", "Gateway", 1, False),
    )
}

_MODEL_TO_FAMILY: dict[Model, str] = {
    Model.HYBRID_GEN1: "hybrid-gen1",
    Model.HYBRID_GEN2: "hybrid-gen2",
    Model.HYBRID_GEN3: "hybrid-gen3",
    Model.HYBRID_GEN4: "hybrid-gen4",
    Model.POLAR: "polar",
    Model.AC: "ac",
    Model.ALL_IN_ONE: "aio",
    Model.ALL_IN_ONE_HYBRID: "aio-hybrid",
    Model.AIO_COMMERCIAL: "aio-commercial",
    Model.HYBRID_HV_GEN3: "hybrid-hv-gen3",
    Model.HYBRID_3PH: "hybrid-3ph",
    Model.AC_3PH: "ac-3ph",
    Model.EMS: "ems",
    Model.EMS_COMMERCIAL: "ems-commercial",
    Model.GATEWAY: "gateway",
}

# Device-type prefixes the library resolves to the coarse HYBRID family but GivTCP (and the
# hardware) treat as their own kind.
_DTC_PREFIX_FAMILY = {"22": "hybrid-gen3-plus", "23": "pv"}


class UnknownModel(ValueError):
    """The device type code does not belong to any GivEnergy family givbridge knows."""


def family_for(device_type_code: int, arm_firmware: int) -> Family:
    """The family of a device from its raw HR(0) and HR(21) values."""
    prefix = f"{device_type_code:04x}"[:2]
    if prefix in _DTC_PREFIX_FAMILY:
        return FAMILIES[_DTC_PREFIX_FAMILY[prefix]]
    try:
        model = resolve_model(device_type_code, arm_firmware)
    except ValueError as exc:
        raise UnknownModel(f"device type code 0x{device_type_code:04x} is not a known GivEnergy model") from exc
    key = _MODEL_TO_FAMILY.get(model)
    if key is None:  # a coarse family the library could not narrow down
        raise UnknownModel(f"device type code 0x{device_type_code:04x} resolves to unsupported {model!r}")
    return FAMILIES[key]
