"""Hostile input on a real broker: malformed and oversized control topics, and numbers written loosely.

Each case is published by a plain MQTT client to a bridge polling a simulated Gen3 hybrid, waits for
its one answer and counts the register writes that reached the simulator: none may have. The same
numbers are refused in HTTP bodies, which go through the same decoding.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from givbridge.app import Application
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import Broker, MqttProbe
from tests.integration.bridge_helpers import bridge_settings, error, fast_clock, first_snapshot, ok
from tests.integration.http_helpers import TOKEN, HttpRig, client, http_rig
from tests.integration.test_commands import ROOT, ZONE, Rig, rig

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: MQTT's limit on a topic, in bytes.
MQTT_TOPIC_LIMIT = 65_535
#: Registers the refused commands would have written (charge target, reserve, charge slot 1, pause mode).
WATCHED = (20, 94, 95, 110, 116, 318)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gen3(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    async with rig(module_broker, tmp_path_factory.mktemp("input"), ["hybrid-gen3"]) as running:
        yield running


async def _refused_on(gen3: Rig, topic: str, payload: str, answered_on: str) -> dict[str, Any]:
    """Publish ``payload`` to ``topic``; the one answer on ``answered_on``, with nothing written meanwhile."""
    writes, registers = gen3.writes(), gen3.holding(*WATCHED)
    mark = gen3.probe.mark()
    with capture_logs() as logs:
        await gen3.probe.publish(topic, payload)
        message = await gen3.probe.wait_for(f"{ROOT}/bridge/response/{answered_on}", after=mark, timeout=10)
    assert not message.retain
    assert len(gen3.probe.messages(f"{ROOT}/+/response/#", after=mark)) == 1
    assert gen3.writes() == writes and gen3.holding(*WATCHED) == registers
    warnings = [event for event in logs if event["event"] == "refusing a control message on a malformed topic"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning", logs
    assert len(warnings[0]["topic"]) < 200  # the log quotes the topic, it does not copy 64 KiB
    assert not [event for event in logs if event["log_level"] in ("error", "critical") or "exc_info" in event]
    document: dict[str, Any] = json.loads(message.payload)
    return document


async def test_a_topic_of_mqtts_maximum_length_is_answered_not_a_traceback(gen3: Rig) -> None:
    prefix = f"{ROOT}/control/{gen3.serial}/"
    topic = prefix + "x" * (MQTT_TOPIC_LIMIT - len(prefix))
    assert len(topic.encode()) == MQTT_TOPIC_LIMIT
    answer = await _refused_on(gen3, topic, "80", "invalid_topic")
    assert "not a command name" in error(answer, "invalid_topic")
    assert answer["command"] == "invalid_topic"


async def test_an_oversized_serial_level_is_answered_for_its_command(gen3: Rig) -> None:
    topic = f"{ROOT}/control/" + "S" * 60_000 + "/setChargeTarget"
    answer = await _refused_on(gen3, topic, '{"chargeToPercent": 80, "transaction": "t-1"}', "setChargeTarget")
    assert "not a serial" in error(answer, "invalid_topic")
    assert (answer["command"], answer["transaction"]) == ("setChargeTarget", "t-1")


@pytest.mark.parametrize(
    ("tail", "answered_on", "says"),
    [
        ("a/b/c", "c", "3 levels"),
        ("{serial}/setChargeTarget/now", "now", "3 levels"),
        ("/setChargeTarget", "setChargeTarget", "an empty level"),
        ("{serial}/", "invalid_topic", "an empty level"),
        ("", "invalid_topic", "names no command"),
        ("{serial}/set Charge Target", "invalid_topic", "not a command name"),
        ("SA 1234/setChargeTarget", "setChargeTarget", "not a serial"),
    ],
)
async def test_malformed_topic_shapes_are_answered_and_write_nothing(
    gen3: Rig, tail: str, answered_on: str, says: str
) -> None:
    topic = f"{ROOT}/control/" + tail.format(serial=gen3.serial)
    assert says in error(await _refused_on(gen3, topic, "80", answered_on), "invalid_topic")


async def test_the_control_level_alone_is_answered(gen3: Rig) -> None:
    """``<root>/control`` matches the ``<root>/control/#`` subscription too."""
    answer = await _refused_on(gen3, f"{ROOT}/control", "80", "invalid_topic")
    assert "names no command" in error(answer, "invalid_topic")


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        ("setChargeTarget", "1_0_0"),
        ("setChargeTarget", "\uff16\uff10"),  # full-width 60
        ("setChargeTarget", "\u0666\u0660"),  # Arabic-Indic 60
        ("setChargeTarget", "6e1"),
        ("setChargeTarget", '{"chargeToPercent": 6e1}'),
        ("setChargeTarget", '{"chargeToPercent": "6e1"}'),
        ("setChargeTarget", '{"chargeToPercent": NaN}'),
        ("setChargeTarget", "0x50"),
        ("setChargeTarget", "inf"),
        ("setChargeTarget", "8" * 400),
        ("setBatteryReserve", "\u300020"),  # an ideographic space is not the whitespace allowed around
        ("forceCharge", "1e3"),
        ("forceCharge", '{"duration": 1e3}'),
        ("forceCharge", "1441"),
        ("forceCharge", '{"duration": 1441}'),
        ("forceExport", "\uff13\uff10"),
        ("tempPauseCharge", "3_0"),
    ],
)
async def test_loosely_written_numbers_are_invalid_and_write_nothing(gen3: Rig, command: str, payload: str) -> None:
    writes, registers = gen3.writes(), gen3.holding(*WATCHED)
    message = error(await gen3.send(command, payload), "invalid_payload")
    assert "plain decimal number" in message or "finite" in message or "1-1440" in message, message
    assert gen3.writes() == writes and gen3.holding(*WATCHED) == registers


