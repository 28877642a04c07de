"""Reliability scenarios: fault injection against the whole bridge (``pytest -m reliability``)."""

from __future__ import annotations

import pytest

from tests.reliability.invariants import pin_log_levels


@pytest.fixture(autouse=True)
def _sane_log_levels(caplog: pytest.LogCaptureFixture) -> None:
    """Timed scenarios must not run with a DEBUG level an earlier test left behind."""
    pin_log_levels(caplog)
