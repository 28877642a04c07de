"""Helpers for long-running asyncio tasks."""

from __future__ import annotations

import asyncio


def honour_cancellation() -> None:
    """Raise CancelledError if this task was asked to stop but the request got lost on the way.

    Python 3.11 lets a cancellation vanish when the awaited thing finishes in the same instant
    (``asyncio.wait_for`` returning its result; a library catching CancelledError). A runner's
    loop calls this between attempts, so stopping it never waits for a backoff and a reconnect.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
