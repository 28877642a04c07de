"""Fixtures of the ``homeassistant`` family: the real Home Assistant core it runs against.

``ha_core_python``  the core's interpreter from ``scripts/homeassistant-env``. Without that
                    environment (or without mosquitto) the family is skipped locally, naming the
                    command that installs it; in CI (``CI=true``) it fails instead: a missing
                    prerequisite is never a silent skip there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.brokers import MOSQUITTO
from tests.homeassistant.hass import HA_VERSION, INSTALLER, ha_env_dir, ha_python


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI runs the homeassistant family: {INSTALLER} must run first)", pytrace=False)
    pytest.skip(f"{reason}; run {INSTALLER} to install it")


@pytest.fixture(scope="session")
def ha_core_python() -> Path:
    """The Python of the pinned Home Assistant core's environment."""
    if MOSQUITTO is None:
        _missing("mosquitto binary not installed (apt-get install mosquitto)")
    python = ha_python()
    if python is None:
        _missing(f"no Home Assistant {HA_VERSION} environment at {ha_env_dir()}")
    assert python is not None
    return python
