"""State, availability and bridge info on a real broker, from a simulated Gen3 hybrid."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from givbridge.app import Application
from givbridge.clock import ScaledClock
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import Broker, MqttProbe
from tests.conftest import MakeProbe
from tests.integration.bridge_helpers import bridge_settings, fast_clock, first_snapshot

ROOT = "GivEnergy"


@asynccontextmanager
async def running(
    broker: Broker, tmp_path: Path, *, clock: ScaledClock | None = None, batteries: int = 2, **overrides: Any
) -> AsyncIterator[tuple[Application, SimulatedPlant, SimulatorServer]]:
    """A simulated Gen3 hybrid and the bridge publishing it to ``broker``."""
    clock = clock or fast_clock()
    sim = SimulatedPlant.create(
        "hybrid-gen3", batteries=batteries, clock=clock, seed=5, tz="Europe/London", start_soc=40
    )
    async with SimulatorServer(sim) as server:
        mqtt = {**broker.settings().model_dump(), **overrides.pop("mqtt", {})}
        settings = bridge_settings(tmp_path, [server.port], mqtt=mqtt, **overrides)
        app = Application(settings, clock=clock)
        await app.start()
        try:
            yield app, sim, server
        finally:
            await app.stop()


def topic(sim: SimulatedPlant, path: str) -> str:
    return f"{ROOT}/{sim.serial}/{path}"


async def first_payload(probe: MqttProbe, name: str, predicate: Callable[[str], bool] | None = None) -> str:
    message = await probe.wait_for(name, (lambda m: predicate(m.text)) if predicate else None, timeout=15)
    return message.text


async def test_state_topics_payloads_and_documents(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    probe = await make_probe(broker)
    async with running(broker, tmp_path, mqtt={"password": "s3cret-pw", "username": "bridge"}) as (_, sim, _):
        soc = await probe.wait_for(topic(sim, "Power/Power/SOC"), timeout=15)
        assert re.fullmatch(r"\d{1,3}", soc.text)
        inverter_time = await first_payload(probe, topic(sim, f"{sim.serial}/Invertor_Time"))
        parsed = datetime.fromisoformat(inverter_time)
        assert parsed.utcoffset() is not None and parsed.microsecond == 0
        slot = await first_payload(probe, topic(sim, "Timeslots/Charge_start_time_slot_1"))
        assert re.fullmatch(r"\d\d:\d\d:\d\d", slot)
        voltage = await first_payload(probe, topic(sim, "Power/Power/Battery_Voltage"))
        assert re.fullmatch(r"\d+\.\d\d", voltage)
        modes = {"Eco", "Eco (Paused)", "Timed Demand", "Timed Export"}
        assert await first_payload(probe, topic(sim, "Control/Mode")) in modes
        pack = sim.battery_serials[0]
        await probe.wait_for(topic(sim, f"Battery_Details/Battery_Stack_1/{pack}/Battery_SOC"), timeout=15)
        document = json.loads(await first_payload(probe, f"{ROOT}/{sim.serial}/json"))
        assert document["Power"]["Power"]["SOC"] == int(soc.text)
        assert document[sim.serial]["Invertor_Type"] == "Hybrid_gen3"
        assert await first_payload(probe, f"{ROOT}/bridge/state") == "online"
        assert await first_payload(probe, f"{ROOT}/{sim.serial}/availability") == "online"
        info_text = await first_payload(probe, f"{ROOT}/bridge/info", lambda t: sim.serial in t and "Hybrid Gen3" in t)
        info = json.loads(info_text)
        assert info["inverters"][0]["batteries"] and info["version"]
        assert "s3cret-pw" not in info_text

    # Everything above was published retained: a newcomer sees it at once.
    late = await make_probe(broker)
    for name in ("Power/Power/SOC", f"{sim.serial}/Invertor_Time", "json"):
        message = await late.wait_for(topic(sim, name), timeout=5)
        assert message.retain


async def test_only_changes_are_published_until_the_full_refresh(
    broker: Broker, make_probe: MakeProbe, tmp_path: Path
) -> None:
    probe = await make_probe(broker)
    async with running(broker, tmp_path, mqtt={"full_refresh_interval": 60}) as (_, sim, _):
        topic_counter = topic(sim, "Stats/MQTT_Messages_Last_Poll")
        first = await probe.wait_for(topic_counter, timeout=15)
        # Poll every 2 simulated seconds, full refresh every 60: wait for the refresh round.
        refresh = await probe.wait_for(
            topic_counter, lambda m: int(m.text) >= int(first.text) * 0.9, after=probe.mark(), timeout=15
        )
        counts = [int(m.text) for m in probe.messages(topic_counter)]
    full = int(first.text)
    assert full > 150  # every value of a Gen3 with two packs, its JSON document and the counter
    between = counts[1 : counts.index(int(refresh.text), 1)]
    assert between, "no poll was published between the two full rounds"
    # Between full refreshes only what moved beyond its deadband goes out: a few per cent.
    assert max(between) <= full * 0.15, f"steady-state rounds {between} vs full {full}"


async def test_state_is_not_retained_when_configured(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    async with running(broker, tmp_path, mqtt={"retain": False}) as (_, sim, _):
        probe = await make_probe(broker)
        await probe.wait_for(topic(sim, "availability"), timeout=15)  # availability is always retained
        live = await probe.wait_for(topic(sim, "Power/Power/SOC"), timeout=15)
        late = await make_probe(broker)
        assert (await late.wait_for(f"{ROOT}/bridge/state", timeout=5)).retain
        await late.assert_nothing(topic(sim, "Power/Power/SOC"), within=0.3)
    assert not live.retain


async def test_availability_follows_the_dongle(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    probe = await make_probe(broker)
    async with running(broker, tmp_path) as (_, sim, server):
        availability = topic(sim, "availability")
        await probe.wait_for(availability, lambda m: m.text == "online", timeout=15)
        server.faults.silence(3600)
        await probe.wait_for(availability, lambda m: m.text == "offline", after=probe.mark(), timeout=15)
        server.faults.end_silence()
        await probe.wait_for(availability, lambda m: m.text == "online", after=probe.mark(), timeout=15)
    # A clean stop leaves the device and the bridge retained as offline (amqtt may deliver the
    # last live messages out of order, so ask the broker what it retained).
    after_stop = await make_probe(broker)
    assert (await after_stop.wait_for(availability, timeout=5)).text == "offline"
    assert (await after_stop.wait_for(f"{ROOT}/bridge/state", timeout=5)).text == "offline"


async def test_everything_is_republished_after_the_broker_restarts(
    broker: Broker, make_probe: MakeProbe, tmp_path: Path
) -> None:
    async with running(broker, tmp_path) as (_, sim, _):
        probe = await make_probe(broker)
        await probe.wait_for(topic(sim, "Power/Power/SOC"), timeout=15)
        await broker.stop()  # loses every retained message
        await broker.start()
        names = ("Power/Power/SOC", "Timeslots/Charge_start_time_slot_1", "Control/Target_SOC")
        late = await make_probe(broker)
        for name in names:  # amqtt does not keep order across topics: wait for each
            await late.wait_for(topic(sim, name), timeout=20)
        await late.wait_for(f"{ROOT}/bridge/state", timeout=5)
        await late.wait_for(topic(sim, "availability"), timeout=5)
        # Once republished, a newcomer finds the state retained again, settings included.
        newcomer = await make_probe(broker)
        for name in names:
            assert (await newcomer.wait_for(topic(sim, name), timeout=5)).retain
        state = await newcomer.wait_for(f"{ROOT}/bridge/state", timeout=5)
        availability = await newcomer.wait_for(topic(sim, "availability"), timeout=5)
    assert (state.text, state.retain) == ("online", True)
    assert (availability.text, availability.retain) == ("online", True)


async def test_broker_down_at_start(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    await broker.stop()
    async with running(broker, tmp_path) as (app, sim, _):
        # The bridge polls while the broker is away, and publishes once it is there.
        await first_snapshot(app.bridge.runners[0])
        assert not app.mqtt.connected
        await broker.start()
        probe = await make_probe(broker)
        await probe.wait_for(topic(sim, "Power/Power/SOC"), timeout=20)
        assert (await probe.wait_for(f"{ROOT}/bridge/state", timeout=5)).text == "online"


@pytest.mark.usefixtures("mosquitto")
async def test_last_will_when_the_bridge_is_killed(mosquitto: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    """kill -9: no clean offline is possible, the broker publishes the Last Will."""
    probe = await make_probe(mosquitto)
    sim = SimulatedPlant.create("hybrid-gen2", batteries=1, seed=2, tz="Europe/London")
    async with SimulatorServer(sim) as server:
        config = tmp_path / "givbridge.yaml"
        config.write_text(
            f"inverters:\n  - host: 127.0.0.1\n    port: {server.port}\n"
            f"mqtt:\n  host: 127.0.0.1\n  port: {mosquitto.port}\n  client_id: killed-bridge\n"
            f"polling:\n  request_gap: 0\n  probe_timeout: 0.05\n  poll_interval: 2\n"
            f"data_dir: {tmp_path}\n"
        )
        bridge = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "givbridge.cli",
            "run",
            "--config",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            await probe.wait_for(f"{ROOT}/{sim.serial}/Power/Power/SOC", timeout=20)
            mark = probe.mark()
            bridge.send_signal(signal.SIGKILL)
            will = await probe.wait_for(f"{ROOT}/bridge/state", lambda m: m.text == "offline", after=mark, timeout=10)
        finally:
            if bridge.returncode is None:
                bridge.kill()
            await bridge.wait()
    assert will.text == "offline"
