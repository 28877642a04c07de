"""The Home Assistant add-on folder against the add-on rules (ecosystem.md §3, HA's apps docs).

The Supervisor is not available here, so its rules are restated as checks: required keys,
architectures, ``services`` syntax, the options schema grammar (with ``?`` for optional),
two levels of nesting at most, a schema entry and a translation for every option, defaults
that satisfy the schema, least privilege, and options that givbridge's own settings accept.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from givbridge import __version__
from givbridge.config import Settings
from givbridge.config_loading import load_settings
from givbridge.log import LOG_LEVELS

ROOT = Path(__file__).parents[2]
REPOSITORY = ROOT / "deploy" / "homeassistant"
ADDON = REPOSITORY / "givbridge"
CONFIG = yaml.safe_load((ADDON / "config.yaml").read_text())
TRANSLATIONS = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())

ARCHES = {"aarch64", "amd64"}  # the only ones the current add-on docs list
# The Supervisor's element grammar (supervisor/addons/options.py, RE_SCHEMA_ELEMENT).
SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"bool|email|url|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>\d+)?,(?P<i_max>\d+)?\))?"
    r"|float(?:\((?P<f_min>[\d.]+)?,(?P<f_max>[\d.]+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")(?P<optional>\?)?$"
)
PRIVILEGED = {
    "hassio_api",
    "homeassistant_api",
    "auth_api",
    "host_network",
    "host_pid",
    "host_ipc",
    "host_dbus",
    "host_uts",
    "privileged",
    "full_access",
    "docker_api",
    "kernel_modules",
    "devices",
    "uart",
    "usb",
    "gpio",
    "apparmor",  # leaving it out keeps the default profile on
}


def leaves(schema: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(path, element) for every typed leaf of an options schema; list items are unwrapped."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield from leaves(value, (*path, key))
    elif isinstance(schema, list):
        assert len(schema) == 1, f"{'.'.join(path)}: a list schema has one item type"
        yield from leaves(schema[0], path)
    else:
        yield path, schema


def depth(schema: Any) -> int:
    if isinstance(schema, dict):
        return 1 + max((depth(v) for v in schema.values()), default=0)
    if isinstance(schema, list):
        return max((depth(item) for item in schema), default=0)
    return 0


def validate(value: Any, element: str, where: str) -> None:
    """Does ``value`` satisfy a schema element, as the Supervisor would check it?"""
    match = SCHEMA_ELEMENT.match(element)
    assert match, f"{where}: {element!r} is not a schema type"
    kind = element.split("(")[0].rstrip("?")
    if kind == "bool":
        assert isinstance(value, bool), where
    elif kind == "int":
        assert isinstance(value, int) and not isinstance(value, bool), where
        low, high = match["i_min"], match["i_max"]
        assert (low is None or value >= int(low)) and (high is None or value <= int(high)), where
    elif kind == "float":
        assert isinstance(value, int | float) and not isinstance(value, bool), where
    elif kind == "port":
        assert isinstance(value, int) and 1 <= value <= 65535, where
    elif kind in ("str", "password", "email", "url"):
        assert isinstance(value, str), where
    elif kind == "match":
        assert isinstance(value, str) and re.match(match["match"], value), where
    elif kind == "list":
        assert value in match["list"].split("|"), where


def validate_options(options: Any, schema: Any, where: str = "options") -> None:
    """The Supervisor's check of options against the schema: types, and required keys present."""
    if isinstance(schema, dict):
        assert isinstance(options, dict), f"{where} must be a mapping"
        for key, value in options.items():
            assert key in schema, f"{where}.{key} has no schema entry"
            validate_options(value, schema[key], f"{where}.{key}")
        for key, element in schema.items():
            if isinstance(element, str) and not element.endswith("?"):
                assert key in options, f"{where}.{key} is required but has no default"
    elif isinstance(schema, list):
        assert isinstance(options, list), f"{where} must be a list"
        for index, item in enumerate(options):
            validate_options(item, schema[0], f"{where}[{index}]")
    else:
        validate(options, schema, where)


