"""A simulated GivEnergy plant: a device, its storage and meters, evolving with the clock.

:class:`SimulatedPlant` owns the holding registers and the physical state. Every access
first brings the state up to ``clock.now()`` (see :mod:`givbridge.sim.physics`), then
answers from registers rendered for that instant, so a write is visible to the very next
read and nothing runs between requests.

What answers where: the device itself at 0x11 (and its legacy aliases), LV packs and the
empty BMS pages at 0x30-0x37, an HV stack's BMS (0xA0), BCU (0x70), modules (0x50+) and
BAMS page (0x90), and meters at 0x01-0x08 (fitted ones with readings, the rest with a blank
page or nothing, per model; the peripherals are laid out in :mod:`givbridge.sim.bus`). The
units an EMS manages or a Gateway parallels are only reported through their controller's
rollup. The battery logic obeys the holding registers as :mod:`givbridge.sim.controls`
decodes them.
"""

from __future__ import annotations

import calendar
import random
from collections import deque
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal
from zoneinfo import ZoneInfo

from givbridge.clock import Clock, SystemClock
from givbridge.plant import registers as reg
from givbridge.sim import physics
from givbridge.sim.assembly import Storage, assemble, rating_for
from givbridge.sim.bus import METER_PRODUCT_BANK, contains, overlaps, peripheral_pages
from givbridge.sim.controls import decode_controls
from givbridge.sim.physics import Energy, Environment, PlantState, Rating
from givbridge.sim.profile_spec import (
    FIRST_PACK_ADDRESS,
    INVERTER_ADDRESS,
    PACK_BANK,
    InverterProfile,
    Layout,
)
from givbridge.sim.render import (
    Pack,
    clock_registers,
    inverter_input_registers,
    pack_output_mv,
    pack_registers,
)
from givbridge.sim.render_hv import (
    stack_volts,
)
from givbridge.sim.render_meter import Meter, MeterRole
from givbridge.sim.render_rollups import ems_input_registers, gateway_input_registers
from givbridge.sim.render_three_phase import three_phase_input_registers
from givbridge.sim.weather import Site
from givbridge.sim.writes import WriteOutcome, WriteRecord, classify_write

#: HR and IR are the inverter's holding and input registers; MR the meters' product registers.
RegisterKind = Literal["HR", "IR", "MR"]

#: How many writes :attr:`SimulatedPlant.write_log` keeps (a long ``simulate`` run stays small).
WRITE_LOG_SIZE = 100_000
#: How long (simulated seconds) an HR163=100 reboot keeps the inverter from answering.
DEFAULT_REBOOT_SECONDS = 30.0


class Unanswered(Enum):
    """Why a read gets no register values back."""

    SILENT = "silent"  # no reply at all: the client times out
    ERROR = "error"  # an error response (error flag, 0x12 padding)


