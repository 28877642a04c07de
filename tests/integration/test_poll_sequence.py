"""A poll as one pipelined sequence of the library's requests, and writes that go between them.

Against the simulator over TCP with a dongle latency, so that several requests are in flight
at once. Everything is judged from the order the simulator saw requests arrive and answered
them (``SimulatorServer.traffic``), never from how long anything took.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from givenergy_modbus.client.client import Client
from givenergy_modbus.model.plant import Plant

from givbridge.clock import ScaledClock
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.outcome import Applied, WriteStatus
from givbridge.entities import load_catalogue
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.writes import WritePlan, blocks_for
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.server import RequestKey
from tests.integration.bridge_helpers import Watch, bridge_settings, start, stop

ZONE = "Europe/London"
INVERTER = 0x11
# Polls far apart (nothing scheduled interferes with the poll a test asks for), a dongle that
# answers each request 0.3 s after it arrives, and requests paced 0.2 s apart on the wire: the
# next request leaves before the last is answered, and a write has a whole gap to go first.
LATENCY = 0.3
POLLING = {"poll_interval": 600, "settings_interval": 3600, "timeout": 3.0, "request_gap": 0.2, "retries": 1}
PACKS = 2


def make_sim(clock: ScaledClock) -> SimulatedPlant:
    return SimulatedPlant.create("hybrid-gen3", batteries=PACKS, clock=clock, seed=3, tz=ZONE, start_soc=55)


def received(traffic: list[tuple[str, RequestKey]]) -> list[RequestKey]:
    return [key for event, key in traffic if event == "received"]


async def library_full_poll(server: SimulatorServer) -> tuple[list[RequestKey], list[RequestKey]]:
    """What the library's own client sends for ``load_config``, and for ``refresh``, in order."""
    client = Client("127.0.0.1", server.port, tx_message_wait=0.0, tx_jitter=0.0, plant=Plant())
    await client.connect()
    try:
        await client.detect(timeout=3.0, retries=1, probe_timeout=LATENCY * 2)
        before = len(server.traffic)
        await client.load_config(timeout=3.0, retries=1)
        between = len(server.traffic)
        await client.refresh(timeout=3.0, retries=1)
        return received(server.traffic[before:between]), received(server.traffic[between:])
    finally:
        await client.close()


async def write_during_poll(
    server: SimulatorServer, runner: InverterRunner, reserve: int, *, once: RequestKey = ("HR", INVERTER, 0, 60)
) -> tuple[Applied, Snapshot]:
    """Set the battery reserve once a full poll's request ``once`` is at the dongle; both results."""
    mark = server.requests.copy()
    poll = asyncio.ensure_future(runner.refresh_all())
    await server.requested(lambda key: key == once, after=mark)
    applied = await runner.apply(WritePlan.of([(110, reserve)], "battery reserve"))
    return applied, await poll


@asynccontextmanager
async def polled(
    tmp_path: Path, clock: ScaledClock, polling: dict[str, Any] = POLLING
) -> AsyncIterator[tuple[SimulatedPlant, SimulatorServer, InverterRunner]]:
    """A simulated Gen3 and its runner, after the runner's first poll."""
    sim = make_sim(clock)
    async with SimulatorServer(sim, latency=LATENCY) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port], polling=polling), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1, within=60)
            yield sim, server, runner
        finally:
            await stop(task)


def other_reserve(sim: SimulatedPlant) -> int:
    return 20 if sim.holding(110) != 20 else 25


async def test_a_full_poll_is_the_librarys_requests_in_one_pipelined_sequence(tmp_path: Path) -> None:
    async with polled(tmp_path, ScaledClock()) as (sim, server, runner):
        settings, measurements = await library_full_poll(server)
        before = len(server.traffic)
        snapshot = await runner.refresh_all()
        traffic = server.traffic[before:]
    sent = received(traffic)
    # The library's settings reads, the extra settings bank Gen3 keeps its pause mode in, then
    # the library's measurement reads: one sequence, in the library's order.
    pause_bank: RequestKey = ("HR", INVERTER, 300, 60)
    assert sent == [*settings, pause_bank, *measurements]
    # Not stages one after another: requests follow each other onto the wire before the
    # earlier ones are answered, across the settings/measurements boundary too.
    answered_before = [sum(1 for event, _ in traffic[:i] if event == "answered") for i, _ in enumerate(traffic)]
    arrivals = [i for i, (event, _) in enumerate(traffic) if event == "received"]
    overlapped = sum(1 for n, i in enumerate(arrivals) if answered_before[i] < n)
    assert overlapped >= len(sent) - 2
    first_measurement = arrivals[len(settings) + 1]
    assert answered_before[first_measurement] < len(settings) + 1  # the pause bank is still unanswered
    assert snapshot.values["Control/Battery_Power_Reserve"] == sim.holding(110)
    assert runner.health.last_poll_full


