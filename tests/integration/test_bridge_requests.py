"""The bridge device's restart button and log-level select, over a real broker."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from givbridge.log import set_log_level
from tests.brokers import Broker, MqttProbe
from tests.conftest import MakeProbe
from tests.integration.test_mqtt_state import ROOT, running, topic

REQUEST = f"{ROOT}/bridge/request"
RESPONSE = f"{ROOT}/bridge/response"


async def ask(probe: MqttProbe, request: str, payload: str, command: str, *, retain: bool = False) -> dict[str, Any]:
    """Publish ``payload`` on the bridge request ``request``; its one answer, on the ``command``'s response topic."""
    mark = probe.mark()
    await probe.publish(f"{REQUEST}/{request}", payload, retain=retain)
    answer: dict[str, Any] = json.loads((await probe.wait_for(f"{RESPONSE}/{command}", after=mark, timeout=20)).text)
    assert len(probe.messages(f"{RESPONSE}/#", after=mark)) == 1
    return answer


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
            answer = await ask(probe, "log_level", "DEBUG", "setLogLevel")
            assert answer["status"] == "ok", answer
            assert root_logger.level == logging.DEBUG
            # The select's state: bridge/info, republished with the new level.
            await probe.wait_for(
                f"{ROOT}/bridge/info", lambda m: json.loads(m.text)["log_level"] == "debug", after=mark, timeout=10
            )

            refused = await ask(probe, "log_level", "chatty", "setLogLevel")
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
        answer = await ask(probe, "restart", "restart", "restart")
        assert answer["status"] == "ok", answer
        assert answer["data"]["restarted"] == [sim.serial]
        assert runner.health.reconnects > reconnects

        unknown = await ask(probe, "shutdown", "now", "shutdown")
        assert unknown["error"]["code"] == "unknown_command"
        assert runner.health.connected


async def test_without_mqtt_admin_the_requests_are_answered_forbidden(
    broker: Broker, make_probe: MakeProbe, tmp_path: Path
) -> None:
    """mqtt.admin off (the default): each request gets its one answer, and changes nothing."""
    probe = await make_probe(broker)
    level = logging.getLogger().level
    async with running(broker, tmp_path) as (app, sim, _):
        await probe.wait_for(topic(sim, "availability"), lambda m: m.text == "online", timeout=15)
        runner = app.bridge.runners[0]
        reconnects = runner.health.reconnects
        for request, command, payload in (("restart", "restart", "restart"), ("log_level", "setLogLevel", "debug")):
            answer = await ask(probe, request, payload, command)
            assert answer["error"]["code"] == "forbidden", answer
            assert "mqtt.admin" in answer["error"]["message"]
        assert runner.health.reconnects == reconnects and logging.getLogger().level == level


async def test_an_empty_request_restarts_nothing(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    """Clearing a retained request publishes an empty message: it is answered, and runs nothing."""
    probe = await make_probe(broker)
    async with running(broker, tmp_path, mqtt={"admin": "on"}) as (app, sim, _):
        await probe.wait_for(topic(sim, "availability"), lambda m: m.text == "online", timeout=15)
        runner = app.bridge.runners[0]
        reconnects = runner.health.reconnects
        answer = await ask(probe, "restart", "", "restart", retain=True)
        assert answer["error"]["code"] == "invalid_payload", answer
        assert "empty message" in answer["error"]["message"] and "`restart`" in answer["error"]["message"]
        assert runner.health.reconnects == reconnects and runner.health.connected
