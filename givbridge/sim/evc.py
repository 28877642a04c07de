"""A simulated GivEnergy EV charger: plain Modbus TCP (a pymodbus server) with session physics.

It powers ``givbridge demo --evc``, ``givbridge simulate --evc`` and the EV-charger tests. The
registers are the ones givbridge reads and writes (:mod:`givbridge.evc.registers`, from
GivTCP's register list); behind them is a charger with a car that can be plugged in and out:

* plugged in with Plug and Go on, the charger starts at once; otherwise it waits for Start;
* while charging, the car draws the charger's limit (or less: its own onboard charger's
  maximum, tapering above 90 % state of charge) at the simulated grid voltage, filling its
  battery, the session energy and the lifetime meter; a full car ends the charge;
* writes are checked like a charger would: only HR91 (limit, within its min/max), HR93
  (Plug and Go), HR95 (Ready/Start/Stop) and HR97-102 (the clock) are writable, anything else
  or any other value is an exception response, and nothing changes.

Time: like the inverter simulator, the state moves only when somebody reads or writes it,
integrated from the last access to ``clock.now()`` in steps of at most 5 simulated seconds, so
a :class:`~givbridge.clock.ScaledClock` (and its ``advance()``) speeds everything up.

Faults (:class:`ChargerFaults`): ``refuse_writes`` answers every write with an exception, as a
charger without local control does (GivTCP #467: "EVC Modbus is read-only"); ``ignore_writes``
acknowledges writes and keeps the old values; :meth:`EvcSimulatorServer.go_offline` stops
listening and drops every connection, :meth:`EvcSimulatorServer.come_back` listens again on the
same port.

In-process use::

    sim = EvcSimulator(clock=clock, tz="Europe/London")
    async with EvcSimulatorServer(sim) as server:   # server.port: an ephemeral port on 127.0.0.1
        sim.plug_in(Car(capacity_kwh=60, soc=40))
        sim.power_w                                   # what the charger draws now
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from givbridge.clock import Clock
from givbridge.evc import registers as reg
from givbridge.scan import decode_charger_clock
from givbridge.sim.physics import MAX_STEP_SECONDS
from givbridge.sim.weather import grid_voltage

REGISTER_COUNT = 120  # HR0-119: everything GivTCP's two reads cover, and a little more
DEFAULT_SERIAL = "GE2239EVC01"
WRITE_FUNCTIONS = frozenset({6, 16})
#: Above this state of charge a car's onboard charger tapers its current towards zero at 100 %.
TAPER_FROM_SOC = 90.0
#: ... and ends the charge once it would take less than this.
FULL_BELOW_AMPS = 1.0


@dataclass
class Car:
    """The car on the cable: its battery and what its onboard charger accepts."""

    capacity_kwh: float = 60.0
    soc: float = 40.0  # %
    max_current: float = 32.0  # A per phase

    def accepts(self) -> float:
        """Amps per phase the car takes now."""
        if self.soc >= 100.0:
            return 0.0
        if self.soc <= TAPER_FROM_SOC:
            return self.max_current
        tapered = self.max_current * (100.0 - self.soc) / (100.0 - TAPER_FROM_SOC)
        return tapered if tapered >= FULL_BELOW_AMPS else 0.0


@dataclass
class ChargerFaults:
    refuse_writes: bool = False  # every write is answered with an exception (ILLEGAL_FUNCTION)
    ignore_writes: bool = False  # writes are acknowledged, nothing changes


@dataclass
class _Session:
    started: datetime | None = None  # charger wall clock when charging first began
    ended: datetime | None = None  # ... and when the car was unplugged
    plugged_at: datetime | None = None  # true time of plug-in, for the duration
    unplugged_at: datetime | None = None
    energy_kwh: float = 0.0

    def seconds(self, now: datetime) -> int:
        if self.plugged_at is None:
            return 0
        return round(((self.unplugged_at or now) - self.plugged_at).total_seconds())


@dataclass
class EvcSimulator:
    """One charger and the car (if any) plugged into it; see the module docstring."""

    clock: Clock
    tz: str = "Europe/London"
    serial: str = DEFAULT_SERIAL
    phases: int = 1
    evse_min: int = 6  # A
    evse_max: int = 32  # A
    seed: int = 0  # the grid voltage's noise, shared with an inverter simulator of the same seed
    meter_kwh: float = 1234.5
    plug_and_go: bool = True
    limit_tenths: int = 320
    control: int = 0  # index into CHARGE_CONTROLS: the command in force (HR94)
    last_command: int = 0  # HR95 as last written
    error_code: int = 0
    car: Car | None = None
    faults: ChargerFaults = field(default_factory=ChargerFaults)
    writes_refused: int = 0
    writes_applied: int = 0

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError("a charger has one phase or three")
        if not 0 < self.evse_min <= self.evse_max:
            raise ValueError("need 0 < evse_min <= evse_max")
        self.zone = ZoneInfo(self.tz)
        self._at = self.clock.now()
        self._clock_offset = timedelta()  # the charger's clock minus true local wall time
        self._session = _Session()
        self._current = 0.0  # A per phase drawn since the last step

    # ------------------------------------------------------------------ the car

    def plug_in(self, car: Car | None = None) -> None:
        """Connect a car: a new session; with Plug and Go on, charging starts at once."""
        self._advance()
        self.car = car or Car()
        self._session = _Session(plugged_at=self._at)
        self.control = reg.CHARGE_CONTROLS.index("Start" if self.plug_and_go else "Ready")
        self._settle()

    def unplug(self) -> None:
        """Disconnect the car: the session ends."""
        self._advance()
        if self.car is not None:
            self._session.unplugged_at = self._at
            if self._session.started is not None:
                self._session.ended = self._wall_clock()
        self.car = None
        self.control = reg.CHARGE_CONTROLS.index("Ready")
        self._settle()

    # ------------------------------------------------------------------ what it does now

    @property
    def charging(self) -> bool:
        return self._current > 0

    @property
    def current(self) -> float:
        """Amps per phase being drawn."""
        self._advance()
        return self._current

    @property
    def power_w(self) -> float:
        """Watts the charger draws from the house supply now."""
        self._advance()
        return self._current * self._volts(self._at) * self.phases

    @property
    def session_energy_kwh(self) -> float:
        self._advance()
        return self._session.energy_kwh

    def wall_clock(self) -> datetime:
        """The charger's own clock now: local wall time, naive."""
        self._advance()
        return self._wall_clock()

    def _wall_clock(self) -> datetime:
        # An RTC counts seconds and knows no daylight saving: the offset lives in local wall time.
        return self._at.astimezone(self.zone).replace(tzinfo=None, microsecond=0) + self._clock_offset

    def _volts(self, moment: datetime) -> float:
        return grid_voltage(moment, self.seed)

    def _wants_current(self) -> float:
        if self.car is None or self.control != reg.CHARGE_CONTROLS.index("Start") or self.error_code:
            return 0.0
        return min(self.limit_tenths / 10, self.car.accepts())

    def _settle(self) -> None:
        """Re-evaluate what is drawn after a change (plug, command, limit)."""
        self._current = self._wants_current()
        if self._current > 0 and self._session.started is None:
            self._session.started = self._wall_clock()

    def _advance(self) -> None:
        now = self.clock.now()
        total = (now - self._at).total_seconds()
        if total <= 0:
            return
        steps = math.ceil(total / MAX_STEP_SECONDS)
        start = self._at
        for n in range(1, steps + 1):
            moment = start + timedelta(seconds=total * n / steps)
            self._step(moment, total / steps)
            self._at = moment
        self._at = now

    def _step(self, moment: datetime, seconds: float) -> None:
        self._settle()
        if self._current <= 0 or self.car is None:
            return
        kwh = self._current * self._volts(moment) * self.phases * seconds / 3_600_000
        self.meter_kwh += kwh
        self._session.energy_kwh += kwh
        self.car.soc = min(100.0, self.car.soc + kwh / self.car.capacity_kwh * 100)

    # ------------------------------------------------------------------ registers

    def state_index(self) -> int:
        if self.error_code:
            return reg.CHARGING_STATES.index("System Failure")
        if self.car is None:
            return reg.CHARGING_STATES.index("Idle")
        if self._current > 0:
            return reg.CHARGING
        if self.control == reg.CHARGE_CONTROLS.index("Start") and self.car.accepts() == 0:
            return reg.CHARGING_STATES.index("End of Charging")
        return reg.CHARGING_STATES.index("Connected")

    def registers(self) -> list[int]:
        """HR0-119 as a read returns them now."""
        self._advance()
        image = [0] * REGISTER_COUNT
        volts = self._volts(self._at)
        image[reg.STATE] = self.state_index()
        image[reg.CABLE] = 1 if self.car is not None else 0
        image[reg.ERROR] = self.error_code
        live = range(self.phases)
        for phase, (current, power, voltage) in enumerate(
            zip(reg.PHASE_CURRENTS, reg.PHASE_POWERS, reg.PHASE_VOLTAGES, strict=True)
        ):
            if phase in live:
                image[current] = round(self._current * 10)
                image[power] = round(self._current * volts)
                image[voltage] = round(volts * 10)
        image[reg.ACTIVE_POWER] = round(self._current * volts * self.phases)
        image[reg.METER_ENERGY] = round(self.meter_kwh * 10) & 0xFFFF
        image[reg.EVSE_MAX_CURRENT] = self.evse_max * 10
        image[reg.EVSE_MIN_CURRENT] = self.evse_min * 10
        image[reg.CHARGE_LIMIT] = self.limit_tenths
        for offset, character in enumerate(self.serial[: reg.SERIAL_COUNT]):
            image[reg.SERIAL_FIRST + offset] = ord(character)
        session = self._session
        image[reg.SESSION_ENERGY] = round(session.energy_kwh * 10)
        if session.started is not None:
            image[reg.SESSION_START[0] : reg.SESSION_START[-1] + 1] = [
                session.started.hour,
                session.started.minute,
                session.started.second,
            ]
        if session.ended is not None:
            image[reg.SESSION_END[0] : reg.SESSION_END[-1] + 1] = [
                session.ended.hour,
                session.ended.minute,
                session.ended.second,
            ]
        image[reg.SESSION_DURATION] = min(0xFFFF, session.seconds(self._at))
        image[reg.CURRENT_LIMIT_SET] = self.limit_tenths
        image[reg.PLUG_AND_GO] = reg.PLUG_AND_GO_ON if self.plug_and_go else 1 - reg.PLUG_AND_GO_ON
        image[reg.CHARGE_CONTROL] = self.control
        image[reg.CHARGE_COMMAND] = self.last_command
        rtc = self._wall_clock()
        image[reg.SYSTEM_TIME[0] : reg.SYSTEM_TIME[-1] + 1] = [
            rtc.year,
            rtc.month,
            rtc.day,
            rtc.hour,
            rtc.minute,
            rtc.second,
        ]
        return image

    def write(self, address: int, values: list[int]) -> ExcCodes | None:
        """Apply a write of ``values`` from ``address`` as the charger would; an exception code refuses it."""
        self._advance()
        if self.faults.refuse_writes:
            self.writes_refused += 1
            return ExcCodes.ILLEGAL_FUNCTION
        span = range(address, address + len(values))
        if any(register not in reg.WRITABLE for register in span):
            self.writes_refused += 1
            return ExcCodes.ILLEGAL_ADDRESS
        written = dict(zip(span, values, strict=True))
        problem = self._check(written)
        if problem is not None:
            self.writes_refused += 1
            return problem
        if self.faults.ignore_writes:
            return None
        self._apply(written)
        self.writes_applied += 1
        self._settle()
        return None

    def _check(self, written: dict[int, int]) -> ExcCodes | None:
        limit = written.get(reg.CURRENT_LIMIT_SET)
        if limit is not None and not self.evse_min * 10 <= limit <= self.evse_max * 10:
            return ExcCodes.ILLEGAL_VALUE
        if written.get(reg.PLUG_AND_GO, 0) not in (0, 1):
            return ExcCodes.ILLEGAL_VALUE
        if written.get(reg.CHARGE_COMMAND, 0) not in range(len(reg.CHARGE_CONTROLS)):
            return ExcCodes.ILLEGAL_VALUE
        if any(r in written for r in reg.SYSTEM_TIME) and self._new_clock(written) is None:
            return ExcCodes.ILLEGAL_VALUE
        return None

    def _new_clock(self, written: dict[int, int]) -> datetime | None:
        current = self._wall_clock()
        fields = [current.year, current.month, current.day, current.hour, current.minute, current.second]
        for index, register in enumerate(reg.SYSTEM_TIME):
            fields[index] = written.get(register, fields[index])
        return decode_charger_clock(fields)

    def _apply(self, written: dict[int, int]) -> None:
        if (limit := written.get(reg.CURRENT_LIMIT_SET)) is not None:
            self.limit_tenths = limit
        if (plug_and_go := written.get(reg.PLUG_AND_GO)) is not None:
            self.plug_and_go = plug_and_go == reg.PLUG_AND_GO_ON
        if (command := written.get(reg.CHARGE_COMMAND)) is not None:
            self.last_command = command
            self.control = command
        if any(r in written for r in reg.SYSTEM_TIME):
            wall = self._new_clock(written)
            assert wall is not None  # checked before
            true_wall = self._at.astimezone(self.zone).replace(tzinfo=None, microsecond=0)
            self._clock_offset = wall - true_wall

    async def access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: Any,
    ) -> ExcCodes | None:
        """pymodbus's per-request hook: render the registers, and apply (or refuse) a write."""
        writing = function_code in WRITE_FUNCTIONS and set_values is not None
        if writing:
            refused = self.write(address, [int(v) for v in set_values])
            if refused is not None:
                return refused
        image = self.registers()
        current_registers[: len(image)] = image
        if writing:
            # The server stores the request's values next: make them what the charger now holds
            # (a command register reads back as the command in force, an ignored write as before).
            offset = address - start_address
            set_values[:] = image[offset : offset + count]
        return None


class EvcSimulatorServer:
    """Serves an :class:`EvcSimulator` over Modbus TCP on ``host`` (an ephemeral port unless given)."""

    def __init__(self, sim: EvcSimulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: ModbusTcpServer | None = None

    def _device(self) -> SimDevice:
        # Unit id 0 answers every unit id; GivTCP (pymodbus 2) addresses the charger as 0.
        return SimDevice(
            reg.DEVICE_ID,
            simdata=[SimData(0, values=[0] * REGISTER_COUNT, datatype=DataType.REGISTERS)],
            action=self.sim.access,
        )

    @property
    def online(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        listener = cast(asyncio.Server, server.transport)  # a listening server's transport is the asyncio.Server
        self.port = listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0)  # let the transports close

    async def go_offline(self) -> None:
        """Drop every connection and stop listening (the charger lost power or Wi-Fi)."""
        await self.stop()

    async def come_back(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self.start()

    async def __aenter__(self) -> EvcSimulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
