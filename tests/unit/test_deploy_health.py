"""The health document behind the containers' HEALTHCHECK: written while running, judged by ``givbridge health``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from givbridge import cli
from givbridge.clock import ScaledClock
from givbridge.health import HEALTH_DOCUMENT, HealthWriter, check, evaluate
from givbridge.runtime.health import Health
from givbridge.store import JsonStore
from tests.brokers import wait_until

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def document(age: float = 5.0, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "running": True,
        "updated_epoch": (NOW - timedelta(seconds=age)).timestamp(),
        "interval": 15.0,
        "mqtt_connected": True,
        "inverters": [{"serial": "SA2314G123", "available": True}, {"serial": None, "available": False}],
    }
    return doc | changes


def test_fresh_and_connected_is_healthy() -> None:
    verdict = evaluate(document(), NOW)
    assert verdict.healthy
    assert verdict.reason == "healthy: updated 5 s ago, 1/2 inverters available, MQTT connected"


@pytest.mark.parametrize(
    ("doc", "max_age", "why"),
    [
        ({}, None, "no health document"),
        (document(age=56), None, "stale"),  # default: three 15 s intervals plus 10 s
        (document(age=20), 10.0, "stale"),
        (document(mqtt_connected=False), None, "not connected to MQTT"),
        (document(running=False), None, "givbridge stopped"),
        ({"updated_epoch": "soon"}, None, "not one givbridge wrote"),
    ],
)
def test_unhealthy(doc: dict[str, Any], max_age: float | None, why: str) -> None:
    verdict = evaluate(doc, NOW, max_age)
    assert not verdict.healthy
    assert why in verdict.reason


def test_an_offline_inverter_does_not_make_the_bridge_unhealthy() -> None:
    offline = document(inverters=[{"serial": "SA2314G123", "available": False}])
    assert evaluate(offline, NOW).healthy


def stub_runner(available: bool) -> Any:
    health = Health(connected=available, available=available, last_success=NOW if available else None)
    return SimpleNamespace(config=SimpleNamespace(host="192.0.2.10", port=8899), serial="SA2314G123", health=health)


async def test_the_writer_refreshes_the_document_and_marks_a_stop(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    mqtt = SimpleNamespace(connected=True)
    clock = ScaledClock(speed=100.0)
    writer = HealthWriter(store, mqtt=mqtt, runners=[stub_runner(True)], interval=15.0, clock=clock)  # type: ignore[arg-type]
    writer.start()
    try:
        await wait_until((tmp_path / f"{HEALTH_DOCUMENT}.json").exists, 5, "the first health document")
        first = store.load(HEALTH_DOCUMENT)["updated_epoch"]
        # 15 s of this clock pass in 0.15 s
        await wait_until(lambda: store.load(HEALTH_DOCUMENT)["updated_epoch"] != first, 5, "a refresh")
    finally:
        await writer.stop()
    written = store.load(HEALTH_DOCUMENT)
    assert written["running"] is False
    assert written["inverters"] == [
        {
            "host": "192.0.2.10",
            "port": 8899,
            "serial": "SA2314G123",
            "connected": True,
            "available": True,
            "last_success": NOW.isoformat(timespec="seconds"),
            "last_error": None,
        }
    ]
    assert not check(store).healthy


async def test_a_write_failure_is_logged_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    writer = HealthWriter(JsonStore(blocker), mqtt=SimpleNamespace(connected=True), runners=[], interval=15.0)  # type: ignore[arg-type]
    await writer.write()  # the data dir is a file: an OSError, swallowed


def test_the_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["health", "--data-dir", str(tmp_path)]
    assert cli.main(args) == 1
    assert "no health document" in capsys.readouterr().out
    now = datetime.now(UTC)
    doc = document() | {"updated_epoch": now.timestamp()}
    (tmp_path / "health.json").write_text(json.dumps(doc))
    assert cli.main(args) == 0
    assert capsys.readouterr().out.startswith("healthy: ")
    (tmp_path / "health.json").write_text(json.dumps(doc | {"updated_epoch": now.timestamp() - 30}))
    assert cli.main([*args, "--max-age", "20"]) == 1
    assert "stale" in capsys.readouterr().out


def test_bad_settings_are_unhealthy_not_docker_reserved_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "givbridge.yaml"
    config.write_text("mqtt:\n  port: nine\n")
    assert cli.main(["health", "--config", str(config), "--data-dir", str(tmp_path)]) == 1
    assert "mqtt.port" in capsys.readouterr().out
