"""Register images of the single-phase inverter and its LV packs, and the helpers every renderer shares.

Pure functions: state and static device data in, ``{register: raw 16-bit value}`` out, in
the units and signedness the library decodes (see ``SinglePhaseInverterRegisterGetter`` and
``BatteryRegisterGetter``). Energy counters are truncated to their 0.1 kWh resolution, so
they only ever step up (or back to zero at the inverter's midnight). The other devices have
their own modules: ``render_three_phase`` (IR 1000-1419), ``render_hv`` (BMS, BCU, modules),
``render_rollups`` (EMS and Gateway) and ``render_meter`` (meters at 0x01-0x08).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime

from givbridge.sim.physics import CELLS_PER_PACK, NOMINAL_PACK_VOLTS, Energy, PlantState
from givbridge.sim.profile_spec import InverterProfile, PackSpec
from givbridge.sim.weather import Site

#: LiFePO4 open-circuit cell voltage (V) against state of charge (%).
_OCV_CURVE = (
    (0.0, 2.95), (5.0, 3.10), (10.0, 3.20), (20.0, 3.24), (30.0, 3.26), (40.0, 3.28), (50.0, 3.29),
    (60.0, 3.30), (70.0, 3.31), (80.0, 3.33), (90.0, 3.35), (95.0, 3.38), (100.0, 3.45),
)  # fmt: skip
CELL_RESISTANCE_OHM = 0.0012
#: IR(91) status word; the corpus shows it toggling between 0x0610 and 0x0E10 with no known meaning.
_PACK_STATUS_WORD = 0x0610
#: IR(115) on every captured LV pack.
_PACK_IR115 = 8
#: Nominal MPP voltages (V) of the two strings.
_STRING_VMP = (380.0, 330.0)


def u16(value: float) -> int:
    return min(0xFFFF, max(0, round(value)))


def s16(value: float) -> int:
    return min(0x7FFF, max(-0x8000, round(value))) & 0xFFFF


def u32(value: float) -> tuple[int, int]:
    raw = min(0xFFFFFFFF, max(0, int(value)))
    return raw >> 16, raw & 0xFFFF


def s32(value: float) -> tuple[int, int]:
    raw = min(0x7FFFFFFF, max(-0x80000000, int(value))) & 0xFFFFFFFF
    return raw >> 16, raw & 0xFFFF


def text_registers(text: str, count: int) -> list[int]:
    """ASCII text in ``count`` big-endian registers, NUL-padded (serials, firmware names)."""
    data = text.encode("ascii").ljust(2 * count, b"\x00")[: 2 * count]
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * count, 2)]


def deci_kwh(wh: float) -> int:
    """A Wh accumulator as the 0.1 kWh count the inverter reports (truncated, never rounded up)."""
    return int(wh // 100)


def serial_registers(serial: str) -> list[int]:
    """A 10-character serial as the five big-endian ASCII registers it is stored in."""
    return text_registers(serial, 5)


def load_energy(energy: Energy, *, today: bool, ac_coupled_pv: bool) -> float:
    """House consumption (Wh) the counters imply: what the inverter and any separate PV delivered, net of the grid."""
    if today:
        delivered = energy.inverter_out_today - energy.ac_charge_today
        grid = energy.import_today - energy.export_today
        pv = energy.pv1_today + energy.pv2_today
    else:
        delivered = energy.inverter_out_total - energy.ac_charge_total
        grid = energy.import_total - energy.export_total
        pv = energy.pv_total
    return max(delivered + grid + (pv if ac_coupled_pv else 0.0), 0.0)


def open_circuit_voltage(soc: float) -> float:
    """Cell voltage (V) at rest for a state of charge, interpolated on the LiFePO4 curve."""
    soc = min(100.0, max(0.0, soc))
    for (soc_low, v_low), (soc_high, v_high) in itertools.pairwise(_OCV_CURVE):
        if soc <= soc_high:
            return v_low + (v_high - v_low) * (soc - soc_low) / (soc_high - soc_low)
    return _OCV_CURVE[-1][1]


@dataclass(frozen=True, slots=True)
class Pack:
    """One fitted LV pack: what stays fixed for its life."""

    serial: str
    spec: PackSpec
    share: float  # fraction of the plant's battery capacity (and power) this pack carries
    soc_offset: float  # how far this pack's SOC sits from the plant average
    health: float  # calibrated capacity / design capacity
    cell_offsets_mv: tuple[int, ...]  # per-cell spread, 16 values
    sensor_offsets_c: tuple[float, ...]  # cells 1-4, 5-8, 9-12, 13-16
    #: The plant's battery discharge (Wh) this pack's own counters do not count (a BMS reset).
    uncounted_discharge_wh: float = 0.0


def pack_soc(pack: Pack, state: PlantState) -> float:
    return min(100.0, max(0.0, state.soc + pack.soc_offset))


def pack_current(pack: Pack, state: PlantState) -> float:
    """Pack current (A), positive discharging."""
    return state.flows.battery_w * pack.share / NOMINAL_PACK_VOLTS


def cell_voltages_mv(pack: Pack, state: PlantState) -> list[int]:
    resting = open_circuit_voltage(pack_soc(pack, state))
    loaded = resting - pack_current(pack, state) * CELL_RESISTANCE_OHM
    return [round(loaded * 1000) + offset for offset in pack.cell_offsets_mv]


def pack_output_mv(pack: Pack, state: PlantState) -> int:
    return sum(cell_voltages_mv(pack, state)) - 40  # busbar and fuse drop to the terminals


def pack_registers(pack: Pack, state: PlantState) -> dict[int, int]:
    """IR(60-119) of one LV pack, as the inverter relays its BMS page."""
    cells = cell_voltages_mv(pack, state)
    soc = pack_soc(pack, state)
    current = pack_current(pack, state)
    temps = [state.thermal.battery_c + offset for offset in pack.sensor_offsets_c]
    design_centi_ah = pack.spec.design_ah * 100
    calibrated = design_centi_ah * pack.health
    pack_wh = pack.spec.design_ah * NOMINAL_PACK_VOLTS
    energy = state.energy
    cycles = (energy.battery_discharge_total - pack.uncounted_discharge_wh) * pack.share / pack_wh
    image = {60 + n: u16(mv) for n, mv in enumerate(cells)}
    image.update({76 + n: s16(t * 10) for n, t in enumerate(temps)})
    image[80] = u16(sum(cells))
    image[81] = s16((state.thermal.battery_c + 2 + abs(current) * 0.05) * 10)
    image[82], image[83] = u32(pack_output_mv(pack, state))
    image[84], image[85] = u32(calibrated)
    image[86], image[87] = u32(design_centi_ah)
    image[88], image[89] = u32(calibrated * soc / 100)
    image[91] = _PACK_STATUS_WORD
    image[95] = s16(current * 100)
    image[96] = int(cycles)  # completed cycles
    image[97] = CELLS_PER_PACK
    image[98] = pack.spec.bms_firmware
    image[100] = u16(soc)
    image[101], image[102] = u32(design_centi_ah)
    image[103], image[104] = s16(max(temps) * 10), s16(min(temps) * 10)
    if pack.spec.reports_energy_totals:
        # Stack-level lifetime totals mirrored into every pack; single registers, so they wrap.
        image[105] = deci_kwh(energy.battery_discharge_total) & 0xFFFF
        image[106] = deci_kwh(energy.battery_charge_total) & 0xFFFF
    for n, value in enumerate(serial_registers(pack.serial)):
        image[110 + n] = value
    image[115] = _PACK_IR115
    return {register: image.get(register, 0) for register in range(60, 120)}


def _string_voltage(watts: float, rated_w: float, vmp: float) -> float:
    """A string's operating voltage: near its MPP voltage when lit, collapsing in the dark."""
    fraction = watts / rated_w if rated_w > 0 else 0.0
    if fraction < 0.002:
        return 0.0
    return vmp * (0.9 + 0.1 * math.pow(min(fraction, 1.0), 0.3))


