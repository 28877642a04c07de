"""The simulated plant's physics: pure functions of time, settings and the previous state.

Nothing here runs on its own. The plant calls :func:`advance` on every request with the
time the clock shows, and the state is integrated from where it was left in sub-steps of at
most :data:`MAX_STEP_SECONDS`, so a :class:`~givbridge.clock.ScaledClock` accelerates the
whole plant and an idle simulator costs nothing.

Determinism: the world around the plant (:mod:`givbridge.sim.weather`: PV, house load, grid
voltage/frequency, appliance spikes) is a pure function of (seed, time), so it does not
depend on how often the plant is read. Only the integrated quantities (state of charge,
energy counters, temperatures) depend on the request times, and only through step size.

Sign conventions follow the library's decode: ``battery_w`` (IR52) is positive when the
battery discharges, ``inverter_w`` (IR24) positive when the inverter delivers AC power,
``grid_w`` (IR30) positive when exporting; house load (IR42) is what the inverter delivers
plus what the grid imports (plus, on an AC-coupled site, what its separate PV inverter makes).

Every model shares this one engine. A three-phase unit, an HV stack, an EMS with its managed
inverters or a Gateway with parallel All-in-Ones is the same single power balance with a
bigger :class:`Rating`; the renderers split its flows per phase, per stack module or per
managed unit. :class:`Rating` says whether the PV is DC-coupled (through the inverter's
MPPTs, curtailable) or AC-coupled (a separate PV inverter the unit can neither see on its DC
side nor curtail).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo

from givbridge.sim.weather import Site, ambient_temperature, grid_frequency, grid_voltage, house_load, pv_power

MAX_STEP_SECONDS = 5.0
CELLS_PER_PACK = 16
#: The library's LV battery voltage (Model.system_battery_voltage): Ah x this = Wh.
NOMINAL_PACK_VOLTS = 51.2
INVERTER_EFFICIENCY = 0.96  # DC <-> AC conversion, each way
BATTERY_EFFICIENCY = 0.96  # energy kept per kWh charged, and delivered per kWh drawn


def minute_of_day(hhmm: int) -> int | None:
    """Minutes after midnight for an HHMM register value, or None if it is not a time."""
    hours, minutes = divmod(hhmm, 100)
    if hours >= 24 or minutes >= 60:
        return None
    return hours * 60 + minutes


@dataclass(frozen=True, slots=True)
class Window:
    """A daily time window in minutes after midnight; start == end is an unset slot."""

    start: int
    end: int
    target: int | None = None  # the slot's SOC target on 10-slot firmware

    def contains(self, minute: int) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # wraps past midnight

    @classmethod
    def from_registers(cls, start: int, end: int, target: int | None = None) -> Window | None:
        first, last = minute_of_day(start), minute_of_day(end)
        if first is None or last is None:
            return None
        return cls(first, last, target)


@dataclass(frozen=True, slots=True)
class Controls:
    """The settings the battery logic obeys (register numbers as on single-phase hybrids).

    Other layouts map their own registers onto these fields (see ``ControlMap`` in
    :mod:`givbridge.sim.profile_spec`): three-phase HR1109/1111/1113-1123, the EMS plant
    schedule HR2040-2071.
    """

    eco: bool = True  # HR27: 1 = match demand, 0 = max-power discharge during a discharge slot
    charge_enabled: bool = False  # HR96
    charge_windows: tuple[Window, ...] = ()
    discharge_enabled: bool = False  # HR59
    discharge_windows: tuple[Window, ...] = ()
    reserve: int = 4  # HR110
    charge_limit: int = 50  # HR111, C/100 of capacity (or % of the battery rating, below)
    discharge_limit: int = 50  # HR112
    #: HR1110/1108 (three-phase) and HR313/314 (Gateway) limit the battery in percent of its
    #: rated power rather than in C/100 of its capacity.
    limits_in_percent: bool = False
    target_enabled: bool = False  # HR20
    charge_target: int = 100  # HR116
    pause_mode: int = 0  # HR318: 1 charge, 2 discharge, 3 both
    pause_window: Window | None = None  # HR319/320; pause applies only inside it
    active_power_rate: int = 100  # HR50, % of rated output
    export_limit_w: int = 6000  # HR26
    #: Forced-export windows (EMS export slots, three-phase discharge slots with HR1122 on):
    #: the battery discharges at its limit down to the window's target, whatever the house needs.
    export_windows: tuple[Window, ...] = ()


@dataclass(frozen=True, slots=True)
class Rating:
    """What the hardware can do: AC output, battery port power and the storage's capacity."""

    inverter_w: int
    battery_max_w: int
    capacity_ah: float  # LV packs in parallel add up; an HV stack in series keeps its module Ah
    #: Volts that turn Ah into Wh: 51.2 for LV packs, 76.8 per module of an HV stack.
    nominal_volts: float = NOMINAL_PACK_VOLTS
    #: PV behind a separate inverter on the AC side (AC-coupled units, EMS and Gateway sites).
    ac_coupled_pv: bool = False

    @property
    def capacity_wh(self) -> float:
        return self.capacity_ah * self.nominal_volts


