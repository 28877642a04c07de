"""Snapshot sections shared by the family builders: batteries, meters, slots, controls, clock, ``raw``.

A family builder (``single_phase``, ``hv``, ``three_phase``, ``ems``, ``gateway``, ``pv``)
writes its own device-level groups and calls these for the parts that look the same on every
model, so a meter, an LV pack or an HV stack is named identically whatever it hangs off, and
models that share a register map (the single-phase HR map behind hybrids, AC, All-in-One and
Gateway) share one reading of it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo

from givbridge.clock import wall_time_near
from givbridge.plant import derive, vocab
from givbridge.plant import registers as reg
from givbridge.plant._library import HvStackView, JsonScalar, ModelView, PlantView
from givbridge.plant.families import Family
from givbridge.plant.snapshot import Deferred, DeviceInfo, Scalar

STACK = "Battery_Details/Battery_Stack_1"  # GivTCP puts every LV pack in one stack
_MIDNIGHT = time(0, 0)
_FACTORY_CLOCK_YEAR = 2000  # HR35 reads 0 (year 2000) until the clock has been set
# All-in-One modules fill 12 temperature sensors and leave IR102-113 at 0; HV BMUs fill 24.
_AIO_MODULE_SENSORS = 12
_BMU_MODULE_SENSORS = 24
_CELLS_PER_MODULE = 24


@dataclass(slots=True)
class DeviceValues:
    """What a family builder returns: identity, published values and the raw section."""

    info: DeviceInfo
    values: dict[str, Scalar] = field(default_factory=dict)
    raw: Mapping[str, Scalar] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        view: PlantView,
        family: Family,
        *,
        firmware: str | None,
        battery_serials: tuple[str, ...] = (),
        managed: tuple[str, ...] = (),
    ) -> DeviceValues:
        """A builder's result, begun with the identity every family states the same way."""
        info = DeviceInfo(
            serial=view.serial,
            model=family.display,
            family=family.key,
            firmware=firmware,
            battery_serials=battery_serials,
            meter_ids=tuple(meter_id for meter_id, _ in view.meters),
            managed=managed,
        )
        return cls(info)


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
            # Interned: every poll of every inverter names its values with the same few hundred
            # paths, which the publishers, discovery and hygiene keep as keys; one copy of each
            # serves them all (and their dict lookups compare by identity).
            self._values[sys.intern(self._prefix + leaf)] = value


def pv_section(inv: ModelView, power: ValueSink, *, pv_1: int | None, pv_2: int | None) -> int | None:
    """The two strings' power (``pv_1``/``pv_2``, in W), their sum, voltages and currents; returns the sum.

    The library leaves the voltages and currents None on AC units and the AIO, where these
    registers echo the AC side.
    """
    pv = pv_1 + pv_2 if pv_1 is not None and pv_2 is not None else None
    power.put("PV_Power_String_1", pv_1)
    power.put("PV_Power_String_2", pv_2)
    power.put("PV_Power", pv)
    power.put("PV_Voltage_String_1", inv.number("v_pv1"))
    power.put("PV_Voltage_String_2", inv.number("v_pv2"))
    power.put("PV_Current_String_1", inv.number("i_pv1"))
    power.put("PV_Current_String_2", inv.number("i_pv2"))
    return pv


#: GivTCP's energy periods, each with the suffix of the library's counter for it.
ENERGY_PERIODS = (("Today", "today"), ("Total", "total"))


def energy_counters(model: ModelView, sink: ValueSink, fields: Mapping[str, str]) -> None:
    """``<Period>/<name>_Energy_<Period>_kWh`` for each name, from the library's ``<field>_today``/``_total``."""
    for period, suffix in ENERGY_PERIODS:
        out = sink.under(period)
        for name, field_name in fields.items():
            out.put(f"{name}_Energy_{period}_kWh", model.number(f"{field_name}_{suffix}"))


