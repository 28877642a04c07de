"""Reading the Supervisor's MQTT service answer (no network: the HTTP side is in tests/integration)."""

from __future__ import annotations

import pytest

from givbridge.addon import SupervisorError, SupervisorMqtt, in_addon, mqtt_settings


def test_the_addon_is_recognised_by_its_token() -> None:
    assert in_addon({"SUPERVISOR_TOKEN": "abc"})
    assert not in_addon({})
    assert not in_addon({"SUPERVISOR_TOKEN": ""})


def test_the_service_answer_becomes_the_mqtt_section() -> None:
    answer = {
        "addon": "core_mosquitto",
        "host": "core-mosquitto",
        "port": "1883",  # a string in the Supervisor's answer
        "ssl": False,
        "username": "addons",
        "password": "s3cret",
        "protocol": "3.1.1",
    }
    assert mqtt_settings(answer) == {"host": "core-mosquitto", "port": 1883, "username": "addons", "password": "s3cret"}


def test_tls_and_missing_credentials() -> None:
    assert mqtt_settings({"host": "broker", "port": 8883, "ssl": True}) == {
        "host": "broker",
        "port": 8883,
        "tls": {"enabled": True},
    }


@pytest.mark.parametrize("answer", [{"port": 1883}, {"host": "", "port": 1883}, {"host": "broker", "port": "x"}])
def test_an_unusable_answer_is_an_error(answer: dict[str, object]) -> None:
    with pytest.raises(SupervisorError):
        mqtt_settings(answer)


def test_the_password_stays_out_of_repr() -> None:
    outcome = SupervisorMqtt({"mqtt": {"host": "core-mosquitto", "password": "s3cret"}}, "using core-mosquitto")
    assert "s3cret" not in repr(outcome)