def limit_watts(
    limit_c100: float, capacity_ah: float, battery_max_w: int, nominal_volts: float = NOMINAL_PACK_VOLTS
) -> float:
    """Battery power (W) allowed by an HR111/112 value: C/100 of capacity, capped at the battery rating."""
    return min(limit_c100 / 100 * capacity_ah * nominal_volts, float(battery_max_w))


def battery_cap(limit: int, controls: Controls, rating: Rating) -> float:
    """The battery power (W) a charge or discharge limit register allows on this model."""
    if controls.limits_in_percent:
        return rating.battery_max_w * min(max(limit, 0), 100) / 100
    return limit_watts(limit, rating.capacity_ah, rating.battery_max_w, rating.nominal_volts)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the battery logic asks of the battery, and the SOC bounds it must stop at."""

    battery_w: float  # DC, positive = discharge
    floor: float
    ceiling: float


def decide(controls: Controls, rating: Rating, soc: float, pv_w: float, load_w: float, minute: int) -> Decision:
    """The battery power the firmware would choose this instant (before AC and export caps)."""
    charge_cap = battery_cap(controls.charge_limit, controls, rating)
    discharge_cap = battery_cap(controls.discharge_limit, controls, rating)
    pause_window = controls.pause_window
    if controls.pause_mode and pause_window is not None and pause_window.contains(minute):
        if controls.pause_mode in (1, 3):
            charge_cap = 0.0
        if controls.pause_mode in (2, 3):
            discharge_cap = 0.0

    floor, ceiling = float(controls.reserve), 100.0
    # DC power the battery must supply for the grid to read zero (negative = PV surplus).
    if rating.ac_coupled_pv:
        net = load_w - pv_w  # the PV inverter feeds the house first
        need = net / INVERTER_EFFICIENCY if net > 0 else net * INVERTER_EFFICIENCY
    else:
        need = load_w / INVERTER_EFFICIENCY - pv_w

    def match_demand() -> float:
        return min(need, discharge_cap) if need > 0 else -min(-need, charge_cap)

    def surplus_only() -> float:
        return -min(max(-need, 0.0), charge_cap)

    charge_window = next((w for w in controls.charge_windows if w.contains(minute)), None)
    discharge_window = next((w for w in controls.discharge_windows if w.contains(minute)), None)
    export_window = next((w for w in controls.export_windows if w.contains(minute)), None)
    if export_window is not None:
        floor = max(floor, float(export_window.target or 0))
        battery = discharge_cap
    elif controls.charge_enabled and charge_window is not None:
        slot_target = charge_window.target or 100  # 0: no per-slot target
        target = float(min(slot_target, controls.charge_target if controls.target_enabled else 100))
        if soc < target:
            # AC charge: full charge power, PV first and the grid for the rest, up to the target.
            battery, ceiling = -charge_cap, target
        else:
            battery = surplus_only()  # holding at target: no discharge, PV may still top up
    elif controls.discharge_enabled and discharge_window is not None:
        floor = max(floor, float(discharge_window.target or 0))
        battery = match_demand() if controls.eco else discharge_cap
    elif controls.discharge_enabled:
        battery = surplus_only()  # timed discharge mode: the battery only discharges in its slots
    else:
        battery = match_demand()  # eco / self-consumption

    if (battery > 0 and soc <= floor) or (battery < 0 and soc >= ceiling):
        battery = 0.0
    return Decision(battery, floor, ceiling)


@dataclass(frozen=True, slots=True)
class Flows:
    """Instantaneous power flows (W)."""

    pv1_w: float = 0.0  # string 1 after any curtailment (AC from the PV inverter when AC-coupled)
    pv2_w: float = 0.0
    load_w: float = 0.0
    battery_w: float = 0.0  # DC, + discharge
    inverter_w: float = 0.0  # AC, + delivered by the inverter
    grid_w: float = 0.0  # + export

    @property
    def pv_w(self) -> float:
        return self.pv1_w + self.pv2_w


def _to_ac(dc_w: float) -> float:
    return dc_w * INVERTER_EFFICIENCY if dc_w >= 0 else dc_w / INVERTER_EFFICIENCY


def balance(pv: tuple[float, float], battery_w: float, load_w: float, controls: Controls, rating: Rating) -> Flows:
    """Close the power balance: cap AC output and export, cutting battery discharge before PV."""
    if rating.ac_coupled_pv:
        return _balance_ac_coupled(pv, battery_w, load_w, controls, rating)
    pv_w = pv[0] + pv[1]
    ac_cap = rating.inverter_w * controls.active_power_rate / 100
    ac_out = _to_ac(pv_w + battery_w)
    # Respect both the output rating and the export limit: the inverter may deliver at most
    # load + export limit. Shed battery discharge first, then curtail PV.
    allowed_ac = min(ac_cap, load_w + controls.export_limit_w)
    if ac_out > allowed_ac:
        excess_dc = (ac_out - max(allowed_ac, 0.0)) / INVERTER_EFFICIENCY
        shed = min(max(battery_w, 0.0), excess_dc)
        battery_w -= shed
        excess_dc -= shed
        pv_w = max(0.0, pv_w - excess_dc)
    elif ac_out < -rating.inverter_w:  # AC charging is bounded by the inverter rating too
        battery_w = -rating.inverter_w * INVERTER_EFFICIENCY - pv_w
    scale = pv_w / (pv[0] + pv[1]) if pv[0] + pv[1] > 0 else 0.0
    inverter_w = _to_ac(pv_w + battery_w)
    return Flows(pv[0] * scale, pv[1] * scale, load_w, battery_w, inverter_w, inverter_w - load_w)


def _balance_ac_coupled(
    pv: tuple[float, float], battery_w: float, load_w: float, controls: Controls, rating: Rating
) -> Flows:
    """The balance when PV comes from a separate inverter: only the battery side can be capped."""
    pv_w = pv[0] + pv[1]
    ac_cap = rating.inverter_w * controls.active_power_rate / 100
    # The unit may deliver at most what keeps export within the limit; it cannot curtail the
    # PV inverter, so only battery discharge is shed.
    allowed_ac = max(min(ac_cap, load_w - pv_w + controls.export_limit_w), 0.0)
    if battery_w > 0 and _to_ac(battery_w) > allowed_ac:
        battery_w = allowed_ac / INVERTER_EFFICIENCY
    battery_w = max(battery_w, -rating.inverter_w * INVERTER_EFFICIENCY)
    inverter_w = _to_ac(battery_w)
    return Flows(pv[0], pv[1], load_w, battery_w, inverter_w, inverter_w + pv_w - load_w)


# --------------------------------------------------------------------------------------
# State and integration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Energy:
    """Energy counters in Wh, as the inverter accumulates them (rendered at 0.1 kWh)."""

    pv1_today: float = 0.0
    pv2_today: float = 0.0
    pv_total: float = 0.0
    import_today: float = 0.0
    import_total: float = 0.0
    export_today: float = 0.0
    export_total: float = 0.0
    ac_charge_today: float = 0.0  # AC energy into the inverter (IR35, IR27/28)
    ac_charge_total: float = 0.0
    inverter_out_today: float = 0.0  # AC energy out of the inverter (IR44, IR45/46)
    inverter_out_total: float = 0.0
    battery_charge_today: float = 0.0  # DC energy into the battery
    battery_charge_total: float = 0.0
    battery_discharge_today: float = 0.0
    battery_discharge_total: float = 0.0

    def add(self, flows: Flows, seconds: float) -> Energy:
        hours = seconds / 3600
        pv1, pv2 = flows.pv1_w * hours, flows.pv2_w * hours
        imported, exported = max(-flows.grid_w, 0.0) * hours, max(flows.grid_w, 0.0) * hours
        ac_in, ac_out = max(-flows.inverter_w, 0.0) * hours, max(flows.inverter_w, 0.0) * hours
        charged, discharged = max(-flows.battery_w, 0.0) * hours, max(flows.battery_w, 0.0) * hours
        return Energy(
            self.pv1_today + pv1,
            self.pv2_today + pv2,
            self.pv_total + pv1 + pv2,
            self.import_today + imported,
            self.import_total + imported,
            self.export_today + exported,
            self.export_total + exported,
            self.ac_charge_today + ac_in,
            self.ac_charge_total + ac_in,
            self.inverter_out_today + ac_out,
            self.inverter_out_total + ac_out,
            self.battery_charge_today + charged,
            self.battery_charge_total + charged,
            self.battery_discharge_today + discharged,
            self.battery_discharge_total + discharged,
        )

    def new_day(self) -> Energy:
        """The counters after the inverter's midnight: today's back to zero, totals kept."""
        return Energy(
            pv_total=self.pv_total,
            import_total=self.import_total,
            export_total=self.export_total,
            ac_charge_total=self.ac_charge_total,
            inverter_out_total=self.inverter_out_total,
            battery_charge_total=self.battery_charge_total,
            battery_discharge_total=self.battery_discharge_total,
        )


@dataclass(frozen=True, slots=True)
class Thermal:
    heatsink_c: float
    charger_c: float
    battery_c: float


def relax(value: float, target: float, seconds: float, time_constant: float) -> float:
    """First-order lag of ``value`` towards ``target``."""
    return target + (value - target) * math.exp(-seconds / time_constant)


@dataclass(frozen=True, slots=True)
class PlantState:
    moment: datetime  # UTC instant this state describes
    soc: float  # 0-100, whole plant
    energy: Energy
    thermal: Thermal
    flows: Flows
    grid_v: float
    grid_hz: float
    counter_day: date  # the inverter-local date today's counters belong to
    operating_hours: float


@dataclass(frozen=True, slots=True)
class Environment:
    """Everything an advance holds fixed: the site, the settings and the inverter's clock."""

    site: Site
    controls: Controls
    rating: Rating
    zone: tzinfo
    clock_offset: timedelta  # inverter RTC minus true time
    offline_until: datetime | None = None  # rebooting: no conversion until then
    extra_load_w: float = 0.0  # drawn by the house beyond house_load() (a simulated EV charger)

    def inverter_time(self, moment: datetime) -> datetime:
        """The inverter's local wall-clock time at a true UTC moment."""
        return (moment + self.clock_offset).astimezone(self.zone)