def battery_times(
    power: ValueSink,
    inv: ModelView,
    *,
    soc: int,
    capacity: float,
    charge: int,
    discharge: int,
    now: datetime,
) -> None:
    """Charge/Discharge_Time_Remaining and _Completion_Time, for the inverter's charge target and reserve.

    Every family's model names them alike (HR116/HR110 single-phase, HR1111/HR1109 three-phase).
    """
    target, reserve = inv.integer("charge_target_soc"), inv.integer("battery_soc_reserve")
    if target is not None:
        minutes = derive.charge_time_remaining(soc=soc, target_soc=target, capacity_kwh=capacity, charge_power=charge)
        power.put("Charge_Time_Remaining", minutes)
        power.put("Charge_Completion_Time", derive.completion_time(now, minutes))
    if reserve is not None:
        minutes = derive.discharge_time_remaining(
            soc=soc, reserve_soc=reserve, capacity_kwh=capacity, discharge_power=discharge
        )
        power.put("Discharge_Time_Remaining", minutes)
        power.put("Discharge_Completion_Time", derive.completion_time(now, minutes))


def flows_section(sink: ValueSink, *, pv: int | None, load: int | None, battery: int | None, grid: int | None) -> None:
    """Power/Flows: GivTCP's seven power flows, when every power they come from is known."""
    if pv is None or load is None or battery is None or grid is None:
        return
    flows = derive.power_flows(pv=pv, load=load, battery_power=battery, grid_power=grid)
    out = sink.under("Flows")
    out.put("Solar_to_House", flows.solar_to_house)
    out.put("Solar_to_Battery", flows.solar_to_battery)
    out.put("Solar_to_Grid", flows.solar_to_grid)
    out.put("Battery_to_House", flows.battery_to_house)
    out.put("Battery_to_Grid", flows.battery_to_grid)
    out.put("Grid_to_House", flows.grid_to_house)
    out.put("Grid_to_Battery", flows.grid_to_battery)


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


def lv_usable_capacity_kwh(view: PlantView, nominal_kwh: float | None) -> float | None:
    """The LV packs' real full-charge capacity (kWh), or None to use the nominal one (see derive)."""
    packs = [(pack.number("cap_calibrated"), pack.number("cap_design")) for pack in view.batteries]
    return derive.usable_capacity_kwh(packs, nominal_kwh=nominal_kwh)


def battery_capacity_kwh(view: PlantView, family: Family) -> float | None:
    """Nominal battery capacity (kWh): the basis of the rate registers, and of SOC_kWh without a better one.

    The library multiplies HR55 (Ah) by the nominal voltage of the model's *coarse* device
    family, the first digit of the device type code. That is right for the LV families
    (51.2 V) and the All-in-One (307 V), but the Gen4 hybrid (83xx) and the HV Gen3 (81xx)
    share the All-in-One's digit: a Gen4's LV packs would read six times too big. Gen4 uses
    the LV voltage instead; the HV Gen3's stack voltage comes from its BCU's module count.
    """
    if family.key == "hybrid-gen4":
        return derive.capacity_from_ah(view.inverter.integer("battery_capacity_ah"), derive.LV_PACK_VOLTS)
    if family.key == "hybrid-hv-gen3" and view.hv_stacks:
        modules = sum(stack.bcu.integer("number_of_modules") or 0 for stack in view.hv_stacks)
        volts = modules * derive.HV_MODULE_VOLTS
        return derive.capacity_from_ah(view.inverter.integer("battery_capacity_ah"), volts)
    return derive.battery_capacity_kwh(view.inverter.number("battery_capacity_kwh"))


@dataclass(frozen=True, slots=True)
class StackTotals:
    """What the HV stacks add up to, GivTCP's way (usable kWh: 90 % of nominal)."""

    design_kwh: float | None
    stored_kwh: float | None


