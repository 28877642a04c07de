"""Snapshot builder for single-phase inverters: Gen1-Gen4 hybrids, Gen3+, Polar, AC, and AIO/HV Gen3 via hv.py.

It reproduces GivTCP v3.5's ``processInverterInfo`` group by group: ``Power/Power``,
``Power/Flows``, ``Energy/Today``, ``Energy/Total``, ``<serial>``, ``Timeslots`` and
``Control``, then the shared battery, meter and raw sections. Register meanings come from
givenergy-modbus (field names in the comments); the arithmetic lives in :mod:`derive`.

Where GivTCP substitutes a previous sample for a suspicious reading (SOC 0, year-2000
clock, empty slot) this builder does not: it publishes what was read, or nothing, and
leaves history-based repair to the data-hygiene layer.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from givbridge.plant import derive, vocab
from givbridge.plant._library import ModelView, PlantView
from givbridge.plant.families import Family
from givbridge.plant.sections import (
    DeviceValues,
    ValueSink,
    battery_capacity_kwh,
    battery_times,
    control_section,
    flows_section,
    inverter_time,
    lv_battery_section,
    lv_usable_capacity_kwh,
    meter_section,
    pv_section,
    raw_section,
    timeslots_section,
)

# The All-in-One and the HV Gen3 hybrid are single-phase too; hv.py builds them on this module.
FAMILIES = frozenset({"hybrid-gen1", "hybrid-gen2", "hybrid-gen3", "hybrid-gen3-plus", "hybrid-gen4", "polar", "ac"})

# Families reporting combined PV + AC generation at IR247/248.
_COMBINED_GENERATION = frozenset({"hybrid-gen3", "hybrid-gen3-plus", "hybrid-gen4"})


def build_single_phase(view: PlantView, family: Family, *, taken_at: datetime, tz: tzinfo) -> DeviceValues:
    inv = view.inverter
    nominal = battery_capacity_kwh(view, family)  # HR55: what the rate registers are a share of
    # What the packs hold when full: the basis of SOC_kWh and the times (and of Battery_Capacity_kWh,
    # which Predbat divides SOC_kWh by, so the two must agree).
    capacity = lv_usable_capacity_kwh(view, nominal) or nominal
    max_battery_power = derive.battery_max_power(family, inv.integer("battery_max_power"))
    device = DeviceValues.of(
        view,
        family,
        firmware=inv.text("firmware_version"),
        battery_serials=tuple(s for b in view.batteries if (s := b.text("serial_number"))),
    )
    sink = ValueSink(device.values)
    _power(view, family, sink.under("Power"), capacity=capacity, taken_at=taken_at, tz=tz)
    _energy(view, sink.under("Energy"))
    _inverter_details(
        view,
        family,
        sink.under(view.serial),
        capacity=capacity,
        nominal=nominal,
        max_battery_power=max_battery_power,
        tz=tz,
        taken_at=taken_at,
    )
    timeslots_section(view, family, sink.under("Timeslots"))
    control_section(view, family, sink.under("Control"), capacity=nominal, max_battery_power=max_battery_power)
    lv_battery_section(view, sink)
    meter_section(view, sink)
    device.raw = raw_section(view, family)
    return device


def _power(
    view: PlantView, family: Family, sink: ValueSink, *, capacity: float | None, taken_at: datetime, tz: tzinfo
) -> None:
    inv = view.inverter
    power = sink.under("Power")
    pv = pv_section(inv, power, pv_1=inv.integer("p_pv1"), pv_2=inv.integer("p_pv2"))
    power.put("Grid_Voltage", inv.number("v_ac1"))
    power.put("Grid_Current", inv.number("i_grid_port"))  # IR58, at the inverter terminal
    power.put("Grid_Frequency", inv.number("f_ac1"))
    power.put("Inverter_Output_Frequency", inv.number("f_ac1_output"))

    grid = inv.integer("p_grid_out")  # IR30, the grid CT: + export
    grid_import = grid_export = None
    if grid is not None:
        grid_import, grid_export = derive.split_grid_power(grid)
    power.put("Grid_Power", grid)
    power.put("Import_Power", grid_import)
    power.put("Export_Power", grid_export)
    power.put("EPS_Power", inv.integer("p_backup"))

    inverter_power = inv.integer("p_grid_out_ph1")  # IR24, inverter AC terminal: - when charging from AC
    power.put("Invertor_Power", inverter_power)
    power.put("AC_Charge_Power", max(-inverter_power, 0) if inverter_power is not None else None)

    load = inv.integer("p_load_demand")
    power.put("Load_Power", load)
    if load is not None and grid_import is not None:
        power.put("Self_Consumption_Power", derive.self_consumption_power(load, grid_import))
    if family.key in _COMBINED_GENERATION:
        power.put("Combined_Generation_Power", inv.integer("p_combined_generation"))

    # With no battery attached there is no battery flow, rather than an unknown one.
    battery = inv.integer("p_battery") if view.has_battery else 0
    if view.has_battery:
        _battery_power(inv, power, battery=battery, capacity=capacity, now=taken_at.astimezone(tz))

    flows_section(sink, pv=pv, load=load, battery=battery, grid=grid)


def _battery_power(
    inv: ModelView, power: ValueSink, *, battery: int | None, capacity: float | None, now: datetime
) -> None:
    soc = inv.integer("battery_soc")  # IR59
    power.put("SOC", soc)
    if soc is not None and capacity is not None:
        power.put("SOC_kWh", derive.soc_kwh(soc, capacity))
    power.put("Battery_Power", battery)
    power.put("Battery_Voltage", inv.number("v_battery"))
    power.put("Battery_Current", inv.number("i_battery"))
    if battery is None:
        return
    charge, discharge = derive.split_battery_power(battery)
    power.put("Charge_Power", charge)
    power.put("Discharge_Power", discharge)
    if soc is None or capacity is None:
        return
    battery_times(power, inv, soc=soc, capacity=capacity, charge=charge, discharge=discharge, now=now)


def _energy(view: PlantView, sink: ValueSink) -> None:
    inv = view.inverter
    # IR44 and IR45/46: PV generation on DC hybrids, the battery-side AC output on AC/AIO.
    # GivTCP publishes the register as "Invertor" energy either way and balances load with it.
    out_field = "e_inverter_out" if view.ir44_is_inverter_output else "e_pv_generation"
    pv_1, pv_2 = inv.number("e_pv1_day"), inv.number("e_pv2_day")
    periods = {
        "Today": {
            "PV": round(pv_1 + pv_2, 1) if pv_1 is not None and pv_2 is not None else None,
            "Import": inv.number("e_grid_in_day"),
            "Export": inv.number("e_grid_out_day"),
            "AC_Charge": inv.number("e_ac_charge_today"),  # IR35
            "Invertor": inv.number(f"{out_field}_today"),
        },
        "Total": {
            "PV": inv.number("e_pv_total"),  # IR11/12
            "Import": inv.number("e_grid_in_total"),
            "Export": inv.number("e_grid_out_total"),
            "AC_Charge": inv.number("e_inverter_in_total"),  # IR27/28
            "Invertor": inv.number(f"{out_field}_total"),
        },
    }
    for period, figures in periods.items():
        out = sink.under(period)
        for name, value in figures.items():
            out.put(f"{name}_Energy_{period}_kWh", value)
        pv, grid_in, grid_out = figures["PV"], figures["Import"], figures["Export"]
        inverter_out, ac_charge = figures["Invertor"], figures["AC_Charge"]
        if (
            pv is not None
            and grid_in is not None
            and grid_out is not None
            and inverter_out is not None
            and ac_charge is not None
        ):
            load = derive.load_energy(
                inverter_output=inverter_out,
                ac_charge=ac_charge,
                grid_import=grid_in,
                grid_export=grid_out,
                extra_pv=pv if view.ir44_is_inverter_output else 0.0,
            )
            out.put(f"Load_Energy_{period}_kWh", load)
        if pv is not None and grid_out is not None:
            out.put(
                f"Self_Consumption_Energy_{period}_kWh", derive.self_consumption_energy(pv=pv, grid_export=grid_out)
            )

    if not view.has_battery:
        return
    today, total = sink.under("Today"), sink.under("Total")
    charge_today, discharge_today = _battery_energy_today(inv)
    today.put("Battery_Charge_Energy_Today_kWh", charge_today)
    today.put("Battery_Discharge_Energy_Today_kWh", discharge_today)
    if charge_today is not None and discharge_today is not None:
        today.put("Battery_Throughput_Today_kWh", round(charge_today + discharge_today, 1))
    total.put("Battery_Throughput_Total_kWh", inv.number("e_battery_throughput"))  # IR6/7
    if view.batteries:
        charge_total, discharge_total = _battery_energy_total(view)
        total.put("Battery_Charge_Energy_Total_kWh", charge_total)
        total.put("Battery_Discharge_Energy_Total_kWh", discharge_total)


def _battery_energy_today(inv: ModelView) -> tuple[float | None, float | None]:
    """Battery charge and discharge today: the library's per-model source, else IR36/37.

    givenergy-modbus routes these only for models where a capture confirmed the register
    (Gen1, Gen2, AC, AIO). For the others it answers None; GivTCP reads IR36/37 on every
    model, so that is the fallback rather than dropping the Energy-dashboard battery sensors.
    """
    charge, discharge = inv.number("e_battery_charge_today"), inv.number("e_battery_discharge_today")
    if charge is None or discharge is None:
        charge, discharge = inv.number("e_battery_charge_today_alt1"), inv.number("e_battery_discharge_today_alt1")
    return charge, discharge


def _battery_energy_total(view: PlantView) -> tuple[float | None, float | None]:
    """Lifetime battery charge and discharge, as GivTCP reads them.

    The first pack's BMS counters (IR106/105) are stack-wide; packs on older BMS firmware
    leave them at 0, and then the inverter's own counters (IR181/180) are used. When both
    pairs read 0 the model supports neither, and a lifetime counter of 0 is not published.
    """
    inv = view.inverter
    pack = view.batteries[0]
    for source, charge_field, discharge_field in (
        (pack, "e_battery_charge_total", "e_battery_discharge_total"),
        (inv, "e_battery_charge_total_alt1", "e_battery_discharge_total_alt1"),
    ):
        charge, discharge = source.number(charge_field), source.number(discharge_field)
        if charge or discharge:
            return charge, discharge
    return None, None


def _inverter_details(
    view: PlantView,
    family: Family,
    sink: ValueSink,
    *,
    capacity: float | None,
    nominal: float | None,
    max_battery_power: int | None,
    tz: tzinfo,
    taken_at: datetime,
) -> None:
    inv = view.inverter
    sink.put("Invertor_Serial_Number", view.serial)
    sink.put("Invertor_Type", family.givtcp_type)
    sink.put("Invertor_Firmware", inv.text("firmware_version"))
    sink.put("Modbus_Version", inv.text("modbus_version"))
    sink.put("Meter_Type", vocab.givtcp_enum_word(inv.enum_name("meter_type")))
    sink.put("Battery_Type", vocab.givtcp_enum_word(inv.enum_name("battery_type")))
    sink.put("Battery_Capacity_kWh", capacity)
    sink.put("Battery_Nominal_Capacity_kWh", nominal)
    sink.put("Invertor_Max_Inv_Rate", inv.integer("inverter_max_power"))
    sink.put("Invertor_Max_Bat_Rate", max_battery_power)
    sink.put("Invertor_Temperature", inv.number("t_inverter_heatsink"))
    sink.put("Export_Limit", inv.integer("grid_port_max_power_output"))  # HR26
    sink.put("Battery_Calibration_Status", vocab.givtcp_enum_word(inv.enum_name("battery_calibration_stage")))
    sink.put("Invertor_Time", inverter_time(view, taken_at=taken_at, tz=tz))
