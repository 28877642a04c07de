"""Snapshot builder for the GivEnergy Gateway and the All-in-Ones it runs in parallel.

It follows GivTCP v3.5's ``processGatewayInfo``: the Gateway's details under ``<serial>``,
its grid, load, PV and battery readings under ``Power/Power``, the site's daily and lifetime
counters under ``Energy``, one ``Inverters/AIO_<n>`` group per paralleled All-in-One, and the
single-phase controls and slots the Gateway answers at HR(0-179). Deviations from GivTCP:

- lifetime counters are the library's kWh figures; GivTCP divided them by 1000 (its own
  decoder read them in Wh), which on the library's decode would publish 12.7 for 12710.8 kWh;
- the plant SOC (the All-in-Ones' mean), SOC_kWh, the time estimates, flows and controls are
  published with one All-in-One as well; GivTCP only did so with more than one;
- Battery_Charge_Rate/Battery_Discharge_Rate are not published: GivTCP derives them from
  HR313/314, a bank the library does not poll on a Gateway.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from givbridge.plant import derive, vocab
from givbridge.plant._library import ModelView, PlantView
from givbridge.plant.families import Family
from givbridge.plant.sections import (
    ENERGY_PERIODS,
    DeviceValues,
    ValueSink,
    battery_times,
    control_section,
    energy_counters,
    flows_section,
    inverter_time,
    meter_section,
    raw_section,
    timeslots_section,
)

FAMILIES = frozenset({"gateway"})
_AIO_SLOTS = range(1, 4)  # the rollup reports up to three All-in-Ones
# GivTCP's per-All-in-One figures for a Gateway plant: 13.5 kWh and 6 kW each.
AIO_CAPACITY_KWH = 13.5
AIO_BATTERY_POWER_W = 6000


def build_gateway(view: PlantView, family: Family, *, taken_at: datetime, tz: tzinfo) -> DeviceValues:
    gateway = view.gateway
    aios = _aio_serials(gateway) if gateway is not None else {}
    device = DeviceValues.of(
        view,
        family,
        firmware=gateway.text("software_version") if gateway is not None else None,
        managed=tuple(aios.values()),
    )
    sink = ValueSink(device.values)
    inv = view.inverter
    count = gateway.integer("parallel_aio_num") if gateway is not None else None
    capacity = round(AIO_CAPACITY_KWH * count, 2) if count else None
    max_battery_power = AIO_BATTERY_POWER_W * count if count else None
    details = sink.under(view.serial)
    details.put("Invertor_Serial_Number", view.serial)
    details.put("Invertor_Type", family.givtcp_type)
    details.put("Invertor_Time", inverter_time(view, taken_at=taken_at, tz=tz))
    details.put("Export_Limit", inv.integer("grid_port_max_power_output"))  # HR26
    details.put("Invertor_Max_Inv_Rate", inv.integer("inverter_max_power"))
    details.put("Invertor_Max_Bat_Rate", max_battery_power)
    details.put("Battery_Capacity_kWh", capacity)
    if gateway is not None:
        details.put("Gateway_Software_Version", gateway.text("software_version"))
        details.put("Parallel_Total_AIO_Number", count)
        details.put("Parallel_Total_AIO_Online_Number", gateway.integer("parallel_aio_online_num"))
        details.put("Gateway_State", vocab.givtcp_enum_word(gateway.coded_name("aio_state", "battery_state")))
        details.put("Gateway_Mode", vocab.spaced_word(gateway.coded_name("work_mode", "work_mode")))
        _power(view, gateway, sink.under("Power"), capacity=capacity, taken_at=taken_at, tz=tz)
        energy_counters(gateway, sink.under("Energy"), _ENERGY)
        _all_in_ones(gateway, aios, sink.under("Inverters"))
    timeslots_section(view, family, sink.under("Timeslots"))
    control_section(
        view, family, sink.under("Control"), capacity=capacity, max_battery_power=max_battery_power, c100_rates=False
    )
    meter_section(view, sink)
    device.raw = raw_section(view, family)
    return device


def _power(
    view: PlantView, gateway: ModelView, sink: ValueSink, *, capacity: float | None, taken_at: datetime, tz: tzinfo
) -> None:
    power = sink.under("Power")
    power.put("Grid_Voltage", gateway.number("v_grid"))
    current = gateway.number("i_grid")  # signed with the grid power; published as a magnitude, like every model's
    power.put("Grid_Current", abs(current) if current is not None else None)
    power.put("Load_Voltage", gateway.number("v_load"))
    power.put("Load_Current", gateway.number("i_load"))
    power.put("PV_Current", gateway.number("i_pv"))
    power.put("Grid_Relay_Voltage", gateway.number("v_grid_relay"))
    power.put("Inverter_Relay_Voltage", gateway.number("v_inverter_relay"))
    grid = gateway.integer("p_ac1")  # + exporting
    pv, load = gateway.integer("p_pv"), gateway.integer("p_load")
    battery = gateway.integer("p_aio_total")  # the library's sign: + discharging
    power.put("Grid_Power", grid)
    power.put("PV_Power", pv)
    power.put("Load_Power", load)
    power.put("Battery_Power", battery)
    power.put("Invertor_Power", battery)
    power.put("Liberty_Power", gateway.integer("p_liberty"))

    socs = [soc for slot in _AIO_SLOTS if (soc := gateway.integer(f"aio{slot}_soc"))]
    if not socs:
        return
    soc = int(sum(socs) / len(socs))  # GivTCP's plant SOC: the All-in-Ones' mean, truncated
    power.put("SOC", soc)
    if capacity is not None:
        power.put("SOC_kWh", derive.soc_kwh(soc, capacity))
    if battery is None or capacity is None:
        return
    charge, discharge = derive.split_battery_power(battery)
    power.put("Charge_Power", charge)
    power.put("Discharge_Power", discharge)
    now = taken_at.astimezone(tz)
    battery_times(power, view.inverter, soc=soc, capacity=capacity, charge=charge, discharge=discharge, now=now)
    flows_section(sink, pv=pv, load=load, battery=battery, grid=grid)


_ENERGY = {
    "Import": "e_grid_import",
    "PV": "e_pv",
    "Export": "e_grid_export",
    "Load": "e_load",
    "Battery_Charge": "e_battery_charge",
    "Battery_Discharge": "e_battery_discharge",
    "Parallel_Total_Charge": "e_aio_charge",
    "Parallel_Total_Discharge": "e_aio_discharge",
}


def _aio_serials(gateway: ModelView) -> dict[int, str]:
    """Rollup slot -> serial of each paralleled All-in-One (empty slots left out, as GivTCP did)."""
    count = gateway.integer("parallel_aio_num") or 0
    found: dict[int, str] = {}
    for slot in _AIO_SLOTS:
        serial = gateway.text(f"aio{slot}_serial_number")
        if slot <= count and serial:
            found[slot] = serial
    return found


def _all_in_ones(gateway: ModelView, aios: dict[int, str], sink: ValueSink) -> None:
    for slot, serial in aios.items():
        out = sink.under(f"AIO_{slot}")
        out.put(f"AIO_{slot}_Serial_Number", serial)
        out.put("SOC", gateway.integer(f"aio{slot}_soc"))
        out.put("Invertor_Power", gateway.integer(f"p_aio{slot}_inverter"))  # + discharging
        for period, suffix in ENERGY_PERIODS:
            out.put(f"AC_Charge_Energy_{period}_kWh", gateway.number(f"e_aio{slot}_charge_{suffix}"))
            out.put(f"AC_Discharge_Energy_{period}_kWh", gateway.number(f"e_aio{slot}_discharge_{suffix}"))
