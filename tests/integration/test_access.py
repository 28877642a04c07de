"""The access policy end to end: a real broker, the HTTP shim, and a simulated Gen3 hybrid over TCP.

Two rigs serve the module:

* ``quiet``: the defaults (``mqtt.admin: off``), the shim with a token and 127.0.0.2 trusted, and
  polling so slow that, once the first poll is in, every read the simulator sees was asked for by a
  test: ``runAll`` is counted at the simulator;
* ``admin``: ``mqtt.admin: token``, for admin commands sent with and without the token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from givbridge.commands.access import Caller, Transport
from givbridge.log import set_log_level
from tests.brokers import Broker, MqttProbe
from tests.integration.bridge_helpers import error, ok
from tests.integration.http_helpers import OTHER_CLIENT, TOKEN, HttpRig, client, http_rig

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_TOKEN = "admin-token-0123456789"
#: Polls far apart (the rig's clock runs 20 times real time: minutes of real time between them).
QUIET_POLLING = {"poll_interval": 3600, "settings_interval": 86400}


class Control:
    """Publishes commands to one rig's control topics and waits for their answers."""

    def __init__(self, rig: HttpRig, probe: MqttProbe) -> None:
        self.rig = rig
        self.probe = probe
        self.root = rig.app.settings.mqtt.root

    async def send(self, command: str, payload: str | dict[str, Any]) -> dict[str, Any]:
        serial = self.rig.serial()
        mark = self.probe.mark()
        text = payload if isinstance(payload, str) else json.dumps(payload)
        await self.probe.publish(f"{self.root}/control/{serial}/{command}", text)
        message = await self.probe.wait_for(f"{self.root}/{serial}/response/{command}", timeout=15, after=mark)
        answer: dict[str, Any] = json.loads(message.payload)
        return answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def quiet(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpRig]:
    http = {"token": TOKEN, "trusted_networks": [f"{OTHER_CLIENT}/32"]}
    async with http_rig(
        tmp_path_factory.mktemp("quiet"), ["hybrid-gen3"], broker=module_broker, http=http, polling=QUIET_POLLING
    ) as rig:
        yield rig


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpRig]:
    http = {"token": TOKEN, "trusted_networks": [f"{OTHER_CLIENT}/32"]}
    mqtt = {"admin": "token", "admin_token": ADMIN_TOKEN}
    async with http_rig(
        tmp_path_factory.mktemp("admin"), ["hybrid-gen3"], broker=module_broker, http=http, mqtt=mqtt
    ) as rig:
        yield rig


async def control(rig: HttpRig, broker: Broker) -> Control:
    probe = MqttProbe.for_broker(broker, topics=(f"{rig.app.settings.mqtt.root}/+/response/#",))
    await probe.start()
    return Control(rig, probe)


def settings_file(rig: HttpRig) -> Path:
    return rig.app.settings.data_dir / "settings.json"


def saved(rig: HttpRig) -> tuple[bytes, int]:
    """The saved settings document's bytes and permission bits."""
    path = settings_file(rig)
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode)


def saved_document(rig: HttpRig) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(saved(rig)[0])
    return document


# --- admin over MQTT ------------------------------------------------------------------------------


async def test_admin_commands_over_mqtt_are_refused_by_default_and_change_nothing(
    quiet: HttpRig, module_broker: Broker
) -> None:
    mqtt = await control(quiet, module_broker)
    runner = quiet.app.bridge.runners[0]
    root_logger = logging.getLogger()
    level, reconnects, writes = root_logger.level, runner.health.reconnects, quiet.writes()
    hostile = {
        "mqtt": {"host": "192.0.2.66", "password": "***"},
        "http": {"host": "0.0.0.0", "trusted_networks": ["0.0.0.0/0"]},
    }
    try:
        for command, payload in (
            ("settings", hostile),
            ("setLogLevel", "debug"),
            ("setLogLevel", {"level": "debug", "token": ADMIN_TOKEN}),
            ("restart", "restart"),
            ("rebootAddon", "restart"),
            ("reboot", "{}"),  # an empty message would be invalid_payload before it got this far
            ("rebootInverter", "restart"),
        ):
            message = error(await mqtt.send(command, payload), "forbidden")
            assert "mqtt.admin" in message, message
        assert not settings_file(quiet).exists()
        assert root_logger.level == level and quiet.app.settings.log.level == "info"
        assert runner.health.reconnects == reconnects
        assert quiet.writes() == writes  # no register written (a reboot is HR163)
        # Device writes and reads stay open over MQTT, as GivTCP and Predbat use them.
        assert ok(await mqtt.send("setChargeTarget", "81"))["Target_SOC"] == 81
        assert quiet.holding(116) == {116: 81}
        assert "Control" in ok(await mqtt.send("readData", ""))
    finally:
        await mqtt.probe.stop()


async def test_admin_over_mqtt_needs_the_configured_token(admin: HttpRig, module_broker: Broker) -> None:
    mqtt = await control(admin, module_broker)
    root_logger = logging.getLogger()
    before = root_logger.level
    try:
        for payload in ("warning", {"level": "warning"}, {"level": "warning", "token": "not-it"}):
            message = error(await mqtt.send("setLogLevel", payload), "forbidden")
            assert "token" in message and ADMIN_TOKEN not in message
        assert root_logger.level == before
        answer = await mqtt.send("setLogLevel", {"level": "warning", "token": ADMIN_TOKEN, "transaction": "t1"})
        assert ok(answer) == {"log_level": "warning"} and answer["transaction"] == "t1"
        assert root_logger.level == logging.WARNING
        assert ADMIN_TOKEN not in json.dumps(answer)
    finally:
        set_log_level(logging.getLevelName(before).lower())
        await mqtt.probe.stop()


