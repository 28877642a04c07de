"""The one access policy of every transport, and the settings document's secrets and widening rules."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from givbridge.commands import REGISTRY
from givbridge.commands.access import (
    LOCAL,
    MQTT,
    AccessPolicy,
    Caller,
    Clearance,
    Kind,
    Transport,
    kind_of,
)
from givbridge.commands.results import CommandFailed
from givbridge.commands.spec import Command
from givbridge.commands.system import check_settings, widened_access
from givbridge.config import Settings
from givbridge.config_checks import ConfigError
from givbridge.store import JsonStore, UnprotectedFile

TOKEN = "http-token-0123456789"
ADMIN = "admin-token-9876543210"
NETWORKS = [ipaddress.ip_network("192.0.2.0/24")]


def command(name: str) -> Command:
    found = REGISTRY.get(name)
    assert found is not None
    return found


def http(peer: str, token: str | None = None) -> Caller:
    return Caller(Transport.HTTP, peer=peer, authorization=f"Bearer {token}" if token else None)


def mqtt(token: str | None = None) -> Caller:
    return Caller(Transport.MQTT, token=token)


def test_every_command_has_a_kind_and_admin_is_exactly_the_bridges_own_changes_and_reboot() -> None:
    kinds = {c.name: kind_of(c) for c in REGISTRY}
    assert {name for name, kind in kinds.items() if kind is Kind.ADMIN} == {
        "settings",
        "restart",
        "setLogLevel",
        "reboot",
    }
    assert {name for name, kind in kinds.items() if kind is Kind.FULL_READ} == {"runAll"}
    assert {name for name, kind in kinds.items() if kind is Kind.READ} == {"readData", "getCache", "getEVCCache"}
    assert kinds["setChargeTarget"] is Kind.WRITE and kinds["switchRate"] is Kind.WRITE


@pytest.mark.parametrize("name", ["settings", "restart", "setLogLevel", "reboot"])
def test_admin_over_mqtt_is_off_by_default_and_says_how_to_enable_it(name: str) -> None:
    decision = AccessPolicy(SecretStr(TOKEN), NETWORKS).decide(command(name), MQTT)
    assert decision.refusal is not None and decision.refusal.code == "forbidden" and decision.refusal.status == 403
    assert "mqtt.admin" in decision.refusal.message and "token" in decision.refusal.message


def test_mqtt_admin_token_is_required_and_compared() -> None:
    policy = AccessPolicy(None, [], mqtt_admin="token", mqtt_admin_token=SecretStr(ADMIN))
    for given in (None, "", "wrong", ADMIN + "x"):
        refusal = policy.decide(command("restart"), mqtt(given)).refusal
        assert refusal is not None and refusal.code == "forbidden"
        assert ADMIN not in refusal.message
    allowed = policy.decide(command("restart"), mqtt(ADMIN))
    assert allowed.refusal is None and allowed.clearance is Clearance.TOKEN


def test_mqtt_admin_on_lets_whoever_the_broker_lets_publish() -> None:
    decision = AccessPolicy(None, [], mqtt_admin="on").decide(command("settings"), MQTT)
    assert decision.refusal is None and decision.clearance is Clearance.NETWORK


def test_device_writes_and_reads_over_mqtt_stay_open_as_givtcp_had_them() -> None:
    policy = AccessPolicy(SecretStr(TOKEN), NETWORKS)
    for name in ("setChargeTarget", "forceCharge", "readData"):
        assert policy.decide(command(name), MQTT).refusal is None
    full = policy.decide(command("runAll"), MQTT)
    assert full.refusal is None and not full.cached  # a device-level request over MQTT: a real read


def test_http_writes_need_the_token_or_a_trusted_network_and_admin_likewise() -> None:
    policy = AccessPolicy(SecretStr(TOKEN), NETWORKS, mqtt_admin="off")
    for name in ("setChargeTarget", "settings", "reboot"):
        stranger = policy.decide(command(name), http("198.51.100.9"))
        assert stranger.refusal is not None and stranger.refusal.status == 401
        assert policy.decide(command(name), http("198.51.100.9", TOKEN)).clearance is Clearance.TOKEN
        assert policy.decide(command(name), http("192.0.2.7")).clearance is Clearance.NETWORK
    wrong = policy.decide(command("settings"), http("198.51.100.9", "nope")).refusal
    assert wrong is not None and wrong.code == "unauthorized"


def test_runAll_serves_the_cache_unless_the_caller_is_authorised() -> None:
    policy = AccessPolicy(SecretStr(TOKEN), NETWORKS)
    stranger = policy.decide(command("runAll"), http("198.51.100.9"))
    assert stranger.refusal is None and stranger.cached
    assert not policy.decide(command("runAll"), http("198.51.100.9", TOKEN)).cached
    assert not policy.decide(command("runAll"), http("192.0.2.7")).cached
    assert not policy.decide(command("readData"), http("198.51.100.9")).cached


def test_the_bridge_itself_is_trusted() -> None:
    decision = AccessPolicy(None, []).decide(command("settings"), LOCAL)
    assert decision.refusal is None and decision.clearance is Clearance.LOCAL


def test_a_caller_never_shows_its_credentials() -> None:
    shown = repr(Caller(Transport.MQTT, token=ADMIN)) + repr(http("192.0.2.1", TOKEN))
    assert ADMIN not in shown and TOKEN not in shown


@pytest.mark.parametrize("value, expected", [(False, "off"), (True, "on"), ("token", "token")])
def test_mqtt_admin_accepts_yamls_bare_off_and_on(value: Any, expected: str) -> None:
    settings = Settings(mqtt={"admin": value, "admin_token": ADMIN})
    assert settings.mqtt.admin == expected
    assert settings.summary()["mqtt"]["admin_token"] == "***"


def test_mqtt_admin_token_mode_needs_the_token() -> None:
    with pytest.raises((ConfigError, ValueError), match="admin_token"):
        Settings(mqtt={"admin": "token"})


# --- the settings document ------------------------------------------------------------------------

RUNNING = Settings(mqtt={"host": "broker.lan", "username": "bridge", "password": "running-pw"})


@pytest.mark.parametrize(
    "change",
    [{"host": "evil.example"}, {"port": 8883}, {"username": "other"}, {"tls": {"enabled": True, "insecure": True}}],
)
def test_a_masked_password_is_refused_when_its_destination_changes(change: dict[str, Any]) -> None:
    document = {"mqtt": {"host": "broker.lan", "username": "bridge", "password": "***", **change}}
    with pytest.raises(CommandFailed) as refused:
        check_settings(document, RUNNING, {})
    assert refused.value.code == "invalid_payload"
    assert "mqtt.password" in refused.value.message and f"mqtt.{next(iter(change))}" in refused.value.message
    assert "running-pw" not in refused.value.message


def test_a_masked_password_keeps_the_secret_meant_for_the_same_destination() -> None:
    document = {"mqtt": {"host": "broker.lan", "username": "bridge", "password": "***"}}
    stored, _ = check_settings(document, RUNNING, {})
    assert stored["mqtt"]["password"] == "running-pw"
    saved = {"mqtt": {"host": "new.lan", "username": "bridge", "password": "typed-pw"}}
    moved = {"mqtt": {"host": "new.lan", "username": "bridge", "password": "***"}}
    assert check_settings(moved, RUNNING, saved)[0]["mqtt"]["password"] == "typed-pw"
    # A password typed in by hand may go anywhere.
    typed = {"mqtt": {"host": "elsewhere.lan", "password": "typed-pw"}}
    assert check_settings(typed, RUNNING, {})[0]["mqtt"]["password"] == "typed-pw"


def test_widening_access_is_named() -> None:
    current = Settings(http={"token": TOKEN, "trusted_networks": ["192.0.2.0/24"]})
    assert widened_access(current, current) == []
    assert widened_access(Settings(http={"token": TOKEN, "trusted_networks": ["192.0.2.128/25"]}), current) == []
    wide = Settings(
        http={"host": "0.0.0.0", "trusted_networks": ["0.0.0.0/0"], "cors_origins": ["http://x.example"]},
        mqtt={"admin": "on"},
    )
    assert widened_access(wide, current) == [
        "http.host",
        "http.trusted_networks",
        "http.token",
        "http.cors_origins",
        "mqtt.admin",
    ]
    assert widened_access(Settings(), Settings(read_only=True)) == ["read_only"]


# --- private documents ----------------------------------------------------------------------------


def test_a_private_document_is_written_owner_only(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    os.umask(old := os.umask(0o022))
    try:
        (tmp_path / "settings.json").write_text("{}")
        (tmp_path / "settings.json").chmod(0o644)  # left by an older version
        store.save("settings", {"mqtt": {"password": "pw"}}, private=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "settings.json").stat().st_mode) == 0o600


def test_a_private_document_is_refused_where_modes_do_not_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A FAT or network file system reports every file world-readable whatever is asked; that
    # file system is not mountable here, so its fstat answer is what is simulated.
    store = JsonStore(tmp_path)
    store.save("settings", {"kept": True})
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((stat.S_IFREG | 0o755, *real_fstat(fd)[1:])))
    with pytest.raises(UnprotectedFile, match="ignores file modes"):
        store.save("settings", {"mqtt": {"password": "pw"}}, private=True)
    monkeypatch.undo()
    assert store.load("settings") == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temporary file left
