"""Connection and polling health of one device: the counters behind availability and diagnostics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class Health:
    """Connection and polling health of one device, published as diagnostics."""

    connected: bool = False
    available: bool = False
    consecutive_failures: int = 0
    polls_ok: int = 0
    polls_partial: int = 0
    polls_failed: int = 0
    reconnects: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    last_poll_seconds: float | None = None  # wall time of the last successful poll
    last_poll_full: bool = False  # whether it also read the settings banks

    def succeeded(self, at: datetime, *, partial: bool = False) -> bool:
        """Count a successful poll; True when it makes the device available again."""
        if partial:
            self.polls_partial += 1
        else:
            self.polls_ok += 1
        self.consecutive_failures = 0
        self.last_error = None
        self.last_success = at
        became = not self.available
        self.available = True
        return became

    def failed(self, reason: str, offline_after: int) -> bool:
        """Count a failed poll; True when it makes the device unavailable (``offline_after`` in a row)."""
        self.polls_failed += 1
        self.consecutive_failures += 1
        self.last_error = reason
        went = self.available and self.consecutive_failures >= offline_after
        if went:
            self.available = False
        return went
