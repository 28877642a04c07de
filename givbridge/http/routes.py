"""The shim's ASGI applications (Starlette): one route per command name, generated from the registry.

Every command request goes the same way as an MQTT control message: the
:class:`~givbridge.commands.CommandExecutor` runs it to one
:class:`~givbridge.commands.CommandResult`, which already knows its HTTP status (200 ok, 400
invalid payload, 404 unknown inverter, 409 unsupported on the model, 423 read-only, 502 the
inverter did not confirm, 504 unreachable). The body is that result document plus GivTCP's
``result`` text for its older clients; ``readData``, ``getCache`` and ``runAll`` answer with
GivTCP's JSON tree itself, which is what Predbat parses. Before the executor, the shim adds
only what HTTP needs: refusing web pages (:mod:`~givbridge.http.browser`: 403 for a foreign
origin, 415 for a body that is not JSON), permission (:mod:`~givbridge.commands.access`), the
inverter number, and the body size cap (413).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from givbridge.clock import Clock
from givbridge.commands import docs
from givbridge.commands.access import AccessPolicy, Caller, Refusal, Transport, is_data_read, needs_permission
from givbridge.commands.executor import CommandExecutor
from givbridge.commands.registry import REGISTRY, Registry
from givbridge.commands.results import CommandFailed, CommandResult, ErrorCode
from givbridge.commands.spec import Command
from givbridge.config import Settings
from givbridge.devices.core import DeviceRunner
from givbridge.health import HealthWriter, evaluate
from givbridge.http import browser, openapi
from givbridge.http.browser import JSON_TYPE, BrowserGuard, body_type_refusal, media_type
from givbridge.http.endpoints import (
    INVERTER_PARAM,
    REST_PREFIX,
    Endpoint,
    http_method,
    inverter_endpoints,
    main_endpoints,
)
from givbridge.log import get_logger
from givbridge.metrics import CONTENT_TYPE, BridgeMetrics

log = get_logger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

#: Prometheus metrics (metrics.enabled): not a GivTCP path, so not in the endpoint table or /api.
METRICS_PATH = "/metrics"


@dataclass(frozen=True, slots=True)
class Services:
    """What the shim serves from: the same executor, runners and health facts as the rest of the bridge."""

    settings: Settings
    executor: CommandExecutor
    runners: Sequence[DeviceRunner]
    health: HealthWriter
    clock: Clock
    registry: Registry = REGISTRY
    metrics: BridgeMetrics | None = None  # served at /metrics on the main port (metrics.enabled)


class BodyTooLarge(Exception):
    pass


class Answer(JSONResponse):
    """JSON that is always valid JSON: a non-finite float (which JSON cannot carry) becomes null."""

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
        except ValueError:
            text = json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":"), default=str)
        return text.encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def result_document(result: CommandResult) -> dict[str, Any]:
    """The MQTT result document plus GivTCP's ``result`` text."""
    document = result.document()
    document["result"] = f"{result.command} was a success" if result.error is None else f"Error: {result.error.message}"
    return document


def error_document(code: str, message: str, command: str | None = None) -> dict[str, Any]:
    """A refusal that happened before any command ran (permission, size, routing), in the result's shape."""
    return {
        "status": "error",
        "command": command,
        "transaction": None,
        "error": {"code": code, "message": message},
        "result": f"Error: {message}",
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it) one that says or turns out to be over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


