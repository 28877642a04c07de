"""Exponential reconnect delay with jitter, reset after a success."""

from __future__ import annotations

import random


class Backoff:
    """Exponential reconnect delay with jitter, reset after a success."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next(self) -> float:
        base = min(self.maximum, self.minimum * 2.0**self._attempt)
        self._attempt += 1
        # Up to 20 % jitter so several bridges restarting together do not hit a dongle in step.
        return min(self.maximum, base * (1 + 0.2 * self._rng.random()))
