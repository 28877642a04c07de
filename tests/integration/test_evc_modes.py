"""The emulated charging modes over a simulated afternoon: a Gen3 inverter and a charger, both simulated
over TCP, one house between them (the car's draw is in the inverter's load, as in a real house).

The clock stands still between steps; each step moves it on, reads the inverter and the charger
through the bridge's runners and runs one pass of the modes controller, so every decision is
made from the live snapshots exactly as in production, only without waiting for the sun. The
assertions are about the house, not the code: what the car drew against what the sun gave, and
what the grid carried against the cap.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from givbridge.clock import ScaledClock
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.supervisor import Bridge
from givbridge.evc.charger import EvCharger
from givbridge.evc.registers import current_limit_plan
from givbridge.evc.rules import CAP_HEADROOM, ChargerView, Decision, SiteView, surplus_amps
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.evc import Car, EvcSimulator, EvcSimulatorServer
from tests.integration.bridge_helpers import bridge_settings, first_snapshot

ZONE = "Europe/London"
SEED = 9  # a bright June day with passing cloud and the household's kettles and ovens
NOON = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)  # 13:00 in London
EVENING = datetime(2026, 6, 20, 16, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Pass:
    """One step of the afternoon: what the bridge read, what it decided, what the charger did then."""

    at: datetime
    site: SiteView
    charger: ChargerView  # as read before the decision
    decision: Decision
    limit: float  # A, the charger's limit after the pass
    current: float  # A, what the car draws after the pass
    control: int  # the charger's Ready/Start/Stop after the pass

    @property
    def surplus(self) -> float:
        return surplus_amps(self.charger, self.site)

    @property
    def house(self) -> float:
        """Grid amps the house draws without the car (negative while exporting)."""
        return self.site.import_amps() - (self.charger.draw if self.charger.charging else 0.0)


@dataclass
class Afternoon:
    clock: ScaledClock
    plant: SimulatedPlant
    sim: EvcSimulator
    inverter: InverterRunner
    charger: EvCharger
    passes: list[Pass] = field(default_factory=list)

    async def step(self, seconds: float) -> Pass:
        self.clock.advance(seconds)
        inverter = await self.inverter.refresh_all()
        charger = await self.charger.runner.refresh()
        decision = await self.charger.modes.step()
        site = SiteView.from_snapshot(inverter)
        assert site is not None
        done = Pass(
            self.clock.now(),
            site,
            ChargerView.from_snapshot(charger),
            decision,
            self.sim.limit_tenths / 10,
            self.sim.current,
            self.sim.control,
        )
        self.passes.append(done)
        return done

    async def run(self, until: datetime, every: float) -> list[Pass]:
        while self.clock.now() < until:
            await self.step(every)
        return self.passes


@asynccontextmanager
async def afternoon(
    data_dir: Path, *, start: datetime, start_soc: float, car: Car, **modes: Any
) -> AsyncIterator[Afternoon]:
    clock = ScaledClock(speed=1e-6, start=start)  # moved by the steps, not by the wall clock
    async with AsyncExitStack() as stack:
        plant = SimulatedPlant.create(
            "hybrid-gen3", batteries=1, serial=None, clock=clock, seed=SEED, tz=ZONE, start_soc=start_soc
        )
        sim = EvcSimulator(clock=clock, tz=ZONE, seed=SEED)
        sim.plug_in(car)
        plant.extra_load = lambda: sim.power_w
        inverter_server = await stack.enter_async_context(SimulatorServer(plant, latency=0.0))
        charger_server = await stack.enter_async_context(EvcSimulatorServer(sim))
        # Long intervals: the steps read the devices themselves, so nothing polls in between.
        settings = bridge_settings(
            data_dir,
            [inverter_server.port],
            polling={"poll_interval": 3600, "settings_interval": 3600, "timeout": 2.0},
            evc={"host": "127.0.0.1", "port": charger_server.port, "poll_interval": 3600},
        )
        bridge = Bridge(settings, clock=clock)
        charger = EvCharger(settings, clock=clock, store=bridge.store, inverters=bridge.runners)
        await bridge.start()
        stack.push_async_callback(bridge.stop)
        # The charger's runner, but not the modes' own timer: the steps run the passes.
        read = asyncio.Event()

        async def seen(_: object) -> None:
            read.set()

        charger.runner.on_snapshot.connect(seen)
        runner = asyncio.create_task(charger.runner.run())
        stack.callback(runner.cancel)
        await first_snapshot(bridge.runners[0], within=15)
        async with asyncio.timeout(10):
            await read.wait()
        await charger.modes.update(act=False, **modes)
        yield Afternoon(clock, plant, sim, bridge.runners[0], charger)


async def test_hybrid_follows_the_sun_and_never_lets_the_car_stop(tmp_path: Path) -> None:
    car = Car(capacity_kwh=75, soc=20)
    async with afternoon(tmp_path, start=NOON, start_soc=95, car=car, charging_mode="Hybrid") as day:
        passes = await day.run(until=NOON.replace(hour=19), every=300)
    for step in passes:
        # The charger holds the surplus in whole amps (watts / volts), never below its minimum.
        assert step.limit == max(6, min(32, int(step.surplus // 1))), step
        assert step.current > 0, f"Hybrid let the car stop at {step.at}"
        assert step.decision.control is None
        if step.surplus >= 6:
            assert step.current <= step.surplus, f"the car took more than the sun gave at {step.at}"
    assert max(step.limit for step in passes) >= 12  # midday sun
    assert [step.limit for step in passes[-3:]] == [6, 6, 6]  # evening: the minimum, topped up from the grid


async def test_solar_charges_only_from_surplus_and_stops_when_the_sun_goes(tmp_path: Path) -> None:
    car = Car(capacity_kwh=75, soc=20)
    async with afternoon(tmp_path, start=NOON, start_soc=95, car=car, charging_mode="Solar") as day:
        passes = await day.run(until=NOON.replace(hour=19), every=300)
        session = day.sim.session_energy_kwh
    starts = [step for step in passes if step.decision.control == "Start"]
    stops = [step for step in passes if step.decision.control == "Stop"]
    assert starts and stops, "the passing clouds and the evening should both stop and start the car"
    for step in starts:
        assert step.surplus >= 6
    for before, step in itertools.pairwise(passes):
        if step.current > 0:
            # Charging through a shortfall lasts at most one pass (the stop delay), then it stops.
            assert step.surplus >= 6 or before.surplus >= 6, f"charged without sun at {step.at}"
            assert step.current <= max(step.surplus, 6)
    last = passes[-1]
    assert (last.control, last.current) == (2, 0.0)  # Stop: the sun has gone
    assert session > 5  # the afternoon's sunshine went into the car


async def test_the_import_cap_lowers_the_limit_before_the_grid_reaches_it(tmp_path: Path) -> None:
    cap = 25
    car = Car(capacity_kwh=75, soc=20)
    # An empty battery: the evening's house and car come from the grid.
    async with afternoon(tmp_path, start=EVENING, start_soc=4, car=car, import_cap=cap) as day:
        passes = await day.run(until=EVENING.replace(hour=20), every=300)
    headroom = cap * CAP_HEADROOM
    lowered = [step for step in passes if step.decision.limit is not None and step.decision.limit < 32]
    assert lowered, "the evening peak should have brought the limit down"
    for step in passes:
        if step.current > 0:
            # Decided from the house's own draw: both together stay under the cap's headroom.
            assert step.house + step.current <= headroom + 0.5, step
    for before, step in itertools.pairwise(passes):
        # Measured on the grid at the next pass: over the headroom only by what the house itself added since.
        grew = max(0.0, step.house - before.house)
        assert step.site.import_amps() <= headroom + grew + 0.5, (before, step)
    assert sum(step.current > 0 for step in passes) >= len(passes) // 2  # the car still charged most of the time


async def test_max_session_energy_stops_the_session_until_the_car_is_plugged_in_again(tmp_path: Path) -> None:
    car = Car(capacity_kwh=75, soc=20)
    async with afternoon(tmp_path, start=NOON, start_soc=95, car=car, max_session_energy=2.0) as day:
        outcome = (await day.charger.runner.apply(current_limit_plan(16))).outcome  # 16 A: about 3.85 kW
        assert outcome.ok
        passes = await day.run(until=NOON.replace(minute=45), every=60)
        stop = next(step for step in passes if step.decision.control == "Stop")
        assert 2.0 <= stop.charger.session_energy <= 2.0 + 0.15  # one minute at 3.85 kW, plus rounding
        after = passes[passes.index(stop) :]
        assert all(step.current == 0 for step in after)
        # Solar in full sun would start a car: not this one, its session is over.
        await day.charger.modes.update(charging_mode="Solar")
        more = [await day.step(60) for _ in range(5)]
        assert all(step.current == 0 and step.decision.control is None for step in more)
        # A new session (unplugged and plugged in again) charges again, up to the limit afresh.
        await day.charger.modes.update(charging_mode="Grid")
        day.sim.unplug()
        day.sim.plug_in(Car(capacity_kwh=75, soc=30))
        again = [await day.step(60) for _ in range(5)]
        assert all(step.current > 0 and step.decision.control is None for step in again)
