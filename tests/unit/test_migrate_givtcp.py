"""``givbridge migrate-givtcp``: GivTCP's allsettings.json becomes a settings file givbridge accepts."""

from __future__ import annotations

import json
import stat
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from givbridge import cli
from givbridge.config import Settings
from givbridge.config_loading import load_settings
from givbridge.migrate import MigrationError, migrate, read_allsettings

SAMPLE = Path(__file__).parents[1] / "data" / "givtcp_allsettings.json"
GIVTCP_TEMPLATE_KEYS = {  # GivTCP's settings.json template (HEAD of britkat1980/giv_tcp)
    "v3upgrade", "auto_scan", "Host_IP", "MQTT_Output", "MQTT_Address", "MQTT_Username", "MQTT_Password",
    "MQTT_Retain", "cache_location", "TZ", "MQTT_Topic", "MQTT_Port", "Log_Level", "Print_Raw_Registers",
    "self_run", "self_run_timer", "self_run_timer_full", "queue_retries", "data_smoother", "Influx_Output",
    "influxURL", "influxToken", "influxBucket", "influxOrg", "HA_Auto_D", "PYTHONPATH", "dynamic_tariff",
    "day_rate", "night_rate", "export_rate", "day_rate_start", "night_rate_start", "Web_Dash", "Web_Dash_Port",
    "Smart_Target", "GE_API", "SOLCASTAPI", "SOLCASTSITEID", "SOLCASTSITEID2", "PALM_WINTER", "PALM_SHOULDER",
    "PALM_MIN_SOC_TARGET", "PALM_MAX_SOC_TARGET", "PALM_BATT_RESERVE", "PALM_BATT_UTILISATION", "PALM_WEIGHT",
    "LOAD_HIST_WEIGHT", "evc_ip_address", "serial_number_evc", "evc_enable", "evc_self_run_timer",
    "evc_import_max_current",
} | {
    f"{key}_{n}"
    for n in range(1, 6)
    for key in ("invertorIP", "inverter_enable", "Model", "inverter_battery_only", "serial_number", "inverterName")
}  # fmt: skip


def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text())
    return data