def hv_stack_section(view: PlantView, family: Family, sink: ValueSink) -> StackTotals:
    """``Battery_Details/Battery_Stack_<n>/*`` for every HV stack: BCU readings and each module's cells.

    Values as GivTCP's ``getBatteries`` publishes them, with two fixes: ``Stack_Power`` is the
    BCU's voltage times its current (GivTCP decoded IR79 as milliwatts, which reads 65.5 for a
    small negative power), and every module of a BMU stack shows its 24 temperature sensors
    (GivTCP showed 24 only on three-phase units; the HV Gen3's modules carry 24 as well).
    """
    designs: list[float] = []
    stored: list[float] = []
    sensors = _AIO_MODULE_SENSORS if family.key == "aio" else _BMU_MODULE_SENSORS
    for number, stack in enumerate(view.hv_stacks, start=1):
        out = sink.under(f"Battery_Details/Battery_Stack_{number}")
        bcu = stack.bcu
        volts, amps = bcu.number("battery_voltage"), bcu.number("battery_current")
        high, low = bcu.integer("battery_soc_max"), bcu.integer("battery_soc_min")
        out.put("Stack_Voltage", volts)
        out.put("Stack_Current", amps)
        out.put("Stack_Power", round(volts * amps) if volts is not None and amps is not None else None)
        out.put("Stack_SOH", bcu.integer("battery_soh"))
        out.put("Stack_Load_Voltage", bcu.number("load_voltage"))
        out.put("Stack_Cycles", bcu.number("number_of_cycles"))
        out.put("Stack_SOC_High", high)
        out.put("Stack_SOC_Low", low)
        out.put("Stack_SOC_Difference", high - low if high is not None and low is not None else None)
        out.put("Stack_Firmware", bcu.text("pack_software_version"))
        modules = bcu.integer("number_of_modules")
        design = derive.stack_usable_kwh(bcu.number("battery_nominal_capacity_ah"), modules)
        left = derive.stack_usable_kwh(bcu.number("remaining_battery_capacity_ah"), modules)
        out.put("Stack_Design_Capacity", design)
        out.put("Stack_SOC_kWh", left)
        if design is not None:
            designs.append(design)
        if left is not None:
            stored.append(left)
        out.put("Stack_Charge_Energy_Today_kWh", bcu.number("charge_energy_today"))
        out.put("Stack_Discharge_Energy_Today_kWh", bcu.number("discharge_energy_today"))
        out.put("Stack_Charge_Energy_Total_kWh", bcu.number("charge_energy_total"))
        out.put("Stack_Discharge_Energy_Total_kWh", bcu.number("discharge_energy_total"))
        temperatures = _modules_section(stack, out, sensors)
        if family.phases == 3:
            # GivTCP's three-phase stack temperature: the mean of every module sensor.
            out.put("BMS_Temperature", round(sum(temperatures) / len(temperatures), 2) if temperatures else None)
        else:
            out.put("BMS_Temperature", view.inverter.number("t_battery"))  # IR56
    return StackTotals(
        design_kwh=round(sum(designs), 2) if designs else None,
        stored_kwh=round(sum(stored), 2) if stored else None,
    )


def _modules_section(stack: HvStackView, out: ValueSink, sensors: int) -> list[float]:
    """Each module's serial, cell voltages and temperatures; returns every temperature published."""
    temperatures: list[float] = []
    for module in stack.modules:
        serial = module.text("serial_number")
        if serial is None:
            continue
        cells = out.under(serial)
        cells.put("Battery_Serial_Number", serial)
        for cell in range(1, _CELLS_PER_MODULE + 1):
            cells.put(f"Battery_Cell_{cell}_Voltage", module.number(f"v_cell_{cell:02d}"))
        for sensor in range(1, sensors + 1):
            reading = module.number(f"t_cell_{sensor:02d}")
            cells.put(f"Battery_Cell_{sensor}_Temperature", reading)
            if reading is not None:
                temperatures.append(reading)
    return temperatures


def inverter_time(view: PlantView, *, taken_at: datetime, tz: tzinfo) -> datetime | None:
    """The device's clock (HR35-40) as of ``taken_at``, in the site's zone; None before it is set."""
    clock = view.inverter.timestamp("system_time")
    if clock is None or clock.year <= _FACTORY_CLOCK_YEAR:
        return None
    if view.clock_read_at is not None and view.clock_read_at <= taken_at:
        # The clock was read with the settings, less often than this poll: it has run on
        # since then exactly as ours has (as a wall clock: it knows nothing of DST).
        clock += taken_at - view.clock_read_at
    # The inverter keeps local wall time with no zone; GivTCP attaches the site's zone. In
    # the hour a DST change repeats or skips, the reading nearest our clock is the one meant.
    return wall_time_near(clock, tz, taken_at).replace(microsecond=0)


