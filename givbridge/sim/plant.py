"""A simulated GivEnergy plant: a device, its storage and meters, evolving with the clock.

:class:`SimulatedPlant` owns the holding registers and the physical state. Every access
first brings the state up to ``clock.now()`` (see :mod:`givbridge.sim.physics`), then
answers from registers rendered for that instant, so a write is visible to the very next
read and nothing runs between requests.

What answers where: the device itself at 0x11 (and its legacy aliases), LV packs and the
empty BMS pages at 0x30-0x37, an HV stack's BMS (0xA0), BCU (0x70), modules (0x50+) and
BAMS page (0x90), and meters at 0x01-0x08 (fitted ones with readings, the rest with a blank
page or nothing, per model). The units an EMS manages or a Gateway parallels are only
reported through their controller's rollup.
"""

from __future__ import annotations

import calendar
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import partial
from typing import Literal
from zoneinfo import ZoneInfo

from givbridge.clock import Clock, SystemClock
from givbridge.sim import physics
from givbridge.sim.physics import Controls, Energy, Environment, PlantState, Rating, Window
from givbridge.sim.profiles import (
    BAMS_ADDRESS,
    BMS_ADDRESS,
    CELLS_PER_MODULE,
    FIRST_BCU_ADDRESS,
    FIRST_MODULE_ADDRESS,
    FIRST_PACK_ADDRESS,
    INVERTER_ADDRESS,
    METER_ADDRESSES,
    PACK_BANK,
    InverterProfile,
    Layout,
    SlotRegisters,
    profile_for,
)
from givbridge.sim.render import (
    Pack,
    clock_registers,
    inverter_input_registers,
    pack_output_mv,
    pack_registers,
    serial_registers,
)
from givbridge.sim.render_hv import (
    Module,
    Stack,
    bams_registers,
    bcu_registers,
    bms_registers,
    module_registers,
    stack_volts,
)
from givbridge.sim.render_meter import Meter, MeterRole, meter_product_registers, meter_registers
from givbridge.sim.render_rollups import Unit, ems_input_registers, gateway_input_registers
from givbridge.sim.render_three_phase import three_phase_input_registers
from givbridge.sim.weather import Site
from givbridge.sim.writes import CLOCK_REGISTERS, REBOOT_REGISTER, WriteOutcome, classify_write

#: HR and IR are the inverter's holding and input registers; MR the meters' product registers.
RegisterKind = Literal["HR", "IR", "MR"]

# Inverters, Gateways, packs and modules: two letters, YYWW, a letter, three digits. EMS: EMS + 7 digits.
_SERIAL_PATTERN = re.compile(r"[A-Z]{2}\d{4}[A-Z]\d{3}|[A-Z]{3}\d{7}")
_METER_PRODUCT_BANK = range(60, 69)
#: How long (simulated seconds) an HR163=100 reboot keeps the inverter from answering.
DEFAULT_REBOOT_SECONDS = 30.0


class Unanswered(Enum):
    """Why a read gets no register values back."""

    SILENT = "silent"  # no reply at all: the client times out
    ERROR = "error"  # an error response (error flag, 0x12 padding)