def step(state: PlantState, moment: datetime, env: Environment) -> PlantState:
    """Integrate from ``state.moment`` to ``moment`` with the flows evaluated at ``moment``."""
    seconds = max(0.0, (moment - state.moment).total_seconds())
    online = env.offline_until is None or moment >= env.offline_until
    load = house_load(moment.astimezone(env.zone), env.site.seed) + env.extra_load_w
    clock = env.inverter_time(moment)
    rating = env.rating
    if online:
        pv = pv_power(moment, env.site)
        decision = (
            decide(env.controls, rating, state.soc, pv[0] + pv[1], load, clock.hour * 60 + clock.minute)
            if rating.capacity_wh > 0
            else Decision(0.0, state.soc, state.soc)
        )
        flows = balance(pv, decision.battery_w, load, env.controls, rating)
    else:  # rebooting: nothing converts, the house runs off the grid (and any separate PV)
        decision = Decision(0.0, state.soc, state.soc)
        pv = pv_power(moment, env.site) if rating.ac_coupled_pv else (0.0, 0.0)
        flows = Flows(pv[0], pv[1], load_w=load, grid_w=pv[0] + pv[1] - load)

    soc = state.soc
    if seconds > 0 and flows.battery_w != 0:
        # Stop exactly at the floor/ceiling the decision set, scaling the step's battery power.
        if flows.battery_w > 0:
            wanted = -flows.battery_w * seconds / 3600 / BATTERY_EFFICIENCY / rating.capacity_wh * 100
            allowed = min(0.0, decision.floor - soc)
        else:
            wanted = -flows.battery_w * seconds / 3600 * BATTERY_EFFICIENCY / rating.capacity_wh * 100
            allowed = max(0.0, decision.ceiling - soc)
        if abs(wanted) > abs(allowed):
            fraction = allowed / wanted
            flows = balance((flows.pv1_w, flows.pv2_w), flows.battery_w * fraction, load, env.controls, rating)
            soc = decision.floor if wanted < 0 else decision.ceiling
        else:
            soc = min(100.0, max(0.0, soc + wanted))

    energy = state.energy if clock.date() == state.counter_day else state.energy.new_day()
    ambient = ambient_temperature(moment.astimezone(env.zone))
    thermal = Thermal(
        heatsink_c=relax(state.thermal.heatsink_c, ambient + 4 + 5.5 * abs(flows.inverter_w) / 1000, seconds, 900),
        charger_c=relax(state.thermal.charger_c, ambient + 3 + 6.0 * abs(flows.battery_w) / 1000, seconds, 900),
        battery_c=relax(state.thermal.battery_c, ambient + 2 + 1.5 * abs(flows.battery_w) / 1000, seconds, 3600),
    )
    return PlantState(
        moment=moment,
        soc=soc,
        energy=energy.add(flows, seconds),
        thermal=thermal,
        flows=flows,
        grid_v=grid_voltage(moment, env.site.seed),
        grid_hz=grid_frequency(moment, env.site.seed),
        counter_day=clock.date(),
        operating_hours=state.operating_hours + seconds / 3600,
    )


