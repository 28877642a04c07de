"""Snapshot builder for the EMS plant controller.

It follows GivTCP v3.5's ``processEMSInfo``: the controller's own details under ``<serial>``,
one ``Inverters/<serial>`` group per managed inverter from the IR2040 rollup, the plant's
power readings under ``Power`` (with ``Power/Meters`` for the eight meter slots), and the
EMS schedule (three charge, discharge and export slots with their targets) under
``Control`` and ``Timeslots``, with GivTCP's names and paths (the EMS's ``Power`` group has no
``Power`` subgroup in GivTCP, unlike every other model's).

Two deviations:

- ``Power/Grid_Power`` is the grid meter's power *negated*: the rollup reads positive when
  importing (captured busbar balance, library notes), while ``Grid_Power`` is positive when
  exporting on every other model and to every consumer of the leaf.
- The EMS's energy counters (GivTCP's ``Energy/Today`` and ``Energy/Total``) are not
  published: the library does not poll the EMS's IR(0-59) bank they would come from.

``Control/Plant_Control`` (HR2040, GivTCP's setEmsPlant) is published, although GivTCP v3.5
left it commented out: it is the switch everything else on an EMS depends on.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from givbridge.plant import vocab
from givbridge.plant._library import ModelView, PlantView
from givbridge.plant.families import Family
from givbridge.plant.sections import DeviceValues, ValueSink, inverter_time, meter_section, raw_section, slot_time

FAMILIES = frozenset({"ems"})
_MANAGED_SLOTS = range(1, 5)  # the rollup reports up to four inverters
_METER_SLOTS = range(1, 9)
_SCHEDULE_SLOTS = range(1, 4)


def build_ems(view: PlantView, family: Family, *, taken_at: datetime, tz: tzinfo) -> DeviceValues:
    ems = view.ems
    managed = _managed_serials(ems) if ems is not None else {}
    device = DeviceValues.of(
        view,
        family,
        firmware=view.inverter.text("firmware_version"),
        managed=tuple(managed.values()),
    )
    sink = ValueSink(device.values)
    details = sink.under(view.serial)
    details.put("Invertor_Serial_Number", view.serial)
    details.put("Serial_Number", view.serial)
    details.put("Invertor_Type", family.givtcp_type)
    details.put("Invertor_Firmware", view.inverter.text("firmware_version"))
    details.put("Invertor_Time", inverter_time(view, taken_at=taken_at, tz=tz))
    details.put("Export_Limit", view.inverter.integer("grid_port_max_power_output"))  # HR26
    if ems is not None:
        details.put("status", vocab.givtcp_enum_word(ems.coded_name("ems_status", "status")))
        details.put("Inverter_Count", ems.integer("inverter_count"))
        details.put("Meter_Count", ems.integer("meter_count"))
        details.put("Car_Charge_Count", ems.integer("expected_car_charger_count"))
        details.put("Remaining_Battery_Wh", ems.integer("remaining_battery_wh"))
        _inverters(ems, managed, sink.under("Inverters"))
        _power(ems, sink.under("Power"))
        _schedule(view, ems, sink)
    meter_section(view, sink)
    device.raw = raw_section(view, family)
    return device


def _managed_serials(ems: ModelView) -> dict[int, str]:
    """Rollup slot -> serial of each managed inverter (empty slots carry no serial)."""
    found: dict[int, str] = {}
    for slot in _MANAGED_SLOTS:
        raw = ems.text(f"inverter_{slot}_serial_number")
        serial = raw.strip("\x00 ") if raw else ""
        if serial:
            found[slot] = serial
    return found


def _inverters(ems: ModelView, managed: dict[int, str], sink: ValueSink) -> None:
    for slot, serial in managed.items():
        out = sink.under(serial)
        out.put("Serial_Number", serial)
        out.put("Power", ems.integer(f"inverter_{slot}_power"))  # battery power, + discharging
        out.put("SOC", ems.integer(f"inverter_{slot}_soc"))
        out.put("Temperature", ems.number(f"inverter_{slot}_temp"))
        # The rollup's status code: only 0 (absent) and 2 (online) are known (library #108).
        word = ems.coded_name(f"inverter_{slot}_suspected_status", "ems_inverter_status")
        out.put("status", vocab.givtcp_enum_word(word) if word else ems.text(f"inverter_{slot}_status"))


def _power(ems: ModelView, sink: ValueSink) -> None:
    grid = ems.integer("grid_meter_power")  # IR2089, + importing
    sink.put("Grid_Power", -grid if grid is not None else None)
    sink.put("Calculated_Load_Power", ems.integer("calc_load_power"))
    sink.put("Measured_Load_Power", ems.integer("measured_load_power"))
    sink.put("Generation_Load_Power", ems.integer("total_generation_load_power"))
    sink.put("Battery_Power", ems.integer("total_battery_power"))  # + discharging
    sink.put("Other_Battery_Power", ems.integer("other_battery_power"))
    meters = sink.under("Meters")
    for slot in _METER_SLOTS:
        meters.put(f"Meter_{slot}_Power", ems.integer(f"meter_{slot}_power"))  # + flowing in
        meters.put(
            f"Meter_{slot}_Status", vocab.givtcp_enum_word(ems.coded_name(f"meter_{slot}_status", "meter_status"))
        )


def _schedule(view: PlantView, ems: ModelView, sink: ValueSink) -> None:
    control, timeslots = sink.under("Control"), sink.under("Timeslots")
    if not view.has_holding(2040):
        return  # the HR(2040) bank has not been read yet
    enabled = ems.integer("plant_status")  # HR2040
    control.put("Plant_Control", vocab.enable_word(bool(enabled)) if enabled is not None else None)
    for slot in _SCHEDULE_SLOTS:
        control.put(f"EMS_Charge_Target_SOC_{slot}", ems.integer(f"charge_target_{slot}"))
        control.put(f"EMS_Discharge_Target_SOC_{slot}", ems.integer(f"discharge_target_{slot}"))
        control.put(f"Export_Target_SOC_{slot}", ems.integer(f"export_target_{slot}"))
        for kind, prefix in (("charge", "EMS_Charge"), ("discharge", "EMS_Discharge"), ("export", "Export")):
            window = ems.slot(f"{kind}_slot_{slot}")
            timeslots.put(f"{prefix}_start_time_slot_{slot}", slot_time(window.start if window else None))
            timeslots.put(f"{prefix}_end_time_slot_{slot}", slot_time(window.end if window else None))
    mode = ems.integer("car_charge_mode")  # HR2072
    if mode is not None and 0 <= mode < len(vocab.CAR_CHARGE_MODES):
        control.put("Car_Charge_Mode", vocab.CAR_CHARGE_MODES[mode])
    control.put("Car_Charge_Boost", ems.integer("car_charge_boost"))
    control.put("Plant_Charge_Compensation", ems.integer("plant_charge_compensation"))
    control.put("Plant_Discharge_Compensation", ems.integer("plant_discharge_compensation"))
