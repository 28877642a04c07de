"""Configuration sources, priorities and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from givbridge.cli import main
from givbridge.config_checks import ConfigError
from givbridge.config_loading import SAVED_SETTINGS, load_settings
from givbridge.store import JsonStore


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("GIVBRIDGE_"):
            monkeypatch.delenv(key)


@pytest.fixture
def no_addon(tmp_path: Path) -> Path:
    return tmp_path / "absent-options.json"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_a_working_local_setup(no_addon: Path) -> None:
    settings = load_settings(addon_options=no_addon)
    assert settings.mqtt.host == "127.0.0.1"
    assert settings.mqtt.port == 1883
    assert settings.mqtt.root == "GivEnergy"
    assert settings.mqtt.discovery_prefix == "homeassistant"
    assert settings.mqtt.retain is True
    assert settings.polling.poll_interval == 15
    assert settings.polling.settings_interval == 300
    assert settings.polling.offline_after == 3
    assert settings.read_only is False
    assert settings.inverters == []


def test_priority_cli_over_env_over_file_over_addon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    addon = write(
        tmp_path / "options.json",
        json.dumps({"mqtt": {"host": "addon", "port": 1111, "username": "addon-user"}, "read_only": True}),
    )
    config = write(tmp_path / "c.yaml", "mqtt:\n  host: file\n  port: 2222\npolling:\n  poll_interval: 30\n")
    monkeypatch.setenv("GIVBRIDGE_MQTT__PORT", "3333")
    settings = load_settings(config, overrides={"mqtt": {"host": "cli"}}, addon_options=addon)
    assert settings.mqtt.host == "cli"  # CLI beats everything
    assert settings.mqtt.port == 3333  # env beats the file
    assert settings.polling.poll_interval == 30  # the file beats defaults
    assert settings.mqtt.username == "addon-user"  # the add-on options fill what nothing else set
    assert settings.read_only is True


def test_env_carries_lists_as_json(monkeypatch: pytest.MonkeyPatch, no_addon: Path) -> None:
    monkeypatch.setenv("GIVBRIDGE_INVERTERS", '[{"host": "192.0.2.5"}, {"host": "192.0.2.6", "port": 8898}]')
    settings = load_settings(addon_options=no_addon)
    assert [(i.host, i.port) for i in settings.inverters] == [("192.0.2.5", 8899), ("192.0.2.6", 8898)]
    assert [settings.prefix_for(i) for i in range(2)] == ["givtcp", "givtcp2"]


def test_config_file_via_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_addon: Path) -> None:
    config = write(tmp_path / "c.json", json.dumps({"inverters": [{"host": "inv", "prefix": "garage"}]}))
    monkeypatch.setenv("GIVBRIDGE_CONFIG", str(config))
    settings = load_settings(addon_options=no_addon)
    assert settings.prefix_for(0) == "garage"


def test_every_bad_field_is_named(tmp_path: Path, no_addon: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "inverters:\n  - host: a\n    port: 70000\n    serail: x\nmqtt:\n  qos: 2\n  root: 'a/#'\n",
    )
    with pytest.raises(ConfigError) as err:
        load_settings(config, addon_options=no_addon)
    message = str(err.value)
    assert str(config) in message
    assert "inverters.0.port" in message
    assert "inverters.0.serail: unknown setting" in message
    assert "mqtt.qos" in message
    assert "mqtt.root" in message and "wildcards" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt: [1, 2", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("inverters:\n  - host: a\n  - host: a\n", "listed twice"),
        ("inverters:\n  - {host: a, serial: nope}\n", "GivEnergy serial"),
        ("inverters:\n  - {host: a, prefix: 'Bad Prefix'}\n", "lower-case"),
        ("polling:\n  poll_interval: 600\n  settings_interval: 60\n", "settings_interval"),
        ("timezone: Mars/Olympus\n", "IANA time zone"),
        ("inverters:\n  - port: 8899\n", "inverters.0.host: required"),
    ],
)
def test_clear_messages(tmp_path: Path, no_addon: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path / "c.yaml", text), addon_options=no_addon)
    assert expected in str(err.value)


def test_broken_json_in_environment(monkeypatch: pytest.MonkeyPatch, no_addon: Path) -> None:
    monkeypatch.setenv("GIVBRIDGE_INVERTERS", '[{"host": ')
    with pytest.raises(ConfigError, match="inverters"):
        load_settings(addon_options=no_addon)


def test_missing_file_is_an_error(tmp_path: Path, no_addon: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml", addon_options=no_addon)


def test_tls_files_must_exist(tmp_path: Path, no_addon: Path) -> None:
    config = write(tmp_path / "c.yaml", f"mqtt:\n  tls:\n    enabled: true\n    ca_file: {tmp_path / 'ca.pem'}\n")
    with pytest.raises(ConfigError, match="ca_file"):
        load_settings(config, addon_options=no_addon)


def test_summary_never_contains_secrets(tmp_path: Path, no_addon: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "mqtt:\n  username: u\n  password: hunter2\nhttp:\n  token: tok-123456\n",
    )
    settings = load_settings(config, addon_options=no_addon)
    dumped = json.dumps(settings.summary())
    assert "hunter2" not in dumped and "tok-123456" not in dumped
    assert settings.summary()["mqtt"]["password"] == "***"
    assert settings.mqtt.password is not None and settings.mqtt.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)


def test_cli_exits_2_with_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "c.yaml", "mqtt:\n  port: nope\n")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.port" in err
    assert "Traceback" not in err


def test_cli_without_inverters_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "c.yaml", "mqtt:\n  host: 127.0.0.1\n")
    assert main(["run", "--config", str(config), "--data-dir", str(tmp_path)]) == 2
    assert "no inverters configured" in capsys.readouterr().err


def test_cli_inverter_flag_parses_host_and_port(tmp_path: Path) -> None:
    from givbridge.cli import _overrides, build_parser

    args = build_parser().parse_args(["run", "--inverter", "192.0.2.7", "--inverter", "inv.local:9000"])
    assert _overrides(args)["inverters"] == [
        {"host": "192.0.2.7", "port": 8899},
        {"host": "inv.local", "port": 9000},
    ]


def test_the_example_config_is_valid(no_addon: Path) -> None:
    example = Path(__file__).parents[2] / "deploy" / "config.example.yaml"
    settings = load_settings(example, addon_options=no_addon)
    assert settings.inverters[0].port == 8899
    assert settings.mqtt.root == "GivEnergy"


def test_settings_saved_by_the_settings_command_apply_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_addon: Path
) -> None:
    data = tmp_path / "data"
    config = write(
        tmp_path / "c.yaml",
        f"data_dir: {data}\ninverters:\n  - host: 192.0.2.10\nmqtt:\n  host: file\n  port: 2222\n",
    )
    assert load_settings(config, addon_options=no_addon).mqtt.host == "file"  # nothing saved yet
    JsonStore(data).save(
        SAVED_SETTINGS,
        {"inverters": [{"host": "192.0.2.20"}], "mqtt": {"host": "saved"}, "data_dir": str(tmp_path / "elsewhere")},
    )
    monkeypatch.setenv("GIVBRIDGE_MQTT__PORT", "3333")
    settings = load_settings(config, addon_options=no_addon)
    assert settings.mqtt.host == "saved"  # the saved document beats the file
    assert [inverter.host for inverter in settings.inverters] == ["192.0.2.20"]
    assert settings.mqtt.port == 3333  # the environment beats the saved document
    assert settings.data_dir == data  # where the document lives, not where it points


def test_a_saved_settings_document_that_no_longer_validates_is_named(tmp_path: Path, no_addon: Path) -> None:
    data = tmp_path / "data"
    config = write(tmp_path / "c.yaml", f"data_dir: {data}\n")
    JsonStore(data).save(SAVED_SETTINGS, {"mqtt": {"port": 99999}})
    with pytest.raises(ConfigError) as raised:
        load_settings(config, addon_options=no_addon)
    assert "mqtt.port" in str(raised.value) and str(data / "settings.json") in str(raised.value)
