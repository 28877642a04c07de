"""The add-on's start: options from /data/options.json, the broker from the Supervisor over real HTTP.

A fake Supervisor (stdlib ``http.server`` in a thread, on 127.0.0.1) answers
``GET /services/mqtt`` the way the real one does: the service wrapped in
``{"result": "ok", "data": ...}``, ``400 Service not enabled`` without an MQTT add-on, and
``403`` for a token it does not know.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from givbridge import addon, cli
from givbridge.app import Application
from givbridge.config import Settings
from givbridge.config_loading import load_settings
from givbridge.health import check
from givbridge.log import configure_logging
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.store import JsonStore
from tests.brokers import MqttProbe, free_port, wait_until
from tests.conftest import MakeMosquitto
from tests.integration.bridge_helpers import FAST_POLLING

TOKEN = "supervisor-token-for-givbridge"
PASSWORD = "mosquitto-addon-password"
MOSQUITTO_ADDON = {
    "addon": "core_mosquitto",
    "host": "core-mosquitto",
    "port": "1883",
    "ssl": False,
    "username": "addons",
    "password": PASSWORD,
    "protocol": "3.1.1",
}


class FakeSupervisor:
    """Answers ``/services/mqtt`` like the Supervisor; records each request's Authorization header."""

    def __init__(self, service: dict[str, Any] | None, token: str = TOKEN) -> None:
        self.service = service
        self.token = token
        self.requests: list[tuple[str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._reply(403, b"403: Forbidden", "text/plain")
                elif self.path != "/services/mqtt":
                    self._reply(404, b"404: Not Found", "text/plain")
                elif fake.service is None:
                    body = {"result": "error", "message": "Service not enabled", "data": {}}
                    self._reply(400, json.dumps(body).encode(), "application/json")
                else:
                    body = {"result": "ok", "data": fake.service}
                    self._reply(200, json.dumps(body).encode(), "application/json")

            def _reply(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake supervisor", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/mqtt"

    def __enter__(self) -> FakeSupervisor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def supervisor_with_mosquitto() -> Iterator[FakeSupervisor]:
    with FakeSupervisor(MOSQUITTO_ADDON) as fake:
        yield fake


def write_options(path: Path, **sections: Any) -> Path:
    options = {"inverters": [{"host": "192.0.2.10"}], "polling": {"poll_interval": 15, "settings_interval": 300}}
    path.write_text(json.dumps(options | sections))
    return path


def settings_for(options: Path, outcome: addon.SupervisorMqtt) -> Settings:
    return load_settings(None, None, addon_options=options, addon_defaults=outcome.defaults)


# ---------------------------------------------------------------------------- the four cases


def test_supervisor_credentials_are_applied(tmp_path: Path, supervisor_with_mosquitto: FakeSupervisor) -> None:
    options = write_options(tmp_path / "options.json", mqtt={})
    outcome = addon.mqtt_from_supervisor(
        {"SUPERVISOR_TOKEN": TOKEN}, url=supervisor_with_mosquitto.url, options_path=options
    )
    settings = settings_for(options, outcome)
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.username) == ("core-mosquitto", 1883, "addons")
    assert settings.mqtt.password is not None and settings.mqtt.password.get_secret_value() == PASSWORD
    assert settings.inverters[0].host == "192.0.2.10"  # the options still apply
    assert supervisor_with_mosquitto.requests == [("/services/mqtt", f"Bearer {TOKEN}")]
    assert outcome.level == "info"
    assert outcome.message == "using the MQTT broker core-mosquitto:1883 as addons from the Supervisor"
    assert PASSWORD not in outcome.message and PASSWORD not in repr(outcome)
    assert PASSWORD not in json.dumps(settings.summary())


def test_service_not_enabled_falls_back_to_the_options(tmp_path: Path) -> None:
    options = write_options(tmp_path / "options.json", mqtt={"username": "me", "password": "mine"})
    with FakeSupervisor(None) as fake:
        outcome = addon.mqtt_from_supervisor({"SUPERVISOR_TOKEN": TOKEN}, url=fake.url, options_path=options)
    assert outcome.defaults == {}
    assert outcome.level == "warning"
    assert "Service not enabled" in outcome.message
    settings = settings_for(options, outcome)
    assert (settings.mqtt.host, settings.mqtt.username) == ("127.0.0.1", "me")


def test_a_broker_in_the_options_overrides_the_supervisor(
    tmp_path: Path, supervisor_with_mosquitto: FakeSupervisor
) -> None:
    options = write_options(tmp_path / "options.json", mqtt={"host": "nas.lan", "port": 1884})
    outcome = addon.mqtt_from_supervisor(
        {"SUPERVISOR_TOKEN": TOKEN}, url=supervisor_with_mosquitto.url, options_path=options
    )
    assert supervisor_with_mosquitto.requests == []  # not even asked
    settings = settings_for(options, outcome)
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.username) == ("nas.lan", 1884, None)
    assert outcome.message == "using the MQTT broker named in the add-on options"


def test_credentials_in_the_options_override_the_supervisors(
    tmp_path: Path, supervisor_with_mosquitto: FakeSupervisor
) -> None:
    options = write_options(tmp_path / "options.json", mqtt={"username": "givbridge", "password": "own-password"})
    outcome = addon.mqtt_from_supervisor(
        {"SUPERVISOR_TOKEN": TOKEN}, url=supervisor_with_mosquitto.url, options_path=options
    )
    settings = settings_for(options, outcome)
    assert (settings.mqtt.host, settings.mqtt.username) == ("core-mosquitto", "givbridge")
    assert settings.mqtt.password is not None and settings.mqtt.password.get_secret_value() == "own-password"


def test_a_refused_token_falls_back_with_a_warning(tmp_path: Path, supervisor_with_mosquitto: FakeSupervisor) -> None:
    options = write_options(tmp_path / "options.json")
    outcome = addon.mqtt_from_supervisor(
        {"SUPERVISOR_TOKEN": "stale"}, url=supervisor_with_mosquitto.url, options_path=options
    )
    assert outcome.defaults == {}
    assert outcome.level == "warning"
    assert "refused the add-on's token (HTTP 403)" in outcome.message
    assert "stale" not in outcome.message
    assert settings_for(options, outcome).mqtt.host == "127.0.0.1"


def test_an_unreachable_supervisor_falls_back_with_a_warning(tmp_path: Path) -> None:
    options = write_options(tmp_path / "options.json")
    url = f"http://127.0.0.1:{free_port()}/services/mqtt"
    outcome = addon.mqtt_from_supervisor({"SUPERVISOR_TOKEN": TOKEN}, url=url, options_path=options, timeout=2)
    assert outcome.defaults == {} and outcome.level == "warning"
    assert "cannot reach the Supervisor" in outcome.message


# ---------------------------------------------------------------------------- the command line's start


async def test_run_asks_the_supervisor_off_the_event_loop(
    tmp_path: Path, supervisor_with_mosquitto: FakeSupervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPERVISOR_TOKEN", TOKEN)
    monkeypatch.setattr(addon, "SUPERVISOR_MQTT_URL", supervisor_with_mosquitto.url)
    threads: list[threading.Thread] = []
    fetch = addon.fetch_mqtt_service

    def recording_fetch(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
        threads.append(threading.current_thread())
        return fetch(*args, **kwargs)

    monkeypatch.setattr(addon, "fetch_mqtt_service", recording_fetch)
    config = write_options(tmp_path / "givbridge.json")  # the options' shape, given as --config here
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    args = cli.build_parser().parse_args(["run", "--config", str(config), "--log-level", "info"])
    settings = await cli._bridge_settings(args)
    assert settings.mqtt.host == "core-mosquitto"
    assert threads and threads[0] is not threading.main_thread()  # the blocking lookup ran in a worker
    logged = stream.getvalue()
    assert "using the MQTT broker core-mosquitto:1883 as addons from the Supervisor" in logged
    assert PASSWORD not in logged
    configure_logging()


# ---------------------------------------------------------------------------- end to end


async def test_the_addon_publishes_through_the_supervisors_broker(
    tmp_path: Path, make_mosquitto: MakeMosquitto
) -> None:
    """Supervisor credentials reach a real password-protected mosquitto; health.json follows the bridge."""
    broker = await make_mosquitto(users={"addons": PASSWORD})
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, seed=4)
    service = MOSQUITTO_ADDON | {"host": broker.host, "port": str(broker.port)}
    async with SimulatorServer(sim) as server:
        options = tmp_path / "options.json"
        inverter = {"host": "127.0.0.1", "port": server.port, "serial": sim.serial}
        options.write_text(json.dumps({"inverters": [inverter], "mqtt": {}, "polling": FAST_POLLING}))
        with FakeSupervisor(service) as fake:
            outcome = await asyncio.to_thread(
                addon.mqtt_from_supervisor, {"SUPERVISOR_TOKEN": TOKEN}, url=fake.url, options_path=options
            )
        overrides = {"data_dir": tmp_path / "data"}
        settings = load_settings(None, overrides, addon_options=options, addon_defaults=outcome.defaults)
        store = JsonStore(settings.data_dir)
        probe = await MqttProbe.for_broker(broker).start()
        app = Application(settings)
        try:
            await app.start()
            await probe.wait_for_payload("GivEnergy/bridge/state", "online", timeout=10)
            await probe.wait_for(f"GivEnergy/{sim.serial}/Power/Power/SOC", timeout=15)
            await wait_until(lambda: check(store).healthy, 10, "a healthy health.json")
            command = [sys.executable, "-m", "givbridge.cli", "health", "--data-dir", str(settings.data_dir)]
            health = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
            out, _ = await health.communicate()
            assert health.returncode == 0, out
            assert out.startswith(b"healthy: ")
        finally:
            await app.stop()
            await probe.stop()
    verdict = check(store)
    assert not verdict.healthy and "stopped" in verdict.reason
    assert "u'addons'" in broker.log_text()  # it logged in as the Supervisor's user
