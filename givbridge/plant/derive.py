"""Values GivTCP derives rather than reads, as pure functions.

Sign conventions follow the inverter registers and GivTCP: grid power is positive when
exporting, battery power is positive when discharging. Every function takes plain numbers
and returns plain numbers, so each rule is unit-tested on its own and the snapshot builder
only wires registers to arguments.

Nothing here smooths, clamps against a previous sample or holds a counter steady: those are
data-hygiene decisions that need history, and they belong to the layer above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from givbridge.plant import vocab
from givbridge.plant.families import Family

# GivTCP pins the rated battery power of these families to 6 kW instead of trusting the
# device-type table; keep that so the rate controls' range matches what users already see.
_BATTERY_MAX_POWER_OVERRIDE = {"hybrid-gen4": 6000, "aio": 6000}

# HR111/HR112 hold the battery current limit in hundredths of C; the inverter accepts 0..50.
RATE_REGISTER_MAX = 50

# Nominal volts that turn Ah into Wh: an LV pack (16 LiFePO4 cells) and one 24-cell HV module.
LV_PACK_VOLTS = 51.2
HV_MODULE_VOLTS = 76.8
# A pack's calibrated capacity as a share of its design capacity that can be believed. Aged
# packs fall towards 70 %; captures show healthy packs calibrated up to ~119 % of design.
PLAUSIBLE_HEALTH = (0.5, 1.25)
# GivTCP publishes an HV stack's capacity as usable energy: 90 % of nominal.
HV_USABLE_FRACTION = 0.9
# GivTCP's three-phase battery rating: 25 A at 80 V per battery (per HV module here).
THREE_PHASE_AMPS_PER_MODULE = 25
THREE_PHASE_VOLTS_PER_MODULE = 80


# --- grid and battery ------------------------------------------------------------------------


def split_grid_power(grid_power: int) -> tuple[int, int]:
    """(import, export) watts, both >= 0, from the signed grid-meter power (+ export)."""
    return max(-grid_power, 0), max(grid_power, 0)


def split_battery_power(battery_power: int) -> tuple[int, int]:
    """(charge, discharge) watts, both >= 0, from the signed battery power (+ discharge)."""
    return max(-battery_power, 0), max(battery_power, 0)


def self_consumption_power(load: int, grid_import: int) -> int:
    """House load not supplied by the grid (GivTCP's Self_Consumption_Power)."""
    return max(load - grid_import, 0)


@dataclass(frozen=True, slots=True)
class PowerFlows:
    """Where each watt goes, every figure >= 0.

    Solar feeds the house first, then the battery, then the grid; the battery feeds the
    house before the grid; the grid feeds the house before the battery. When the six
    measurements balance (``pv + discharge + import == load + charge + export``, one
    direction per port) the flows account for every watt exactly:

    - pv        = solar_to_house + solar_to_battery + solar_to_grid
    - load      = solar_to_house + battery_to_house + grid_to_house
    - charge    = solar_to_battery + grid_to_battery
    - discharge = battery_to_house + battery_to_grid
    - export    = solar_to_grid + battery_to_grid
    - import    = grid_to_house + grid_to_battery

    Real readings do not balance (conversion losses, the CT and the inverter sampling at
    different instants), so each sum can fall short of its port by up to ``|residual|``,
    where ``residual = (pv + discharge + import) - (load + charge + export)``: positive means
    more came in than was measured going out (losses), negative the reverse. No flow is
    ever invented to cover the gap.
    """

    solar_to_house: int
    solar_to_battery: int
    solar_to_grid: int
    battery_to_house: int
    battery_to_grid: int
    grid_to_house: int
    grid_to_battery: int
    residual: int


def power_flows(*, pv: int, load: int, battery_power: int, grid_power: int) -> PowerFlows:
    """The seven GivTCP power flows from PV, load, battery (+ discharge) and grid (+ export) power."""
    pv, load = max(pv, 0), max(load, 0)
    charge, discharge = split_battery_power(battery_power)
    grid_import, grid_export = split_grid_power(grid_power)

    solar_to_house = min(pv, load)
    solar_to_battery = min(pv - solar_to_house, charge)
    solar_to_grid = min(pv - solar_to_house - solar_to_battery, grid_export)
    house_left = load - solar_to_house
    battery_to_house = min(discharge, house_left)
    grid_to_house = min(grid_import, house_left - battery_to_house)
    battery_to_grid = min(discharge - battery_to_house, grid_export - solar_to_grid)
    grid_to_battery = min(grid_import - grid_to_house, charge - solar_to_battery)
    return PowerFlows(
        solar_to_house=solar_to_house,
        solar_to_battery=solar_to_battery,
        solar_to_grid=solar_to_grid,
        battery_to_house=battery_to_house,
        battery_to_grid=battery_to_grid,
        grid_to_house=grid_to_house,
        grid_to_battery=grid_to_battery,
        residual=(pv + discharge + grid_import) - (load + charge + grid_export),
    )


# --- battery state -----------------------------------------------------------------------------


def soc_kwh(soc: int, capacity_kwh: float) -> float:
    """Stored energy for a state of charge in percent, to GivTCP's two decimals."""
    return round(soc * capacity_kwh / 100, 2)


def charge_time_remaining(*, soc: int, target_soc: int, capacity_kwh: float, charge_power: int) -> int:
    """Whole minutes to reach ``target_soc`` at the present charge power; 0 when not charging."""
    return _minutes_to_move(soc_gap=target_soc - soc, capacity_kwh=capacity_kwh, power=charge_power)


def discharge_time_remaining(*, soc: int, reserve_soc: int, capacity_kwh: float, discharge_power: int) -> int:
    """Whole minutes to fall to the reserve at the present discharge power; 0 when not discharging."""
    return _minutes_to_move(soc_gap=soc - reserve_soc, capacity_kwh=capacity_kwh, power=discharge_power)


def _minutes_to_move(*, soc_gap: int, capacity_kwh: float, power: int) -> int:
    if power <= 0 or soc_gap <= 0:
        return 0
    return int(capacity_kwh * soc_gap / 100 / (power / 1000) * 60)


def completion_time(now: datetime, minutes: int) -> datetime:
    """When a charge or discharge taking ``minutes`` from ``now`` ends, to the second."""
    return (now + timedelta(minutes=minutes)).replace(microsecond=0)


def battery_mode(*, eco: bool | None, timed_discharge: bool | None, reserve_soc: int | None) -> str:
    """GivTCP's battery Mode from HR27 (eco), HR59 (timed discharge) and HR110 (reserve).

    Eco with a 100 % reserve is "Eco (Paused)": the battery holds its charge. Anything that
    was not read is "Unknown" rather than a guess.
    """
    if eco is None or timed_discharge is None:
        return vocab.MODE_UNKNOWN
    if eco and not timed_discharge:
        if reserve_soc is None:
            return vocab.MODE_UNKNOWN
        return vocab.MODE_ECO_PAUSED if reserve_soc == 100 else vocab.MODE_ECO
    if eco:
        return vocab.MODE_TIMED_DEMAND
    return vocab.MODE_TIMED_EXPORT if timed_discharge else vocab.MODE_EXPORT_PAUSED


# --- battery ratings and the charge/discharge rate registers ------------------------------------


def battery_max_power(family: Family, rated_power: int | None) -> int | None:
    """Rated battery charge/discharge power in watts: the library's figure, GivTCP's 6 kW overrides."""
    return _BATTERY_MAX_POWER_OVERRIDE.get(family.key, rated_power)


def battery_capacity_kwh(nominal_kwh: float | None) -> float | None:
    """Nominal capacity (two decimals), the basis of the rate registers (C/100 of this capacity).

    0 means no battery is configured (HR55 reads 0 Ah) and is returned as None.
    """
    return round(nominal_kwh, 2) if nominal_kwh else None


def usable_capacity_kwh(
    packs: Sequence[tuple[float | None, float | None]],
    *,
    nominal_kwh: float | None = None,
) -> float | None:
    """What the LV packs really hold when full (kWh, two decimals), from their own registers.

    ``packs`` is each pack's (calibrated, design) capacity in Ah. The calibrated figure is the
    BMS's measured full-charge capacity, the one its SOC is a percentage of: design capacity
    times state of health. It replaces the nominal figure (HR55, the capacity the inverter
    was configured with) so ``SOC_kWh`` is the energy actually stored. None (use the nominal
    figure) unless every pack reports both and each calibrated figure is plausible for its
    design (:data:`PLAUSIBLE_HEALTH`), and so is their sum for ``nominal_kwh``: a default or
    garbage reading, or packs the inverter is not configured for, must not become the
    battery's size (GivTCP #268).
    """
    if not packs:
        return None
    total = 0.0
    for calibrated, design in packs:
        if not calibrated or not design or not _plausible(calibrated, design):
            return None
        total += calibrated
    usable = capacity_from_ah(total, LV_PACK_VOLTS)
    if usable is None or (nominal_kwh and not _plausible(usable, nominal_kwh)):
        return None
    return usable


def _plausible(measured: float, rated: float) -> bool:
    return PLAUSIBLE_HEALTH[0] <= measured / rated <= PLAUSIBLE_HEALTH[1]


def capacity_from_ah(capacity_ah: int | float | None, volts: float) -> float | None:
    """Nominal capacity (kWh, two decimals) of ``capacity_ah`` at ``volts``; None for 0 or unknown."""
    if not capacity_ah or volts <= 0:
        return None
    return round(capacity_ah * volts / 1000, 2)


def stack_usable_kwh(module_ah: float | None, modules: int | None) -> float | None:
    """An HV stack's usable energy (kWh) from its BCU's per-module Ah and module count, GivTCP's way.

    The modules are in series, so each carries the stack's Ah at 76.8 V; GivTCP counts 90 %
    of that as usable (``Stack_Design_Capacity`` from the nominal Ah, ``Stack_SOC_kWh`` from
    the remaining Ah).
    """
    if module_ah is None or not modules:
        return None
    return round(module_ah * HV_MODULE_VOLTS / 1000 * modules * HV_USABLE_FRACTION, 2)


def three_phase_battery_max_power(modules: int) -> int | None:
    """GivTCP's three-phase battery rating (25 A x 80 V per battery), counted per HV module.

    GivTCP multiplied by its LV pack count, which is always 0 on an HV stack and made the
    rating (and every rate control derived from it) 0 W.
    """
    return THREE_PHASE_AMPS_PER_MODULE * THREE_PHASE_VOLTS_PER_MODULE * modules if modules else None


def percent_of(watts: int | None, percent: int | None) -> int | None:
    """``percent`` % of ``watts``, truncated like GivTCP's rate figures; None if either is unknown."""
    if watts is None or percent is None:
        return None
    return int(watts * percent / 100)


@dataclass(frozen=True, slots=True)
class RateSetting:
    """A value for HR111/HR112 and the battery power it actually allows."""

    register: int
    watts: int


def rate_register_to_watts(register: int, *, capacity_kwh: float, max_power: int | None) -> int:
    """Battery power allowed by a rate register (C/100 of capacity), capped at the rated power."""
    watts = math.floor(register / 100 * capacity_kwh * 1000)
    return min(watts, max_power) if max_power is not None else watts


def watts_to_rate_register(watts: int, *, capacity_kwh: float, max_power: int | None) -> RateSetting:
    """The rate register closest to ``watts`` and the power it really yields.

    The register's step is 1 % of capacity (about 95 W on a 9.5 kWh pack), so most watt
    values cannot be hit exactly: the caller publishes ``RateSetting.watts`` and read-back
    compares against it. A request at or above the rated power asks for the register maximum.
    """
    if max_power is not None and watts >= max_power:
        register = RATE_REGISTER_MAX
    else:
        register = min(max(round(watts * 100 / (capacity_kwh * 1000)), 0), RATE_REGISTER_MAX)
    return RateSetting(register, rate_register_to_watts(register, capacity_kwh=capacity_kwh, max_power=max_power))


# --- energy ----------------------------------------------------------------------------------


def load_energy(
    *, inverter_output: float, ac_charge: float, grid_import: float, grid_export: float, extra_pv: float = 0.0
) -> float:
    """House consumption in kWh, GivTCP's energy balance.

    ``inverter_output - ac_charge`` is what the inverter delivered net of what it took back
    from the AC side; adding net import gives what the house used. ``extra_pv`` is PV that
    the inverter-output counter does not include: on AC-coupled and All-in-One units that
    counter only sees the battery side, so GivTCP adds the PV counter there; on DC hybrids it
    already includes PV and ``extra_pv`` stays 0.
    """
    return max(round(inverter_output - ac_charge - (grid_export - grid_import) + extra_pv, 2), 0.0)


def self_consumption_energy(*, pv: float, grid_export: float) -> float:
    """PV energy used on site (PV minus export), in kWh, never negative."""
    return max(round(pv - grid_export, 2), 0.0)