def template() -> dict[str, Any]:
    """GivTCP's untouched template: the settings of an install that never saved its web UI."""
    data = sample()
    for n in range(1, 6):
        data.update({f"invertorIP_{n}": "", f"inverter_enable_{n}": False, f"serial_number_{n}": ""})
        data[f"inverterName_{n}"] = "GivTCP" if n == 1 else f"GivTCP{n}"
    data.update({"MQTT_Address": "", "MQTT_Username": "", "MQTT_Password": "", "MQTT_Topic": ""})
    data.update({"day_rate": 0.395, "night_rate": 0.155, "export_rate": 0.04, "evc_ip_address": ""})
    data.update({"Influx_Output": False, "Smart_Target": False, "GE_API": "", "SOLCASTAPI": "", "Web_Dash": False})
    data.update({"data_smoother": "none", "Log_Level": "Info", "self_run_timer": 30, "evc_enable": False})
    return data


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["migrate-givtcp", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_sample_has_givtcps_keys() -> None:
    assert set(sample()) == GIVTCP_TEMPLATE_KEYS


def test_inverters_mqtt_timers_evc_and_tariffs_are_mapped() -> None:
    settings = migrate(sample()).settings
    assert settings["inverters"] == [
        {"host": "192.0.2.40", "serial": "SA2114G047", "prefix": "givtcp"},
        {"host": "192.0.2.41", "serial": "CE2231G454", "prefix": "garage_ac"},  # "Garage AC", as HA slugs it
        {"host": "192.0.2.42", "prefix": "givtcp3", "enabled": False},
    ]
    assert settings["mqtt"] == {
        "host": "192.0.2.10",
        "port": 1883,
        "username": "givtcp",
        "password": "Tr0ub4dor&3",
        "root": "GivEnergy",
        "retain": True,
        "discovery": True,
        "migrate_givtcp_discovery": True,
    }
    assert settings["polling"] == {"poll_interval": 20, "settings_interval": 120}
    assert settings["log"] == {"level": "debug"}
    assert settings["timezone"] == "Europe/London"
    assert settings["evc"] == {"host": "192.0.2.50", "serial": "WF2239G001", "poll_interval": 10}
    assert settings["tariffs"] == {
        "currency": "GBP",
        "import_day_rate": 0.2843,
        "import_night_rate": 0.075,
        "export_rate": 0.15,
        "day_start": "05:30",
        "night_start": "23:30",
        "dynamic": False,
    }


def test_what_is_left_out_is_explained() -> None:
    notes = " | ".join(migrate(sample()).notes)
    for subject in ("InfluxDB", "PALM", "web dashboard", "data_smoother", "publish_raw"):
        assert subject in notes


def test_the_written_file_loads_as_givbridge_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "givbridge.yaml"
    status, out, err = run_cli(capsys, str(SAMPLE), "--output", str(output))
    assert status == 0
    assert out == ""
    assert "note: InfluxDB output is not migrated" in err
    assert stat.S_IMODE(output.stat().st_mode) == 0o600  # it holds the MQTT password
    text = output.read_text()
    assert text.startswith("# givbridge settings migrated from GivTCP's")
    settings = load_settings(output, addon_options=tmp_path / "absent.json")
    assert [i.prefix for i in settings.inverters] == ["givtcp", "garage_ac", "givtcp3"]
    assert settings.mqtt.password is not None and settings.mqtt.password.get_secret_value() == "Tr0ub4dor&3"
    assert settings.tariffs is not None
    assert (settings.tariffs.day_start, settings.tariffs.night_start) == (time(5, 30), time(23, 30))
    assert settings.evc is not None and settings.evc.host == "192.0.2.50"


def test_printed_without_output(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = run_cli(capsys, str(SAMPLE))
    assert status == 0
    assert yaml.safe_load(out)["inverters"][0]["host"] == "192.0.2.40"


def test_an_existing_output_is_kept_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "givbridge.yaml"
    output.write_text("mine\n")
    output.chmod(0o644)
    status, _out, err = run_cli(capsys, str(SAMPLE), "--output", str(output))
    assert status == 2
    assert "exists" in err
    assert output.read_text() == "mine\n"
    status, _out, _err = run_cli(capsys, str(SAMPLE), "--output", str(output), "--force")
    assert status == 0
    assert stat.S_IMODE(output.stat().st_mode) == 0o600


def test_givtcps_untouched_template_says_what_to_do() -> None:
    migration = migrate(template())
    notes = " | ".join(migration.notes)
    assert migration.settings["inverters"] == []
    assert "givbridge scan" in notes
    assert "MQTT_Address is empty" in notes
    assert "template values" in notes
    assert "host" not in migration.settings["mqtt"]
    assert "evc" not in migration.settings


def test_timers_are_brought_into_range() -> None:
    data = sample() | {"self_run_timer": 1, "self_run_timer_full": 5}
    migration = migrate(data)
    assert migration.settings["polling"] == {"poll_interval": 2, "settings_interval": 10}
    assert any("self_run_timer 1 s" in note for note in migration.notes)


def test_duplicate_and_odd_names_still_give_valid_prefixes() -> None:
    data = sample() | {"inverterName_1": "House", "inverterName_2": "house", "inverterName_3": "2nd!"}
    prefixes = [i["prefix"] for i in migrate(data).settings["inverters"]]
    assert prefixes == ["house", "house_2", "givtcp_2nd"]


def test_a_disabled_evc_is_left_out_with_a_note() -> None:
    assert "evc" not in migrate(sample() | {"evc_enable": False}).settings
    assert any("not enabled" in note for note in migrate(sample() | {"evc_enable": False}).notes)


def test_flags_saved_as_strings_are_understood() -> None:
    settings = migrate(sample() | {"MQTT_Retain": "False", "dynamic_tariff": "true"}).settings
    assert settings["mqtt"]["retain"] is False
    assert settings["tariffs"]["dynamic"] is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "holds a list"),
        ('{"hello": "world"}', "does not look like GivTCP's allsettings.json"),
        ('{"invertorIP_1": "192.0.2.40", "MQTT_Port": "abc"}', "MQTT_Port is 'abc', not a number"),
        ('{"invertorIP_1": "192.0.2.40", "MQTT_Retain": "maybe"}', "MQTT_Retain is 'maybe', not true or false"),
        ('{"invertorIP_1": "192.0.2.40", "day_rate": 0.3, "day_rate_start": "25:99"}', "not a time of day"),
        ('{"invertorIP_1": "192.0.2.40", "MQTT_Port": 99999}', "mqtt.port"),
    ],
)
def test_a_bad_file_is_a_clear_error_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "allsettings.json"
    path.write_text(content)
    status, out, err = run_cli(capsys, str(path), "--output", str(tmp_path / "out.yaml"))
    assert status == 2
    assert message in err
    assert err.startswith("givbridge: ")
    assert out == ""
    assert not (tmp_path / "out.yaml").exists()


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="cannot read"):
        read_allsettings(tmp_path / "nowhere.json")


# ---------------------------------------------------------------------------- the tariffs section it fills


def tariffs(**values: Any) -> Any:
    return Settings.model_validate({"tariffs": {"import_day_rate": 0.3, **values}}).tariffs


def test_tariffs_default_to_one_rate_in_pounds() -> None:
    single = tariffs()
    assert (single.currency, single.import_night_rate, single.export_rate, single.dynamic) == ("GBP", None, 0.0, False)
    assert tariffs(currency="eur").currency == "EUR"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"currency": "pounds"}, "ISO 4217"),
        ({"import_night_rate": 0.1}, "needs day_start and night_start"),
        ({"import_night_rate": 0.1, "day_start": "05:30", "night_start": "05:30"}, "must differ"),
        ({"day_start": 1410}, "write the time in quotes"),  # what YAML makes of an unquoted 23:30
        ({"import_day_rate": float("nan")}, "finite"),
    ],
)
def test_tariff_mistakes_are_named(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        tariffs(**values)


def test_a_dynamic_tariff_needs_no_times() -> None:
    assert tariffs(import_night_rate=0.1, dynamic=True).dynamic