# ---------------------------------------------------------------------------- manifest


def test_required_keys_and_version() -> None:
    for key in ("name", "version", "slug", "description", "arch"):
        assert CONFIG.get(key), f"config.yaml lacks {key}"
    assert CONFIG["version"] == __version__
    assert re.fullmatch(r"[a-z0-9_]+", CONFIG["slug"])
    assert CONFIG["slug"] == ADDON.name
    assert CONFIG["url"].startswith("https://")


def test_architectures() -> None:
    assert set(CONFIG["arch"]) == ARCHES


def test_lifecycle() -> None:
    assert CONFIG["startup"] == "application"
    assert CONFIG["boot"] == "auto"
    assert CONFIG["init"] is False  # s6-overlay in the base image is PID 1


def test_services_syntax_and_mqtt_want() -> None:
    for service in CONFIG["services"]:
        assert re.fullmatch(r"[a-z]+:(provide|want|need)", service), service
    assert CONFIG["services"] == ["mqtt:want"]


def test_least_privilege() -> None:
    assert not PRIVILEGED & set(CONFIG), PRIVILEGED & set(CONFIG)
    assert "map" not in CONFIG  # /data is always there; nothing else is needed
    assert "ingress" not in CONFIG and "watchdog" not in CONFIG  # the HTTP shim is optional


def test_the_shim_port_is_unpublished_and_described() -> None:
    assert CONFIG["ports"] == {"8099/tcp": None}
    assert set(CONFIG["ports_description"]) == {"8099/tcp"}
    assert set(TRANSLATIONS["network"]) == {"8099/tcp"}


def test_no_build_yaml() -> None:
    assert not (ADDON / "build.yaml").exists()  # retired: FROM and labels are in the Dockerfile


def test_repository_file() -> None:
    repository = yaml.safe_load((REPOSITORY / "repository.yaml").read_text())
    assert repository["name"]
    assert repository["url"] == CONFIG["url"]


def test_only_the_addon_file_is_named_config_yaml() -> None:
    # The Supervisor searches a repository recursively for config.yaml.
    skip = {".git", ".venv", "node_modules", "build", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    found = []
    for directory, subdirs, files in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if d not in skip and not d.endswith(".egg-info")]
        found += [Path(directory, name).relative_to(ROOT) for name in files if name in ("config.yaml", "config.yml")]
    assert found == [Path("deploy/homeassistant/givbridge/config.yaml")]


# ---------------------------------------------------------------------------- options and schema


def test_schema_elements_are_valid_types() -> None:
    for path, element in leaves(CONFIG["schema"]):
        assert isinstance(element, str) and SCHEMA_ELEMENT.match(element), f"{'.'.join(path)}: {element!r}"


def test_nesting_is_at_most_two_levels() -> None:
    assert depth(CONFIG["schema"]) <= 2
    assert depth(CONFIG["options"]) <= 2


def test_every_option_has_a_schema_entry_and_the_defaults_satisfy_it() -> None:
    validate_options(CONFIG["options"], CONFIG["schema"])


def test_optional_entries_have_no_default() -> None:
    # A `?` element with a default becomes required in the Supervisor.
    for path, element in leaves(CONFIG["schema"]):
        if element.endswith("?"):
            node: Any = CONFIG["options"]
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            assert node is None, f"{'.'.join(path)} is optional but has a default"


def test_every_schema_entry_has_a_translation() -> None:
    configuration = TRANSLATIONS["configuration"]
    for key, element in CONFIG["schema"].items():
        entry = configuration.get(key)
        assert entry and entry.get("name") and entry.get("description"), key
        nested = element[0] if isinstance(element, list) else element
        if isinstance(nested, dict):
            fields = entry.get("fields", {})
            assert set(fields) == set(nested), f"{key}: translated fields {set(fields)} != {set(nested)}"
            for field, text in fields.items():
                assert text.get("name") and text.get("description"), f"{key}.{field}"
    assert set(configuration) == set(CONFIG["schema"])


