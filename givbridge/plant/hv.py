"""Snapshot builder for the single-phase HV models: the All-in-One and the HV Gen3 hybrid.

Both answer the single-phase register map (GivTCP builds them with ``processInverterInfo``),
so the device-level groups come from :mod:`single_phase`; what differs is the battery: an HV
stack behind a BCU rather than LV packs. This adds GivTCP's ``Battery_Details/Battery_Stack_<n>``
values and ``<serial>/Battery_Capacity_kWh_calc`` (the stacks' usable capacity).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, tzinfo

from givbridge.plant._library import PlantView
from givbridge.plant.families import Family
from givbridge.plant.sections import DeviceValues, ValueSink, hv_stack_section
from givbridge.plant.single_phase import build_single_phase

FAMILIES = frozenset({"aio", "hybrid-hv-gen3"})


def build_hv_single_phase(view: PlantView, family: Family, *, taken_at: datetime, tz: tzinfo) -> DeviceValues:
    device = build_single_phase(view, family, taken_at=taken_at, tz=tz)
    sink = ValueSink(device.values)
    totals = hv_stack_section(view, family, sink)
    sink.under(view.serial).put("Battery_Capacity_kWh_calc", totals.design_kwh)
    modules = tuple(s for stack in view.hv_stacks for module in stack.modules if (s := module.text("serial_number")))
    device.info = replace(device.info, battery_serials=modules)
    return device