async def test_settings_over_mqtt_with_the_token_keep_secrets_where_they_belong(
    admin: HttpRig, module_broker: Broker
) -> None:
    mqtt = await control(admin, module_broker)
    current = admin.app.settings
    document: dict[str, Any] = {
        "inverters": [{"host": "192.0.2.20"}],
        "mqtt": {"host": "broker.lan", "username": "bridge", "password": "s3cret-pw"},
        "data_dir": str(current.data_dir),
        "timezone": "Europe/London",
    }
    try:
        answer = await mqtt.send("settings", {**document, "token": ADMIN_TOKEN})
        got = ok(answer)
        assert "s3cret-pw" not in json.dumps(answer) and ADMIN_TOKEN not in json.dumps(answer)
        assert {"inverters", "mqtt"} <= set(got["restart_required"])
        assert Path(got["saved"]) == settings_file(admin)
        content, mode = saved(admin)
        assert mode == 0o600
        assert json.loads(content)["mqtt"]["password"] == "s3cret-pw" and ADMIN_TOKEN.encode() not in content

        # A masked password for the same destination keeps the one typed in for it...
        masked = {**document, "mqtt": {**document["mqtt"], "password": "***"}, "token": ADMIN_TOKEN}
        ok(await mqtt.send("settings", masked))
        assert saved_document(admin)["mqtt"]["password"] == "s3cret-pw"
        # ...and is refused for another host: it would carry the password there.
        before = saved(admin)
        moved = {**masked, "mqtt": {**masked["mqtt"], "host": "192.0.2.66"}}
        message = error(await mqtt.send("settings", moved), "invalid_payload")
        assert "mqtt.password" in message and "mqtt.host" in message and "s3cret-pw" not in message
        assert saved(admin) == before

        bad = {"mqtt": {"port": 99999}, "token": ADMIN_TOKEN}
        assert "mqtt.port" in error(await mqtt.send("settings", bad), "invalid_payload")
        assert saved(admin) == before
    finally:
        await mqtt.probe.stop()


async def test_widening_access_over_http_needs_the_token(quiet: HttpRig) -> None:
    document = {
        "inverters": [{"host": "192.0.2.20"}],
        "http": {"enabled": True, "token": "***", "trusted_networks": ["0.0.0.0/0"]},
    }
    async with client(local_address=OTHER_CLIENT) as http:  # trusted for writes, but showed no token
        response = await http.post(f"{quiet.base}/settings", json=document)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    assert "http.trusted_networks" in response.json()["error"]["message"]
    assert not settings_file(quiet).exists()
    async with client(token=TOKEN) as http:
        response = await http.post(f"{quiet.base}/settings", json=document)
    assert response.status_code == 200, response.text
    assert saved(quiet)[1] == 0o600
    assert saved_document(quiet)["http"]["token"] == TOKEN
    await asyncio.to_thread(settings_file(quiet).unlink)  # the other cases expect none


# --- runAll ---------------------------------------------------------------------------------------


async def test_runAll_serves_the_last_poll_unless_authorised(quiet: HttpRig, module_broker: Broker) -> None:
    url = f"{quiet.base}/REST1/runAll"
    async with client() as http:
        reads = quiet.reads()
        response = await http.get(url)
        assert response.status_code == 200 and "Control" in response.json()
        assert quiet.reads() == reads  # served from the last poll: nothing asked of the inverter
    async with client(token=TOKEN) as http:
        response = await http.get(url)
    assert response.status_code == 200 and "Control" in response.json()
    one_read = quiet.reads() - reads
    assert one_read > 0
    async with client(local_address=OTHER_CLIENT) as http:  # a trusted network is authorised too
        before = quiet.reads()
        assert (await http.get(url)).status_code == 200
        assert quiet.reads() - before == one_read
    mqtt = await control(quiet, module_broker)  # over MQTT a device-level request: a real read
    try:
        before = quiet.reads()
        assert "Control" in ok(await mqtt.send("runAll", ""))
        assert quiet.reads() - before == one_read
    finally:
        await mqtt.probe.stop()


async def test_concurrent_runAll_share_one_full_read(quiet: HttpRig) -> None:
    url = f"{quiet.base}/REST1/runAll"
    server = quiet.servers[0]
    async with client(token=TOKEN) as http:
        before = quiet.reads()
        assert (await http.get(url)).status_code == 200
        one_read = quiet.reads() - before
    # Twenty authorised requests started in the same instant, through the handlers HTTP uses: sent
    # over twenty sockets they could arrive one after another, each after the last read ended.
    caller = Caller(Transport.HTTP, peer="127.0.0.1", authorization=f"Bearer {TOKEN}")
    executor = quiet.app.commands
    server.latency = 0.05  # the shared read stays in flight while the others join it
    try:
        before = quiet.reads()
        results = await asyncio.gather(
            *(executor.execute("runAll", None, serial=quiet.serial(), caller=caller) for _ in range(20))
        )
    finally:
        server.latency = 0.0
    assert all(result.ok for result in results)
    assert len({json.dumps(result.data, sort_keys=True, default=str) for result in results}) == 1
    assert quiet.reads() - before == one_read
