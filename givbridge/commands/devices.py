"""What kind of device a command faces, and which of the named registers each kind uses.

GivTCP picks registers by looking for ``3ph`` or ``ems`` in its model name. givbridge asks
the detected capabilities instead (three-phase, EMS, the 10-slot map, the AC config block)
and, for every register a command would write, whether the model's write allowlist
(:func:`givbridge.plant.writes.writable_registers`) holds it: a command that would need a
register outside it is ``unsupported`` on that model before anything is sent.

:func:`reference_devices` builds one representative :class:`DeviceContext` per model family
without any hardware, so the documentation (and the tests) can state which models each
command applies to from the same predicates the executor uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Literal

from givenergy_modbus.model.inverter import Model
from givenergy_modbus.model.plant import PlantCapabilities
from givenergy_modbus.model.slot_map import EMS_SLOTS, EXTENDED_SLOTS, SINGLE_PHASE_SLOTS, THREE_PHASE_SLOTS

from givbridge.commands.results import CommandFailed
from givbridge.commands.spec import Applicability, unsupported
from givbridge.devices.context import DeviceContext
from givbridge.plant import registers as reg
from givbridge.plant.families import FAMILIES, Family
from givbridge.plant.registers import PAUSE_REGISTERS, ControlRegisters, has_pause_registers
from givbridge.plant.writes import writable_registers

SlotKind = Literal["charge", "discharge", "export"]

# --- what the device is ---------------------------------------------------------------------


def is_three_phase(device: DeviceContext) -> bool:
    return bool(device.capabilities.is_three_phase)


def is_ems(device: DeviceContext) -> bool:
    return bool(device.capabilities.is_ems)


def is_gateway(device: DeviceContext) -> bool:
    return bool(device.capabilities.is_gateway)


def has_extended_slots(device: DeviceContext) -> bool:
    return bool(device.capabilities.has_extended_slots)


def has_ac_config_block(device: DeviceContext) -> bool:
    return bool(device.capabilities.has_ac_config_block)


def has_storage(device: DeviceContext) -> bool:
    """A battery of its own, or (a Gateway) the All-in-Ones' batteries it runs in parallel."""
    return device.family.has_battery or is_gateway(device)


# --- registers by device kind ------------------------------------------------------------------
# The numbers are :mod:`givbridge.plant.registers`'s (the library's map plus givbridge's quirks);
# these helpers pick the one a device's layout uses.


def control_registers(device: DeviceContext) -> ControlRegisters:
    """The controls that moved between the single- and three-phase layouts, as this device has them."""
    return reg.THREE_PHASE_CONTROLS if is_three_phase(device) else reg.SINGLE_PHASE_CONTROLS


def reserve_register(device: DeviceContext) -> int:
    """Battery SOC reserve (the floor discharge stops at)."""
    return control_registers(device).soc_reserve


def cutoff_register(device: DeviceContext) -> int:
    """Battery discharge cut-off (HR114, or HR1078 on three-phase units)."""
    return control_registers(device).discharge_cutoff


def charge_target_register(device: DeviceContext) -> int:
    return control_registers(device).charge_target


def charge_enable_registers(device: DeviceContext) -> tuple[int, ...]:
    """The charge schedule switch: HR96, or force-charge and AC-charge together on three-phase (as GivTCP)."""
    if is_three_phase(device):
        return (reg.TPH_FORCE_CHARGE_ENABLE, reg.TPH_AC_CHARGE_ENABLE)
    return (reg.ENABLE_CHARGE,)


def active_power_rate_register(device: DeviceContext) -> int:
    """Where the output limit is read: HR50, or HR1002 on three-phase units (GivTCP wrote HR50 there)."""
    return control_registers(device).active_power_rate


def rtc_register(device: DeviceContext) -> int:
    """Where Real Time Control is read: HR166, or HR1005 on three-phase units (GivTCP wrote HR166 there)."""
    return control_registers(device).rtc