async def test_a_write_goes_between_the_requests_of_a_running_poll(tmp_path: Path) -> None:
    async with polled(tmp_path, ScaledClock()) as (sim, server, runner):
        reserve = other_reserve(sim)
        before = len(server.traffic)
        # Midway: the poll's fifth request is at the dongle.
        applied, snapshot = await write_during_poll(server, runner, reserve, once=("HR", INVERTER, 240, 60))
        traffic = server.traffic[before:]
    assert applied.outcome.status is WriteStatus.OK
    sent = received(traffic)
    write: RequestKey = ("W", INVERTER, 110, 1)
    readback = [("HR", INVERTER, base, count) for base, count in blocks_for([110])]
    at = sent.index(write)
    poll_requests = [key for key in sent if key != write]
    for key in readback:
        poll_requests.remove(key)
    midway = sent.index(("HR", INVERTER, 240, 60))
    # The write reached the dongle next: the poll's next request, queued for the end of the
    # gap, was taken back, and none of the rest was queued ahead of it.
    assert at == midway + 1
    # Its read-back followed it with no request of the poll in between.
    assert sent[at + 1 : at + 1 + len(readback)] == readback
    # The poll then resumed where it stopped: each of its banks sent once, none from the start again.
    assert all(n == 1 for n in Counter(poll_requests).values())
    assert Counter(poll_requests) == Counter(sent[:at] + sent[at + 1 + len(readback) :])
    assert ("IR", INVERTER, 0, 60) in sent[at + 1 :]
    # One snapshot of the whole poll, after the write: the new reserve, whether the poll had
    # read that bank before the write (the read-back replaced it) or after.
    assert snapshot.values["Control/Battery_Power_Reserve"] == reserve == sim.holding(110)
    assert applied.snapshot is not None and applied.snapshot.taken_at <= snapshot.taken_at
    assert runner.health.last_poll_full and runner.health.consecutive_failures == 0


async def test_counters_stay_believed_when_a_write_interrupts_a_poll(tmp_path: Path) -> None:
    """The read-back published mid-poll carries the last poll's counters, judged as of that poll.

    Half an hour of sunshine passes between two polls; a write lands before the poll has read
    the measurements. Its read-back snapshot must not restart the hygiene's clock with the old
    counters, or the poll's fresh counters a moment later would look like half an hour's
    energy in a second and be rejected.
    """
    clock = ScaledClock(start=datetime(2026, 6, 21, 10, 0, tzinfo=UTC))
    polling = {**POLLING, "poll_interval": 3600, "settings_interval": 3600}
    async with polled(tmp_path, clock, polling) as (sim, server, runner):
        for _ in range(3):  # counters are published once three readings agree
            before = await runner.refresh_all()
        clock.advance(1800)
        applied, after = await write_during_poll(server, runner, other_reserve(sim))
    assert applied.outcome.status is WriteStatus.OK and applied.snapshot is not None
    catalogue = load_catalogue()
    counters = [p for p in before.values if (d := catalogue.for_path(p)) is not None and d.counter is not None]
    grew = [p for p in counters if isinstance(v := after.values.get(p), int | float) and v > before.values[p]]  # type: ignore[operator]
    assert "Energy/Today/PV_Energy_Today_kWh" in grew
    assert after.values["Stats/Rejected_Values"] == before.values["Stats/Rejected_Values"]
    # The read-back's snapshot showed the counters as last believed, not the stale reading at a new time.
    assert all(applied.snapshot.values.get(p) == before.values[p] for p in counters)
