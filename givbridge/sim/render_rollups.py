"""Input registers of the plant controllers: the EMS rollup (IR 2040-2099) and the Gateway's (IR 1600-1959).

Both report on units that are not on their own bus (the inverters an EMS manages, the
All-in-Ones a Gateway parallels). The plant simulates the site as one power balance with the
units' combined rating; each unit carries a fixed share of the battery and its own small SOC
offset, and the rollups report those shares.

EMS layout (library ``EmsRegisterGetter``, captured ``ems_arm1036``): meter count, types and
2-bit statuses, inverter count and 3-bit statuses (2 = online), per-meter power (positive
flowing in), per-inverter battery power (positive discharging), SOC, temperature and serial,
the computed house load, the grid meter's power (positive importing: the capture's busbar
balance), the total battery power (positive discharging) and the energy left in the batteries.

Gateway layout (library ``GatewayV1RegisterGetter``, captured ``gateway_gaaa0014``): firmware
"GAAA0014", grid and load voltages and currents, grid power positive exporting, PV and load
power, the All-in-One powers positive while charging (the library negates them), the daily and
uint32 lifetime counters with the high word first, per-All-in-One counters, SOCs and serials.
"""

from __future__ import annotations

from dataclasses import dataclass

from givbridge.sim.physics import PlantState
from givbridge.sim.render import deci_kwh, load_energy, s16, serial_registers, u16, u32
from givbridge.sim.render_meter import Meter, meter_phase_powers

#: The Gateway capture's firmware words ("GAAA0014") and battery firmware.
_GATEWAY_VERSION = (0x4741, 0x4141, 0x0000, 0x0104)
_GATEWAY_BATTERY_FIRMWARE = 620
#: IR2042 on the captured EMS with its two meters; its meaning is not documented.
_EMS_METER_TYPES = 16


@dataclass(frozen=True, slots=True)
class Unit:
    """An inverter an EMS manages or an All-in-One a Gateway parallels."""

    serial: str
    share: float  # fraction of the site's battery capacity and power
    soc_offset: float


def unit_soc(unit: Unit, state: PlantState) -> float:
    return min(100.0, max(0.0, state.soc + unit.soc_offset))


def ems_input_registers(
    state: PlantState, units: tuple[Unit, ...], meters: tuple[Meter, ...], *, capacity_wh: float
) -> dict[int, int]:
    """IR(0-59), IR(180-239) and the IR(2040-2099) rollup of an EMS controller."""
    flows = state.flows
    image: dict[int, int] = {0: 1, 5: u16(state.grid_v * 10), 13: u16(state.grid_hz * 100)}
    image[2040] = 1  # normal
    image[2041] = len(meters)
    image[2042] = _EMS_METER_TYPES if meters else 0
    statuses = 0
    for meter in meters:
        statuses |= 1 << (2 * (meter.address - 1))  # 2 bits per slot, LSB first: 1 = online
        power = sum(meter_phase_powers(meter, state, ac_coupled_pv=True))
        image[2045 + meter.address] = s16(power)
    image[2043] = statuses
    image[2044] = len(units)
    image[2045] = sum(2 << (3 * n) for n in range(len(units)))  # 3 bits per slot, LSB first: 2 = online
    for n, unit in enumerate(units):
        image[2054 + n] = s16(flows.battery_w * unit.share)
        image[2058 + n] = u16(unit_soc(unit, state))
        image[2062 + n] = s16(state.thermal.heatsink_c * 10)
        image.update(zip(range(2066 + 5 * n, 2071 + 5 * n), serial_registers(unit.serial), strict=True))
    image[2086] = u16(flows.load_w)
    # IR2087 (measured load) needs a load meter and IR2088 has no known meaning: both read 0 here.
    image[2089] = s16(-flows.grid_w)
    image[2090] = s16(flows.battery_w)
    image[2091] = u16(capacity_wh * state.soc / 100)
    return image


def gateway_input_registers(
    state: PlantState, units: tuple[Unit, ...], *, grid_voltage_offset: float = 0.5
) -> dict[int, int]:
    """IR(0-59) and IR(120-239) (zeros) and the IR(1600-1959) rollup of a Gateway."""
    flows, energy = state.flows, state.energy
    grid_v = state.grid_v
    load_v = grid_v + grid_voltage_offset
    image: dict[int, int] = dict(zip(range(1600, 1604), _GATEWAY_VERSION, strict=True))
    image[1604] = 2  # on grid
    image[1608] = s16(grid_v * 10)
    image[1609] = s16(flows.grid_w / grid_v * 10)
    image[1610] = u16(load_v * 10)
    image[1611] = u16(flows.load_w / load_v * 10)
    image[1612] = s16(flows.pv_w / grid_v * 10)
    image[1613] = image[1614] = u16(state.grid_hz * 100)
    image[1616] = s16(flows.grid_w)
    image[1617] = u16(flows.pv_w)
    image[1618] = u16(flows.load_w)
    image[1619] = s16(-flows.inverter_w)  # p_liberty: follows the All-in-One total in the captures
    image[1624] = image[1625] = u16(grid_v * 10)
    if units:
        image.update(zip(range(1627, 1632), serial_registers(units[0].serial), strict=True))

    daily_and_total = {
        1640: (energy.import_today, energy.import_total),
        1643: (energy.pv1_today + energy.pv2_today, energy.pv_total),
        1646: (energy.export_today, energy.export_total),
        1649: (energy.ac_charge_today, energy.ac_charge_total),
        1652: (energy.inverter_out_today, energy.inverter_out_total),
        1655: (
            load_energy(energy, today=True, ac_coupled_pv=True),
            load_energy(energy, today=False, ac_coupled_pv=True),
        ),
        1795: (energy.battery_charge_today, energy.battery_charge_total),
        1798: (energy.battery_discharge_today, energy.battery_discharge_total),
    }
    for register, (today, total) in daily_and_total.items():
        image[register] = deci_kwh(today) & 0xFFFF
        image[register + 1], image[register + 2] = u32(deci_kwh(total))

    image[1700] = image[1701] = len(units)
    image[1702] = s16(-flows.inverter_w)
    image[1703] = 1 if flows.battery_w < -1 else 2 if flows.battery_w > 1 else 0
    image[1704] = _GATEWAY_BATTERY_FIRMWARE
    for n, unit in enumerate(units):
        charge = 1705 + 3 * n
        image[charge] = deci_kwh(energy.battery_charge_today * unit.share) & 0xFFFF
        image[charge + 1], image[charge + 2] = u32(deci_kwh(energy.battery_charge_total * unit.share))
        discharge = 1750 + 3 * n
        image[discharge] = deci_kwh(energy.battery_discharge_today * unit.share) & 0xFFFF
        image[discharge + 1], image[discharge + 2] = u32(deci_kwh(energy.battery_discharge_total * unit.share))
        image[1801 + n] = u16(unit_soc(unit, state))
        image[1816 + n] = s16(-flows.inverter_w * unit.share)
        image.update(zip(range(1841 + 5 * n, 1846 + 5 * n), serial_registers(unit.serial), strict=True))
    return image