def ac_limit_register(device: DeviceContext, *, discharge: bool) -> int:
    controls = control_registers(device)
    return controls.discharge_limit_ac if discharge else controls.charge_limit_ac


def slot_windows(device: DeviceContext, kind: SlotKind) -> tuple[tuple[int, int], ...]:
    """The (start, end) register pairs of every slot of ``kind``, slot 1 first; () when there are none."""
    if is_ems(device):
        if kind == "export":
            return reg.EMS_EXPORT_SLOTS
        return tuple(EMS_SLOTS.charge_slots if kind == "charge" else EMS_SLOTS.discharge_slots)
    if kind == "export":
        return ()
    if is_three_phase(device):
        layout = THREE_PHASE_SLOTS
    elif has_extended_slots(device):
        layout = EXTENDED_SLOTS
    else:
        layout = SINGLE_PHASE_SLOTS
    pairs = list(layout.charge_slots if kind == "charge" else layout.discharge_slots)
    if kind == "charge" and has_extended_slots(device) and not is_three_phase(device):
        pairs[1] = reg.TEN_SLOT_CHARGE_2
    return tuple((int(start), int(end)) for start, end in pairs)


def slot_target_register(device: DeviceContext, kind: SlotKind, slot: int) -> int | None:
    """The per-slot SOC target of slot ``slot``, or None where the model has no writable one."""
    if is_ems(device):
        targets = reg.EMS_SLOT_TARGETS[kind]
    elif kind == "export":
        targets = ()
    else:
        targets = reg.CHARGE_SLOT_TARGETS if kind == "charge" else reg.DISCHARGE_SLOT_TARGETS
    register = targets[slot - 1] if 1 <= slot <= len(targets) else None
    return register if register is not None and register in device.writable else None


def slot_window(device: DeviceContext, kind: SlotKind, slot: int) -> tuple[int, int]:
    """The (start, end) registers of one slot, or ``unsupported`` saying how many slots the model has."""
    windows = slot_windows(device, kind)
    if not windows:
        raise unsupported(f"{device.family.display} has no {kind} slots")
    if not 1 <= slot <= len(windows):
        raise unsupported(f"{device.family.display} has {len(windows)} {kind} slots; there is no slot {slot}")
    window = windows[slot - 1]
    missing = [r for r in window if r not in device.writable]
    if missing:
        raise unsupported(f"{kind} slot {slot} registers {missing} are not writable on {device.family.display}")
    return window


# --- applicability ---------------------------------------------------------------------------


def _not_writable(device: DeviceContext, registers: Iterable[int]) -> str | None:
    missing = sorted(set(registers) - device.writable)
    if missing:
        listed = ", ".join(f"HR{r}" for r in missing)
        return f"{listed} not writable on {device.family.display} (not in its write allowlist)"
    return None


def _inverter_reason(device: DeviceContext) -> str | None:
    # A Gateway answers the single-phase control map (HR0-179) for the All-in-Ones it runs in
    # parallel, so the inverter commands apply to it where their registers are its.
    if is_ems(device):
        return "an EMS is a plant controller, not an inverter: use the EMS commands"
    return None


def applies(
    describe: str,
    *,
    when: Callable[[DeviceContext], str | None] | None = None,
    registers: Callable[[DeviceContext], Iterable[int]] | None = None,
    inverter: bool = True,
    battery: bool = False,
) -> Applicability:
    """An :class:`Applicability` from the usual conditions, checked in order.

    ``inverter``: not an EMS. ``battery``: the family can have a battery (a Gateway counts: it
    controls its All-in-Ones' batteries).
    ``when``: any further condition. ``registers``: the registers the command writes on this
    device, all of which must be in its write allowlist.
    """

    def check(device: DeviceContext) -> str | None:
        if inverter and (reason := _inverter_reason(device)):
            return reason
        if battery and not has_storage(device):
            return f"{device.family.display} has no battery"
        if when is not None and (reason := when(device)):
            return reason
        if registers is not None:
            return _not_writable(device, registers(device))
        return None

    return Applicability(describe, check)