def timeslots_section(view: PlantView, family: Family, sink: ValueSink) -> None:
    """``Timeslots/*``: every charge and discharge slot that has been read, and the pause slot."""
    inv = view.inverter
    for kind, sources in (("Charge", view.charge_slots), ("Discharge", view.discharge_slots)):
        for number, source in enumerate(sources, start=1):
            if not view.has_holding(source.start_register, source.end_register):
                continue  # not read yet: publish nothing rather than a made-up 00:00
            slot = inv.slot(source.field)
            sink.put(f"{kind}_start_time_slot_{number}", slot_time(slot.start if slot else None))
            sink.put(f"{kind}_end_time_slot_{number}", slot_time(slot.end if slot else None))
    if reg.has_pause_registers(family) and view.has_holding(*reg.PAUSE_SLOT):
        slot = inv.slot("battery_pause_slot_1")
        sink.put("Battery_pause_start_time_slot", slot_time(slot.start if slot else None))
        sink.put("Battery_pause_end_time_slot", slot_time(slot.end if slot else None))


def slot_time(value: time | None) -> time:
    """A slot boundary as published: an unset register is midnight."""
    # A slot register that holds no valid HHMM (0, or the 60 sentinel some firmware uses)
    # means "unset"; GivTCP shows unset slots as midnight and its selects expect a time.
    return value if value is not None else _MIDNIGHT


def control_section(
    view: PlantView,
    family: Family,
    sink: ValueSink,
    *,
    capacity: float | None,
    max_battery_power: int | None,
    c100_rates: bool = True,
) -> None:
    """``Control/*`` from the single-phase holding-register map (hybrids, AC, All-in-One, Gateway).

    ``c100_rates`` publishes Battery_Charge_Rate/Battery_Discharge_Rate from HR111/112 (C/100
    of capacity); the Gateway drives its rates through HR313/314 instead.
    """
    inv = view.inverter
    eco = _eco_flag(inv)  # HR27
    timed_discharge = inv.flag("enable_discharge")  # HR59
    reserve = inv.integer("battery_soc_reserve")  # HR110
    sink.put("Mode", derive.battery_mode(eco=eco, timed_discharge=timed_discharge, reserve_soc=reserve))
    sink.put("Eco_Mode", vocab.enable_word(eco))
    sink.put("Enable_Charge_Schedule", vocab.enable_word(inv.flag("enable_charge")))  # HR96
    sink.put("Enable_Discharge_Schedule", vocab.enable_word(timed_discharge))
    sink.put("Enable_Charge_Target", vocab.enable_word(inv.flag("enable_charge_target")))  # HR20
    sink.put("Target_SOC", inv.integer("charge_target_soc"))  # HR116
    if view.extended_slots:
        for number in range(1, len(view.charge_slots) + 1):
            sink.put(f"Charge_Target_SOC_{number}", inv.integer(f"charge_target_soc_{number}"))
        for number in range(1, len(view.discharge_slots) + 1):
            sink.put(f"Discharge_Target_SOC_{number}", inv.integer(f"discharge_target_soc_{number}"))
    sink.put("Battery_Power_Reserve", reserve)
    sink.put("Battery_Power_Cutoff", inv.integer("battery_discharge_min_power_reserve"))  # HR114
    if capacity is not None and c100_rates:
        for leaf, field_name in (
            ("Battery_Charge_Rate", "battery_charge_limit"),
            ("Battery_Discharge_Rate", "battery_discharge_limit"),
        ):
            register = inv.integer(field_name)  # HR111 / HR112
            if register is not None:
                sink.put(
                    leaf, derive.rate_register_to_watts(register, capacity_kwh=capacity, max_power=max_battery_power)
                )
    if view.has_ac_config_block:  # HR313/314, the AC-side limits in percent
        sink.put("Battery_Charge_Rate_AC", inv.integer("battery_charge_limit_ac"))
        sink.put("Battery_Discharge_Rate_AC", inv.integer("battery_discharge_limit_ac"))
    sink.put("Active_Power_Rate", inv.integer("active_power_rate"))  # HR50
    if reg.has_pause_registers(family) and view.has_holding(reg.PAUSE_MODE):
        pause = inv.integer("battery_pause_mode")
        if pause is not None and 0 <= pause < len(vocab.PAUSE_MODES):
            sink.put("Battery_pause_mode", vocab.PAUSE_MODES[pause])
    calibration_section(inv, sink)
    sink.put("Real_Time_Control", vocab.enable_word(inv.flag("enable_rtc")))  # HR166
    button_states(sink)


