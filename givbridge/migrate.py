"""``givbridge migrate-givtcp``: GivTCP's ``allsettings.json`` as a givbridge settings file.

GivTCP v3 keeps everything its web UI edits in one flat JSON document (givtcp.md §1.7):
five numbered inverter slots, the MQTT broker, poll timers, the EV charger, tariffs and
the settings of features givbridge does not have. :func:`migrate` maps what has a
givbridge equivalent and explains, as notes, what it left out and why; the result is
checked against :class:`~givbridge.config.Settings` before anything is written, so the
file it produces is one ``givbridge run --config`` accepts.

docs/migrating-from-givtcp.md is the user's side of this mapping; keep the two in step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import ValidationError

from givbridge.config import Settings
from givbridge.config_checks import ConfigError, default_prefix, is_serial

SLOTS = range(1, 6)  # GivTCP's inverter slots, invertorIP_1 .. invertorIP_5

_LOG_LEVELS = {"debug": "debug", "write_debug": "debug", "info": "info", "warning": "warning"}
_LOG_LEVELS |= {"error": "error", "critical": "error"}
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::\d{2})?$")
# GivTCP's settings.json template rates: seeing exactly these usually means "never set".
_TEMPLATE_RATES = {"day_rate": 0.395, "night_rate": 0.155, "export_rate": 0.04}


class MigrationError(ConfigError):
    """allsettings.json cannot be migrated; ``str()`` says which key and why."""


@dataclass
class Migration:
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- reading values


def _text(source: Mapping[str, Any], key: str) -> str:
    value = source.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MigrationError(f"{key} is {value!r}, not text")
    return str(value).strip()


def _flag(source: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = source.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise MigrationError(f"{key} is {value!r}, not true or false")


def _number(source: Mapping[str, Any], key: str) -> float | None:
    value = source.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MigrationError(f"{key} is {value!r}, not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MigrationError(f"{key} is {value!r}, not a number") from None


def _clock_time(source: Mapping[str, Any], key: str) -> str | None:
    text = _text(source, key)
    if not text:
        return None
    match = _TIME.match(text)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise MigrationError(f"{key} is {text!r}, not a time of day like 05:30")
    return f"{int(match[1]):02d}:{match[2]}"


def _whole(value: float) -> int | float:
    """20.0 as 20 in the YAML; 20.5 stays."""
    return int(value) if float(value).is_integer() else value


# ---------------------------------------------------------------------------- the mapping


def _inverters(source: Mapping[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    inverters: list[dict[str, Any]] = []
    used_prefixes: set[str] = set()
    for slot in SLOTS:
        host = _text(source, f"invertorIP_{slot}")
        enabled = _flag(source, f"inverter_enable_{slot}", default=bool(host))
        if not host:
            if enabled:
                notes.append(f"inverter slot {slot} is enabled but has no address (invertorIP_{slot}); left out")
            continue
        entry: dict[str, Any] = {"host": host}
        serial = _text(source, f"serial_number_{slot}").upper()
        if serial and is_serial(serial):
            entry["serial"] = serial
        elif serial:
            notes.append(f"inverter slot {slot}: {serial!r} is not an inverter serial; left out")
        prefix = _prefix(_text(source, f"inverterName_{slot}"), len(inverters))
        if prefix in used_prefixes:
            notes.append(f"inverter slot {slot}: prefix {prefix!r} was already used, so it becomes {prefix}_{slot}")
            prefix = f"{prefix}_{slot}"
        used_prefixes.add(prefix)
        entry["prefix"] = prefix
        if not enabled:
            entry["enabled"] = False
        if _flag(source, f"inverter_battery_only_{slot}"):
            notes.append(f"inverter slot {slot} was marked battery-only; givbridge detects the model and its batteries")
        inverters.append(entry)
    if not inverters:
        notes.append("no inverter addresses: find them with `givbridge scan` and add them under inverters:")
    return inverters


def _prefix(name: str, index: int) -> str:
    """GivTCP's device name as an entity-id prefix: lower case, letters, digits and underscores."""
    prefix = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:32]
    if not prefix:
        return default_prefix(index)
    return prefix if prefix[0].isalpha() else f"givtcp_{prefix}"[:32]


