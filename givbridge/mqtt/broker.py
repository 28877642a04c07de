"""An embedded MQTT broker (amqtt, MQTT 3.1.1) for ``givbridge demo`` and the tests.

Not meant as the production broker (Home Assistant users run Mosquitto): it is the broker
that makes a fresh machine show live data with one command, and the in-process broker of
the test suite.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any


class PortInUse(OSError):
    """The broker's port is already taken."""


def ensure_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUse` with a helpful message if ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the broker's own listener does: connections of a previous run lingering in
        # TIME_WAIT do not make the port busy, a live listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    errno.EADDRINUSE,
                    f"port {port} on {host} is already in use (is another MQTT broker running?); "
                    "choose another with --port",
                ) from exc
            raise


class EmbeddedBroker:
    """amqtt on ``host:port`` with anonymous access; restartable (losing retained messages)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    @property
    def config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Supplying plugins replaces amqtt's defaults: no $SYS publisher, no packet logger.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (bounded start)
        """Start listening; must run inside the event loop (amqtt binds to the running loop)."""
        if self._broker is not None:
            return
        ensure_port_free(self.host, self.port)
        from amqtt.broker import Broker

        broker = Broker(self.config)
        async with asyncio.timeout(timeout):
            await broker.start()
        self._broker = broker

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (bounded stop)
        """Drop every client connection, then shut the broker down.

        amqtt 0.12.1's ``shutdown()`` alone can hang for ever on Python 3.11 when a client had
        exchanged QoS 1 messages: cancelling that session's reader task does not end it, and
        ``shutdown`` waits for it. Aborting the client sockets first lets every reader end on
        EOF, which is also what a crashing broker looks like to its clients.
        """
        broker, self._broker = self._broker, None
        if broker is None:
            return
        sessions: dict[str, Any] = getattr(broker, "_sessions", {})  # private; see docstring
        for _session, handler in list(sessions.values()):
            stream_writer = getattr(getattr(handler, "writer", None), "_writer", None)
            if stream_writer is not None:
                stream_writer.transport.abort()
        async with asyncio.timeout(timeout):
            await broker.shutdown()

    async def restart(self) -> None:
        await self.stop()
        await self.start()
