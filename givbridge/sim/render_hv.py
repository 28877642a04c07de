"""Register images of an HV battery stack: the BMS summary, the BCU, its modules and the BAMS page.

The layout is what the All-in-One, HV Gen3 and three-phase captures show and the library
decodes (``model/hv_bcu.py``, ``model/aio_battery.py``, ``Client._detect_bcu_stacks``):

- 0xA0 IR(60-64): a flag, the number of BCUs, modules, cells and temperature sensors;
- 0x70 IR(60-119): the BCU's stack readings (firmware, counts, status, voltages, current,
  SOC high/low, SOH, energy and Ah counters, nominal and remaining Ah, cycles, limits) and
  IR(120-179): extreme cells and temperatures, and the BCU's own serial at IR138-142;
- 0x50+k IR(60-119): module k's 24 cell voltages (IR60-83), 12 or 24 temperatures (IR90-113)
  and its serial (IR114-118);
- 0x90 IR(60-119) on three-phase units: a BAMS page repeating the stack's voltage and current.

The BCU reports current negative while discharging, the opposite of the inverter's battery
power, and IR79 as a signed power in units of 100 W (captures: -16 at -1.75 kW, -3 at
-0.38 kW); both are rendered that way.
"""

from __future__ import annotations

from dataclasses import dataclass

from givbridge.sim.physics import PlantState
from givbridge.sim.profile_spec import CELLS_PER_MODULE, HvSpec
from givbridge.sim.render import (
    CELL_RESISTANCE_OHM,
    deci_kwh,
    open_circuit_voltage,
    s16,
    serial_registers,
    u16,
    u32,
)

#: Cell voltage (V) at which the BCU stops discharge and charge (captures: 254.4 V / 348.5 V over 96 cells).
_MIN_CELL_V = 2.65
_MAX_CELL_V = 3.63
#: Every captured BCU counts 12 temperature sensors per module in IR68, whatever the modules report.
_SENSORS_COUNTED_PER_MODULE = 12


@dataclass(frozen=True, slots=True)
class Module:
    """One HV battery module: what stays fixed for its life."""

    serial: str
    soc_offset: float
    cell_offsets_mv: tuple[int, ...]  # 24 values
    sensor_offsets_c: tuple[float, ...]  # one per temperature sensor


@dataclass(frozen=True, slots=True)
class Stack:
    """One BCU and its modules in series."""

    spec: HvSpec
    bcu_serial: str
    modules: tuple[Module, ...]
    health: float  # measured / design capacity, the BCU's SOH

    @property
    def nominal_volts(self) -> float:
        return len(self.modules) * CELLS_PER_MODULE * 3.2


def module_soc(module: Module, state: PlantState) -> float:
    return min(100.0, max(0.0, state.soc + module.soc_offset))


def stack_current(stack: Stack, state: PlantState) -> float:
    """Stack current (A), positive discharging (the inverter's convention)."""
    return state.flows.battery_w / stack.nominal_volts if stack.modules else 0.0


def module_cells_mv(module: Module, stack: Stack, state: PlantState) -> list[int]:
    loaded = open_circuit_voltage(module_soc(module, state)) - stack_current(stack, state) * CELL_RESISTANCE_OHM
    return [round(loaded * 1000) + offset for offset in module.cell_offsets_mv]


def stack_volts(stack: Stack, state: PlantState) -> float:
    return sum(sum(module_cells_mv(m, stack, state)) for m in stack.modules) / 1000


def _temperatures(module: Module, state: PlantState) -> list[float]:
    return [state.thermal.battery_c + offset for offset in module.sensor_offsets_c]


def module_registers(module: Module, stack: Stack, state: PlantState) -> dict[int, int]:
    """IR(60-119) of one module at its own address."""
    image = {60 + n: u16(mv) for n, mv in enumerate(module_cells_mv(module, stack, state))}
    image.update({90 + n: s16(t * 10) for n, t in enumerate(_temperatures(module, state))})
    image.update({114 + n: value for n, value in enumerate(serial_registers(module.serial))})
    return {register: image.get(register, 0) for register in range(60, 120)}


def bms_registers(stack: Stack) -> dict[int, int]:
    """IR(60-119) at 0xA0: how many BCUs, modules, cells and sensors the BMS sees."""
    modules = len(stack.modules)
    image = {
        60: 1 if stack.spec.has_bams else 0,
        61: 1,  # one BCU: the library reads this to find 0x70
        62: modules,
        63: modules * CELLS_PER_MODULE,
        64: modules * _SENSORS_COUNTED_PER_MODULE,
    }
    return {register: image.get(register, 0) for register in range(60, 120)}


