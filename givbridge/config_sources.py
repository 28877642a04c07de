"""Where settings come from besides flags and the environment: the config files.

The add-on's options file and the ``--config`` file (YAML or JSON) are read, merged over each
other and offered to the settings model as one source (:class:`FileSource`), for the
duration of one :func:`givbridge.config_loading.load_settings` call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import PydanticBaseSettingsSource

from givbridge.config_checks import ConfigError

ADDON_OPTIONS = Path("/data/options.json")


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file's settings, or a ConfigError saying why it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError(f"config file {path} is not valid {kind}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# The merged content of the config files for the load_settings() call in progress.
FILE_SETTINGS: ContextVar[dict[str, Any] | None] = ContextVar("givbridge_config_files", default=None)


class FileSource(PydanticBaseSettingsSource):
    """The add-on options file overlaid with the --config file, as one source."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (FILE_SETTINGS.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(FILE_SETTINGS.get() or {})