def fixed_registers(*registers: int) -> Callable[[DeviceContext], Iterable[int]]:
    return lambda device: registers


def needs_pause(device: DeviceContext) -> str | None:
    if has_pause_registers(device.family):
        return None
    first, last = min(PAUSE_REGISTERS), max(PAUSE_REGISTERS)
    return f"{device.family.display} firmware has no battery pause registers (HR{first}-{last})"


def needs_three_phase(device: DeviceContext) -> str | None:
    return None if is_three_phase(device) else "only three-phase inverters have this control"


def needs_ems(device: DeviceContext) -> str | None:
    return None if is_ems(device) else "only an EMS plant controller has this control"


def needs_slot(kind: SlotKind, slot: int) -> Callable[[DeviceContext], str | None]:
    """The device has slot ``slot`` of ``kind``, with writable registers, and storage to schedule
    (a battery, or the EMS, which schedules its plant's)."""

    def check(device: DeviceContext) -> str | None:
        if not (has_storage(device) or is_ems(device)):
            return f"{device.family.display} has no battery to schedule"
        try:
            slot_window(device, kind, slot)
        except CommandFailed as failure:
            return failure.message
        return None

    return check


def needs_slot_target(kind: SlotKind, slot: int) -> Callable[[DeviceContext], str | None]:
    def check(device: DeviceContext) -> str | None:
        if slot_target_register(device, kind, slot) is None:
            return f"{device.family.display} has no writable per-slot {kind} SOC target for slot {slot}"
        return None

    return check


def any_slot_target(kind: SlotKind) -> Callable[[DeviceContext], str | None]:
    return needs_slot_target(kind, 1)


# --- reference devices for documentation and tests ------------------------------------------------

# A representative model and ARM firmware per family (Gen3 above 302: the 10-slot map).
_REFERENCE_MODELS: dict[str, tuple[Model, int]] = {
    "hybrid-gen1": (Model.HYBRID_GEN1, 449),
    "hybrid-gen2": (Model.HYBRID_GEN2, 920),
    "hybrid-gen3": (Model.HYBRID_GEN3, 310),
    "hybrid-gen3-plus": (Model.HYBRID, 500),
    "hybrid-gen4": (Model.HYBRID_GEN4, 500),
    "polar": (Model.POLAR, 500),
    "pv": (Model.HYBRID, 500),
    "ac": (Model.AC, 500),
    "aio": (Model.ALL_IN_ONE, 500),
    "aio-hybrid": (Model.ALL_IN_ONE_HYBRID, 500),
    "aio-commercial": (Model.AIO_COMMERCIAL, 500),
    "hybrid-hv-gen3": (Model.HYBRID_HV_GEN3, 500),
    "hybrid-3ph": (Model.HYBRID_3PH, 500),
    "ac-3ph": (Model.AC_3PH, 500),
    "ems": (Model.EMS, 500),
    "ems-commercial": (Model.EMS_COMMERCIAL, 500),
    "gateway": (Model.GATEWAY, 500),
}


def reference_device(family_key: str, *, arm_firmware: int | None = None, serial: str = "XX0000X000") -> DeviceContext:
    """A :class:`DeviceContext` for a family as detection would build it, without hardware."""
    family: Family = FAMILIES[family_key]
    model, default_firmware = _REFERENCE_MODELS[family_key]
    firmware = default_firmware if arm_firmware is None else arm_firmware
    capabilities = PlantCapabilities(device_type=model, arm_firmware_version=firmware)
    return DeviceContext(
        serial=serial,
        family=family,
        capabilities=capabilities,
        writable=writable_registers(model, firmware, family),
    )


@functools.cache
def reference_devices() -> tuple[DeviceContext, ...]:
    """One reference device per family, in :data:`~givbridge.plant.families.FAMILIES` order."""
    return tuple(reference_device(key) for key in FAMILIES)
