"""How long a detect waits for a remembered device: from the link's measured round trip, within the settings."""

from __future__ import annotations

from givbridge.config import PollingSettings
from givbridge.devices.library import PROBE_ROUND_TRIPS, probe_patience


def test_probe_patience_follows_the_link_within_the_configured_bounds() -> None:
    polling = PollingSettings(probe_timeout=0.5, timeout=2.0)
    assert probe_patience(polling, None) == 0.5  # nothing measured: as configured
    assert probe_patience(polling, 0.1) == 0.5  # a fast link never shortens it
    assert probe_patience(polling, 0.8) == 0.8 * PROBE_ROUND_TRIPS
    assert probe_patience(polling, 5.0) == 2.0  # never longer than the wait for a device known to be there
