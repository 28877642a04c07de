"""Tariffs against the simulator over TCP: costs follow the inverter's counters, switchRate, restarts.

The simulated Gen3 starts at 01:00 on a January night inside its factory charge slot, so it
imports from the grid; time is moved on with the scaled clock so energy adds up quickly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from givbridge.clock import ScaledClock
from givbridge.commands.executor import CommandExecutor
from givbridge.devices.supervisor import Bridge
from givbridge.entities import load_catalogue
from givbridge.mqtt.discovery.documents import DiscoveryBuilder
from givbridge.mqtt.topics import DiscoveryTopics, Topics
from givbridge.plant.snapshot import Snapshot
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.tariffs import TariffTracker
from tests.integration.bridge_helpers import Watch, bridge_settings
from tests.integration.sim_helpers import WINTER_NIGHT

ZONE = "Europe/London"
IMPORT_TOTAL = "Energy/Total/Import_Energy_Total_kWh"
RATES = "Energy/Rates"
TARIFFS = {
    "currency": "EUR",
    "import_day_rate": 0.30,
    "import_night_rate": 0.10,
    "export_rate": 0.15,
    "dynamic": True,
}


@dataclass
class Rig:
    bridge: Bridge
    commands: CommandExecutor
    watch: Watch
    clock: ScaledClock

    @property
    def tracker(self) -> TariffTracker:
        assert self.bridge.tariffs is not None
        return self.bridge.tariffs.for_runner(self.bridge.runners[0])

    async def next(self, predicate: Any = lambda s: True, *, within: float = 10.0) -> Snapshot:
        """The first snapshot from now on matching ``predicate``."""
        return await self.watch.snapshot(predicate, after=len(self.watch.snapshots), within=within)


@asynccontextmanager
async def running(sim: SimulatedPlant, clock: ScaledClock, data_dir: Path, **tariffs: Any) -> AsyncIterator[Rig]:
    async with SimulatorServer(sim) as server:
        settings = bridge_settings(data_dir, [server.port], tariffs={**TARIFFS, **tariffs})
        bridge = Bridge(settings, clock=clock)
        watch = Watch(bridge.runners[0])
        await bridge.start()
        try:
            yield Rig(bridge, CommandExecutor(bridge), watch, clock)
        finally:
            await bridge.stop()


def saved_tariffs(data_dir: Path) -> list[Path]:
    return list(data_dir.glob("tariff-*.json"))


def total(snapshot: Snapshot) -> float:
    value = snapshot[IMPORT_TOTAL]
    assert isinstance(value, float)
    return value


async def test_imports_are_costed_switched_and_kept_across_a_restart(tmp_path: Path) -> None:
    clock = ScaledClock(speed=20, start=WINTER_NIGHT)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=2, tz=ZONE, start_soc=20)
    async with running(sim, clock, tmp_path) as rig:
        # The tracker has seen the first believable import total (hygiene publishes it after three agree).
        first = await rig.next(lambda s: IMPORT_TOTAL in s)
        assert rig.tracker.rate_type() == "Day"  # dynamic: day until told otherwise

        clock.advance(900)
        at_day = await rig.next(lambda s: total(s) >= total(first) + 0.3)
        published = at_day.values  # the rates published with a poll include what that poll counted
        day_energy = round(total(at_day) - total(first), 2)
        assert published[f"{RATES}/Day_Energy_kWh"] == day_energy
        assert published[f"{RATES}/Day_Cost"] == pytest.approx(day_energy * 0.30, abs=1e-4)
        assert published[f"{RATES}/Current_Rate"] == 0.30

        answer = await rig.commands.execute("switchRate", "Night")
        assert answer.ok and answer.data == {"Current_Rate_Type": "Night", "Current_Rate": 0.10}
        switched = await rig.next()
        assert switched[f"{RATES}/Current_Rate_Type"] == "Night"
        clock.advance(900)
        at_night = await rig.next(lambda s: total(s) >= total(switched) + 0.3)
        published = at_night.values
        night_energy = published[f"{RATES}/Night_Energy_kWh"]
        assert isinstance(night_energy, float) and night_energy >= round(total(at_night) - total(switched), 2)
        assert published[f"{RATES}/Day_Energy_kWh"] >= day_energy
        day_then = published[f"{RATES}/Day_Energy_kWh"]

    async with running(sim, clock, tmp_path) as rig:  # a new process, the same data directory
        restored = await rig.next(lambda s: f"{RATES}/Day_Energy_kWh" in s)
        assert restored[f"{RATES}/Day_Energy_kWh"] == day_then
        assert restored[f"{RATES}/Night_Energy_kWh"] == pytest.approx(night_energy, abs=0.3)  # plus the restart's
        assert restored[f"{RATES}/Current_Rate_Type"] == "Night"


async def test_money_entities_carry_the_configured_currency(tmp_path: Path) -> None:
    clock = ScaledClock(speed=20, start=WINTER_NIGHT)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=2, tz=ZONE)
    async with running(sim, clock, tmp_path) as rig:
        snapshot = await rig.next(lambda s: f"{RATES}/Battery_Value" in s)
    builder = DiscoveryBuilder(
        topics=Topics("GivEnergy"),
        discovery_topics=DiscoveryTopics("homeassistant"),
        catalogue=load_catalogue(),
        currency="EUR",
    )
    [device] = builder.inverter(
        snapshot, prefix="givtcp", paths=[p for p in snapshot.values if p.startswith(RATES)]
    ).devices
    components = device.document["components"]
    serial = snapshot.serial
    assert components[f"givtcp_{serial}_Day_Cost"]["unit_of_measurement"] == "EUR"
    assert components[f"givtcp_{serial}_Current_Rate"]["unit_of_measurement"] == "EUR/kWh"
    assert components[f"givtcp_{serial}_Current_Rate"]["device_class"] == "monetary"
    assert components[f"givtcp_{serial}_Current_Rate_Type"]["command_topic"].endswith(f"/{serial}/switchRate")


@pytest.mark.parametrize(
    ("tariffs", "payload", "code", "words"),
    [
        (None, "day", "unsupported", "no tariffs are configured"),
        (
            {**TARIFFS, "dynamic": False, "day_start": "05:30", "night_start": "23:30"},
            "night",
            "unsupported",
            "dynamic",
        ),
        ({"import_day_rate": 0.3, "dynamic": True}, "night", "invalid_payload", "no import_night_rate"),
        (TARIFFS, "evening", "invalid_payload", "day, night"),
    ],
)
async def test_switch_rate_refuses_what_it_cannot_do(
    tmp_path: Path, tariffs: dict[str, Any] | None, payload: str, code: str, words: str
) -> None:
    settings = bridge_settings(tmp_path, [8899], tariffs=tariffs)  # never started: nothing is contacted
    bridge = Bridge(settings, clock=ScaledClock())
    answer = await CommandExecutor(bridge).execute("switchRate", payload)
    assert answer.code == code and answer.error is not None and words in answer.error.message
    assert not saved_tariffs(tmp_path)  # nothing was changed


async def test_switch_rate_before_the_inverter_was_read_changes_nothing(tmp_path: Path) -> None:
    bridge = Bridge(bridge_settings(tmp_path, [8899], tariffs=TARIFFS), clock=ScaledClock())
    answer = await CommandExecutor(bridge).execute("switchRate", "night")
    assert answer.code == "unreachable"
    assert not saved_tariffs(tmp_path)


def grown_past(value: float) -> Callable[[Snapshot], bool]:
    return lambda snapshot: IMPORT_TOTAL in snapshot and total(snapshot) > value


async def test_the_rates_published_with_a_poll_include_the_energy_that_poll_counted(tmp_path: Path) -> None:
    clock = ScaledClock(speed=20, start=WINTER_NIGHT)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=2, tz=ZONE, start_soc=20)
    async with running(sim, clock, tmp_path) as rig:
        first = await rig.next(lambda s: IMPORT_TOTAL in s)
        assert first[f"{RATES}/Day_Energy_kWh"] == 0.0  # the first reading sets the baseline in the same pass
        seen = first
        for _ in range(3):
            clock.advance(300)
            # The first snapshot whose import counter has grown: its rates already count that growth.
            grown = await rig.next(grown_past(total(seen)))
            assert grown[f"{RATES}/Day_Energy_kWh"] == pytest.approx(total(grown) - total(first), abs=0.006)
            assert grown[f"{RATES}/Day_Energy_kWh"] > seen[f"{RATES}/Day_Energy_kWh"]
            seen = grown
