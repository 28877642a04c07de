"""A simulated GivEnergy plant: an inverter and its LV battery packs, evolving with the clock.

:class:`SimulatedPlant` owns the holding registers and the physical state. Every access
first brings the state up to ``clock.now()`` (see :mod:`givbridge.sim.physics`), then
answers from registers rendered for that instant, so a write is visible to the very next
read and nothing runs between requests.
"""

from __future__ import annotations

import calendar
import random
import re
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal
from zoneinfo import ZoneInfo

from givbridge.clock import Clock, SystemClock
from givbridge.sim import physics
from givbridge.sim.physics import Controls, Energy, Environment, PlantState, Rating, Site, Window
from givbridge.sim.profiles import (
    FIRST_PACK_ADDRESS,
    INVERTER_ADDRESS,
    MAX_PACKS,
    PACK_BANK,
    InverterProfile,
    SlotRegisters,
    profile_for,
)
from givbridge.sim.render import (
    Pack,
    clock_registers,
    inverter_input_registers,
    pack_registers,
    serial_registers,
)
from givbridge.sim.writes import CLOCK_REGISTERS, REBOOT_REGISTER, WriteOutcome, classify_write

RegisterKind = Literal["HR", "IR"]

_SERIAL_PATTERN = re.compile(r"[A-Z]{2}\d{4}[A-Z]\d{3}")
#: How long (simulated seconds) an HR163=100 reboot keeps the inverter from answering.
DEFAULT_REBOOT_SECONDS = 30.0


class Unanswered(Enum):
    """Why a read gets no register values back."""

    SILENT = "silent"  # no reply at all: the client times out
    ERROR = "error"  # an error response (error flag, 0x12 padding)


def _lifetime_counters(years: float, pv_kwp: float, batteries: int, rng: random.Random) -> Energy:
    """Lifetime totals (Wh) for a unit ``years`` in service: typical UK yields, +-15 % per unit."""

    def per_year(kwh: float) -> float:
        return kwh * years * rng.uniform(0.85, 1.15) * 1000

    pv = per_year(850 * pv_kwp)
    # Capped so the uint16 lifetime registers (IR180/181, pack IR105/106) keep headroom to grow.
    charged = min(per_year(380 * (1 + 0.3 * (batteries - 1))), 5_000_000.0) if batteries else 0.0
    return Energy(
        pv_total=pv,
        import_total=per_year(2600),
        export_total=pv * 0.35,
        ac_charge_total=per_year(700) if batteries else 0.0,
        inverter_out_total=pv * 0.93 + charged * 0.85,
        battery_charge_total=charged,
        battery_discharge_total=charged * 0.92,
    )


def _overlaps(bank: range, span: range) -> bool:
    return bank.start < span.stop and span.start < bank.stop


def _contains(bank: range, span: range) -> bool:
    return bank.start <= span.start and span.stop <= bank.stop