def _scaled(energy: Energy, keep: float, *, totals_only: bool) -> Energy:
    """``energy`` with its lifetime counters (and, unless ``totals_only``, today's) scaled by ``keep``."""
    names = [f.name for f in fields(energy) if not totals_only or f.name.endswith("_total")]
    return replace(energy, **{name: getattr(energy, name) * keep for name in names})


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
        self._rating = rating_for(profile, storage)
        # Fault hooks, driven by givbridge.sim.faults.Faults.
        self._frozen = False
        self.persist_writes = True
        self.reboot_seconds = DEFAULT_REBOOT_SECONDS
        self.reboots = 0  # HR163=100 writes carried out
        #: The writes the inverter answered, accepted or rejected, oldest first (the latest
        #: WRITE_LOG_SIZE): what tests count "registers written" by; see :meth:`writes_since`.
        self.write_log: deque[WriteRecord] = deque(maxlen=WRITE_LOG_SIZE)
        self.writes_answered = 0  # the sequence number of the latest record
        #: Answers of the device's input registers still to show its counters misread (see
        #: Faults.misread_counters), and the fraction of their value they show.
        self.counter_misreads = 0
        self.counter_misread_keep = 1.0
        # Watts drawn on the house circuit beyond the household model, now: a simulated EV charger
        # (givbridge.sim.evc) sets this so the inverter sees the car in its load, as a real one does.
        self.extra_load: Callable[[], float] | None = None
        now = clock.now()
        env = self._environment()
        self._state = physics.initial_state(
            now, soc, physics.add_today_so_far(lifetime, now, env), operating_hours, env
        )
        self.meters = self._fit_meters(meter_plan, rng)
        self._pages = peripheral_pages(
            profile, storage.stack, self.meters, lambda: self._state, ac_coupled_pv=self._rating.ac_coupled_pv
        )

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
        ``seed`` (see :func:`~givbridge.sim.assembly.assemble`), so the same arguments always
        build the same plant.
        """
        parts = assemble(
            family,
            batteries=batteries,
            serial=serial,
            seed=seed,
            start_soc=start_soc,
            pv_kwp=pv_kwp,
            meters=meters,
        )
        return cls(
            profile=parts.profile,
            clock=clock if clock is not None else SystemClock(),
            zone=ZoneInfo(tz),
            site=parts.site,
            serial=parts.serial,
            dongle_serial=parts.dongle_serial,
            storage=parts.storage,
            meter_plan=parts.meter_plan,
            holding=parts.holding,
            soc=parts.soc,
            lifetime=parts.lifetime,
            operating_hours=parts.operating_hours,
            rng=parts.rng,
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

    def restart_counters(self, keep: float, *, pack: int | None = None) -> None:
        """Restart lifetime counters lower, as a firmware reset or a replaced unit does.

        Each lifetime energy counter keeps ``keep`` (0-1) of what it has counted and counts on
        from there (today's counters are left alone). With ``pack`` (an index into
        :attr:`packs`), only that LV pack's own counter restarts: its cycle count (a BMS reset).
        """
        if not 0 <= keep < 1:
            raise ValueError(f"keep is a fraction from 0 up to 1, not {keep}")
        self._advance()
        energy = self._state.energy
        if pack is None:
            self._state = replace(self._state, energy=_scaled(energy, keep, totals_only=True))
            return
        packs = list(self.storage.packs)
        old = packs[pack]
        counted = energy.battery_discharge_total - old.uncounted_discharge_wh
        packs[pack] = replace(old, uncounted_discharge_wh=energy.battery_discharge_total - counted * keep)
        self.storage = replace(self.storage, packs=tuple(packs))

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
            if not contains(METER_PRODUCT_BANK, span):
                return Unanswered.ERROR
            image = page.product()
            return [image.get(register, 0) for register in span]
        pack_slots = self._pack_slots()
        if kind == "IR" and address in pack_slots and contains(PACK_BANK, span):
            pack = pack_slots[address]
            image = pack_registers(pack, self._state) if pack is not None else {}
            return [image.get(register, 0) for register in span]
        if address in self.profile.inverter_addresses:
            return self._read_inverter(kind, span)
        if page is not None:
            if kind == "IR" and any(contains(bank, span) for bank in page.banks):
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
        self.writes_answered += 1
        old = self._current_holding(register)
        self.write_log.append(
            WriteRecord(self.writes_answered, self._state.moment, address, register, old, value, outcome)
        )
        if outcome is WriteOutcome.STORED:
            self._store(register, value)
        elif outcome is WriteOutcome.REBOOT:
            self._offline_until = self._state.moment + timedelta(seconds=self.reboot_seconds)
            self.reboots += 1
        return outcome

    def writes_since(self, sequence: int) -> list[WriteRecord]:
        """The logged writes after ``sequence`` (a past :attr:`writes_answered`), oldest first."""
        return [record for record in self.write_log if record.sequence > sequence]

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

    def _battery_volts(self) -> float:
        """What the device measures on its battery port."""
        if self.storage.stack is not None:
            return stack_volts(self.storage.stack, self._state)
        packs = self.storage.packs
        return sum(pack_output_mv(p, self._state) for p in packs) / len(packs) / 1000 if packs else 0.0

    def _input_image(self) -> dict[int, int]:
        layout = self.profile.layout
        state = self._state
        if self.counter_misreads > 0:
            self.counter_misreads -= 1
            state = replace(state, energy=_scaled(state.energy, self.counter_misread_keep, totals_only=False))
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
        if any(contains(bank, span) for bank in served):
            if kind == "HR":
                image = dict(self._holding)
                image.update(clock_registers(self._environment().inverter_time(self._state.moment)))
                image[reg.REBOOT] = 0  # a command register: it never reads back
            else:
                image = self._input_image()
            return [image.get(register, 0) for register in span]
        if any(overlaps(bank, span) for bank in served):
            return Unanswered.ERROR  # a bank that runs off the end of what exists
        if any(overlaps(bank, span) for bank in silent):
            return Unanswered.SILENT
        return Unanswered.ERROR

    def _current_holding(self, register: int) -> int:
        """HR(register) as a read would return it now (0 where the model has no such register)."""
        if register in reg.CLOCK:
            return clock_registers(self._environment().inverter_time(self._state.moment))[register]
        return 0 if register == reg.REBOOT else self._holding.get(register, 0)

    def _store(self, register: int, value: int) -> None:
        if register in reg.CLOCK:
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
        index = register - reg.CLOCK[0]
        fields[index] = value + 2000 if index == 0 else value
        year, month, day, hour, minute, second = fields
        # A day past the end of the month lands on its last day, as the RTC clamps it.
        day = min(day, calendar.monthrange(year, month)[1])
        self._clock_offset = datetime(year, month, day, hour, minute, second, tzinfo=self.zone) - moment

    def _environment(self) -> Environment:
        return Environment(
            site=self.site,
            controls=decode_controls(self.profile, self._holding, inverter_w=self._rating.inverter_w),
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
