"""After a restart nothing old shows as current: a device is ``online`` only over values polled since.

Home Assistant shows a device's entities while ``<root>/bridge/state`` and the device's own
availability both read ``online`` (``availability_mode: all``), and every one of those topics and
every value is retained. The bridge here is killed with ``kill -9``: the broker publishes its Last
Will on ``bridge/state`` only, so every device's availability still reads ``online`` over values
of the dead run. The restarted bridge finds its devices slow to answer (the inverters silent, then
slow; the EV charger not listening) until it has said ``online`` itself. The whole MQTT record of
the restart is then replayed as Home Assistant would see it: no device (two inverters, the plant
summary built from them, the EV charger) may ever show as available before values read by the new
run were published for it, and every one of them ends available. Likewise an inverter back from an
outage shows as available only over the values of the poll that found it back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from givbridge.clock import ScaledClock
from givbridge.mqtt.client import Message
from givbridge.plant.summary import PLANT_ID
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.evc import EvcSimulator, EvcSimulatorServer
from tests.brokers import MosquittoBroker, MqttProbe
from tests.conftest import MakeProbe, needs_mosquitto
from tests.reliability.invariants import CrashWatch
from tests.reliability.rig import ZONE, BridgeProcess

pytestmark = [pytest.mark.reliability, needs_mosquitto]

ROOT = "GivEnergy"
BRIDGE_STATE = f"{ROOT}/bridge/state"


def shown_stale(record: list[Message], before: dict[str, str], devices: list[str]) -> list[str]:
    """Every moment of ``record`` at which Home Assistant showed a device's values as current
    although none had been published since the record began.

    ``before`` holds each topic's retained payload as the record begins; a device's values count
    as fresh from its first ``<root>/<device>/json`` document in the record (every snapshot the
    bridge publishes in full carries one).
    """
    retained = dict(before)
    fresh: set[str] = set()
    problems = []
    for index, message in enumerate(record):
        retained[message.topic] = message.text
        for device in devices:
            if message.topic == f"{ROOT}/{device}/json":
                fresh.add(device)
            shown = retained.get(BRIDGE_STATE) == "online" and retained.get(f"{ROOT}/{device}/availability") == "online"
            if shown and device not in fresh:
                problems.append(f"message {index} ({message.topic} = {message.text[:40]}): {device} shown stale")
    return problems


def latest(probe: MqttProbe, before: int) -> dict[str, str]:
    """Each topic's last payload among the first ``before`` messages the probe received."""
    return {message.topic: message.text for message in probe.received[:before]}


async def test_after_kill_9_no_device_shows_old_values_as_current(
    mosquitto: MosquittoBroker, make_probe: MakeProbe, tmp_path: Path
) -> None:
    clock = ScaledClock()
    sims = [
        SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=seed, tz=ZONE, start_soc=50)
        for seed in (21, 22)
    ]
    assert sims[0].serial != sims[1].serial
    charger = EvcSimulator(clock=clock, tz=ZONE, seed=5)
    devices = [sims[0].serial, sims[1].serial, PLANT_ID, charger.serial]
    probe = await make_probe(mosquitto, topics=(f"{ROOT}/#",))
    with CrashWatch() as crashes:
        async with (
            SimulatorServer(sims[0]) as first,
            SimulatorServer(sims[1]) as second,
            EvcSimulatorServer(charger) as charger_server,
        ):
            extra = {
                "evc": {"host": "127.0.0.1", "port": charger_server.port, "poll_interval": 2},
                "plant": {"grid": "separate"},  # two houses, each with its own supply
            }
            # Answers take 1 s while the inverters are slow: the bridge waits up to 3 s for them.
            bridge = BridgeProcess(tmp_path / "bridge", [first.port, second.port], mosquitto, extra=extra, timeout=3.0)
            try:
                await bridge.start()
                for device in devices:
                    await probe.wait_for_payload(f"{ROOT}/{device}/availability", "online", timeout=60)
                await probe.wait_for_payload(BRIDGE_STATE, "online", timeout=30)

                await bridge.kill()
                await probe.wait_for_payload(BRIDGE_STATE, "offline", timeout=10)  # the Last Will
                mark = probe.mark()
                before = latest(probe, mark)
                assert all(before[f"{ROOT}/{device}/availability"] == "online" for device in devices), before

                # Nothing answers until the new run has said online; then the inverters are slow.
                for server in (first, second):
                    server.faults.silence()
                    server.faults.extra_latency = 1.0
                await charger_server.go_offline()
                await bridge.start()
                await probe.wait_for_payload(BRIDGE_STATE, "online", timeout=30, after=mark)
                for server in (first, second):
                    server.faults.end_silence()
                await charger_server.come_back()
                for device in devices:
                    await probe.wait_for_payload(f"{ROOT}/{device}/availability", "online", timeout=60, after=mark)

                record = probe.received[mark:]
                assert not shown_stale(record, before, devices)
                # The slow devices were said offline before the bridge said online (not merely left out).
                said_online = next(i for i, m in enumerate(record) if m.topic == BRIDGE_STATE)
                assert any(m.topic == f"{ROOT}/bridge/info" for m in record[:said_online])  # the bridge device's own
                for device in devices:
                    said = [m.text for m in record[:said_online] if m.topic == f"{ROOT}/{device}/availability"]
                    assert said == ["offline"], (device, said)

                # An inverter that comes back after an outage is online again only over the values
                # of the poll that found it back, not over those from before the outage.
                outage = probe.mark()
                first.faults.silence()
                await probe.wait_for_payload(f"{ROOT}/{sims[0].serial}/availability", "offline", 30, after=outage)
                back = probe.mark()
                first.faults.end_silence()
                await probe.wait_for_payload(f"{ROOT}/{sims[0].serial}/availability", "online", 30, after=back)
                assert not shown_stale(probe.received[back:], latest(probe, back), [sims[0].serial])
            finally:
                await bridge.stop()
    assert not bridge.errors(), bridge.errors()
    crashes.assert_clean()
