"""The device runner against the simulator over TCP: detection, tiered polling, writes, availability."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from givenergy_modbus.model.plant import PlantCapabilities

from givbridge.clock import ScaledClock
from givbridge.commands.targets import charge_target_writes
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.outcome import NotWritable, Unreachable, WriteStatus
from givbridge.plant.writes import WritePlan
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.store import JsonStore
from tests.integration.bridge_helpers import Watch, bridge_settings, fast_clock, start, stop

ZONE = "Europe/London"


def make_sim(family: str, batteries: int, clock: ScaledClock, *, serial: str | None = None) -> SimulatedPlant:
    return SimulatedPlant.create(family, batteries=batteries, serial=serial, clock=clock, seed=3, tz=ZONE, start_soc=55)


@pytest.mark.parametrize(
    ("family", "batteries", "slots"), [("hybrid-gen1", 1, 2), ("hybrid-gen2", 2, 2), ("hybrid-gen3", 3, 10)]
)
async def test_detects_the_model_and_publishes_its_values(
    tmp_path: Path, family: str, batteries: int, slots: int
) -> None:
    clock = fast_clock()
    sim = make_sim(family, batteries, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            snapshot = await watch.snapshot()
        finally:
            await stop(task)
    values = snapshot.values
    assert snapshot.serial == sim.serial
    assert snapshot.info.family == family
    assert set(snapshot.info.battery_serials) == set(sim.battery_serials)
    assert values[f"{sim.serial}/Invertor_Serial_Number"] == sim.serial
    assert values["Power/Power/SOC"] == sim.input(59)
    assert values["Control/Target_SOC"] == sim.holding(116)
    assert values["Control/Battery_Power_Reserve"] == sim.holding(110)
    charge_slots = [p for p in values if p.startswith("Timeslots/Charge_start_time_slot_")]
    assert len(charge_slots) == slots
    for pack in sim.battery_serials:
        assert values[f"Battery_Details/Battery_Stack_1/{pack}/Battery_Serial_Number"] == pack
    assert values["Stats/status"] == "online"
    assert runner.health.available


async def test_measurements_every_poll_settings_less_often(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 2, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            first = server.requests.copy()
            await watch.count(16)
        finally:
            await stop(task)
    later = server.requests - first
    measurement_reads = later["IR", 0x11, 0, 60]
    settings_reads = later["HR", 0x11, 60, 60]
    assert measurement_reads >= 15
    # poll_interval 2 s, settings_interval 10 s: one settings read per five measurement reads.
    assert 2 <= settings_reads <= measurement_reads // 4 + 1
    assert later["IR", 0x32, 60, 60] == measurement_reads  # batteries are measurements too
    # Nothing probes for meters or absent packs once the device is known.
    assert not any(addr in range(1, 9) for (_, addr, _, _) in later)


async def test_write_is_confirmed_by_read_back_and_repeats_are_skipped(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            seen = len(watch.snapshots)
            outcome = (await runner.apply(WritePlan.of([(116, 73), (20, 1)], "charge target"))).outcome
            assert outcome.status is WriteStatus.OK
            assert outcome.readback == {20: 1, 116: 73}
            assert (sim.holding(116), sim.holding(20)) == (73, 1)
            # The state follows the read-back at once, not the next settings poll.
            assert (await watch.snapshot(after=seen)).values["Control/Target_SOC"] == 73
            writes_before = sum(n for (kind, *_), n in server.requests.items() if kind == "W")
            again = (await runner.apply(WritePlan.of([(116, 73), (20, 1)], "same again"))).outcome
            writes_after = sum(n for (kind, *_), n in server.requests.items() if kind == "W")
        finally:
            await stop(task)
    assert again.status is WriteStatus.OK
    assert again.written == () and len(again.skipped) == 2
    assert writes_after == writes_before


async def test_read_back_reads_only_the_banks_of_what_was_written(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    sim.set_holding(20, 1)  # the charge target is already enabled: setChargeTarget skips HR20
    async with SimulatorServer(sim) as server:
        # No poll comes due while the write runs, so every request seen is the write's own.
        quiet = {"poll_interval": 3600, "settings_interval": 3600}
        runner = InverterRunner(bridge_settings(tmp_path, [server.port], polling=quiet), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            assert runner.context is not None
            plan = WritePlan.of(charge_target_writes(runner.context, 61), "charge target 61 %")
            before = server.requests.copy()
            outcome = (await runner.apply(plan)).outcome
            during = server.requests - before
        finally:
            await stop(task)
    assert outcome.status is WriteStatus.OK
    assert [w.register for w in outcome.written] == [116]
    assert [w.register for w in outcome.skipped] == [20]
    assert outcome.readback == {116: 61, 20: 1}  # HR20 judged by the value that justified skipping it
    # One write, and one read: HR116's bank. HR20's bank, HR(0,60), is not read.
    assert dict(during) == {("W", 0x11, 116, 1): 1, ("HR", 0x11, 60, 60): 1}


async def test_ignored_write_is_reported_not_persisted(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            before = sim.holding(110)
            server.faults.writes_not_persisted = True
            outcome = (await runner.apply(WritePlan.of([(110, before + 10)], "reserve"))).outcome
        finally:
            await stop(task)
    assert outcome.status is WriteStatus.NOT_PERSISTED
    assert [(m.register, m.wanted, m.actual) for m in outcome.mismatches] == [(110, before + 10, before)]
    assert sim.holding(110) == before


async def test_refused_write_is_reported_rejected(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            slot_start = sim.holding(94)
            # 24:61 is no time of day: the inverter answers the write with an error.
            outcome = (await runner.apply(WritePlan.of([(94, 2461), (95, 600)], "bad slot"))).outcome
        finally:
            await stop(task)
    assert outcome.status is WriteStatus.REJECTED
    assert outcome.rejected == (94,)
    assert outcome.written == ()  # the plan stops at the refused write
    assert sim.holding(94) == slot_start


async def test_register_the_model_lacks_is_refused_before_the_wire(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen1", 1, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            with pytest.raises(NotWritable) as refused:
                await runner.apply(WritePlan.of([(272, 20)], "discharge target on Gen1"))
        finally:
            await stop(task)
    assert refused.value.registers == [272]
    assert not any(kind == "W" for (kind, *_) in server.requests)


async def test_read_only_mode_refuses_every_write(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port], read_only=True), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            with pytest.raises(PermissionError):
                await runner.apply(WritePlan.of([(116, 50)]))
        finally:
            await stop(task)
    assert not any(kind == "W" for (kind, *_) in server.requests)


async def test_goes_offline_when_the_dongle_is_silent_and_back_when_it_answers(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen2", 1, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.available(True)
            server.faults.silence(3600)
            await watch.available(False)
            assert runner.health.consecutive_failures >= 2
            with pytest.raises(Unreachable):
                await runner.apply(WritePlan.of([(116, 50)]))
            server.faults.end_silence()
            await watch.available(True)
            after = len(watch.snapshots)
            await watch.count(after + 1)
        finally:
            await stop(task)
    assert runner.health.consecutive_failures == 0
    assert runner.health.reconnects >= 2  # too many failed polls rebuild the connection


async def test_reconnects_after_the_dongle_drops_the_connection(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            probes_before = sum(n for (_, addr, _, _), n in server.requests.items() if 1 <= addr <= 8)
            server.faults.drop_connections()
            await watch.snapshot(lambda s: runner.health.reconnects >= 2)
            probes_after = sum(n for (_, addr, _, _), n in server.requests.items() if 1 <= addr <= 8)
        finally:
            await stop(task)
    assert probes_before > 0
    assert probes_after == probes_before  # the known layout is confirmed, not re-probed


async def test_a_returned_inverter_is_found_by_a_probe_not_the_backoff(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    # A backoff of ten minutes (30 s here): only a probe can bring the inverter back within 10 s.
    polling = {"backoff_min": 600, "backoff_max": 600, "offline_after": 1}
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port], polling=polling), 0, clock=clock)
        interval = runner.settings.polling.poll_interval
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.available(True)
            reconnects = runner.health.reconnects
            went_down = clock.monotonic()
            server.faults.refuse_connections = True
            server.faults.drop_connections()
            await watch.available(False)
            refused_from = server.connection_attempts
            await server.attempted(refused_from + 4)  # probes, refused
            # Now it accepts connections but answers nothing (a hung dongle): probes go unanswered.
            server.faults.silence()
            server.faults.refuse_connections = False
            silent_from = server.connection_attempts
            await server.attempted(silent_from + 3)
            probes = server.connection_attempts - refused_from
            waited = clock.monotonic() - went_down
            # Neither a refused nor an unanswered probe cut the backoff short.
            assert runner.health.reconnects == reconnects  # no connection since the one that was dropped
            server.faults.end_silence()
            answering_from = server.connection_attempts
            await watch.available(True)
            attempts_to_online = server.connection_attempts - answering_from
        finally:
            await stop(task)
    assert probes <= waited / interval + 1  # at most one probe per poll interval
    # The answering inverter took one probe (perhaps one more, sent before it answered again and
    # lost) and the reconnect it triggered.
    assert attempts_to_online <= 3
    assert runner.health.reconnects == reconnects + 1


async def test_a_different_device_at_the_address_is_refused(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    async with SimulatorServer(sim) as server:
        settings = bridge_settings(tmp_path, [server.port])
        settings.inverters[0].serial = "SA0000G001"
        runner = InverterRunner(settings, 0, clock=clock)
        task = await start(runner)
        try:
            async with asyncio.timeout(10):
                while runner.health.polls_failed < 2:
                    await clock.sleep(1)
        finally:
            await stop(task)
    assert not runner.health.available
    assert runner.snapshot is None
    assert "expected serial SA0000G001" in (runner.health.last_error or "")


async def test_restart_with_the_remembered_layout_skips_the_probe_sweep(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 2, clock)
    async with SimulatorServer(sim) as server:
        port = server.port
        for attempt in range(2):
            runner = InverterRunner(bridge_settings(tmp_path, [port]), 0, clock=clock)
            watch = Watch(runner)
            before = server.requests.copy()
            task = await start(runner)
            try:
                await watch.count(1)
            finally:
                await stop(task)
            probes = sum(n for (_, addr, _, _), n in (server.requests - before).items() if 1 <= addr <= 8)
            assert (probes > 0) == (attempt == 0)
    assert "capabilities" in JsonStore(tmp_path).load(f"layout-127.0.0.1_{port}")


async def test_a_slow_dongle_keeps_its_remembered_layout_across_restarts(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 2, clock)
    present = {0x11, *sim.meter_addresses, 0x32, 0x33}
    # The defaults' patience: a probe waits 0.5 s, less than the slow dongle's 1.1 s round trip.
    # One poll per start: every request counted is the start's own.
    patient = {"timeout": 2.0, "retries": 1, "probe_timeout": 0.5, "poll_interval": 3600, "settings_interval": 3600}
    async with SimulatorServer(sim) as server:
        port = server.port
        identity_reads: list[int] = []
        for attempt in range(3):
            runner = InverterRunner(bridge_settings(tmp_path, [port], polling=patient), 0, clock=clock)
            watch = Watch(runner)
            before = server.requests.copy()
            task = await start(runner)
            try:
                snapshot = await watch.snapshot(within=60)
            finally:
                await stop(task)
            seen = server.requests - before
            assert set(snapshot.info.battery_serials) == set(sim.battery_serials)
            if attempt == 0:
                assert any(addr not in present for (_, addr, _, _) in seen)  # the first start probed every address
                server.faults.extra_latency = 1.1  # the layout was remembered on a fast link; now it is slow
            else:
                # Restarts on the slow link keep both packs and never probe an absent address.
                assert not any(addr not in present for (_, addr, _, _) in seen), seen
                identity_reads.append(seen["HR", 0x11, 0, 60])
    # The first slow restart remembered a fast link: its check came up short and was repeated
    # with patience from the round trip it measured (one identity read more than the poll's own).
    # The second remembered that round trip and checked once.
    assert identity_reads[1] == identity_reads[0] - 1
    assert JsonStore(tmp_path).load(f"layout-127.0.0.1_{port}")["round_trip"] >= 1.1


async def test_a_pack_gone_since_the_layout_was_remembered_is_noticed_after_one_patient_check(
    tmp_path: Path,
) -> None:
    clock = fast_clock()
    polling = {"timeout": 1.0, "retries": 0, "probe_timeout": 0.1, "poll_interval": 3600, "settings_interval": 3600}
    layouts: list[set[str]] = []
    identity_reads: list[int] = []
    port = 0  # any free port, then the same one again
    for batteries in (2, 1):  # the second pack is taken away between the two starts
        sim = make_sim("hybrid-gen3", batteries, clock, serial="SD2314G100")
        async with SimulatorServer(sim, port=port, latency=0.3) as server:
            port = server.port
            runner = InverterRunner(bridge_settings(tmp_path, [port], polling=polling), 0, clock=clock)
            watch = Watch(runner)
            task = await start(runner)
            try:
                snapshot = await watch.snapshot(within=30)
            finally:
                await stop(task)
        layouts.append(set(snapshot.info.battery_serials))
        identity_reads.append(server.requests["HR", 0x11, 0, 60])
    assert len(layouts[0]) == 2 and len(layouts[1]) == 1
    # The remembered round trip gave the check enough patience, so it was believed at once: one
    # check, then the full detect and the poll; not a second check.
    assert identity_reads[1] == 3
    remembered = JsonStore(tmp_path).load(f"layout-127.0.0.1_{port}")["capabilities"]
    assert PlantCapabilities.from_dict(remembered).lv_battery_addresses == [0x32]


async def test_write_counts_persist_across_restarts(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    sim.set_holding(166, 0)  # Real Time Control off: every write wears the EEPROM
    async with SimulatorServer(sim) as server:
        for target in (60, 61):
            runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
            watch = Watch(runner)
            task = await start(runner)
            try:
                await watch.count(1)
                await runner.apply(WritePlan.of([(116, target)]))
                snapshot = await watch.snapshot(lambda s, t=target: s.values["Control/Target_SOC"] == t)
            finally:
                await stop(task)
        sim.set_holding(166, 1)  # with RTC on, the target is a "safe" write
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(1)
            await runner.apply(WritePlan.of([(116, 62)]))
            final = await watch.snapshot(lambda s: s.values["Control/Target_SOC"] == 62)
        finally:
            await stop(task)
    assert snapshot.values["Stats/Write_Count"] == 2
    assert (final.values["Stats/Write_Count"], final.values["Stats/Safe_Write_Count"]) == (2, 1)


async def test_inverter_time_runs_on_between_settings_reads(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = make_sim("hybrid-gen3", 1, clock)
    async with SimulatorServer(sim) as server:
        runner = InverterRunner(bridge_settings(tmp_path, [server.port]), 0, clock=clock)
        watch = Watch(runner)
        task = await start(runner)
        try:
            await watch.count(4)  # several measurement polls after the one settings read
            snapshot = watch.snapshots[-1]
            actual = sim.inverter_time()
        finally:
            await stop(task)
    published = snapshot.values[f"{sim.serial}/Invertor_Time"]
    assert isinstance(published, type(actual))
    assert abs((actual.replace(tzinfo=None) - published.replace(tzinfo=None)).total_seconds()) < 10


def test_run_exits_cleanly_on_ctrl_c_within_two_seconds(tmp_path: Path) -> None:
    """``givbridge run`` against a simulator (in another process) and no broker: Ctrl-C ends it quickly."""
    sim_proc = subprocess.Popen(
        [sys.executable, "-m", "givbridge.cli", "simulate", "--model", "hybrid-gen3", "--port", "0", "--latency", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sim_proc.stdout is not None
        line = sim_proc.stdout.readline()
        port = int(line.split("127.0.0.1:")[1].split()[0])
        config = tmp_path / "givbridge.yaml"
        config.write_text(
            f"inverters:\n  - host: 127.0.0.1\n    port: {port}\n"
            f"mqtt:\n  host: 127.0.0.1\n  port: 1\n"  # nothing listens: MQTT keeps retrying
            f"polling:\n  request_gap: 0\n  probe_timeout: 0.05\n"
            f"data_dir: {tmp_path}\nlog:\n  format: json\n"
        )
        bridge = subprocess.Popen(
            [sys.executable, "-m", "givbridge.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert bridge.stdout is not None
        for line in bridge.stdout:
            if '"device available"' in line:
                break
        else:
            pytest.fail("the bridge never reported the simulated inverter available")
        started = time.monotonic()
        bridge.send_signal(signal.SIGINT)
        status = bridge.wait(timeout=10)
        elapsed = time.monotonic() - started
        assert status == 0
        assert elapsed < 2.0, f"took {elapsed:.2f}s to stop"
    finally:
        sim_proc.terminate()
        sim_proc.wait(timeout=10)
