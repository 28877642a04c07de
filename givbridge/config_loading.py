"""Building the settings from every source, and saying clearly what is wrong with them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from givbridge.config import Settings
from givbridge.config_checks import ConfigError
from givbridge.config_sources import ADDON_OPTIONS, FILE_SETTINGS, deep_merge, read_config_file


def _explain(exc: ValidationError, sources: str) -> str:
    lines = [f"invalid configuration ({sources}):"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting; check the spelling against deploy/config.example.yaml"
        elif error["type"] == "missing":
            message = "required but not given"
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)


#: The document the ``settings`` command saves in the data dir (``settings.json``): a whole
#: configuration, applied at the next start above the config files, beneath env and flags.
SAVED_SETTINGS = "settings"


def saved_settings(data_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The settings the ``settings`` command saved in ``data_dir`` ({} when there are none)."""
    from givbridge.store import JsonStore

    store = JsonStore(data_dir)
    saved = store.load(SAVED_SETTINGS)
    saved.pop("data_dir", None)  # it lives in the data dir found without it
    return store.path(SAVED_SETTINGS), saved


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    addon_options: Path = ADDON_OPTIONS,
    addon_defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from every source, in priority order: flags, environment, the
    settings saved by the ``settings`` command, the ``--config`` file, the add-on's options.

    ``addon_defaults`` are settings the Home Assistant add-on learnt from the Supervisor (its
    MQTT broker, see :mod:`givbridge.addon`): the lowest source, beneath the add-on's options.
    """
    if config_file is None and os.environ.get("GIVBRIDGE_CONFIG"):
        config_file = Path(os.environ["GIVBRIDGE_CONFIG"])
    files: dict[str, Any] = {}
    used = []
    if addon_defaults:
        files = deep_merge(files, addon_defaults)
        used.append("Supervisor")
    if addon_options.is_file():
        files = deep_merge(files, read_config_file(addon_options))
        used.append(str(addon_options))
    if config_file is not None:
        files = deep_merge(files, read_config_file(config_file))
        used.append(str(config_file))
    if any(key.startswith("GIVBRIDGE_") and key != "GIVBRIDGE_CONFIG" for key in os.environ):
        used.append("environment")
    if overrides:
        used.append("command line")
    token = FILE_SETTINGS.set(files)
    try:
        settings = Settings(**(overrides or {}))
        path, saved = saved_settings(settings.data_dir)
        if not saved:
            return settings
        # What was saved through the settings command (REST /settings or MQTT) comes after
        # the files: it is the user's latest word. Environment and flags still win.
        used.insert(len(used) - ("command line" in used) - ("environment" in used), str(path))
        FILE_SETTINGS.set(deep_merge(files, saved))
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_explain(exc, ", ".join(used) or "defaults")) from None
    except SettingsError as exc:  # e.g. an environment variable holding broken JSON
        raise ConfigError(f"invalid configuration: {exc}") from None
    finally:
        FILE_SETTINGS.reset(token)