@pytest.mark.parametrize(("payload", "target"), [(" 61 ", 61), ("62.0", 62), ('{"chargeToPercent": 63.0}', 63)])
async def test_plainly_written_numbers_are_still_written(gen3: Rig, payload: str, target: int) -> None:
    answer = await gen3.send("setChargeTarget", payload)
    assert answer["status"] == "ok", answer
    assert gen3.holding(116) == {116: target}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpRig]:
    async with http_rig(tmp_path_factory.mktemp("input-http"), ["hybrid-gen3"], http={"token": TOKEN}) as running:
        yield running


@pytest.mark.parametrize(
    ("command", "body"),
    [
        ("setChargeTarget", '{"chargeToPercent": "1_0_0"}'),
        ("setChargeTarget", '{"chargeToPercent": 6e1}'),
        ("setChargeTarget", '{"chargeToPercent": "\uff16\uff10"}'),
        ("setChargeTarget", '{"chargeToPercent": Infinity}'),
        ("setChargeTarget", "6e1"),
        ("forceCharge", '{"duration": 1e3}'),
        ("forceCharge", '{"duration": "1441"}'),
    ],
)
async def test_http_bodies_take_the_same_numbers(shim: HttpRig, command: str, body: str) -> None:
    writes, registers = shim.writes(), shim.holding(*WATCHED)
    async with client(token=TOKEN) as http:
        response = await http.post(
            f"{shim.base}/REST1/{command}", content=body.encode(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_payload"
    assert shim.writes() == writes and shim.holding(*WATCHED) == registers


# --- empty messages ------------------------------------------------------------------------------


async def test_an_empty_message_runs_no_write_but_still_a_read(gen3: Rig) -> None:
    """With ``mqtt.admin`` off (the default) the clock button's command is the writing one left to try."""
    writes, registers = gen3.writes(), gen3.holding(*WATCHED)
    for command, payload in (
        ("syncDateTime", ""),
        ("syncDateTime", "  "),
        ("rebootInverter", ""),
        ("setChargeTarget", ""),
    ):
        message = error(await gen3.send(command, payload), "invalid_payload")
        assert "empty message" in message, message
    # Without a serial in the topic nothing resolved the device: answered on the bridge's topic.
    mark = await gen3.publish("syncDateTime", "", single=True)
    unaddressed = await gen3.probe.wait_for(f"{ROOT}/bridge/response/syncDateTime", after=mark, timeout=10)
    assert "empty message" in error(json.loads(unaddressed.payload), "invalid_payload")
    assert gen3.writes() == writes and gen3.holding(*WATCHED) == registers  # the clock runs on its own
    assert "Control" in ok(await gen3.send("readData", ""))
    assert ok(await gen3.send("syncDateTime", "restart"))  # Home Assistant's button payload still works
    assert gen3.writes() > writes


#: A root of its own: the module's bridge (root GivEnergy) must not see the retained command.
CLEAR_ROOT = "GivClear"


async def test_clearing_a_retained_reboot_writes_nothing_and_the_button_still_reboots(
    module_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """givbridge's warning says to clear a retained command with an empty retained message; that runs nothing."""
    clock = fast_clock()
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=21, tz=ZONE, start_soc=50)
    topic = f"{CLEAR_ROOT}/control/{sim.serial}/rebootInverter"
    answers = f"{CLEAR_ROOT}/{sim.serial}/response/rebootInverter"
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(SimulatorServer(sim))
        probe = MqttProbe.for_broker(module_broker, topics=(f"{CLEAR_ROOT}/+/response/#",))
        await probe.start()
        stack.push_async_callback(probe.stop)
        # Left retained by an automation while givbridge was down (mqtt.admin on: it would reboot).
        await probe.publish(topic, "restart", retain=True)
        mqtt = {**module_broker.settings(root=CLEAR_ROOT).model_dump(), "admin": "on"}
        settings = bridge_settings(tmp_path_factory.mktemp("clear"), [server.port], mqtt=mqtt)
        app = Application(settings, clock=clock)
        with capture_logs() as logs:
            await app.start()
            stack.push_async_callback(app.stop)
            await first_snapshot(app.bridge.runners[0], within=15)
            assert await app.mqtt.wait_connected(10)

            # The clear: delivered to the connected bridge as an ordinary, empty message.
            mark = probe.mark()
            await probe.publish(topic, "", retain=True)
            cleared = json.loads((await probe.wait_for(answers, after=mark, timeout=10)).payload)
        assert "empty message" in error(cleared, "invalid_payload")
        assert [e for e in logs if e["event"].startswith("ignoring a retained command")], "the replay was not seen"
        written = sum(n for (kind, *_), n in server.requests.items() if kind == "W")
        assert (written, sim.reboots) == (0, 0)  # neither the replay nor the clear wrote a register

        # Nothing retained is left, and the button's press (not retained) still reboots.
        mark = probe.mark()
        await probe.publish(topic, "restart")
        rebooted = json.loads((await probe.wait_for(answers, after=mark, timeout=40)).payload)
        assert ok(rebooted)["offline_seconds"] > 0
        assert sim.reboots == 1
        assert len(probe.messages(answers, after=mark)) == 1
