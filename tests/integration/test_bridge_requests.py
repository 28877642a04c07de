"""The bridge device's restart button and log-level select, over a real broker."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from givbridge.log import set_log_level
from tests.brokers import Broker
from tests.conftest import MakeProbe
from tests.integration.test_mqtt_state import ROOT, running, topic

REQUEST = f"{ROOT}/bridge/request"
RESPONSE = f"{ROOT}/bridge/response"


async def test_log_level_select_changes_the_running_level_and_its_state(
    broker: Broker, make_probe: MakeProbe, tmp_path: Path
) -> None:
    probe = await make_probe(broker)
    root_logger = logging.getLogger()
    before = root_logger.level
    try:
        async with running(broker, tmp_path, mqtt={"admin": "on"}) as (_, sim, _):
            await probe.wait_for(topic(sim, "availability"), lambda m: m.text == "online", timeout=15)
            mark = probe.mark()
            await probe.publish(f"{REQUEST}/log_level", "DEBUG")
            answer = json.loads((await probe.wait_for(f"{RESPONSE}/setLogLevel", after=mark, timeout=10)).text)
            assert answer["status"] == "ok", answer
            assert root_logger.level == logging.DEBUG
            # The select's state: bridge/info, republished with the new level.
            await probe.wait_for(
                f"{ROOT}/bridge/info", lambda m: json.loads(m.text)["log_level"] == "debug", after=mark, timeout=10
            )

            mark = probe.mark()
            await probe.publish(f"{REQUEST}/log_level", "chatty")
            refused = json.loads((await probe.wait_for(f"{RESPONSE}/setLogLevel", after=mark, timeout=10)).text)
            assert refused["error"]["code"] == "invalid_payload"
            assert "debug, info, warning, error" in refused["error"]["message"]
            assert root_logger.level == logging.DEBUG  # unchanged by bad input
    finally:
        set_log_level(logging.getLevelName(before).lower())  # every logger it set, not only the root


async def test_restart_button_reconnects_every_inverter_and_answers(
    broker: Broker, make_probe: MakeProbe, tmp_path: Path
) -> None:
    probe = await make_probe(broker)
    async with running(broker, tmp_path, mqtt={"admin": "on"}) as (app, sim, _):
        await probe.wait_for(topic(sim, "availability"), lambda m: m.text == "online", timeout=15)
        runner = app.bridge.runners[0]
        reconnects = runner.health.reconnects
        mark = probe.mark()
        await probe.publish(f"{REQUEST}/restart", "restart")
        answer = json.loads((await probe.wait_for(f"{RESPONSE}/restart", after=mark, timeout=20)).text)
        assert answer["status"] == "ok", answer
        assert answer["data"]["restarted"] == [sim.serial]
        assert runner.health.reconnects > reconnects

        mark = probe.mark()
        await probe.publish(f"{REQUEST}/shutdown", "now")
        unknown = json.loads((await probe.wait_for(f"{RESPONSE}/shutdown", after=mark, timeout=10)).text)
        assert unknown["error"]["code"] == "unknown_command"
        assert runner.health.connected


async def test_without_mqtt_admin_the_requests_are_answered_forbidden(
    broker: Broker, make_probe: MakeProbe, tmp_path: Path
) -> None:
    """mqtt.admin off (the default): each request gets its one answer, and changes nothing."""
    probe = await make_probe(broker)
    root_logger = logging.getLogger()
    level = root_logger.level
    async with running(broker, tmp_path) as (app, sim, _):
        await probe.wait_for(topic(sim, "availability"), lambda m: m.text == "online", timeout=15)
        runner = app.bridge.runners[0]
        reconnects = runner.health.reconnects
        for request, command, payload in (("restart", "restart", "restart"), ("log_level", "setLogLevel", "debug")):
            mark = probe.mark()
            await probe.publish(f"{REQUEST}/{request}", payload)
            answer = json.loads((await probe.wait_for(f"{RESPONSE}/{command}", after=mark, timeout=10)).text)
            assert answer["error"]["code"] == "forbidden", answer
            assert "mqtt.admin" in answer["error"]["message"]
            assert len(probe.messages(f"{RESPONSE}/#", after=mark)) == 1
        assert runner.health.reconnects == reconnects and root_logger.level == level


async def test_an_empty_request_restarts_nothing(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    """Clearing a retained request publishes an empty message: it is answered, and runs nothing."""
    probe = await make_probe(broker)
    async with running(broker, tmp_path, mqtt={"admin": "on"}) as (app, sim, _):
        await probe.wait_for(topic(sim, "availability"), lambda m: m.text == "online", timeout=15)
        runner = app.bridge.runners[0]
        reconnects = runner.health.reconnects
        mark = probe.mark()
        await probe.publish(f"{REQUEST}/restart", "", retain=True)
        answer = json.loads((await probe.wait_for(f"{RESPONSE}/restart", after=mark, timeout=10)).text)
        assert answer["error"]["code"] == "invalid_payload", answer
        assert "empty message" in answer["error"]["message"] and "`restart`" in answer["error"]["message"]
        assert runner.health.reconnects == reconnects and runner.health.connected
