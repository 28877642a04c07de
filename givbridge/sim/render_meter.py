"""Register images of the energy meters at 0x01-0x08 (IR 60-119 and the meter product registers).

The layout is the library's ``MeterRegisterGetter`` and ``MeterProductRegisterGetter``, with
the signs the captures show: a meter's active power is positive when it sees energy flowing
in (a grid meter importing; the Gateway capture's PV meter reads its generation positive),
and its energy counters are unsigned 0.1 kWh registers. A meter is younger than the
inverter's lifetime counters, so it starts from its own commissioning offset.

A site's first meter measures the grid; a second is a PV meter where the site has a separate
PV inverter (AC-coupled units, EMS, Gateway) and otherwise a sub-circuit; the rest measure
sub-circuits of the house. Three-phase sites meter every phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from givbridge.sim.physics import PlantState
from givbridge.sim.render import deci_kwh, load_energy, s16, text_registers, u16

MeterRole = Literal["grid", "pv", "circuit"]
_POWER_FACTOR = 0.97
#: Share of the house load (per phase on three-phase sites) each phase carries.
PHASE_LOAD_SHARES = (0.40, 0.33, 0.27)


@dataclass(frozen=True, slots=True)
class Meter:
    """One fitted meter: what stays fixed for its life."""

    address: int
    role: MeterRole
    phases: int  # 1 or 3
    serial: str  # four characters (MR60-61)
    import_offset_wh: float  # the counter's reading when the meter was fitted, subtracted
    export_offset_wh: float
    circuit_share: float = 0.0  # a sub-circuit meter's share of the house load


def meter_phase_powers(meter: Meter, state: PlantState, *, ac_coupled_pv: bool) -> list[float]:
    """Active power per metered phase (W), positive flowing in."""
    flows = state.flows
    if meter.role == "grid":
        total = -flows.grid_w
    elif meter.role == "pv":
        total = flows.pv_w if ac_coupled_pv else 0.0
    else:
        total = flows.load_w * meter.circuit_share
    if meter.phases == 1:
        return [total]
    if meter.role == "grid":
        # Balanced inverter output against an unbalanced house: the phases differ, the sum is the grid.
        inverter = flows.inverter_w + (flows.pv_w if ac_coupled_pv else 0.0)
        return [flows.load_w * share - inverter / 3 for share in PHASE_LOAD_SHARES]
    return [total * share for share in PHASE_LOAD_SHARES]


def meter_energy_wh(meter: Meter, state: PlantState, *, ac_coupled_pv: bool) -> tuple[float, float]:
    """(import, export) lifetime Wh as the meter counts them, from its commissioning."""
    energy = state.energy
    if meter.role == "grid":
        imported, exported = energy.import_total, energy.export_total
    elif meter.role == "pv":
        imported, exported = (energy.pv_total if ac_coupled_pv else 0.0), 0.0
    else:
        imported, exported = load_energy(energy, today=False, ac_coupled_pv=ac_coupled_pv) * meter.circuit_share, 0.0
    return max(imported - meter.import_offset_wh, 0.0), max(exported - meter.export_offset_wh, 0.0)


def meter_registers(meter: Meter, state: PlantState, *, ac_coupled_pv: bool) -> dict[int, int]:
    """IR(60-119) of one meter."""
    powers = meter_phase_powers(meter, state, ac_coupled_pv=ac_coupled_pv)
    image: dict[int, int] = {}
    total_current = total_reactive = total_apparent = 0.0
    for phase, watts in enumerate(powers):
        volts = state.grid_v + 0.4 * phase
        apparent = abs(watts) / _POWER_FACTOR
        reactive = math.copysign(math.sqrt(max(apparent**2 - watts**2, 0.0)), -watts)
        current = apparent / volts
        image[60 + phase] = u16(volts * 10)
        image[63 + phase] = u16(current * 100)
        image[68 + phase] = s16(watts)
        image[72 + phase] = s16(reactive)
        image[76 + phase] = u16(apparent * 10)
        image[80 + phase] = s16(math.copysign(_POWER_FACTOR, watts) * 10000) if watts else 10000
        total_current += current
        total_reactive += reactive
        total_apparent += apparent
    total = sum(powers)
    image[67] = u16(total_current * 100)
    image[71] = s16(total)
    image[75] = s16(total_reactive)
    image[79] = u16(total_apparent * 10)
    image[83] = s16(math.copysign(_POWER_FACTOR, total) * 10000) if total else 10000
    image[84] = u16(state.grid_hz * 100)
    imported, exported = meter_energy_wh(meter, state, ac_coupled_pv=ac_coupled_pv)
    # Single registers: a meter past 6553.5 kWh wraps, as the real one does.
    image[85] = deci_kwh(imported) & 0xFFFF
    image[86] = deci_kwh(imported * 0.02) & 0xFFFF  # reactive energy, a small fraction
    image[87] = deci_kwh(exported) & 0xFFFF
    image[88] = deci_kwh(exported * 0.3) & 0xFFFF
    return {register: image.get(register, 0) for register in range(60, 120)}


def meter_product_registers(meter: Meter) -> dict[int, int]:
    """MR(60-68): serial, factory code, type, hardware and software versions, Modbus id, baud rate."""
    image = dict(zip((60, 61), text_registers(meter.serial, 2), strict=True))
    image.update(zip((62, 63), text_registers("GE01", 2), strict=True))
    image.update({64: 1 if meter.phases == 1 else 3, 65: 1, 66: 101, 67: meter.address, 68: 9600})
    return {register: image.get(register, 0) for register in range(60, 69)}
