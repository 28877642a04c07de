"""Keeping the shim answering when clients open connections and send nothing.

uvicorn closes a connection only after a response, when keep-alive runs out: one that never
sends a request, or stops halfway through one, stays open for ever. And its ``limit_concurrency``
counts such connections, so a few dozen idle sockets made it answer every request 503. The shim
instead serves with :class:`GuardedH11`, uvicorn's HTTP/1.1 protocol plus two rules:

* **A deadline for each request.** From the moment a connection opens, or its last response
  ends, the client has ``http.idle_timeout`` seconds to send a whole request (head and body);
  otherwise the connection is closed. Sending a byte now and then does not extend it. Once a
  request is in, the deadline stops: a command may take as long as the inverter needs.
* **A bound on connections** (:class:`ConnectionGuard`): at most
  ``http.max_connections_per_client`` per client address and :data:`MAX_CONNECTIONS` in all. A
  connection over either bound closes the *idle* connection that has waited longest (of that
  client, or of anyone), so whoever holds idle sockets cannot lock out a client that sends its
  request at once, as Predbat and watchdogs do. A connection whose request is being answered is
  never closed for this; when every one is, the new connection is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from givbridge.commands.access import client_address
from givbridge.log import get_logger

log = get_logger(__name__)

#: Open connections in all, over every port, beyond which idle ones make way for new ones.
MAX_CONNECTIONS = 128


class Idler(Protocol):
    """A connection as the guard sees it: it can be closed for idling."""

    def evict(self) -> None: ...


class ConnectionGuard:
    """Counts open connections per client, and which are idle (waiting for a request), oldest first.

    Pure bookkeeping: a connection reports :meth:`opened`, :meth:`idle`, :meth:`busy` and
    :meth:`closed`; the guard answers whether a new one may stay and evicts idle ones to make room.
    """

    def __init__(self, *, per_client: int, total: int = MAX_CONNECTIONS) -> None:
        self.per_client = per_client
        self.total = total
        self._clients: dict[Idler, str] = {}  # open connections and their client address
        self._per_client: Counter[str] = Counter()
        self._idle: dict[Idler, None] = {}  # insertion order: longest idle first
        self.evicted = 0  # idle connections closed to make room (for the log and the tests)

    def __len__(self) -> int:
        return len(self._clients)

    def of(self, client: str) -> int:
        """Open connections from ``client``."""
        return self._per_client[client]

    def opened(self, connection: Idler, client: str) -> bool:
        """Count a new connection from ``client``, making room for it; False: close it, there is none."""
        if self._per_client[client] >= self.per_client and not self._evict(lambda c: self._clients[c] == client):
            return False
        if len(self._clients) >= self.total and not self._evict(lambda c: True):
            return False
        self._clients[connection] = client
        self._per_client[client] += 1
        self._idle[connection] = None
        return True

    def idle(self, connection: Idler) -> None:
        """``connection`` waits for a request (again): it may now be evicted, after those idle longer."""
        if connection in self._clients:
            self._idle.pop(connection, None)
            self._idle[connection] = None

    def busy(self, connection: Idler) -> None:
        """``connection`` has a request in: it is not evicted until it is idle again."""
        self._idle.pop(connection, None)

    def closed(self, connection: Idler) -> None:
        client = self._clients.pop(connection, None)
        self._idle.pop(connection, None)
        if client is not None:
            self._per_client[client] -= 1
            if not self._per_client[client]:
                del self._per_client[client]

    def _evict(self, chosen: Callable[[Idler], bool]) -> bool:
        """Close the longest-idle connection for which ``chosen`` holds; False when there is none."""
        victim = next((c for c in self._idle if chosen(c)), None)
        if victim is None:
            return False
        self.closed(victim)  # counted out now: its transport reports the loss only later
        self.evicted += 1
        victim.evict()
        return True


class GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline per request and a bound on connections.

    Use :meth:`bound_to` for the class of one server: uvicorn builds the protocol itself, so the
    guard and the timeout travel as class attributes.
    """

    guard: ClassVar[ConnectionGuard]
    idle_timeout: ClassVar[float]

    @classmethod
    def bound_to(cls, guard: ConnectionGuard, idle_timeout: float) -> type[GuardedH11]:
        return type(cls.__name__, (cls,), {"guard": guard, "idle_timeout": idle_timeout})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else None
        client = str(client_address(host) or host or "unknown")  # ::ffff:a.b.c.d counts as a.b.c.d
        if not self.guard.opened(self, client):
            log.warning("HTTP connection refused: every connection is busy", client=client)
            transport.abort()
            return
        self._admitted = True
        super().connection_made(transport)
        self._review()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return  # refused at once: uvicorn never knew it
        self._stop_deadline()
        self.guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        super().data_received(data)
        self._review()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._review()

    def evict(self) -> None:
        log.debug("HTTP connection closed to make room for another", client=self.client and self.client[0])
        self._close()

    def _review(self) -> None:
        """Start the deadline when the connection waits for a request; stop it once one is in."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            self._stop_deadline()  # the whole request is in: answering it may take as long as it takes
            self.guard.busy(self)
        elif self._deadline is None:  # a deadline runs from when waiting began, not from the last byte
            self._deadline = self.loop.call_later(self.idle_timeout, self._expired)
            self.guard.idle(self)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        log.debug("HTTP connection closed: no whole request in time", client=self.client and self.client[0])
        self._close()

    def _close(self) -> None:
        self._stop_deadline()
        if self.transport.is_closing():
            return
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()