def bcu_registers(stack: Stack, state: PlantState) -> dict[int, int]:
    """IR(60-179) of the BCU at 0x70."""
    energy = state.energy
    modules = len(stack.modules)
    volts = stack_volts(stack, state)
    current = stack_current(stack, state)
    socs = [module_soc(m, state) for m in stack.modules]
    nominal_ah = stack.spec.module_ah * stack.health
    stack_wh = stack.spec.module_ah * stack.nominal_volts
    status = 3 if state.flows.battery_w < -1 else 4 if state.flows.battery_w > 1 else 2
    image: dict[int, int] = dict(zip(range(60, 64), stack.spec.bcu_firmware, strict=True))
    image[64] = modules
    image[67] = modules * CELLS_PER_MODULE
    image[68] = modules * _SENSORS_COUNTED_PER_MODULE
    image[69] = (2 * modules) << 8 | 2 * modules
    image[70] = status
    image[73] = u16(volts * 10)
    image[74] = u16((volts + 0.3) * 10)  # the load side, past the contactor
    image[76] = s16(-current * 10)
    image[79] = s16(-state.flows.battery_w / 100)
    image[80] = u16(max(socs, default=0)) << 8 | u16(min(socs, default=0))
    image[81] = u16(stack.health * 100)
    image[82], image[83] = u32(deci_kwh(energy.battery_charge_total))
    image[84], image[85] = u32(deci_kwh(energy.battery_discharge_total))
    image[86], image[87] = u32(energy.battery_charge_total / stack.nominal_volts)
    image[88], image[89] = u32(energy.battery_discharge_total / stack.nominal_volts)
    image[90], image[91] = u32(deci_kwh(energy.battery_charge_today))
    image[92], image[93] = u32(deci_kwh(energy.battery_discharge_today))
    image[94], image[95] = u32(energy.battery_charge_today / stack.nominal_volts)
    image[96], image[97] = u32(energy.battery_discharge_today / stack.nominal_volts)
    image[98] = u16(nominal_ah * 10)
    image[99] = u16(nominal_ah * state.soc / 100 * 10)
    image[100] = u16(energy.battery_discharge_total / stack_wh * 10) if stack_wh else 0
    image[101] = 3
    image[102] = u16(modules * CELLS_PER_MODULE * _MIN_CELL_V * 10)
    image[103] = u16(modules * CELLS_PER_MODULE * _MAX_CELL_V * 10)
    image[104] = u16(stack.spec.max_charge_current_a * 10)
    image[105] = u16(stack.spec.max_charge_current_a * 10)
    image[111] = 10000
    cells = [
        (mv, m, c)
        for m, module in enumerate(stack.modules)
        for c, mv in enumerate(module_cells_mv(module, stack, state))
    ]
    temps = [(t, m, s) for m, module in enumerate(stack.modules) for s, t in enumerate(_temperatures(module, state))]
    if cells and temps:
        high, low = max(cells), min(cells)
        hot, cold = max(temps), min(temps)
        image[120], image[121], image[122] = u16(high[0]), high[1] + 1, high[2] + 1
        image[123], image[124], image[125] = u16(low[0]), low[1] + 1, low[2] + 1
        image[126], image[127], image[128] = s16(hot[0] * 10), hot[1] + 1, hot[2] + 1
        image[129], image[130], image[131] = s16(cold[0] * 10), cold[1] + 1, cold[2] + 1
    image.update({138 + n: value for n, value in enumerate(serial_registers(stack.bcu_serial))})
    return {register: image.get(register, 0) for register in range(60, 180)}


def bams_registers(stack: Stack, state: PlantState) -> dict[int, int]:
    """IR(60-119) of the three-phase BAMS page at 0x90: the stack's voltage, current and limits again."""
    volts = stack_volts(stack, state)
    modules = len(stack.modules)
    image = {
        71: 1,
        78: u16(volts * 10),
        79: u16((volts + 0.3) * 10),
        80: s16(-stack_current(stack, state) * 10),
        82: 3,
        83: u16(modules * CELLS_PER_MODULE * _MIN_CELL_V * 10),
        84: u16(modules * CELLS_PER_MODULE * _MAX_CELL_V * 10),
        85: u16(stack.spec.max_charge_current_a * 10),
        86: u16(stack.spec.max_charge_current_a * 10),
    }
    return {register: image.get(register, 0) for register in range(60, 120)}
