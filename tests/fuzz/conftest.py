"""Property-based fuzzing (``pytest -m fuzz``; ``HYPOTHESIS_PROFILE=nightly`` for 10,000 cases each)."""

from __future__ import annotations

import pytest

from tests.reliability.invariants import pin_log_levels


@pytest.fixture(autouse=True)
def _sane_log_levels(caplog: pytest.LogCaptureFixture) -> None:
    """Thousands of cases must not run with a DEBUG level an earlier test left behind."""
    pin_log_levels(caplog)
