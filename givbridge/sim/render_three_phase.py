"""Input registers of a three-phase inverter: the IR(1000-1419) banks, from the single plant state.

The layout is the library's ``ThreePhaseInverterRegisterGetter`` with the units and signs the
GIV-3HY-11 captures pin: line-to-line grid voltages at IR1061-1063 (about 400 V), 32-bit powers
in 0.1 W with the high word first, per-phase inverter power at IR1091-1093 summing to
IR1069/1070, per-phase meter power at IR1083-1085 positive when exporting, battery current at
IR1140 in 0.01 A positive when discharging, and the firmware in IR1317-1327 rather than in
HR19/HR21. The physics is the single-phase engine's: the house load splits over the phases in
fixed shares and the inverter feeds the three phases equally.

IR(0-59) and IR(120-239) answer with zeros, as on the captured unit.
"""

from __future__ import annotations

import math

from givbridge.sim.physics import PlantState
from givbridge.sim.profile_spec import InverterProfile
from givbridge.sim.render import deci_kwh, load_energy, s16, s32, text_registers, u16, u32
from givbridge.sim.render_meter import PHASE_LOAD_SHARES
from givbridge.sim.weather import Site

#: The captured unit's firmware words: software "ZA1.0", firmware "ZAAA111111", AC/DC DSP and ARM.
_SOFTWARE = "ZA1.0"
_FIRMWARE = "ZAAA111111"
_AC_DSP, _DC_DSP, _ARM = 11043, 10311, 11121
_SQRT3 = math.sqrt(3)


def _deci32(watts: float) -> tuple[int, int]:
    return u32(max(watts, 0.0) * 10)


def three_phase_input_registers(
    state: PlantState, profile: InverterProfile, site: Site, *, battery_v: float
) -> dict[int, int]:
    """IR(0-59), IR(120-239) and IR(1000-1419) of a three-phase hybrid or AC-coupled unit."""
    flows, energy, thermal = state.flows, state.energy, state.thermal
    ac_coupled = profile.pv_coupling == "ac"
    image: dict[int, int] = {}
    phase_v = [state.grid_v + offset for offset in (0.0, -0.4, 0.6)]
    output_v = [v - 0.5 for v in phase_v]
    inverter_phase = flows.inverter_w / 3
    load_phase = [flows.load_w * share for share in PHASE_LOAD_SHARES]
    pv_phase = flows.pv_w / 3 if ac_coupled else 0.0
    grid_phase = [inverter_phase + pv_phase - load for load in load_phase]  # + export

    dc_pv = (0.0, 0.0) if ac_coupled else (flows.pv1_w, flows.pv2_w)
    for n, watts in enumerate(dc_pv):
        volts = 560.0 if watts > 5 else 0.0
        image[1001 + n] = u16(volts * 10)
        image[1009 + n] = u16(watts / volts * 10) if volts else 0
        image[1017 + 2 * n], image[1018 + 2 * n] = _deci32(watts)

    image[1060] = 6
    for n in range(3):
        image[1061 + n] = u16(phase_v[n] * _SQRT3 * 10)
        image[1064 + n] = u16(abs(inverter_phase) / phase_v[n] * 10)
        image[1083 + n] = s16(grid_phase[n])
        image[1091 + n] = s16(inverter_phase)
        image[1094 + n] = u16(output_v[n] * 10)
        image[1181 + n] = u16(output_v[n] * 10)  # EPS outputs follow the grid while it is there
    image[1067] = u16(state.grid_hz * 100)
    image[1069], image[1070] = s32(flows.inverter_w * 10)
    image[1071], image[1072] = _deci32(-flows.inverter_w)
    image[1073], image[1074] = _deci32(abs(flows.inverter_w) / 0.98 + 120)
    image[1075] = 1  # system mode
    image[1076] = 1  # normal
    image[1079], image[1080] = _deci32(-flows.grid_w)
    image[1081], image[1082] = _deci32(flows.grid_w)
    image[1089], image[1090] = _deci32(flows.load_w)

    image[1121] = 1  # lithium
    image[1124] = 1  # DC side normal
    image[1128] = s16(thermal.heatsink_c * 10)
    image[1129] = s16((thermal.heatsink_c - 3) * 10)
    image[1130] = s16(thermal.charger_c * 10)
    image[1131] = u16(battery_v * 10)
    image[1132] = u16(state.soc)
    image[1133] = u16((battery_v + 0.4) * 10)
    image[1134] = image[1135] = u16(max(battery_v, phase_v[0] * _SQRT3) * 1.5 * 10)
    image[1136], image[1137] = _deci32(flows.battery_w)
    image[1138], image[1139] = _deci32(-flows.battery_w)
    image[1140] = s16(flows.battery_w / battery_v * 100) if battery_v else 0
    image[1180] = u16(state.grid_hz * 100)

    image[1240], image[1241] = _deci32(flows.grid_w)

    image.update(zip(range(1317, 1320), text_registers(_SOFTWARE, 3), strict=True))
    image.update(zip(range(1320, 1325), text_registers(_FIRMWARE, 5), strict=True))
    image[1325], image[1326], image[1327] = _AC_DSP, _DC_DSP, _ARM

    pv_share = site.string_1_share
    counters = {
        1360: energy.inverter_out_today,
        1362: energy.inverter_out_total,
        1366: 0.0 if ac_coupled else energy.pv1_today,
        1368: 0.0 if ac_coupled else energy.pv_total * pv_share,
        1370: 0.0 if ac_coupled else energy.pv2_today,
        1372: 0.0 if ac_coupled else energy.pv_total * (1 - pv_share),
        1374: 0.0 if ac_coupled else energy.pv_total,
        1376: energy.ac_charge_today,
        1378: energy.ac_charge_total,
        1380: energy.import_today,
        1382: energy.import_total,
        1384: energy.export_today,
        1386: energy.export_total,
        1388: energy.battery_discharge_today,
        1390: energy.battery_discharge_total,
        1392: energy.battery_charge_today,
        1394: energy.battery_charge_total,
        1396: load_energy(energy, today=True, ac_coupled_pv=ac_coupled),
        1398: load_energy(energy, today=False, ac_coupled_pv=ac_coupled),
        1412: 0.0 if ac_coupled else energy.pv1_today + energy.pv2_today,
    }
    for register, wh in counters.items():
        image[register], image[register + 1] = u32(deci_kwh(wh))
    return image
