"""Snapshot builder for three-phase inverters (GIV-3HY hybrids and three-phase AC-coupled units).

It follows GivTCP v3.5's ``processThreePhaseInfo``: per-phase grid voltages and currents,
per-phase output and EPS values, the 1000-range energy counters, the HV stack and the
three-phase controls (HR1108-1123), under GivTCP's names. Where GivTCP read a register that
cannot be what its name says, this builder reads the right one:

- ``Load_PhaseN_Power`` and ``Export_PhaseN_Power`` came from IR1083-1085 and IR1091-1093
  decoded as unsigned tenths of a watt; those are the grid meter's and the inverter's signed
  per-phase watts (library #185). The house load per phase is inverter minus grid meter,
  the export per phase is the grid meter's, when positive.
- ``PV2_Energy_Today_kWh`` was overwritten by the total PV figure and never published.
- ``Force_Discharge_Enable`` showed HR59 (single-phase timed discharge); the switch it
  reflects, and GivTCP's own setForceDischarge, is HR1122.
- ``Real_Time_Control`` and ``Active_Power_Rate`` showed the single-phase HR166/HR50; the
  three-phase registers are HR1005 and HR1002.
- ``SOC_kWh`` was the *average* of the stacks' stored energy; it is their sum.
- ``Invertor_Max_Bat_Rate`` was 25 A x 80 V x the LV pack count, which is 0 on an HV stack;
  it counts HV modules.

It also publishes the single-phase leaves Predbat reads, which GivTCP left out on
three-phase units: ``Battery_Power``, ``Grid_Power``, ``Import_Power``,
``Battery_Power_Reserve`` (HR1109) and the ``Power/Flows`` values.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from givbridge.plant import derive, vocab
from givbridge.plant._library import ModelView, PlantView
from givbridge.plant.families import Family
from givbridge.plant.sections import (
    DeviceValues,
    ValueSink,
    battery_times,
    button_states,
    calibration_section,
    energy_counters,
    flows_section,
    hv_stack_section,
    inverter_time,
    meter_section,
    pv_section,
    raw_section,
    timeslots_section,
)

FAMILIES = frozenset({"hybrid-3ph", "ac-3ph"})
_PHASES = (1, 2, 3)


def _watts(value: float | None) -> int | None:
    """A power the library decodes in tenths of a watt, as whole watts."""
    return round(value) if value is not None else None


def build_three_phase(view: PlantView, family: Family, *, taken_at: datetime, tz: tzinfo) -> DeviceValues:
    inv = view.inverter
    device = DeviceValues.of(
        view,
        family,
        firmware=inv.text("tph_firmware_version") or inv.text("firmware_version"),
        battery_serials=tuple(
            s for stack in view.hv_stacks for module in stack.modules if (s := module.text("serial_number"))
        ),
    )
    sink = ValueSink(device.values)
    totals = hv_stack_section(view, family, sink)
    modules = sum(stack.bcu.integer("number_of_modules") or 0 for stack in view.hv_stacks)
    max_battery_power = derive.three_phase_battery_max_power(modules)
    _power(view, sink.under("Power"), capacity=totals.design_kwh, stored=totals.stored_kwh, taken_at=taken_at, tz=tz)
    energy_counters(inv, sink.under("Energy"), _ENERGY)
    details = sink.under(view.serial)
    details.put("Invertor_Serial_Number", view.serial)
    details.put("Invertor_Type", family.givtcp_type)
    details.put("Invertor_Software", inv.text("tph_software_version"))
    details.put("Invertor_Firmware", inv.text("tph_firmware_version"))
    details.put("status", vocab.givtcp_enum_word(inv.enum_name("status")))
    details.put("DC_Status", vocab.givtcp_enum_word(inv.enum_name("dc_status")))
    details.put("Start_Delay_Time", inv.integer("start_delay_time"))
    details.put("Battery_Type", vocab.givtcp_enum_word(inv.enum_name("battery_type")))  # HR1080
    details.put("Battery_Capacity_kWh", totals.design_kwh)
    details.put("Invertor_Max_Bat_Rate", max_battery_power)
    details.put("Invertor_Max_Inv_Rate", inv.integer("inverter_max_power"))
    details.put("Inverter_Temperature", inv.number("t_inverter"))
    details.put("Boost_Temperature", inv.number("t_boost"))
    details.put("Buck_Boost_Temperature", inv.number("t_buck_boost"))
    details.put("Battery_Calibration_Status", vocab.givtcp_enum_word(inv.enum_name("battery_calibration_stage")))
    details.put("Invertor_Time", inverter_time(view, taken_at=taken_at, tz=tz))
    timeslots_section(view, family, sink.under("Timeslots"))
    _control(inv, sink.under("Control"), max_battery_power=max_battery_power)
    meter_section(view, sink)
    device.raw = raw_section(view, family)
    return device


def _power(
    view: PlantView, sink: ValueSink, *, capacity: float | None, stored: float | None, taken_at: datetime, tz: tzinfo
) -> None:
    inv = view.inverter
    power = sink.under("Power")
    pv = pv_section(inv, power, pv_1=_watts(inv.number("p_pv1")), pv_2=_watts(inv.number("p_pv2")))
    currents = (inv.number("i_pv1"), inv.number("i_pv2"))
    if None not in currents:
        power.put("PV_Current", round(sum(c for c in currents if c is not None), 1))
    for phase in _PHASES:
        power.put(f"Grid_Phase{phase}_Voltage", inv.number(f"v_ac{phase}"))  # line to line
        power.put(f"Grid_Phase{phase}_Current", inv.number(f"i_ac{phase}"))
        power.put(f"Output_Phase{phase}_Voltage", inv.number(f"v_out_ac{phase}"))
        power.put(f"EPS_Phase{phase}_Power", _watts(inv.number(f"p_eps_ac{phase}")))
        inverter_phase = inv.integer(f"p_inverter_active_ac{phase}")  # IR1091-1093, signed W
        meter_phase = inv.integer(f"p_meter_active_ac{phase}")  # IR1083-1085, signed W, + export
        if inverter_phase is not None and meter_phase is not None:
            power.put(f"Load_Phase{phase}_Power", max(inverter_phase - meter_phase, 0))
            power.put(f"Export_Phase{phase}_Power", max(meter_phase, 0))
    power.put("Grid_Frequency", inv.number("f_ac1"))
    power.put("EPS_Nominal_Frequency", inv.number("f_nominal_eps"))
    power.put("Export_Power", _watts(inv.number("p_export")))
    power.put("Meter2_Power", _watts(inv.number("p_meter2")))
    power.put("Inverter_Power_Out", _watts(inv.number("p_inverter_out")))
    power.put("AC_Charge_Power", _watts(inv.number("p_inverter_ac_charge")))
    power.put("Grid_Apparent_Power", _watts(inv.number("p_grid_apparent")))
    grid_import, grid_export = _watts(inv.number("p_meter_import")), _watts(inv.number("p_meter_export"))
    power.put("Meter_Import_Power", grid_import)
    power.put("Meter_Export_Power", grid_export)
    grid = grid_export - grid_import if grid_import is not None and grid_export is not None else None
    power.put("Grid_Power", grid)
    power.put("Import_Power", grid_import)
    load = _watts(inv.number("p_load_all"))
    power.put("Load_Power", load)

    soc = inv.integer("battery_soc")  # IR1132
    charge, discharge = _watts(inv.number("p_battery_charge")), _watts(inv.number("p_battery_discharge"))
    battery = discharge - charge if charge is not None and discharge is not None else None
    power.put("SOC", soc)
    power.put("SOC_kWh", stored)
    power.put("Battery_Power", battery)
    power.put("Battery_Charge_Power", charge)
    power.put("Battery_Discharge_Power", discharge)
    power.put("Battery_Current", inv.number("i_battery"))
    power.put("PCS_Voltage", inv.number("v_battery_pcs"))
    power.put("BMS_Voltage", inv.number("v_battery_bms"))
    if soc is not None and capacity is not None and charge is not None and discharge is not None:
        now = taken_at.astimezone(tz)
        battery_times(power, inv, soc=soc, capacity=capacity, charge=charge, discharge=discharge, now=now)

    flows_section(sink, pv=pv, load=load, battery=battery, grid=grid)


_ENERGY = {
    "Inverter_Out": "e_inverter_out",
    "PV1": "e_pv1",
    "PV2": "e_pv2",
    "AC_Charge": "e_ac_charge",
    "Import": "e_import",
    "Export": "e_export",
    "Battery_Discharge": "e_battery_discharge",
    "Battery_Charge": "e_battery_charge",
    "Load": "e_load",
    "Export2": "e_export2",
    "PV": "e_pv",  # IR1412/1413, IR1374/1375
}


def _control(inv: ModelView, sink: ValueSink, *, max_battery_power: int | None) -> None:
    eco_code = inv.integer("battery_power_mode")  # HR27
    eco = None if eco_code is None else eco_code == 1
    timed_discharge = inv.flag("enable_discharge")  # HR59
    reserve = inv.integer("battery_soc_reserve")  # HR1109
    sink.put("Mode", derive.battery_mode(eco=eco, timed_discharge=timed_discharge, reserve_soc=reserve))
    force_charge, ac_charge = inv.flag("force_charge_enable"), inv.flag("ac_charge_enable")  # HR1123, HR1112
    if force_charge is not None and ac_charge is not None:
        # GivTCP's three-phase charge schedule: forced charging with AC charging allowed.
        sink.put("Enable_Charge_Schedule", vocab.enable_word(force_charge and ac_charge))
    sink.put("Enable_Discharge_Schedule", vocab.enable_word(timed_discharge))
    sink.put("Enable_Charge_Target", vocab.enable_word(inv.flag("enable_charge_target")))  # HR20
    sink.put("Target_SOC", inv.integer("charge_target_soc"))  # HR1111
    sink.put("Battery_Power_Reserve", reserve)
    sink.put("Battery_Power_Cutoff", inv.integer("battery_reserve_soc"))  # HR1078
    charge_ac, discharge_ac = inv.integer("battery_charge_limit_ac"), inv.integer("battery_discharge_limit_ac")
    sink.put("Battery_Charge_Rate", derive.percent_of(max_battery_power, charge_ac))  # HR1110
    sink.put("Battery_Discharge_Rate", derive.percent_of(max_battery_power, discharge_ac))  # HR1108
    sink.put("Battery_Charge_Rate_AC", charge_ac)
    sink.put("Battery_Discharge_Rate_AC", discharge_ac)
    sink.put("Force_Charge_Enable", vocab.enable_word(force_charge))
    sink.put("Force_Discharge_Enable", vocab.enable_word(inv.flag("force_discharge_enable")))  # HR1122
    sink.put("Force_AC_Charge_Enable", vocab.enable_word(ac_charge))
    sink.put("Active_Power_Rate", inv.integer("active_rate"))  # HR1002
    sink.put("Real_Time_Control", vocab.enable_word(inv.flag("real_time_control")))  # HR1005
    calibration_section(inv, sink)
    button_states(sink)