def full_options() -> dict[str, Any]:
    """Every option set, as a user might fill them in."""
    return {
        "inverters": [
            {"host": "192.0.2.10", "port": 8899, "serial": "SA2314G123", "prefix": "givtcp", "follow_serial": True},
            {"host": "192.0.2.11"},
        ],
        "mqtt": {"host": "broker.lan", "port": 1884, "username": "givbridge", "password": "secret"},
        "polling": {"poll_interval": 20, "settings_interval": 120},
        "http": {
            "enabled": True,
            "token": "a-long-token",
            "trusted_networks": ["172.30.33.0/24"],
            "per_inverter_ports": True,
        },
        "log": {"level": "debug"},
    }


@pytest.mark.parametrize("options", [CONFIG["options"], full_options()], ids=["defaults", "everything"])
def test_the_options_are_givbridge_settings(tmp_path: Path, options: dict[str, Any]) -> None:
    validate_options(options, CONFIG["schema"])
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    settings = load_settings(addon_options=path)
    assert len(settings.inverters) == len(options["inverters"])


def test_every_schema_leaf_is_a_settings_field() -> None:
    for path, _element in leaves(CONFIG["schema"]):
        model: Any = Settings
        for key in path:
            field = model.model_fields.get(key)
            assert field is not None, f"{'.'.join(path)} is not a givbridge setting"
            annotation = field.annotation
            inner = getattr(annotation, "__args__", (annotation,))
            model = next((a for a in (annotation, *inner) if hasattr(a, "model_fields")), None)
            if model is None:
                break


def test_the_log_level_choice_is_givbridge_s_vocabulary() -> None:
    assert CONFIG["schema"]["log"]["level"] == f"list({'|'.join(LOG_LEVELS)})"


@pytest.mark.parametrize(
    ("serial", "ok"), [("SA2314G123", True), ("EMS2231001", True), ("sa2314g123", False), ("SA2314G12", False)]
)
def test_schema_serial_pattern_matches_the_settings(serial: str, ok: bool) -> None:
    element = CONFIG["schema"]["inverters"][0]["serial"]
    pattern = SCHEMA_ELEMENT.match(element)["match"]  # type: ignore[index]
    assert bool(re.match(pattern, serial)) is ok
    # What the Supervisor lets through, givbridge accepts (it upper-cases; the schema asks for upper case).
    if ok:
        Settings.model_validate({"inverters": [{"host": "192.0.2.1", "serial": serial}]})


# ---------------------------------------------------------------------------- image


DOCKERFILE = (ADDON / "Dockerfile").read_text()


def test_dockerfile_names_its_base_and_labels() -> None:
    assert "BUILD_FROM" not in DOCKERFILE
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert bases and all(b.startswith("ghcr.io/home-assistant/base-python:") for b in bases)
    for label in ('io.hass.version="${BUILD_VERSION}"', 'io.hass.type="app"', 'io.hass.arch="aarch64|amd64"'):
        assert label in DOCKERFILE
    assert "ARG BUILD_VERSION" in DOCKERFILE
    assert re.search(r"^HEALTHCHECK .*givbridge.*health", DOCKERFILE, re.MULTILINE)
    assert 'CMD ["/run.sh"]' in DOCKERFILE


def test_dockerfile_installs_the_release_of_this_version() -> None:
    assert "ARG GIVBRIDGE_REF=v${BUILD_VERSION}" in DOCKERFILE
    assert f"ARG GIVBRIDGE_REPO={CONFIG['url']}" in DOCKERFILE


def test_run_script() -> None:
    script = ADDON / "run.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/with-contenv ")  # keeps SUPERVISOR_TOKEN in the environment
    assert text.rstrip().endswith("exec givbridge run")


def test_docs_and_changelog_exist() -> None:
    assert f"## {__version__}" in (ADDON / "CHANGELOG.md").read_text()
    docs = (ADDON / "DOCS.md").read_text()
    for option in CONFIG["schema"]:
        assert f"`{option}" in docs or f"{option}:" in docs, f"DOCS.md does not mention {option}"
