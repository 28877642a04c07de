"""The broker connection as the event loop sees it, without paho.

Up or down; every connection attempt counted and its outcome logged (the first failure since
the last success as a warning, the rest as debug lines); and after every CONNACK the session:
the subscriptions sent again and acknowledged, then the ``on_connect`` callbacks one after
another. A connection that drops cancels the session; the next CONNACK starts it over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from givbridge.clock import Clock
from givbridge.config import MqttSettings
from givbridge.mqtt.reconnect import ConnectionRecord
from givbridge.mqtt.subscriptions import callable_name

log = structlog.stdlib.get_logger(__name__)

ConnectCallback = Callable[[], Awaitable[None]]
"""Awaited in the event loop after every successful (re)connect, once subscriptions are acknowledged."""


class BrokerSession:
    """Connection state and the on_connect callbacks; touched in the event loop only (``stopping``
    is also read by paho's thread: a plain bool, safe under the GIL)."""

    def __init__(self, settings: MqttSettings, clock: Clock, resubscribe: Callable[[], Awaitable[bool]]) -> None:
        self._settings = settings
        self._clock = clock
        #: Sends every subscription again; True once the broker has acknowledged them.
        self._resubscribe = resubscribe
        self.connected = False
        self.stopping = False
        self.record = ConnectionRecord()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._callbacks: list[ConnectCallback] = []

    def add_callback(self, callback: ConnectCallback) -> None:
        self._callbacks.append(callback)

    async def wait_ready(self, timeout: float | None) -> bool:  # noqa: ASYNC109 (a bounded wait is the point)
        """Wait until connected and subscribed; False if that did not happen within ``timeout`` seconds."""
        if self._ready.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def attempt_began(self) -> None:
        self.record.attempt_open = True

    def up(self, session_present: bool) -> None:
        """A CONNACK accepted the connection: start the session."""
        self.record.attempt_open = False
        if self.stopping:
            return
        self.connected = True
        self.record.succeeded(self._clock.now())
        s = self._settings
        log.info(
            "mqtt connected",
            host=s.host,
            port=s.port,
            client_id=s.client_id,
            reconnect=self.record.connects > 1,
            session_present=session_present,
        )
        self.cancel()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-on-connect")

    def refused(self, reason: str) -> None:
        self._attempt_failed(
            "mqtt broker refused the connection; retrying in the background",
            reason=reason,
            username=self._settings.username,
        )

    def unreachable(self, reason: str = "unreachable") -> None:
        self._attempt_failed("mqtt broker unreachable; retrying in the background", reason=reason)

    def _attempt_failed(self, event: str, **fields: Any) -> None:
        """Count a failed connection attempt; warn on the first since the last success, then debug."""
        self.record.failed()
        if self.stopping:
            return
        level = self.record.failure_log_level()
        log.log(
            level,
            event,
            host=self._settings.host,
            port=self._settings.port,
            attempts=self.record.connect_failures,
            **fields,
        )

    def lost(self, reason: str, from_broker: bool) -> None:
        """The connection closed (or an attempt ended before its CONNACK)."""
        was_connected = self.connected
        self.set_down()
        if self.record.attempt_open:
            # Closed before any CONNACK: e.g. with TLS 1.3 a broker that rejects the client
            # certificate only says so after the client's side of the handshake completed.
            self.unreachable(f"connection closed before CONNACK ({reason})")
        elif was_connected and not self.stopping:
            log.warning("mqtt connection lost; reconnecting in the background", reason=reason, from_broker=from_broker)

    def set_down(self) -> None:
        self.connected = False
        self.record.connected_since = None
        self._ready.clear()
        self.cancel()

    def cancel(self) -> None:
        """Cancel the running session, if any."""
        task = self._task
        # Not when stop() itself runs inside an on_connect callback: it would cancel itself.
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self._task = None

    async def _run(self) -> None:
        """After a CONNACK: resubscribe, wait for the SUBACK, then run the on_connect callbacks."""
        if not await self._resubscribe():
            return  # the connection dropped first: the next connect starts over
        self._ready.set()
        for callback in list(self._callbacks):
            try:
                await callback()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mqtt on_connect callback failed", callback=callable_name(callback))
