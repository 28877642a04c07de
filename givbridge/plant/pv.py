"""Snapshot builder for the PV-only inverter (device type 23xx): no battery, a reduced value set.

It follows GivTCP v3.5's ``processPVInfo``: PV strings, grid and inverter power, PV,
export and inverter energy, the inverter's details and meters. One fix:
``Power/Flows/Solar_to_House`` was ``min(PV - export, 0)``, never positive; it is what the
PV covers of the house, ``max(PV - export, 0)``.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from givbridge.plant import derive, vocab
from givbridge.plant._library import PlantView
from givbridge.plant.families import Family
from givbridge.plant.sections import DeviceValues, ValueSink, inverter_time, meter_section, pv_section, raw_section

FAMILIES = frozenset({"pv"})


def build_pv(view: PlantView, family: Family, *, taken_at: datetime, tz: tzinfo) -> DeviceValues:
    inv = view.inverter
    device = DeviceValues.of(
        view,
        family,
        firmware=inv.text("firmware_version"),
    )
    sink = ValueSink(device.values)
    power = sink.under("Power/Power")
    pv = pv_section(inv, power, pv_1=inv.integer("p_pv1"), pv_2=inv.integer("p_pv2"))
    power.put("Grid_Voltage", inv.number("v_ac1"))
    power.put("Grid_Current", inv.number("i_grid_port"))
    power.put("Grid_Frequency", inv.number("f_ac1"))
    power.put("Inverter_Output_Frequency", inv.number("f_ac1_output"))
    grid = inv.integer("p_grid_out")  # IR30, + exporting
    export = None
    if grid is not None:
        grid_import, export = derive.split_grid_power(grid)
        power.put("Grid_Power", grid)
        power.put("Import_Power", grid_import)
        power.put("Export_Power", export)
    power.put("Invertor_Power", inv.integer("p_grid_out_ph1"))  # IR24
    if pv is not None and export is not None:
        flows = sink.under("Power/Flows")
        flows.put("Solar_to_House", max(pv - export, 0))
        flows.put("Solar_to_Grid", export)

    # IR44-46: what the inverter generated (the library names it PV generation on DC models).
    out_field = "e_inverter_out" if view.ir44_is_inverter_output else "e_pv_generation"
    today, total = sink.under("Energy/Today"), sink.under("Energy/Total")
    day_1, day_2 = inv.number("e_pv1_day"), inv.number("e_pv2_day")
    today.put("PV_Energy_Today_kWh", round(day_1 + day_2, 1) if day_1 is not None and day_2 is not None else None)
    today.put("Export_Energy_Today_kWh", inv.number("e_grid_out_day"))
    today.put("Invertor_Energy_Today_kWh", inv.number(f"{out_field}_today"))
    total.put("PV_Energy_Total_kWh", inv.number("e_pv_total"))
    total.put("Export_Energy_Total_kWh", inv.number("e_grid_out_total"))
    total.put("Invertor_Energy_Total_kWh", inv.number(f"{out_field}_total"))

    details = sink.under(view.serial)
    details.put("Invertor_Serial_Number", view.serial)
    details.put("Invertor_Type", family.givtcp_type)
    details.put("Invertor_Firmware", inv.text("firmware_version"))
    details.put("Modbus_Version", inv.text("modbus_version"))
    details.put("Meter_Type", vocab.givtcp_enum_word(inv.enum_name("meter_type")))
    details.put("Invertor_Max_Inv_Rate", inv.integer("inverter_max_power"))
    details.put("Invertor_Temperature", inv.number("t_inverter_heatsink"))
    details.put("Export_Limit", inv.integer("grid_port_max_power_output"))  # HR26
    details.put("Invertor_Time", inverter_time(view, taken_at=taken_at, tz=tz))
    meter_section(view, sink)
    device.raw = raw_section(view, family)
    return device