def advance(state: PlantState, until: datetime, env: Environment) -> PlantState:
    """Bring ``state`` to ``until`` in sub-steps of at most MAX_STEP_SECONDS; a clock going back is ignored."""
    total = (until - state.moment).total_seconds()
    if total <= 0:
        return step(state, state.moment, env)  # re-evaluate the flows under the current settings
    steps = math.ceil(total / MAX_STEP_SECONDS)
    start = state.moment
    for n in range(1, steps + 1):
        state = step(state, start + timedelta(seconds=total * n / steps), env)
    return state


def hold(state: PlantState, moment: datetime) -> PlantState:
    """Let time pass without the plant changing (the frozen-values fault)."""
    return replace(state, moment=max(moment, state.moment))


def initial_state(moment: datetime, soc: float, energy: Energy, operating_hours: float, env: Environment) -> PlantState:
    """A plant at rest at ``moment``: thermal equilibrium with the air, flows evaluated now."""
    ambient = ambient_temperature(moment.astimezone(env.zone))
    resting = PlantState(
        moment=moment,
        soc=soc,
        energy=energy,
        thermal=Thermal(ambient + 4, ambient + 3, ambient + 2),
        flows=Flows(),
        grid_v=grid_voltage(moment, env.site.seed),
        grid_hz=grid_frequency(moment, env.site.seed),
        counter_day=env.inverter_time(moment).date(),
        operating_hours=operating_hours,
    )
    return step(resting, moment, env)


def add_today_so_far(lifetime: Energy, moment: datetime, env: Environment) -> Energy:
    """``lifetime`` plus plausible counters for the part of today before ``moment``, battery left out.

    Integrates PV and house load from the inverter's midnight in one-minute steps so a
    simulator started at 3 pm does not report zero PV generated today.
    """
    clock = env.inverter_time(moment)
    midnight = clock.replace(hour=0, minute=0, second=0, microsecond=0)
    energy = lifetime
    for minute in range(int((clock - midnight).total_seconds() // 60)):
        instant = (midnight + timedelta(minutes=minute)).astimezone(moment.tzinfo) - env.clock_offset
        pv = pv_power(instant, env.site)
        load = house_load(instant.astimezone(env.zone), env.site.seed)
        energy = energy.add(balance(pv, 0.0, load, env.controls, env.rating), 60)
    return energy