class Handlers:
    """The request handlers of one shim; shared by its faces."""

    def __init__(self, services: Services) -> None:
        self.services = services
        http = services.settings.http
        self.policy = AccessPolicy(http.token, http.trusted_networks)
        self.browsers = BrowserGuard(http.cors_origins)
        self.max_body = http.max_body_bytes
        self.api_document = _api_document(services.registry)

    # ------------------------------------------------------------------ commands

    def command(self, endpoint: Endpoint, inverter: int | None) -> Handler:
        """The handler of one command route; ``inverter`` is fixed on an inverter's own port."""
        command = endpoint.command
        assert command is not None

        async def handle(request: Request) -> Response:
            number = request.path_params.get(INVERTER_PARAM, inverter)
            return await self.run(request, command, endpoint.name, number)

        return handle

    async def run(self, request: Request, command: Command, name: str, number: int | None) -> Response:
        changes = request.method == "POST"  # every command served by POST changes something
        if changes and (refused := self.browsers.check(*_browser_headers(request))) is not None:
            return self._refusal(request, refused, name)
        if needs_permission(command) and (denied := self._refused(request)) is not None:
            return self._refusal(request, denied, name)
        content_type = request.headers.get("content-type")
        if changes and media_type(content_type) and (refused := body_type_refusal(content_type, has_body=True)):
            return self._refusal(request, refused, name)  # a declared type that cannot do: refused unread
        serial: str | None = None
        if number is not None:
            runners = self.services.runners
            if not 1 <= number <= len(runners):
                configured = f"1 to {len(runners)}" if runners else "none"
                failure = CommandFailed(
                    ErrorCode.UNKNOWN_INVERTER, f"no inverter {number}: inverters configured are {configured}"
                )
                return self._result(command, CommandResult.failure(name, None, None, failure))
            runner = runners[number - 1]
            if command.target == "inverter":
                serial = runner.serial
                if serial is None:
                    failure = CommandFailed(
                        ErrorCode.UNREACHABLE, f"inverter {number} ({runner.label}) has not been read yet"
                    )
                    return self._result(command, CommandResult.failure(name, None, None, failure))
        body: bytes | None = None
        if changes:
            try:
                body = await read_body(request, self.max_body)
            except BodyTooLarge:
                message = f"the body is larger than http.max_body_bytes ({self.max_body} bytes)"
                log.warning("HTTP body too large", path=request.url.path, client=_client(request))
                return Answer(error_document("payload_too_large", message, name), status_code=413)
            except ClientDisconnect:  # gone (or closed for idling) before the body arrived: nothing to run
                log.info("HTTP client left before its body arrived", path=request.url.path, client=_client(request))
                return Response(status_code=400)
            if (refused := body_type_refusal(content_type, has_body=bool(body.strip()))) is not None:
                return self._refusal(request, refused, name)
        result = await self.services.executor.execute(name, body, serial=serial, caller=_caller(request))
        return self._result(command, result)

    def _result(self, command: Command, result: CommandResult) -> Response:
        if result.ok and is_data_read(command):
            return Answer(dict(result.data or {}), status_code=result.http_status)
        retry_after = result.error.details.get("retry_after") if result.error is not None else None
        headers = {"Retry-After": str(retry_after)} if isinstance(retry_after, int) else None
        return Answer(result_document(result), status_code=result.http_status, headers=headers)

    def not_routed(self) -> Handler:
        """Any other name where a command would be: a wrong method, or no such command."""

        async def handle(request: Request) -> Response:
            name = request.path_params["name"]
            command = self.services.registry.get(name)
            if command is not None:
                method = http_method(command)
                message = f"{name} takes {method}, not {request.method}"
                if method == "POST":
                    message += ": it changes something, and a GET never does"
                return Answer(
                    error_document("method_not_allowed", message, name),
                    status_code=405,
                    headers={"Allow": method},
                )
            result = await self.services.executor.execute(name, None, caller=_caller(request))
            return Answer(result_document(result), status_code=result.http_status)

        return handle

    # ------------------------------------------------------------------ the rest

    async def settings(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return self._refusal(request, refused, None)
        return Answer(self.services.settings.summary())

    async def health(self, request: Request) -> Response:
        document = self.services.health.document()
        verdict = evaluate(document, self.services.clock.now())
        return Answer(
            {"healthy": verdict.healthy, "reason": verdict.reason, **document},
            status_code=200 if verdict.healthy else 503,
        )

    async def api(self, request: Request) -> Response:
        return Answer(self.api_document)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"nothing at {request.url.path}; commands are at {REST_PREFIX}<N>/<command>, listed at /api"
            return Answer(error_document("not_found", message), status_code=404)
        return Answer(error_document("http_error", str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    def _refused(self, request: Request) -> Refusal | None:
        return self.policy.check(_client(request), request.headers.get("authorization"))

    def _refusal(self, request: Request, refused: Refusal | browser.Refusal, name: str | None) -> Response:
        log.warning("HTTP request refused", path=request.url.path, client=_client(request), why=refused.message)
        headers = {"WWW-Authenticate": 'Bearer realm="givbridge"'} if refused.status == 401 else None
        return Answer(error_document(refused.code, refused.message, name), status_code=refused.status, headers=headers)


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _caller(request: Request) -> Caller:
    return Caller(Transport.HTTP, peer=_client(request), authorization=request.headers.get("authorization"))


def _browser_headers(request: Request) -> tuple[str | None, str | None]:
    return request.headers.get("origin"), request.headers.get("sec-fetch-site")


def _api_document(registry: Registry) -> dict[str, Any]:
    """GivTCP's api.json shape (``api``, ``commands`` by name with url, method, usage, payload), correct."""
    commands: dict[str, Any] = {}
    for entry, command in zip(docs.listing(registry), registry, strict=True):
        commands[command.name] = {
            "url": f"/{command.name}",
            "usage": command.summary,
            "needs_permission": needs_permission(command),
            **entry,
            "method": http_method(command),
        }
    return {
        "api": f"givbridge's GivTCP-compatible REST API. Inverter N (from 1, in the configured order) is at "
        f"{REST_PREFIX}N<url> on the main port and at <url> on its own port when http.per_inverter_ports is on. "
        "Only reads are GET; every change is a POST whose body, if any, is sent as "
        f"'Content-Type: {JSON_TYPE}': a JSON object (values as strings or numbers) or, for a one-value "
        "command, the value alone. A web page may only change something if its origin is in "
        "http.cors_origins. Answers come after the inverter has been read back; the status code says how it went.",
        "commands": commands,
    }


def build_app(services: Services, handlers: Handlers, *, inverter: int | None = None) -> Starlette:
    """The ASGI app of the main port (``inverter`` None) or of inverter ``inverter``'s own port."""
    endpoints = main_endpoints(services.registry) if inverter is None else inverter_endpoints(services.registry)
    title = "givbridge REST" if inverter is None else f"givbridge REST, inverter {inverter}"
    schema: list[bytes] = []  # built on first request (a few hundred kB), then kept as text

    async def openapi_json(request: Request) -> Response:
        if not schema:
            document = openapi.document(endpoints, inverters=len(services.runners), title=title)
            schema.append(bytes(Answer(document).body))
        return Response(schema[0], media_type="application/json")

    fixed = {"health": handlers.health, "api": handlers.api, "settings": handlers.settings, "openapi": openapi_json}
    routes = [
        Route(
            e.path,
            handlers.command(e, inverter) if e.kind == "command" else fixed[e.kind],
            methods=[e.method],
        )
        for e in endpoints
    ]
    if services.metrics is not None and inverter is None:
        routes.append(metrics_route(services.metrics))
    catch_all = f"{REST_PREFIX}{{{INVERTER_PARAM}:int}}/{{name}}" if inverter is None else "/{name}"
    routes.append(Route(catch_all, handlers.not_routed(), methods=["GET", "POST"]))
    # CORS lets the listed origins' pages read answers and pass the preflight a JSON POST needs;
    # Handlers.run refuses changes from every other origin (the middleware alone would only hide
    # the answer from such a page, after the change was made).
    cors = services.settings.http.cors_origins
    middleware = (
        [
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        ]
        if cors
        else []
    )
    return Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: handlers.http_error})


def metrics_route(metrics: BridgeMetrics) -> Route:
    """``GET /metrics``: a read, open like ``/health`` (who can connect is the listening address's business)."""

    async def serve(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return Route(METRICS_PATH, serve, methods=["GET"])


def build_metrics_app(metrics: BridgeMetrics) -> Starlette:
    """The metrics' own listener (``metrics.enabled`` without the shim): ``/metrics`` and nothing else."""
    return Starlette(routes=[metrics_route(metrics)])