def _lifetime_counters(
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


def _overlaps(bank: range, span: range) -> bool:
    return bank.start < span.stop and span.start < bank.stop


def _contains(bank: range, span: range) -> bool:
    return bank.start <= span.start and span.stop <= bank.stop


@dataclass(frozen=True, slots=True)
class _Page:
    """A peripheral on the bus: the input-register banks it answers and how they render now."""

    banks: tuple[range, ...]
    render: Callable[[], dict[int, int]]
    product: Callable[[], dict[int, int]] | None = None  # meter product registers (MR)


@dataclass(frozen=True, slots=True)
class Storage:
    """What a plant stores energy in: LV packs, one HV stack, or managed units (EMS, Gateway)."""

    packs: tuple[Pack, ...] = ()
    stack: Stack | None = None
    units: tuple[Unit, ...] = ()


def _blank(bank: range) -> Callable[[], dict[int, int]]:
    return lambda: dict.fromkeys(bank, 0)


class SimulatedPlant:
    """A GivEnergy device with its storage and meters that answers register reads and writes like the real thing."""

    def __init__(
        self,
        *,
        profile: InverterProfile,
        clock: Clock,
        zone: ZoneInfo,
        site: Site,
        serial: str,
        dongle_serial: str,
        storage: Storage,
        meter_plan: tuple[tuple[int, MeterRole, float], ...],
        holding: dict[int, int],
        soc: float,
        lifetime: Energy,
        operating_hours: float,
        rng: random.Random,
    ) -> None:
        self.profile = profile
        self.clock = clock
        self.zone = zone
        self.site = site
        self.serial = serial
        self.dongle_serial = dongle_serial
        self.storage = storage
        self._holding = holding
        self._clock_offset = timedelta()
        self._offline_until: datetime | None = None
        self._rating = self._rating_for(profile, storage)
        # Fault hooks, driven by givbridge.sim.faults.Faults.
        self._frozen = False
        self.persist_writes = True
        self.reboot_seconds = DEFAULT_REBOOT_SECONDS
        self.reboots = 0  # HR163=100 writes carried out
        # Watts drawn on the house circuit beyond the household model, now: a simulated EV charger
        # (givbridge.sim.evc) sets this so the inverter sees the car in its load, as a real one does.
        self.extra_load: Callable[[], float] | None = None
        now = clock.now()
        env = self._environment()
        self._state = physics.initial_state(
            now, soc, physics.add_today_so_far(lifetime, now, env), operating_hours, env
        )
        self.meters = self._fit_meters(meter_plan, rng)
        self._pages = self._bus()

    @classmethod
    def create(
        cls,
        family: str,
        batteries: int | None = None,
        serial: str | None = None,
        clock: Clock | None = None,
        seed: int = 0,
        tz: str = "Europe/London",
        start_soc: float = 50.0,
        pv_kwp: float | None = None,
        meters: int | None = None,
    ) -> SimulatedPlant:
        """A plant of ``family`` (a key of ``givbridge.plant.families.FAMILIES``).

        ``batteries`` counts what the model stores energy in: LV packs, HV stack modules, or
        the inverters an EMS manages / the All-in-Ones a Gateway parallels (each with its
        battery); None is the model's usual. ``meters`` is how many energy meters the site
        has at 0x01 upwards (None: the model's usual). Everything not given is derived from
        ``seed``: serials, pack spread, weather, household and lifetime counters, so the same
        arguments always build the same plant.
        """
        profile = profile_for(family)
        count = profile.default_batteries if batteries is None else batteries
        lowest = 1 if profile.unit is not None else 0
        if not lowest <= count <= profile.max_batteries:
            raise ValueError(f"batteries must be {lowest}-{profile.max_batteries} on {family}, not {count}")
        if not 0 <= start_soc <= 100:
            raise ValueError(f"start_soc must be 0-100, not {start_soc}")
        meter_addresses = cls._meter_addresses(profile, meters)
        rng = random.Random(seed)
        numbers = rng.sample(range(1000), 2 + max(count, 6) + 1)
        week = profile.serial_week
        serial = serial or f"{profile.serial_prefix}{week}{profile.serial_letter}{numbers[0]:03d}"
        if not _SERIAL_PATTERN.fullmatch(serial):
            raise ValueError(
                f"{serial!r} is not a GivEnergy serial (two letters, 4 digits, a letter, 3 digits; or EMS + 7 digits)"
            )
        dongle_serial = f"{profile.dongle_prefix}{week}G{numbers[1]:03d}"
        storage = cls._build_storage(profile, count, week, numbers[2:], rng)

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
            (address, cls._meter_role(profile, n), round(rng.uniform(0.04, 0.12), 3))
            for n, address in enumerate(meter_addresses)
        )
        return cls(
            profile=profile,
            clock=clock if clock is not None else SystemClock(),
            zone=ZoneInfo(tz),
            site=Site(seed=seed, pv_kwp=kwp),
            serial=serial,
            dongle_serial=dongle_serial,
            storage=storage,
            meter_plan=meter_plan,
            holding=holding,
            soc=float(start_soc) if count else 0.0,
            lifetime=_lifetime_counters(
                profile.years_in_service, kwp, count, rng, ac_coupled_pv=profile.pv_coupling == "ac"
            ),
            operating_hours=profile.years_in_service * 8760 * rng.uniform(0.97, 1.0),
            rng=rng,
        )

    @staticmethod
    def _meter_addresses(profile: InverterProfile, meters: int | None) -> tuple[int, ...]:
        """Where the site's meters sit: the model's usual addresses first, then 0x01 upwards."""
        if meters is None:
            return profile.default_meters
        if not 0 <= meters <= len(METER_ADDRESSES):
            raise ValueError(f"meters must be 0-{len(METER_ADDRESSES)}, not {meters}")
        order = (*profile.default_meters, *(a for a in METER_ADDRESSES if a not in profile.default_meters))
        return tuple(sorted(order[:meters]))

    @staticmethod
    def _meter_role(profile: InverterProfile, index: int) -> MeterRole:
        if index == 0:
            return "grid"
        if index == 1 and profile.pv_coupling == "ac":
            return "pv"
        return "circuit"

    @staticmethod
    def _build_storage(
        profile: InverterProfile, count: int, week: str, numbers: list[int], rng: random.Random
    ) -> Storage:
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

    @staticmethod
    def _rating_for(profile: InverterProfile, storage: Storage) -> Rating:
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

    def _fit_meters(self, plan: tuple[tuple[int, MeterRole, float], ...], rng: random.Random) -> tuple[Meter, ...]:
        """The site's meters, each younger than the inverter: its counters start from an offset."""
        energy = self._state.energy
        phases = 3 if self.profile.layout is Layout.THREE_PHASE else 1
        meters = []
        for address, role, circuit_share in plan:
            if role == "grid":
                imported, exported = energy.import_total, energy.export_total
            elif role == "pv":
                imported, exported = energy.pv_total, 0.0
            else:
                imported, exported = 0.0, 0.0
            age = rng.uniform(0.3, 0.6)  # fraction of the inverter's life the meter has been fitted
            meters.append(
                Meter(
                    address=address,
                    role=role,
                    phases=phases,
                    serial=f"{rng.randint(1000, 9999)}",
                    import_offset_wh=imported * (1 - age),
                    export_offset_wh=exported * (1 - age),
                    circuit_share=circuit_share if role == "circuit" else 0.0,
                )
            )
        return tuple(meters)

    # ---------------------------------------------------------------------------------
    # Identity and direct access (tests, the demo)
    # ---------------------------------------------------------------------------------

    @property
    def family(self) -> str:
        return self.profile.family

    @property
    def packs(self) -> tuple[Pack, ...]:
        return self.storage.packs

    @property
    def battery_serials(self) -> tuple[str, ...]:
        """Serials of the LV packs or HV modules on this device's bus."""
        if self.storage.stack is not None:
            return tuple(module.serial for module in self.storage.stack.modules)
        return tuple(pack.serial for pack in self.storage.packs)

    @property
    def unit_serials(self) -> tuple[str, ...]:
        """Serials of the inverters an EMS manages or the All-in-Ones a Gateway parallels."""
        return tuple(unit.serial for unit in self.storage.units)

    @property
    def meter_addresses(self) -> tuple[int, ...]:
        return tuple(meter.address for meter in self.meters)

    @property
    def rating(self) -> Rating:
        return self._rating

    @property
    def state(self) -> PlantState:
        """The physical state as of now."""
        self._advance()
        return self._state

    def inverter_time(self) -> datetime:
        """The inverter's own local clock (HR35-40), timezone-aware."""
        return self._environment().inverter_time(self.clock.now())

    def shift_clock(self, seconds: float) -> None:
        """Move the inverter's real-time clock by ``seconds`` (an RTC jump or drift)."""
        self._advance()
        self._clock_offset += timedelta(seconds=seconds)

    def holding(self, register: int, address: int = INVERTER_ADDRESS) -> int:
        """One holding register as a read would return it now."""
        values = self.read(address, "HR", register, 1)
        if isinstance(values, Unanswered):
            raise LookupError(f"HR({register}) at 0x{address:02x} is not readable ({values.value})")
        return values[0]

    def input(self, register: int, address: int = INVERTER_ADDRESS) -> int:
        """One input register as a read would return it now."""
        values = self.read(address, "IR", register, 1)
        if isinstance(values, Unanswered):
            raise LookupError(f"IR({register}) at 0x{address:02x} is not readable ({values.value})")
        return values[0]

    def set_holding(self, register: int, value: int) -> None:
        """Set a holding register directly, bypassing the write rules (test setup, the demo)."""
        if not self.profile.serves_holding(register):
            raise ValueError(f"HR({register}) does not exist on {self.family}")
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"{value} does not fit a 16-bit register")
        self._advance()
        self._store(register, value)

    # ---------------------------------------------------------------------------------
    # The wire: what the server asks
    # ---------------------------------------------------------------------------------

    def read(self, address: int, kind: RegisterKind, base: int, count: int) -> list[int] | Unanswered:
        """Registers ``base..base+count-1`` of ``kind`` at ``address``, or why there is no answer."""
        self._advance()
        if self.offline:
            return Unanswered.SILENT
        span = range(base, base + count)
        page = self._pages.get(address)
        if kind == "MR":
            # Only meters hold product registers; nothing else on the bus answers function 0x16.
            if page is None or page.product is None:
                return Unanswered.SILENT
            if not _contains(_METER_PRODUCT_BANK, span):
                return Unanswered.ERROR
            image = page.product()
            return [image.get(register, 0) for register in span]
        pack_slots = self._pack_slots()
        if kind == "IR" and address in pack_slots and _contains(PACK_BANK, span):
            pack = pack_slots[address]
            image = pack_registers(pack, self._state) if pack is not None else {}
            return [image.get(register, 0) for register in span]
        if address in self.profile.inverter_addresses:
            return self._read_inverter(kind, span)
        if page is not None:
            if kind == "IR" and any(_contains(bank, span) for bank in page.banks):
                image = page.render()
                return [image.get(register, 0) for register in span]
            return Unanswered.ERROR
        if address in pack_slots:
            return Unanswered.ERROR  # the BMS page exists, this bank does not
        return Unanswered.SILENT

    def write(self, address: int, register: int, value: int) -> WriteOutcome | None:
        """Apply a single-register write; None when nothing at ``address`` would answer."""
        self._advance()
        if self.offline or address not in self.profile.inverter_addresses:
            return None
        outcome = classify_write(self.profile, register, value)
        if outcome is WriteOutcome.STORED and not self.persist_writes:
            outcome = WriteOutcome.ACKNOWLEDGED
        if outcome is WriteOutcome.STORED:
            self._store(register, value)
        elif outcome is WriteOutcome.REBOOT:
            self._offline_until = self._state.moment + timedelta(seconds=self.reboot_seconds)
            self.reboots += 1
        return outcome

    @property
    def frozen(self) -> bool:
        """While True, time passes but measurements stay as they were (settings and clock still move)."""
        return self._frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        self._advance()  # up to now under the old setting
        self._frozen = value

    @property
    def offline(self) -> bool:
        """True while the inverter reboots (HR163=100) and answers nothing."""
        return self._offline_until is not None and self.clock.now() < self._offline_until

    # ---------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------

    def _pack_slots(self) -> dict[int, Pack | None]:
        """BMS page addresses: fitted packs, and empty slots that answer with a blank page."""
        slots: dict[int, Pack | None] = dict.fromkeys(self.profile.empty_bms_addresses)
        slots.update({FIRST_PACK_ADDRESS + n: pack for n, pack in enumerate(self.storage.packs)})
        return slots

    def _bus(self) -> dict[int, _Page]:
        """Every peripheral besides the device and its LV packs, by address."""
        pages: dict[int, _Page] = {}
        stack = self.storage.stack
        if stack is not None:
            bank, wide = range(60, 120), range(60, 180)
            pages[BMS_ADDRESS] = _Page((bank,), lambda: bms_registers(stack))
            pages[FIRST_BCU_ADDRESS] = _Page((wide,), lambda: bcu_registers(stack, self._state))
            for n, module in enumerate(stack.modules):
                pages[FIRST_MODULE_ADDRESS + n] = _Page((bank,), partial(self._render_module, module, stack))
            if stack.spec.has_bams:
                pages[BAMS_ADDRESS] = _Page((bank,), lambda: bams_registers(stack, self._state))
        meter_bank = range(60, 120)
        if self.profile.ghost_meter_pages:
            # Some firmware answers every meter address, with a blank page where none is fitted.
            pages.update({address: _Page((meter_bank,), _blank(meter_bank)) for address in METER_ADDRESSES})
        for meter in self.meters:
            pages[meter.address] = _Page(
                (meter_bank,), partial(self._render_meter, meter), partial(meter_product_registers, meter)
            )
        return pages

    def _render_module(self, module: Module, stack: Stack) -> dict[int, int]:
        return module_registers(module, stack, self._state)

    def _render_meter(self, meter: Meter) -> dict[int, int]:
        return meter_registers(meter, self._state, ac_coupled_pv=self._rating.ac_coupled_pv)

    def _battery_volts(self) -> float:
        """What the device measures on its battery port."""
        if self.storage.stack is not None:
            return stack_volts(self.storage.stack, self._state)
        packs = self.storage.packs
        return sum(pack_output_mv(p, self._state) for p in packs) / len(packs) / 1000 if packs else 0.0

    def _input_image(self) -> dict[int, int]:
        layout = self.profile.layout
        state = self._state
        if layout is Layout.THREE_PHASE:
            return three_phase_input_registers(state, self.profile, self.site, battery_v=self._battery_volts())
        if layout is Layout.EMS:
            return ems_input_registers(state, self.storage.units, self.meters, capacity_wh=self._rating.capacity_wh)
        if layout is Layout.GATEWAY:
            return gateway_input_registers(state, self.storage.units)
        return inverter_input_registers(
            state,
            self.profile,
            self.site,
            battery_v=self._battery_volts(),
            storage=bool(self.storage.packs or self.storage.stack),
        )

    def _read_inverter(self, kind: RegisterKind, span: range) -> list[int] | Unanswered:
        served, silent = (
            (self.profile.holding_served, self.profile.holding_silent)
            if kind == "HR"
            else (self.profile.input_served, self.profile.input_silent)
        )
        if any(_contains(bank, span) for bank in served):
            if kind == "HR":
                image = dict(self._holding)
                image.update(clock_registers(self._environment().inverter_time(self._state.moment)))
                image[REBOOT_REGISTER] = 0  # a command register: it never reads back
            else:
                image = self._input_image()
            return [image.get(register, 0) for register in span]
        if any(_overlaps(bank, span) for bank in served):
            return Unanswered.ERROR  # a bank that runs off the end of what exists
        if any(_overlaps(bank, span) for bank in silent):
            return Unanswered.SILENT
        return Unanswered.ERROR

    def _store(self, register: int, value: int) -> None:
        if register in CLOCK_REGISTERS:
            self._set_clock_field(register, value)
        else:
            self._holding[register] = value
        if not self._frozen:
            # Re-evaluate the flows now so the change shows on the next read without time passing.
            self._state = physics.advance(self._state, self._state.moment, self._environment())

    def _set_clock_field(self, register: int, value: int) -> None:
        """Set one of HR35-40 by moving the inverter's clock offset; the other fields keep their values."""
        moment = self._state.moment
        current = self._environment().inverter_time(moment)
        fields = [current.year, current.month, current.day, current.hour, current.minute, current.second]
        index = register - CLOCK_REGISTERS[0]
        fields[index] = value + 2000 if index == 0 else value
        year, month, day, hour, minute, second = fields
        # A day past the end of the month lands on its last day, as the RTC clamps it.
        day = min(day, calendar.monthrange(year, month)[1])
        self._clock_offset = datetime(year, month, day, hour, minute, second, tzinfo=self.zone) - moment

    def _controls(self) -> Controls:
        """The holding registers decoded through the model's control map."""
        h = self._holding
        m = self.profile.controls

        def value(register: int | None, default: int) -> int:
            return h[register] if register is not None else default

        def on(register: int | None) -> bool:
            return register is not None and h[register] == 1

        def windows(slots: tuple[SlotRegisters, ...]) -> tuple[Window, ...]:
            found = (
                Window.from_registers(h[s.start], h[s.end], h[s.target] if s.target is not None else None)
                for s in slots
            )
            return tuple(w for w in found if w is not None)

        full = 100 if m.limits_in_percent else 50
        mode = value(m.pause[0], 0) if m.pause is not None else 0
        return Controls(
            eco=value(m.eco, 1) == 1,
            charge_enabled=bool(m.charge_enable) and all(h[r] == 1 for r in m.charge_enable),
            charge_windows=windows(self.profile.charge_slots),
            discharge_enabled=on(m.discharge_enable),
            discharge_windows=windows(self.profile.discharge_slots),
            export_windows=windows(self.profile.export_slots) if on(m.export_enable) else (),
            reserve=value(m.reserve, 4),
            charge_limit=value(m.charge_limit, full),
            discharge_limit=value(m.discharge_limit, full),
            limits_in_percent=m.limits_in_percent,
            target_enabled=m.target_enable is None or on(m.target_enable),
            charge_target=value(m.target, 100),
            pause_mode=mode,
            pause_window=Window.from_registers(h[m.pause[1]], h[m.pause[2]]) if m.pause is not None else None,
            active_power_rate=value(m.active_power_rate, 100),
            export_limit_w=value(m.export_limit, self._rating.inverter_w),
        )

    def _environment(self) -> Environment:
        return Environment(
            site=self.site,
            controls=self._controls(),
            rating=self._rating,
            zone=self.zone,
            clock_offset=self._clock_offset,
            offline_until=self._offline_until,
            extra_load_w=self.extra_load() if self.extra_load is not None else 0.0,
        )

    def _advance(self) -> None:
        now = self.clock.now()
        if self._frozen:
            self._state = physics.hold(self._state, now)
        else:
            self._state = physics.advance(self._state, now, self._environment())