class SimulatedPlant:
    """An inverter plus 0-6 LV packs that answer register reads and writes like the real thing."""

    def __init__(
        self,
        *,
        profile: InverterProfile,
        clock: Clock,
        zone: ZoneInfo,
        site: Site,
        serial: str,
        dongle_serial: str,
        packs: tuple[Pack, ...],
        holding: dict[int, int],
        soc: float,
        lifetime: Energy,
        operating_hours: float,
    ) -> None:
        self.profile = profile
        self.clock = clock
        self.zone = zone
        self.site = site
        self.serial = serial
        self.dongle_serial = dongle_serial
        self.packs = packs
        self._holding = holding
        self._clock_offset = timedelta()
        self._offline_until: datetime | None = None
        # Fault hooks, driven by givbridge.sim.faults.Faults.
        self._frozen = False
        self.persist_writes = True
        self.reboot_seconds = DEFAULT_REBOOT_SECONDS
        now = clock.now()
        env = self._environment()
        self._state = physics.initial_state(
            now, soc, physics.add_today_so_far(lifetime, now, env), operating_hours, env
        )

    @classmethod
    def create(
        cls,
        family: str,
        batteries: int = 1,
        serial: str | None = None,
        clock: Clock | None = None,
        seed: int = 0,
        tz: str = "Europe/London",
        start_soc: float = 50.0,
        pv_kwp: float | None = None,
    ) -> SimulatedPlant:
        """A plant of ``family`` (a key of ``givbridge.plant.families.FAMILIES``) with ``batteries`` packs.

        Everything not given is derived from ``seed``: serials, pack spread, weather, household
        and lifetime counters, so the same arguments always build the same plant.
        """
        profile = profile_for(family)
        if not 0 <= batteries <= MAX_PACKS:
            raise ValueError(f"batteries must be 0-{MAX_PACKS}, not {batteries}")
        if not 0 <= start_soc <= 100:
            raise ValueError(f"start_soc must be 0-100, not {start_soc}")
        rng = random.Random(seed)
        numbers = rng.sample(range(1000), MAX_PACKS + 2)
        week = profile.serial_week
        serial = serial or f"{profile.serial_prefix}{week}G{numbers[0]:03d}"
        if not _SERIAL_PATTERN.fullmatch(serial):
            raise ValueError(f"{serial!r} is not a GivEnergy serial (two letters, 4 digits, a letter, 3 digits)")
        dongle_serial = f"{profile.dongle_prefix}{week}G{numbers[1]:03d}"

        spec = profile.pack
        packs = tuple(
            Pack(
                serial=f"{spec.serial_prefix}{week}G{numbers[2 + n]:03d}",
                spec=spec,
                share=1 / batteries,
                soc_offset=round(rng.uniform(-0.8, 0.8), 2),
                health=round(rng.uniform(0.95, 1.02), 3),
                cell_offsets_mv=tuple(rng.randint(-4, 4) for _ in range(physics.CELLS_PER_PACK)),
                sensor_offsets_c=tuple(round(rng.uniform(-0.6, 0.6), 1) for _ in range(4)),
            )
            for n in range(batteries)
        )

        holding = {register: 0 for bank in profile.holding_served for register in bank}
        holding.update(profile.holding_defaults)
        holding[0] = profile.device_type_code
        holding[19] = profile.dsp_firmware
        holding[21] = profile.arm_firmware
        holding.update(zip(range(13, 18), serial_registers(serial), strict=True))
        if packs:
            # HR8-12 and HR18 mirror pack 1 (serial, BMS firmware); HR55 is the whole bank's Ah.
            holding.update(zip(range(8, 13), serial_registers(packs[0].serial), strict=True))
            holding[18] = spec.bms_firmware
        holding[55] = spec.design_ah * batteries

        kwp = pv_kwp if pv_kwp is not None else profile.pv_kwp
        return cls(
            profile=profile,
            clock=clock if clock is not None else SystemClock(),
            zone=ZoneInfo(tz),
            site=Site(seed=seed, pv_kwp=kwp),
            serial=serial,
            dongle_serial=dongle_serial,
            packs=packs,
            holding=holding,
            soc=float(start_soc) if batteries else 0.0,
            lifetime=_lifetime_counters(profile.years_in_service, kwp, batteries, rng),
            operating_hours=profile.years_in_service * 8760 * rng.uniform(0.97, 1.0),
        )

    # ---------------------------------------------------------------------------------
    # Identity and direct access (tests, the demo)
    # ---------------------------------------------------------------------------------

    @property
    def family(self) -> str:
        return self.profile.family

    @property
    def battery_serials(self) -> tuple[str, ...]:
        return tuple(pack.serial for pack in self.packs)

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
        pack_slots = self._pack_slots()
        if kind == "IR" and address in pack_slots and _contains(PACK_BANK, span):
            pack = pack_slots[address]
            image = pack_registers(pack, self._state) if pack is not None else {}
            return [image.get(register, 0) for register in span]
        if address in self.profile.inverter_addresses:
            return self._read_inverter(kind, span)
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
        slots.update({FIRST_PACK_ADDRESS + n: pack for n, pack in enumerate(self.packs)})
        return slots

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
                image = inverter_input_registers(self._state, self.profile, self.packs, self.site)
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
        h = self._holding

        def windows(slots: tuple[SlotRegisters, ...]) -> tuple[Window, ...]:
            found = (
                Window.from_registers(h[s.start], h[s.end], h[s.target] if s.target is not None else None)
                for s in slots
            )
            return tuple(w for w in found if w is not None)

        pause = self.profile.has_pause
        return Controls(
            eco=h[27] == 1,
            charge_enabled=h[96] == 1,
            charge_windows=windows(self.profile.charge_slots),
            discharge_enabled=h[59] == 1,
            discharge_windows=windows(self.profile.discharge_slots),
            reserve=h[110],
            charge_limit=h[111],
            discharge_limit=h[112],
            target_enabled=h[20] == 1,
            charge_target=h[116],
            pause_mode=h[318] if pause else 0,
            pause_window=Window.from_registers(h[319], h[320]) if pause else None,
            active_power_rate=h[50],
            export_limit_w=h[26],
        )

    def _environment(self) -> Environment:
        return Environment(
            site=self.site,
            controls=self._controls(),
            rating=Rating(
                inverter_w=self.profile.rated_power_w,
                battery_max_w=self.profile.battery_max_power_w,
                capacity_ah=float(sum(pack.spec.design_ah for pack in self.packs)),
            ),
            zone=self.zone,
            clock_offset=self._clock_offset,
            offline_until=self._offline_until,
        )

    def _advance(self) -> None:
        now = self.clock.now()
        if self._frozen:
            self._state = physics.hold(self._state, now)
        else:
            self._state = physics.advance(self._state, now, self._environment())