def _mqtt(source: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    mqtt: dict[str, Any] = {}
    host = _text(source, "MQTT_Address")
    if host:
        mqtt["host"] = host
    else:
        notes.append(
            "MQTT_Address is empty (GivTCP asked Home Assistant for its broker): the givbridge add-on does the "
            "same; elsewhere set mqtt.host"
        )
    port = _number(source, "MQTT_Port")
    if port is not None:
        mqtt["port"] = int(port)
    for ours, theirs in (("username", "MQTT_Username"), ("password", "MQTT_Password")):
        if value := _text(source, theirs):
            mqtt[ours] = value
    if root := _text(source, "MQTT_Topic"):
        mqtt["root"] = root
    if "MQTT_Retain" in source:
        mqtt["retain"] = _flag(source, "MQTT_Retain")
    if "HA_Auto_D" in source:
        mqtt["discovery"] = _flag(source, "HA_Auto_D")
    # Replacing GivTCP: take over its Home Assistant entities, with their ids and history.
    mqtt["migrate_givtcp_discovery"] = True
    if not _flag(source, "MQTT_Output", default=True):
        notes.append("GivTCP's MQTT output was off; givbridge always publishes to MQTT")
    if _flag(source, "Print_Raw_Registers"):
        notes.append("Print_Raw_Registers: publish_raw stays off (turn it on if you used GivTCP's raw/ topics)")
    return mqtt


def _polling(source: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    polling: dict[str, Any] = {}
    fast = _number(source, "self_run_timer")
    full = _number(source, "self_run_timer_full")
    if fast is not None:
        polling["poll_interval"] = _whole(min(max(fast, 2), 3600))
        if polling["poll_interval"] != fast:
            notes.append(
                f"self_run_timer {_whole(fast)} s is outside 2-3600 s; poll_interval is {polling['poll_interval']}"
            )
    if full is not None:
        low = max(10.0, float(polling.get("poll_interval", 2)))
        polling["settings_interval"] = _whole(min(max(full, low), 86400))
        if polling["settings_interval"] != full:
            notes.append(
                f"self_run_timer_full {_whole(full)} s is outside {_whole(low)}-86400 s; "
                f"settings_interval is {polling['settings_interval']}"
            )
    return polling


def _evc(source: Mapping[str, Any], notes: list[str]) -> dict[str, Any] | None:
    host = _text(source, "evc_ip_address")
    if not host:
        return None
    if not _flag(source, "evc_enable"):
        notes.append(f"the EV charger at {host} was not enabled in GivTCP; left out")
        return None
    evc: dict[str, Any] = {"host": host}
    if serial := _text(source, "serial_number_evc"):
        evc["serial"] = serial
    period = _number(source, "evc_self_run_timer")
    if period is not None:
        evc["poll_interval"] = _whole(min(max(period, 2), 3600))
    return evc


def _tariffs(source: Mapping[str, Any], notes: list[str]) -> dict[str, Any] | None:
    day = _number(source, "day_rate")
    if day is None:
        return None
    tariffs: dict[str, Any] = {"currency": "GBP", "import_day_rate": day}
    night = _number(source, "night_rate")
    if night is not None:
        tariffs["import_night_rate"] = night
    export = _number(source, "export_rate")
    if export is not None:
        tariffs["export_rate"] = export
    for ours, theirs in (("day_start", "day_rate_start"), ("night_start", "night_rate_start")):
        if (when := _clock_time(source, theirs)) is not None:
            tariffs[ours] = when
    tariffs["dynamic"] = _flag(source, "dynamic_tariff")
    if all(_number(source, key) == value for key, value in _TEMPLATE_RATES.items()):
        notes.append("the tariff rates are GivTCP's template values (0.395/0.155/0.04): set yours under tariffs:")
    return tariffs


def _not_migrated(source: Mapping[str, Any], notes: list[str]) -> None:
    """Say what an enabled GivTCP feature becomes, so nothing disappears silently."""
    if _flag(source, "Influx_Output"):
        notes.append(
            "InfluxDB output is not migrated: givbridge publishes to MQTT only; record the values with Home "
            "Assistant's InfluxDB integration or Telegraf's MQTT consumer"
        )
    if _flag(source, "Smart_Target") or _text(source, "GE_API") or _text(source, "SOLCASTAPI"):
        notes.append(
            "PALM (smart charge target) is not migrated: it needs the GivEnergy cloud and Solcast, and "
            "givbridge stays local; Predbat does this job from Home Assistant"
        )
    if _flag(source, "Web_Dash"):
        notes.append("the web dashboard is not migrated: use a Home Assistant dashboard")
    smoother = _text(source, "data_smoother").lower()
    if smoother and smoother != "none":
        notes.append(f"data_smoother {smoother!r} is not needed: givbridge checks every value it reads itself")


def _timezone(source: Mapping[str, Any], notes: list[str]) -> str | None:
    zone = _text(source, "timezone") or _text(source, "TZ")
    if not zone:
        return None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        notes.append(f"time zone {zone!r} is unknown; left out (givbridge uses this host's zone)")
        return None
    return zone


def migrate(source: Mapping[str, Any]) -> Migration:
    """givbridge settings (in the config file's shape) for GivTCP's settings ``source``."""
    notes: list[str] = []
    settings: dict[str, Any] = {"inverters": _inverters(source, notes), "mqtt": _mqtt(source, notes)}
    if polling := _polling(source, notes):
        settings["polling"] = polling
    level = _text(source, "Log_Level")
    if level:
        if level.lower() in _LOG_LEVELS:
            settings["log"] = {"level": _LOG_LEVELS[level.lower()]}
        else:
            notes.append(f"Log_Level {level!r} has no givbridge equivalent; the level stays info")
    if zone := _timezone(source, notes):
        settings["timezone"] = zone
    if evc := _evc(source, notes):
        settings["evc"] = evc
    if tariffs := _tariffs(source, notes):
        settings["tariffs"] = tariffs
    _not_migrated(source, notes)
    _check(settings)
    return Migration(settings, notes)


def _check(settings: dict[str, Any]) -> None:
    try:
        Settings.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise MigrationError(f"the migrated settings are not valid: {problems}") from None


def read_allsettings(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MigrationError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MigrationError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MigrationError(f"{path} holds a {type(data).__name__}, not GivTCP's settings object")
    if not any(key in data for key in ("invertorIP_1", "MQTT_Address", "self_run_timer")):
        raise MigrationError(f"{path} does not look like GivTCP's allsettings.json (no invertorIP_1, MQTT_Address)")
    return data


def render(migration: Migration, source: Path, when: datetime | None = None) -> str:
    stamp = (when or datetime.now().astimezone()).isoformat(timespec="seconds")
    header = [
        f"# givbridge settings migrated from GivTCP's {source} at {stamp}.",
        "# Every key is explained in deploy/config.example.yaml; see docs/migrating-from-givtcp.md.",
    ]
    header += [f"# note: {note}" for note in migration.notes]
    body = yaml.safe_dump(migration.settings, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "\n".join(header) + "\n" + body


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("allsettings", type=Path, help="GivTCP's allsettings.json (in /config/GivTCP/ on HA)")
    parser.add_argument("--output", "-o", type=Path, help="write the settings here (default: print them)")
    parser.add_argument("--force", action="store_true", help="replace --output if it exists")


async def main(args: argparse.Namespace) -> int:
    # Small local files: reading them on the loop is fine in a one-shot command.
    migration = migrate(read_allsettings(args.allsettings))
    text = render(migration, args.allsettings)
    for note in migration.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output is None:
        print(text, end="")
        return 0
    if args.output.exists() and not args.force:
        raise MigrationError(f"{args.output} exists; choose another --output or add --force")
    # The file holds the MQTT password: readable by its owner only, from the moment it exists.
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when --force replaced a file that others could read
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {args.output}; check it, then: givbridge run --config {args.output}", file=sys.stderr)
    return 0
