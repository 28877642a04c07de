"""The broker's side: mosquitto restarted or killed under a running bridge, and a Home Assistant birth storm."""

from __future__ import annotations

from pathlib import Path

import pytest

from givbridge.clock import ScaledClock
from tests.brokers import MosquittoBroker, MqttProbe, unique_client_id, wait_until
from tests.conftest import needs_mosquitto
from tests.reliability.rig import MIDSUMMER_NOON, TARGET_SOC, bridge_rig

pytestmark = [pytest.mark.reliability, needs_mosquitto]

#: What a newcomer (or Home Assistant) needs after a restart: state, settings, counters, availability.
REPUBLISHED = ("Power/Power/SOC", "Control/Target_SOC", "Energy/Total/PV_Energy_Total_kWh", "availability")
BRIDGE_CONFIG = "homeassistant/device/givbridge_bridge_GivEnergy/config"


async def test_a_restarted_or_killed_broker_gets_everything_again(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    async with bridge_rig(mosquitto, tmp_path) as rig:
        topics = [f"GivEnergy/{rig.serial}/{path}" for path in REPUBLISHED] + ["GivEnergy/bridge/state", BRIDGE_CONFIG]
        await rig.checker.value(BRIDGE_CONFIG, lambda v: True)
        for how in ("restart", "kill mid-command"):
            marks = {topic: rig.checker.published(topic) for topic in topics}
            target = 40 if how == "restart" else 45
            if how == "restart":
                await mosquitto.stop()
            else:
                # The broker dies while a command is being carried out; its answer may be lost,
                # but it is never a false ok (checked by the rig), and the state tells the truth.
                rig.server.faults.extra_latency = 0.3
                seen = rig.server.requests.copy()
                rig.checker.send(
                    "setChargeTarget", {"chargeToPercent": target}, serial=rig.serial, expect={TARGET_SOC: target}
                )
                await rig.server.requested(lambda key: key[0] == "W", after=seen)
                await mosquitto.kill()
                rig.server.faults.extra_latency = 0.0
            await rig.polls(3)  # the bridge keeps polling with the broker away
            assert not rig.app.mqtt.connected
            await mosquitto.start()
            for topic in topics:  # the broker came back empty: all of it is published again
                await rig.checker.value(topic, lambda v: True, after=marks[topic], within=20)
            # Both say online again; on a loaded machine a poll may time out meanwhile and the
            # device say offline for a moment first, so wait for online rather than read it once.
            await rig.checker.value("GivEnergy/bridge/state", lambda v: v == "online", within=20)
            await rig.checker.value(f"GivEnergy/{rig.serial}/availability", lambda v: v == "online", within=20)
            await rig.checker.value(
                f"GivEnergy/{rig.serial}/Control/Target_SOC", lambda v: v == str(rig.sim.holding(TARGET_SOC))
            )
            answer = await rig.set_target(target + 1)
            assert answer["status"] == "ok", answer


async def test_a_home_assistant_birth_storm_brings_a_bounded_number_of_republishes(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    bursts, births = 5, 100
    # Speed 5: HA's advised 1-5 s wait before answering a birth passes in 0.2-1 real seconds.
    async with bridge_rig(mosquitto, tmp_path, clock=ScaledClock(speed=5, start=MIDSUMMER_NOON)) as rig:
        await rig.checker.value(BRIDGE_CONFIG, lambda v: True)
        before = rig.checker.published(BRIDGE_CONFIG)
        for _ in range(bursts):
            for _ in range(births):
                rig.checker.probe.publish_nowait("homeassistant/status", "online")
            rig.checker.probe.publish_nowait("homeassistant/status", "offline")
            await rig.polls(1)
        await rig.checker.value(BRIDGE_CONFIG, lambda v: True, after=before)  # HA is answered...
        await rig.polls(4)  # ... and what the storm set off has finished (4 polls = 8 s > the 5 s wait)
        republished = rig.checker.published(BRIDGE_CONFIG) - before
        assert 1 <= republished <= bursts + 1, f"{bursts * births} births made {republished} republishes"
        answer = await rig.set_target(55)
        assert answer["status"] == "ok", answer


async def test_a_command_sent_the_moment_the_bridge_is_online_again_is_answered(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The bridge says ``online`` only once the broker has acknowledged its resubscription.

    After a broker restart (a clean session: the broker forgot the subscriptions), a command
    published as soon as ``bridge/state`` reads ``online`` again must reach the bridge; had the
    bridge said ``online`` before subscribing, it would be lost and never answered.
    """
    async with bridge_rig(mosquitto, tmp_path) as rig:
        await mosquitto.stop()
        await rig.polls(1)
        assert not rig.app.mqtt.connected
        mark = rig.checker.published("GivEnergy/bridge/state")
        await mosquitto.start()
        await rig.checker.value("GivEnergy/bridge/state", lambda v: v == "online", after=mark, within=20)
        answer = await rig.set_target(37)
        assert answer["status"] == "ok", answer


async def retained_topics(broker: MosquittoBroker) -> dict[str, str]:
    """Every retained message the broker holds under the bridge's root and discovery prefix, now.

    A new subscriber gets them at once; mosquitto queues them when it handles the SUBSCRIBE, so
    a message the subscriber publishes afterwards to itself arrives after the last of them.
    """
    marker = f"test/retained-end/{unique_client_id()}"
    probe = await MqttProbe.for_broker(broker, topics=("GivEnergy/#", "homeassistant/#", marker)).start()
    try:
        await probe.publish(marker, "end")
        await probe.wait_for(marker)
        return {m.topic: m.text for m in probe.received if m.retain}
    finally:
        await probe.stop()


async def test_a_returning_broker_gets_every_retained_topic_back_promptly(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Every retained topic the bridge had published is back once ``bridge/state`` reads ``online``.

    The bridge publishes ``online`` last on a connection, after discovery, every state value and
    every availability. The wait for it is bounded generously (a safety net, not a measurement):
    the reconnect is tried every 3 s at most while the broker is away, and the figure measured is
    in the README.
    """
    async with bridge_rig(mosquitto, tmp_path) as rig:
        await rig.checker.value(BRIDGE_CONFIG, lambda v: True)
        before = await retained_topics(mosquitto)
        assert before["GivEnergy/bridge/state"] == "online"
        assert before[f"GivEnergy/{rig.serial}/availability"] == "online"
        failures = rig.app.mqtt.stats.connect_failures
        await mosquitto.stop()
        # Away long enough for the bridge's wait between attempts to have grown to its cap.
        await wait_until(lambda: rig.app.mqtt.stats.connect_failures >= failures + 4, 60, "four failed reconnects")
        mark = rig.checker.published("GivEnergy/bridge/state")
        await mosquitto.start()  # empty: persistence is off
        await rig.checker.value("GivEnergy/bridge/state", lambda v: v == "online", after=mark, within=15)
        after = await retained_topics(mosquitto)
        assert sorted(set(before) - set(after)) == []
        assert after["GivEnergy/bridge/state"] == "online"
        assert after[f"GivEnergy/{rig.serial}/availability"] == "online"