def calibration_section(inv: ModelView, sink: ValueSink) -> None:
    """``Battery_Calibration`` from HR29, GivTCP's select words."""
    stage = inv.integer("battery_calibration_stage")  # HR29
    if stage is not None:
        sink.put("Battery_Calibration", vocab.CALIBRATION_BY_STAGE.get(stage, vocab.CALIBRATION_RUNNING))


def button_states(sink: ValueSink) -> None:
    """Buttons in GivTCP: their state is a constant so the topic exists for discovery."""
    sink.put("Sync_Time", vocab.DISABLE)
    sink.put("Reboot_Invertor", vocab.DISABLE)


def _eco_flag(inv: ModelView) -> bool | None:
    """HR27 as a flag: 1 is eco (self-consumption), 0 is export."""
    code = inv.integer("battery_power_mode")
    return None if code is None else code == 1


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


def raw_section(view: PlantView, family: Family) -> Mapping[str, Scalar]:
    """GivTCP's ``raw`` tree: every decoded library field, JSON-safe; built when first read.

    Keys are ``invertor/<field>``, ``batteries/<pack serial>/<field>`` and
    ``meters/Meter_ID_<n>/<field>`` (GivTCP's spellings, including ``invertor``). Field names
    are givenergy-modbus's; the few that Predbat reads under GivTCP's older library names are
    added under those names too (see ``_givtcp_raw_aliases``). The decoded models it is read
    from are immutable, so it reads the same whenever it is first read.
    """
    return Deferred(
        functools.partial(
            _raw_fields,
            view.inverter,
            view.batteries,
            view.meters,
            view.hv_stacks,
            (("ems", view.ems), ("gateway", view.gateway)),
            family.givtcp_type,
        )
    )


def _raw_fields(
    inverter_model: ModelView,
    batteries: tuple[ModelView, ...],
    meters: tuple[tuple[int, ModelView], ...],
    hv_stacks: tuple[HvStackView, ...],
    controllers: tuple[tuple[str, ModelView | None], ...],
    givtcp_type: str,
) -> dict[str, JsonScalar]:
    raw: dict[str, JsonScalar] = {}
    inverter = inverter_model.dump()
    inverter.update(_givtcp_raw_aliases(inverter_model))
    # GivTCP serves its model enum's name here (Hybrid_gen1, Ac, All_in_one), not the library's
    # coarse code ("2", "8"): Predbat compares it to decide which controls a unit has.
    inverter["model"] = givtcp_type
    raw.update({f"invertor/{name}": value for name, value in inverter.items()})
    for pack in batteries:
        serial = pack.text("serial_number")
        raw.update({f"batteries/{serial}/{name}": value for name, value in pack.dump().items()})
    for meter_id, meter in meters:
        raw.update({f"meters/Meter_ID_{meter_id}/{name}": value for name, value in meter.dump().items()})
    for number, stack in enumerate(hv_stacks):
        # GivTCP's HV_Battery_Stacks/Stack_<n> (numbered from 0 there), BCU fields then each module.
        prefix = f"HV_Battery_Stacks/Stack_{number}"
        raw.update({f"{prefix}/{name}": value for name, value in stack.bcu.dump().items()})
        for module in stack.modules:
            serial = module.text("serial_number")
            raw.update({f"{prefix}/{serial}/{name}": value for name, value in module.dump().items()})
    for section, model in controllers:
        if model is not None:
            raw.update({f"{section}/{name}": value for name, value in model.dump().items()})
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
