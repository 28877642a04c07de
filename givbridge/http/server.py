"""Serving the shim: one uvicorn server in the bridge's own event loop, listening on every port.

Without the shim (``http.enabled`` false) but with ``metrics.enabled``, the same server serves
``/metrics`` alone on ``metrics.host``:``metrics.port``.

givbridge binds the sockets itself (so a port in use is a clear configuration error, and
port 0 picks a free one) and hands them to uvicorn, which routes each connection to the app of
the port it arrived on: the main port's, or an inverter's own. uvicorn is kept away from the
process's signals (:meth:`_Uvicorn.capture_signals`): SIGTERM belongs to the application,
which stops the shim first, within its shutdown budget. Connections are served by
:class:`~givbridge.http.connections.GuardedH11`, which closes idle ones and bounds how many a
client may hold, so idle sockets cannot starve ``/health`` or Predbat.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from givbridge.config_checks import ConfigError
from givbridge.http.connections import ConnectionGuard, GuardedH11
from givbridge.http.routes import METRICS_PATH, Handlers, Services, build_app, build_metrics_app
from givbridge.log import get_logger

log = get_logger(__name__)

#: Seconds a stopping server lets requests in flight finish before cancelling them.
GRACE = 0.3
#: Seconds :meth:`HttpServer.stop` waits for uvicorn before cancelling it outright.
STOP_TIMEOUT = 0.8
#: Connections the kernel may hold for us before we accept them: a burst of them is accepted in
#: order instead of being dropped and retried a second later.
BACKLOG = 512


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers, telling when it has started."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGINT/SIGTERM stop the whole application (app.run_until_signalled), which stops us

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


async def _listen(host: str, port: int, what: str, section: str = "http") -> socket.socket:
    """A listening, non-blocking socket on ``host:port`` (from the ``section`` settings), or a
    :class:`ConfigError` saying why not."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{section}.host {host!r} cannot be listened on: {exc.strerror}") from None
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"givbridge cannot listen on {host}:{port} ({what}): {exc.strerror or exc}; "
            f"choose another port in the {section} settings or stop what uses it"
        ) from None
    return sock


def _by_port(apps: dict[int, ASGIApp], default: ASGIApp) -> ASGIApp:
    """One ASGI app that hands each request to the app of the port it arrived on."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        app = apps.get(server[1], default) if server else default
        await app(scope, receive, send)

    return dispatch


class HttpServer:
    """The shim's ports, served from the application's event loop; or, when only ``metrics.enabled``
    is set, the metrics' own port (``/metrics`` alone)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.port: int | None = None  # the main port, once listening (useful with port 0)
        self.inverter_ports: list[int] = []  # inverter N's own port at index N-1
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._sockets: list[socket.socket] = []
        self.connections = ConnectionGuard(per_client=services.settings.http.max_connections_per_client)

    async def start(self) -> None:
        """Listen on every port and serve; raises :class:`ConfigError` when a port cannot be had."""
        http = self.services.settings.http
        if http.enabled:
            main_app, apps = await self._listen_shim()
        else:
            main_app, apps = await self._listen_metrics()
        assert self.port is not None
        apps[self.port] = main_app
        config = uvicorn.Config(
            _by_port(apps, main_app),
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # the client address is the TCP peer: trusted_networks must not be spoofable
            server_header=False,
            ws="none",
            # Annotated int in uvicorn but passed to asyncio.wait_for, which takes any number of seconds.
            timeout_graceful_shutdown=GRACE,  # type: ignore[arg-type]
            http=GuardedH11.bound_to(self.connections, http.idle_timeout),
            # uvicorn's own keep-alive timer, armed after each response, ends where GuardedH11's deadline
            # does (call_later takes any number of seconds). No limit_concurrency: it counts idle
            # connections too, and answered everyone 503 while a few dozen sockets sat idle.
            timeout_keep_alive=http.idle_timeout,  # type: ignore[arg-type]
        )
        server = self._server = _Uvicorn(config)
        task = self._task = asyncio.create_task(server.serve(sockets=list(self._sockets)), name="http shim")
        task.add_done_callback(self._ended)
        ready = asyncio.ensure_future(server.ready.wait())
        try:
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if task.done():
            self._close_sockets()
            task.result()  # its exception, if it failed
            raise RuntimeError("the HTTP server ended while starting")
        if not http.enabled:
            metrics = self.services.settings.metrics
            log.info("metrics listening", host=metrics.host, port=self.port, path=METRICS_PATH)
            return
        log.info(
            "HTTP shim listening",
            host=http.host,
            port=self.port,
            inverter_ports=self.inverter_ports or None,
            token=bool(http.token),
            trusted_networks=[str(n) for n in http.trusted_networks] or None,
            cors_origins=http.cors_origins or None,
            idle_timeout=http.idle_timeout,
            max_connections_per_client=http.max_connections_per_client,
        )

    async def _listen_shim(self) -> tuple[ASGIApp, dict[int, ASGIApp]]:
        """The shim's sockets: the main port's app, and each inverter port's app by port."""
        http = self.services.settings.http
        runners = self.services.runners
        handlers = Handlers(self.services)
        main_app = build_app(self.services, handlers)
        apps: dict[int, ASGIApp] = {}
        try:
            self._sockets.append(await _listen(http.host, http.port, "the main port, http.port"))
            self.port = self._sockets[0].getsockname()[1]
            if http.per_inverter_ports:
                for number in range(1, len(runners) + 1):
                    wanted = http.first_inverter_port + number - 1 if http.first_inverter_port else 0
                    if wanted > 65535:
                        raise ConfigError(f"http.first_inverter_port leaves no port for inverter {number}")
                    sock = await _listen(http.host, wanted, f"inverter {number}'s own port")
                    self._sockets.append(sock)
                    port = sock.getsockname()[1]
                    self.inverter_ports.append(port)
                    apps[port] = build_app(self.services, handlers, inverter=number)
        except BaseException:
            self._close_sockets()
            raise
        return main_app, apps

    async def _listen_metrics(self) -> tuple[ASGIApp, dict[int, ASGIApp]]:
        """The metrics' own socket, serving ``/metrics`` alone (no REST shim)."""
        settings = self.services.settings.metrics
        assert self.services.metrics is not None, "a metrics listener without metrics"
        self._sockets.append(await _listen(settings.host, settings.port, "metrics.port", section="metrics"))
        self.port = self._sockets[0].getsockname()[1]
        return build_metrics_app(self.services.metrics), {}

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:  # noqa: ASYNC109 (the shutdown budget)
        """Stop listening, let requests in flight finish for a moment, then cancel what is left."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            server.force_exit = True
            for request in list(server.server_state.tasks):  # uvicorn cancels these only at its own timeout
                request.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception as exc:  # already logged by _ended
            log.debug("HTTP server ended with an error", error=repr(exc))
        finally:
            self._close_sockets()

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("the HTTP shim stopped with an error", error=repr(exc))
        elif self._server is not None and not self._server.should_exit:
            log.error("the HTTP shim stopped by itself")

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
