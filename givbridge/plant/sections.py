"""Snapshot sections shared by every family builder: LV battery packs, meters and ``raw``.

A family builder (``single_phase.py`` today; three-phase, HV, EMS and Gateway later) writes
its own inverter-level groups and calls these for the parts that look the same on every
model, so a meter or an LV pack is named identically whatever it hangs off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from givbridge.plant import derive
from givbridge.plant._library import JsonScalar, ModelView, PlantView
from givbridge.plant.snapshot import DeviceInfo, Scalar

STACK = "Battery_Details/Battery_Stack_1"  # GivTCP puts every LV pack in one stack


@dataclass(slots=True)
class DeviceValues:
    """What a family builder returns: identity, published values and the raw section."""

    info: DeviceInfo
    values: dict[str, Scalar] = field(default_factory=dict)
    raw: dict[str, JsonScalar] = field(default_factory=dict)


class ValueSink:
    """Collects values by GivTCP path, leaving out anything the library could not decode.

    ``under("Power/Power")`` returns a sink that writes into the same mapping with that
    prefix, so a section names only its leaves.
    """

    __slots__ = ("_prefix", "_values")

    def __init__(self, values: dict[str, Scalar], prefix: str = "") -> None:
        self._values = values
        self._prefix = prefix

    def under(self, prefix: str) -> ValueSink:
        return ValueSink(self._values, f"{self._prefix}{prefix}/")

    def put(self, leaf: str, value: Scalar) -> None:
        if value is not None:
            self._values[self._prefix + leaf] = value


def lv_battery_section(view: PlantView, sink: ValueSink) -> None:
    """``Battery_Details/Battery_Stack_1/<pack serial>/*`` for every LV pack, plus the stack's BMS readings."""
    if not view.batteries:
        return
    stack = sink.under(STACK)
    for pack in view.batteries:
        serial = pack.text("serial_number")
        if serial is None:  # is_valid() already checked it; keep the type checker honest
            continue
        out = stack.under(serial)
        out.put("Battery_Serial_Number", serial)
        out.put("Battery_SOC", pack.integer("soc"))
        out.put("Battery_Capacity", pack.number("cap_calibrated"))
        out.put("Battery_Design_Capacity", pack.number("cap_design"))
        out.put("Battery_Remaining_Capacity", pack.number("cap_remaining"))
        out.put("Battery_Firmware_Version", pack.integer("bms_firmware_version"))
        out.put("Battery_Cells", pack.integer("num_cells"))
        out.put("Battery_Cycles", pack.integer("num_cycles"))
        out.put("Battery_USB_present", pack.integer("usb_device_inserted"))
        out.put("Battery_Temperature", pack.number("t_bms_mosfet"))
        out.put("Battery_Voltage", pack.number("v_cells_sum"))
        for cell in range(1, 17):
            out.put(f"Battery_Cell_{cell}_Voltage", pack.number(f"v_cell_{cell:02d}"))
        # Each pack reports four temperature probes, one per group of four cells.
        for probe, cells in enumerate(("01_04", "05_08", "09_12", "13_16"), start=1):
            out.put(f"Battery_Cell_{probe}_Temperature", pack.number(f"t_cells_{cells}"))
    # The inverter's own view of the battery bus (IR56 temperature, IR50 voltage).
    stack.put("BMS_Temperature", view.inverter.number("t_battery"))
    stack.put("BMS_Voltage", view.inverter.number("v_battery"))


def meter_section(view: PlantView, sink: ValueSink) -> None:
    """``Meter_Details/Meter_ID<n>/*`` for every detected meter, n being its bus address."""
    for meter_id, meter in view.meters:
        out = sink.under(f"Meter_Details/Meter_ID{meter_id}")
        for phase in (1, 2, 3):
            out.put(f"Phase_{phase}_Voltage", meter.number(f"v_phase_{phase}"))
            out.put(f"Phase_{phase}_Current", meter.number(f"i_phase_{phase}"))
            out.put(f"Phase_{phase}_Power", meter.integer(f"p_active_phase_{phase}"))
            out.put(f"Phase_{phase}_Power_Factor", meter.number(f"pf_phase_{phase}"))
        out.put("Frequency", meter.number("frequency"))
        out.put("Import_Energy_kWh", meter.number("e_import_active"))
        out.put("Export_Energy_kWh", meter.number("e_export_active"))


def raw_section(view: PlantView) -> dict[str, JsonScalar]:
    """GivTCP's ``raw`` tree: every decoded library field, JSON-safe.

    Keys are ``invertor/<field>``, ``batteries/<pack serial>/<field>`` and
    ``meters/Meter_ID_<n>/<field>`` (GivTCP's spellings, including ``invertor``). Field names
    are givenergy-modbus's; the few that Predbat reads under GivTCP's older library names are
    added under those names too (see ``_givtcp_raw_aliases``).
    """
    raw: dict[str, JsonScalar] = {}
    inverter = view.inverter.dump()
    inverter.update(_givtcp_raw_aliases(view.inverter))
    raw.update({f"invertor/{name}": value for name, value in inverter.items()})
    for pack in view.batteries:
        serial = pack.text("serial_number")
        raw.update({f"batteries/{serial}/{name}": value for name, value in pack.dump().items()})
    for meter_id, meter in view.meters:
        raw.update({f"meters/Meter_ID_{meter_id}/{name}": value for name, value in meter.dump().items()})
    return raw


def _givtcp_raw_aliases(inverter: ModelView) -> dict[str, JsonScalar]:
    """Raw fields Predbat reads by GivTCP's library names, which givenergy-modbus renamed."""
    aliases: dict[str, JsonScalar] = {}
    capacity = derive.battery_capacity_kwh(inverter.number("battery_capacity_kwh"))
    if capacity is not None:
        aliases["battery_nominal_capacity"] = capacity  # Predbat's soc_max fallback, in kWh
    stage = inverter.integer("battery_calibration_stage")
    if stage is not None:
        aliases["soc_force_adjust"] = stage  # Predbat's "calibration running" check
    return aliases
