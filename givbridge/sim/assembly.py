"""Putting a simulated plant together: its serials, storage, meters, holding registers and history.

:func:`assemble` turns a model family and a seed into the parts a
:class:`~givbridge.sim.plant.SimulatedPlant` starts from; nothing here runs afterwards.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from givbridge.sim import physics
from givbridge.sim.physics import Energy, Rating
from givbridge.sim.profile_spec import CELLS_PER_MODULE, METER_ADDRESSES, InverterProfile
from givbridge.sim.profiles import profile_for
from givbridge.sim.render import Pack, serial_registers
from givbridge.sim.render_hv import Module, Stack
from givbridge.sim.render_meter import MeterRole
from givbridge.sim.render_rollups import Unit
from givbridge.sim.weather import Site

# Inverters, Gateways, packs and modules: two letters, YYWW, a letter, three digits. EMS: EMS + 7 digits.
_SERIAL_PATTERN = re.compile(r"[A-Z]{2}\d{4}[A-Z]\d{3}|[A-Z]{3}\d{7}")


@dataclass(frozen=True, slots=True)
class Storage:
    """What a plant stores energy in: LV packs, one HV stack, or managed units (EMS, Gateway)."""

    packs: tuple[Pack, ...] = ()
    stack: Stack | None = None
    units: tuple[Unit, ...] = ()


@dataclass(frozen=True, slots=True)
class Parts:
    """Everything a :class:`~givbridge.sim.plant.SimulatedPlant` is built from, apart from its clock and zone."""

    profile: InverterProfile
    site: Site
    serial: str
    dongle_serial: str
    storage: Storage
    meter_plan: tuple[tuple[int, MeterRole, float], ...]
    holding: dict[int, int]
    soc: float
    lifetime: Energy
    operating_hours: float
    rng: random.Random


def assemble(
    family: str,
    *,
    batteries: int | None,
    serial: str | None,
    seed: int,
    start_soc: float,
    pv_kwp: float | None,
    meters: int | None,
) -> Parts:
    """The parts of a plant of ``family``; everything not given is derived from ``seed``.

    Serials, pack spread, weather, household and lifetime counters all come from one random
    stream seeded with ``seed``, so the same arguments always give the same parts. Raises
    ValueError for a battery or meter count the model cannot have, a state of charge outside
    0-100 or a serial that is not a GivEnergy one.
    """
    profile = profile_for(family)
    count = profile.default_batteries if batteries is None else batteries
    lowest = 1 if profile.unit is not None else 0
    if not lowest <= count <= profile.max_batteries:
        raise ValueError(f"batteries must be {lowest}-{profile.max_batteries} on {family}, not {count}")
    if not 0 <= start_soc <= 100:
        raise ValueError(f"start_soc must be 0-100, not {start_soc}")
    meter_addresses = meter_addresses_for(profile, meters)
    rng = random.Random(seed)
    numbers = rng.sample(range(1000), 2 + max(count, 6) + 1)
    week = profile.serial_week
    serial = serial or f"{profile.serial_prefix}{week}{profile.serial_letter}{numbers[0]:03d}"
    if not _SERIAL_PATTERN.fullmatch(serial):
        raise ValueError(
            f"{serial!r} is not a GivEnergy serial (two letters, 4 digits, a letter, 3 digits; or EMS + 7 digits)"
        )
    dongle_serial = f"{profile.dongle_prefix}{week}G{numbers[1]:03d}"
    storage = build_storage(profile, count, week, numbers[2:], rng)

    holding = {register: 0 for bank in profile.holding_served for register in bank}
    holding.update(profile.holding_defaults)
    holding[0] = profile.device_type_code
    holding[19] = profile.dsp_firmware
    holding[21] = profile.arm_firmware
    holding.update(zip(range(13, 18), serial_registers(serial), strict=True))
    if storage.packs:
        # HR8-12 and HR18 mirror pack 1 (serial, BMS firmware); HR55 is the whole bank's Ah.
        holding.update(zip(range(8, 13), serial_registers(storage.packs[0].serial), strict=True))
        holding[18] = storage.packs[0].spec.bms_firmware
    elif storage.stack is not None:
        # HV models put the BCU's serial where LV ones put pack 1's (All-in-One, 3PH captures).
        holding.update(zip(range(8, 13), serial_registers(storage.stack.bcu_serial), strict=True))
        holding[18] = storage.stack.spec.hr18
    if profile.reports_capacity_ah:
        if profile.pack is not None:
            holding[55] = profile.pack.design_ah * count
        elif profile.hv is not None:
            holding[55] = profile.hv.module_ah  # modules in series: the stack's Ah is one module's
    else:
        holding[55] = 0

    kwp = pv_kwp if pv_kwp is not None else profile.pv_kwp
    meter_plan = tuple(
        (address, meter_role(profile, n), round(rng.uniform(0.04, 0.12), 3))
        for n, address in enumerate(meter_addresses)
    )
    return Parts(
        profile=profile,
        site=Site(seed=seed, pv_kwp=kwp),
        serial=serial,
        dongle_serial=dongle_serial,
        storage=storage,
        meter_plan=meter_plan,
        holding=holding,
        soc=float(start_soc) if count else 0.0,
        lifetime=lifetime_counters(
            profile.years_in_service, kwp, count, rng, ac_coupled_pv=profile.pv_coupling == "ac"
        ),
        operating_hours=profile.years_in_service * 8760 * rng.uniform(0.97, 1.0),
        rng=rng,
    )


def lifetime_counters(
    years: float, pv_kwp: float, batteries: int, rng: random.Random, *, ac_coupled_pv: bool
) -> Energy:
    """Lifetime totals (Wh) for a unit ``years`` in service: typical UK yields, +-15 % per unit."""

    def per_year(kwh: float) -> float:
        return kwh * years * rng.uniform(0.85, 1.15) * 1000

    pv = per_year(850 * pv_kwp)
    # Capped so the uint16 lifetime registers (IR180/181, pack IR105/106) keep headroom to grow.
    charged = min(per_year(380 * (1 + 0.3 * (batteries - 1))), 5_000_000.0) if batteries else 0.0
    ac_charge = per_year(700) if batteries else 0.0
    # With a separate PV inverter the unit only ever converts battery energy.
    inverter_out = charged * 0.85 if ac_coupled_pv else pv * 0.93 + charged * 0.85
    return Energy(
        pv_total=pv,
        import_total=per_year(2600),
        export_total=pv * 0.35,
        ac_charge_total=max(ac_charge, charged * 1.05) if ac_coupled_pv else ac_charge,
        inverter_out_total=inverter_out,
        battery_charge_total=charged,
        battery_discharge_total=charged * 0.92,
    )


def meter_addresses_for(profile: InverterProfile, meters: int | None) -> tuple[int, ...]:
    """Where the site's meters sit: the model's usual addresses first, then 0x01 upwards."""
    if meters is None:
        return profile.default_meters
    if not 0 <= meters <= len(METER_ADDRESSES):
        raise ValueError(f"meters must be 0-{len(METER_ADDRESSES)}, not {meters}")
    order = (*profile.default_meters, *(a for a in METER_ADDRESSES if a not in profile.default_meters))
    return tuple(sorted(order[:meters]))


def meter_role(profile: InverterProfile, index: int) -> MeterRole:
    if index == 0:
        return "grid"
    if index == 1 and profile.pv_coupling == "ac":
        return "pv"
    return "circuit"


def build_storage(profile: InverterProfile, count: int, week: str, numbers: list[int], rng: random.Random) -> Storage:
    if profile.pack is not None:
        spec = profile.pack
        return Storage(
            packs=tuple(
                Pack(
                    serial=f"{spec.serial_prefix}{week}G{numbers[n]:03d}",
                    spec=spec,
                    share=1 / count,
                    soc_offset=round(rng.uniform(-0.8, 0.8), 2),
                    health=round(rng.uniform(0.95, 1.02), 3),
                    cell_offsets_mv=tuple(rng.randint(-4, 4) for _ in range(physics.CELLS_PER_PACK)),
                    sensor_offsets_c=tuple(round(rng.uniform(-0.6, 0.6), 1) for _ in range(4)),
                )
                for n in range(count)
            )
        )
    if profile.hv is not None:
        hv = profile.hv
        modules = tuple(
            Module(
                serial=f"{hv.module_serial_prefix}{week}G{numbers[n]:03d}",
                soc_offset=round(rng.uniform(-0.6, 0.6), 2),
                cell_offsets_mv=tuple(rng.randint(-3, 3) for _ in range(CELLS_PER_MODULE)),
                sensor_offsets_c=tuple(round(rng.uniform(-1.0, 1.0), 1) for _ in range(hv.temperatures)),
            )
            for n in range(count)
        )
        bcu_serial = f"{hv.bcu_serial_prefix}{week}G{numbers[-1]:03d}"
        health = round(rng.uniform(0.94, 0.98), 3)
        return Storage(stack=Stack(hv, bcu_serial, modules, health) if modules else None)
    if profile.unit is not None:
        unit = profile.unit
        return Storage(
            units=tuple(
                Unit(
                    serial=f"{unit.serial_prefix}{week}G{numbers[n]:03d}",
                    share=1 / count,
                    soc_offset=round(rng.uniform(-1.5, 1.5), 2),
                )
                for n in range(count)
            )
        )
    return Storage()


def rating_for(profile: InverterProfile, storage: Storage) -> Rating:
    ac_coupled = profile.pv_coupling == "ac"
    if profile.unit is not None:
        n = len(storage.units)
        return Rating(
            inverter_w=profile.unit.rated_w * n,
            battery_max_w=profile.battery_rating_w(n),
            capacity_ah=profile.unit.capacity_ah * n,
            nominal_volts=profile.unit.nominal_volts,
            ac_coupled_pv=ac_coupled,
        )
    if storage.stack is not None:
        stack = storage.stack
        return Rating(
            inverter_w=profile.rated_power_w,
            battery_max_w=profile.battery_rating_w(len(stack.modules)),
            capacity_ah=stack.spec.module_ah * stack.health,
            nominal_volts=stack.nominal_volts,
            ac_coupled_pv=ac_coupled,
        )
    return Rating(
        inverter_w=profile.rated_power_w,
        battery_max_w=profile.battery_max_power_w if storage.packs else 0,
        capacity_ah=float(sum(pack.spec.design_ah for pack in storage.packs)),
        ac_coupled_pv=ac_coupled,
    )