def inverter_input_registers(
    state: PlantState, profile: InverterProfile, site: Site, *, battery_v: float, storage: bool
) -> dict[int, int]:
    """The single-phase register file's input registers (IR 0-299) for this state.

    ``battery_v`` is what the inverter measures on its battery port (the LV bus, or an HV
    stack's terminals); ``storage`` is False on a plant with nothing to charge.
    """
    flows, energy, thermal = state.flows, state.energy, state.thermal
    grid_v = state.grid_v
    image: dict[int, int] = dict(profile.input_constants)

    if not profile.reports_pv:
        # An AC-coupled inverter has no PV input: its PV registers stay at zero.
        (p1, v1, i1), (p2, v2, i2) = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
        pv_today, pv_total = (0.0, 0.0), 0.0
    elif profile.pv_coupling == "ac":
        # The All-in-One meters the site's separate PV on its AC side and reports it as
        # string 1; its "string voltage" is the grid's (library manifest, hass#281).
        p1, v1, i1 = flows.pv_w, grid_v, flows.pv_w / grid_v
        p2, v2, i2 = 0.0, 0.0, 0.0
        pv_today, pv_total = (energy.pv1_today + energy.pv2_today, 0.0), energy.pv_total
    else:
        strings = []
        for watts, share, vmp in (
            (flows.pv1_w, site.string_1_share, _STRING_VMP[0]),
            (flows.pv2_w, 1 - site.string_1_share, _STRING_VMP[1]),
        ):
            volts = _string_voltage(watts, site.pv_kwp * 1000 * share, vmp)
            strings.append((watts, volts, watts / volts if volts else 0.0))
        (p1, v1, i1), (p2, v2, i2) = strings
        pv_today, pv_total = (energy.pv1_today, energy.pv2_today), energy.pv_total

    apparent = abs(flows.inverter_w) / 0.98 + 40  # the output stage draws ~40 VA idling
    status = 2 if flows.battery_w < -1 else 5 if flows.battery_w > 1 else 0

    image[0] = 1  # normal
    image[1], image[2] = u16(v1 * 10), u16(v2 * 10)
    image[3] = u16(grid_v * 1.77 * 10)  # DC bus sits ~1.77x the grid RMS voltage
    image[5] = u16(grid_v * 10)
    if storage:
        image[6], image[7] = u32(deci_kwh(energy.battery_charge_total + energy.battery_discharge_total))
    image[8], image[9] = u16(i1 * 10), u16(i2 * 10)
    image[10] = u16(abs(flows.inverter_w) / grid_v * 10)
    image[11], image[12] = u32(deci_kwh(pv_total))
    image[13] = u16(state.grid_hz * 100)
    image[14] = status
    image[15] = 2950  # high-brightness bus: 285-310 V on every captured unit
    image[16] = u16(10000 - min(abs(flows.inverter_w), 5000) / 50)  # offset-unsigned PF, near unity
    image[17], image[18] = deci_kwh(pv_today[0]), u16(p1)
    image[19], image[20] = deci_kwh(pv_today[1]), u16(p2)
    image[21], image[22] = u32(deci_kwh(energy.export_total))
    image[24] = s16(flows.inverter_w)
    image[25] = deci_kwh(energy.export_today)
    image[26] = deci_kwh(energy.import_today)
    image[27], image[28] = u32(deci_kwh(energy.ac_charge_total))
    image[30] = s16(flows.grid_w)
    image[32], image[33] = u32(deci_kwh(energy.import_total))
    image[35] = deci_kwh(energy.ac_charge_today)
    image[41] = s16(thermal.heatsink_c * 10)
    image[42] = u16(flows.load_w)
    image[43] = u16(apparent)
    image[44] = deci_kwh(energy.inverter_out_today)
    image[45], image[46] = u32(deci_kwh(energy.inverter_out_total))
    image[47], image[48] = u32(state.operating_hours)
    image[49] = 1  # system mode, 1 on every captured hybrid
    image[53], image[54] = u16(grid_v * 10), u16(state.grid_hz * 100)
    image[55] = s16(thermal.charger_c * 10)
    image[58] = u16(apparent / grid_v * 100)
    if storage:
        image[50] = u16(battery_v * 100)
        image[51] = s16(flows.battery_w / battery_v * 100) if battery_v else 0
        image[52] = s16(flows.battery_w)
        image[56] = s16(thermal.battery_c * 10)
        image[59] = u16(state.soc)
    image[240] = u16(grid_v * 10)

    layout = profile.battery_energy
    if storage and layout.today_ir36:
        image[36] = deci_kwh(energy.battery_charge_today)
        image[37] = deci_kwh(energy.battery_discharge_today)
    if storage and layout.today_ir182:
        image[182] = deci_kwh(energy.battery_discharge_today)
        image[183] = deci_kwh(energy.battery_charge_today)
    if storage and layout.total_ir180:
        image[180] = deci_kwh(energy.battery_discharge_total) & 0xFFFF
        image[181] = deci_kwh(energy.battery_charge_total) & 0xFFFF
    if storage and layout.total_ir194:
        image[194], image[195] = u32(deci_kwh(energy.battery_charge_total))
        image[196], image[197] = u32(deci_kwh(energy.battery_discharge_total))
    if profile.reports_combined_generation:
        image[247], image[248] = u32(flows.pv_w)
    return image


def clock_registers(local: datetime) -> dict[int, int]:
    """HR35-40 from the inverter's local wall-clock time."""
    return {
        35: local.year - 2000,
        36: local.month,
        37: local.day,
        38: local.hour,
        39: local.minute,
        40: local.second,
    }
