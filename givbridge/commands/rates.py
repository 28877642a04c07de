"""Battery and inverter power limits.

The battery rate registers (HR111/112) hold a current limit in hundredths of C, so a watt
request becomes the nearest register step (1 % of capacity, about 95 W on a 9.5 kWh pack),
capped by the rated battery power; :mod:`givbridge.plant.derive` does both conversions and
the answer reports the watts the read-back register really allows. Three-phase units have
only the AC-side percentage limits, so watts are scaled against the rated battery power there.
"""

from __future__ import annotations

import functools

from givbridge.commands import devices as dev
from givbridge.commands.schemas import (
    ActivePowerRatePayload,
    CarChargeBoostPayload,
    ChargeRateAcPayload,
    ChargeRatePayload,
    DischargeRateAcPayload,
    DischargeRatePayload,
)
from givbridge.commands.spec import Command, PlanInput, Planned, invalid, unsupported
from givbridge.devices.context import DeviceContext
from givbridge.plant import derive
from givbridge.plant import registers as reg
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.writes import WritePlan

GROUP = "Power limits"


def _number(snapshot: Snapshot, leaf: str) -> float | None:
    value = snapshot.get(f"{snapshot.serial}/{leaf}")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def rate_capacity_kwh(snapshot: Snapshot) -> float | None:
    """The capacity the single-phase rate registers are a share of: the configured one, else the packs'."""
    # The registers are a share of the configured capacity, which can differ from the packs' real one.
    return _number(snapshot, "Battery_Nominal_Capacity_kWh") or _number(snapshot, "Battery_Capacity_kWh")


def battery_rate_step(snapshot: Snapshot, *, three_phase: bool) -> float | None:
    """The watts one step of the battery rate register is worth, or None while unknown.

    Single-phase HR111/112 step in 1 % of the battery capacity (95.2 W on a 9.52 kWh pack);
    the three-phase AC limit in 1 % of the rated battery power. Offering other watts would
    have them rounded to the nearest step, so a caller would not get what it asked for.
    """
    if three_phase:
        max_power = _number(snapshot, "Invertor_Max_Bat_Rate")
        return max_power / 100 if max_power else None
    capacity = rate_capacity_kwh(snapshot)
    return capacity * 1000 / 100 if capacity else None


def highest_battery_rate(snapshot: Snapshot, *, three_phase: bool) -> float | None:
    """The most watts the battery rate can be set to: the rating, within what the register can hold.

    Single-phase HR111/112 go up to 50 % of the capacity (C/2); a unit whose rating is not
    known is offered that. Three-phase units take 1-100 % of the rating.
    """
    max_power = _number(snapshot, "Invertor_Max_Bat_Rate")
    if three_phase:
        return max_power or None
    capacity = rate_capacity_kwh(snapshot)
    if not capacity:
        return max_power or None
    ceiling = derive.rate_register_to_watts(derive.RATE_REGISTER_MAX, capacity_kwh=capacity, max_power=None)
    return min(max_power, ceiling) if max_power else ceiling


def lowest_battery_rate(snapshot: Snapshot, *, three_phase: bool) -> float | None:
    """The lowest battery rate in watts that can be set: 0, but one step on three-phase units (1-100 %)."""
    return battery_rate_step(snapshot, three_phase=True) if three_phase else 0.0


def rate_register(device: DeviceContext, *, discharge: bool) -> int:
    """The register limiting battery power: HR111/112, or the AC-side limit on three-phase units."""
    if dev.is_three_phase(device):
        return dev.ac_limit_register(device, discharge=discharge)
    return reg.DISCHARGE_LIMIT if discharge else reg.CHARGE_LIMIT


def battery_rate_writes(given: PlanInput, watts: int, *, discharge: bool) -> list[tuple[int, int]]:
    """The register write that limits battery charge (or discharge) power to about ``watts``."""
    max_power = _number(given.snapshot, "Invertor_Max_Bat_Rate")
    if dev.is_three_phase(given.device):
        if not max_power:
            raise unsupported("the battery's rated power is not known yet, so watts cannot be converted")
        percent = round(watts * 100 / max_power)
        if percent < 1:
            raise invalid(f"the lowest three-phase limit is 1 % ({max_power / 100:.0f} W); 0 W cannot be set")
        return [(rate_register(given.device, discharge=discharge), min(percent, 100))]
    capacity = rate_capacity_kwh(given.snapshot)
    if not capacity:
        raise unsupported("no battery capacity is known for this inverter, so watts cannot be converted")
    setting = derive.watts_to_rate_register(
        watts, capacity_kwh=capacity, max_power=int(max_power) if max_power else None
    )
    return [(rate_register(given.device, discharge=discharge), setting.register)]


def plan_charge_rate(payload: ChargeRatePayload, given: PlanInput) -> Planned:
    pairs = battery_rate_writes(given, payload.chargeRate, discharge=False)
    return Planned(WritePlan.of(pairs, f"charge rate {payload.chargeRate} W"))


def plan_discharge_rate(payload: DischargeRatePayload, given: PlanInput) -> Planned:
    pairs = battery_rate_writes(given, payload.dischargeRate, discharge=True)
    return Planned(WritePlan.of(pairs, f"discharge rate {payload.dischargeRate} W"))


def plan_charge_rate_ac(payload: ChargeRateAcPayload, given: PlanInput) -> Planned:
    register = dev.ac_limit_register(given.device, discharge=False)
    return Planned(WritePlan.of([(register, payload.chargeRate)], f"AC charge rate {payload.chargeRate} %"))


def plan_discharge_rate_ac(payload: DischargeRateAcPayload, given: PlanInput) -> Planned:
    register = dev.ac_limit_register(given.device, discharge=True)
    return Planned(WritePlan.of([(register, payload.dischargeRate)], f"AC discharge rate {payload.dischargeRate} %"))


def plan_active_power_rate(payload: ActivePowerRatePayload, given: PlanInput) -> Planned:
    rate = payload.activePowerRate
    register = dev.active_power_rate_register(given.device)
    return Planned(WritePlan.of([(register, rate)], f"active power rate {rate} %"))


def plan_car_charge_boost(payload: CarChargeBoostPayload, given: PlanInput) -> Planned:
    return Planned(WritePlan.of([(reg.EMS_CAR_CHARGE_BOOST, payload.boost)], f"car charge boost {payload.boost} W"))


def _ac_rate_block(device: DeviceContext) -> str | None:
    if dev.has_ac_config_block(device) or dev.is_three_phase(device):
        return None
    return f"{device.family.display} has no AC-side battery limits (the HR300 block is on AC-coupled units and the AIO)"


def _rates_of_its_own(device: DeviceContext) -> str | None:
    if dev.is_gateway(device):
        # GivTCP drives a Gateway's rates through HR313/314, a bank the library neither reads
        # nor lets anyone write on a Gateway; HR111/112 there is not known to mean anything.
        return "the Gateway's battery rates (HR313/314) are neither read nor writable through the library"
    return None


_rate = functools.partial(Command, group=GROUP)

_WATTS_NOTE = (
    "Single-phase: HR111/112 = watts as C/100 of the battery capacity, capped at 50 (a request at or above "
    "the rated battery power asks for 50). The answer reports the watts the read-back register allows, so "
    "a caller comparing it with its request sees the register step. Three-phase: the AC limit "
    "(HR1110/1108) = watts / rated battery power in %, 1-100."
)

COMMANDS: tuple[Command, ...] = (
    _rate(
        name="setChargeRate",
        summary="Battery charge power limit in watts.",
        payload=ChargeRatePayload,
        raw_field="chargeRate",
        plan=plan_charge_rate,
        updates=("Control/Battery_Charge_Rate", "Control/Battery_Charge_Rate_AC"),
        applies=dev.applies(
            "inverters with a battery",
            battery=True,
            when=_rates_of_its_own,
            registers=lambda d: (rate_register(d, discharge=False),),
        ),
        notes=_WATTS_NOTE,
    ),
    _rate(
        name="setDischargeRate",
        summary="Battery discharge power limit in watts.",
        payload=DischargeRatePayload,
        raw_field="dischargeRate",
        plan=plan_discharge_rate,
        updates=("Control/Battery_Discharge_Rate", "Control/Battery_Discharge_Rate_AC"),
        applies=dev.applies(
            "inverters with a battery",
            battery=True,
            when=_rates_of_its_own,
            registers=lambda d: (rate_register(d, discharge=True),),
        ),
        notes=_WATTS_NOTE,
    ),
    _rate(
        name="setChargeRateAC",
        summary="AC-side battery charge limit, % of the AC rating (HR313; three-phase HR1110).",
        payload=ChargeRateAcPayload,
        raw_field="chargeRate",
        plan=plan_charge_rate_ac,
        updates=("Control/Battery_Charge_Rate_AC", "Control/Battery_Charge_Rate"),
        applies=dev.applies(
            "AC-coupled, All-in-One and three-phase units",
            battery=True,
            when=_ac_rate_block,
            registers=lambda d: (dev.ac_limit_register(d, discharge=False),),
        ),
    ),
    _rate(
        name="setDischargeRateAC",
        summary="AC-side battery discharge limit, % of the AC rating (HR314; three-phase HR1108).",
        payload=DischargeRateAcPayload,
        raw_field="dischargeRate",
        plan=plan_discharge_rate_ac,
        updates=("Control/Battery_Discharge_Rate_AC", "Control/Battery_Discharge_Rate"),
        applies=dev.applies(
            "AC-coupled, All-in-One and three-phase units",
            battery=True,
            when=_ac_rate_block,
            registers=lambda d: (dev.ac_limit_register(d, discharge=True),),
        ),
    ),
    _rate(
        name="setActivePowerRate",
        summary="Inverter output limit, % of its rated power (HR50).",
        payload=ActivePowerRatePayload,
        raw_field="activePowerRate",
        plan=plan_active_power_rate,
        updates=("Control/Active_Power_Rate",),
        applies=dev.applies("inverters", registers=lambda d: (dev.active_power_rate_register(d),)),
        notes="GivTCP does not validate the value; givbridge accepts 0-100. Three-phase units report it in "
        "HR1002, outside their write allowlist, so it is unsupported there (GivTCP wrote HR50).",
    ),
    _rate(
        name="setCarChargeBoost",
        summary="EMS car charge boost in watts (HR2073).",
        payload=CarChargeBoostPayload,
        raw_field="boost",
        plan=plan_car_charge_boost,
        updates=("Control/Car_Charge_Boost",),
        applies=dev.applies(
            "EMS plant controllers",
            inverter=False,
            when=dev.needs_ems,
            registers=dev.fixed_registers(reg.EMS_CAR_CHARGE_BOOST),
        ),
        notes="Not implemented in GivTCP (a dead stub there). HR2073 is the EMS's car charge boost in the "
        "library's EMS model and GivTCP's EMS map; givbridge adds it to the library's EMS write allowlist.",
    ),
)
