"""The OpenAPI 3.1 document of one face of the shim, generated from its route table and the registry.

Request bodies are the commands' accepted inputs (:func:`givbridge.commands.docs.input_schema`:
JSON objects with GivTCP's keys, values as strings or numbers, or for commands that take one
value, that value alone), always sent as ``application/json``: other types are refused (415)
because web pages can send them without a CORS preflight. Responses list every status the handler can answer with, so
a client (or a fuzzer) can tell a documented refusal from a fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from givbridge import __version__
from givbridge.commands import docs
from givbridge.commands.access import is_data_read, needs_permission
from givbridge.commands.results import HTTP_OK, HTTP_STATUS, ErrorCode
from givbridge.commands.schemas import NoPayload
from givbridge.commands.spec import Command
from givbridge.http.browser import JSON_TYPE
from givbridge.http.endpoints import INVERTER_PARAM, Endpoint

JSON = JSON_TYPE
BEARER = "bearer"

_ANSWER = {"$ref": "#/components/schemas/Answer"}
_TREE = {"type": "object", "description": "GivTCP's JSON tree: Power, Energy, Control, Timeslots, Stats, ..."}

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "http.token; clients in http.trusted_networks need none",
        }
    },
    "schemas": {
        "Answer": {
            "type": "object",
            "description": "The result of a command, as on MQTT's response topic, plus GivTCP's result text.",
            "required": ["status", "command", "transaction", "result"],
            "properties": {
                "status": {"enum": ["ok", "error"]},
                "command": {"type": ["string", "null"]},
                "transaction": {"type": ["string", "number", "null"]},
                "data": {"type": "object", "description": "values read back after the write"},
                "error": {"$ref": "#/components/schemas/Error"},
                "result": {"type": "string", "description": "GivTCP's answer text, for its older clients"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "Health": {
            "type": "object",
            "required": ["healthy", "reason", "running", "mqtt_connected", "inverters"],
            "properties": {
                "healthy": {"type": "boolean"},
                "reason": {"type": "string"},
                "running": {"type": "boolean"},
                "mqtt_connected": {"type": "boolean"},
                "inverters": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


# Shared responses, by the name operations refer to them with.
_RESPONSES: dict[str, dict[str, Any]] = {
    "done": _json(_ANSWER, "done, and read back from the inverter"),
    "values": _json(_TREE, "the values"),
    ErrorCode.INVALID_PAYLOAD.value: _json(_ANSWER, "invalid payload; nothing was changed"),
    ErrorCode.UNKNOWN_INVERTER.value: _json(_ANSWER, "no inverter with that number (or no EV charger configured)"),
    ErrorCode.UNSUPPORTED.value: _json(_ANSWER, "this model (or givbridge, for now) cannot do it"),
    ErrorCode.READ_ONLY.value: _json(_ANSWER, "givbridge runs with read_only: true"),
    ErrorCode.NOT_PERSISTED.value: _json(
        _ANSWER, "the inverter did not confirm the write (refused it, or read back other values)"
    ),
    ErrorCode.UNREACHABLE.value: _json(_ANSWER, "the inverter is unreachable, or did not answer in time"),
    "too_large": _json(_ANSWER, "the body is larger than http.max_body_bytes"),
    "unauthorized": _json(_ANSWER, "no token, or the wrong one"),
    "forbidden": _json(
        _ANSWER,
        "no http.token is set and the client is not in http.trusted_networks, or (cross_origin) a web page "
        "whose origin is not in http.cors_origins asked for a change",
    ),
    "unsupported_media_type": _json(_ANSWER, "the body was not sent as application/json; nothing was changed"),
}
COMPONENTS["responses"] = _RESPONSES


def _ref(response: str) -> dict[str, str]:
    assert response in _RESPONSES, response
    return {"$ref": f"#/components/responses/{response}"}


def _request_body(command: Command) -> dict[str, Any]:
    schema = docs.input_schema(command)
    if command.raw_field is not None:
        alone = {"type": ["string", "number"], "description": f"the {command.raw_field} value alone"}
        schema = {"oneOf": [schema, alone]}
    body: dict[str, Any] = {"schema": schema}
    example = docs.example_object(command)
    if example:
        body["example"] = example
    return {"required": not issubclass(command.payload, NoPayload), "content": {JSON: body}}


def _command_responses(endpoint: Endpoint) -> dict[str, Any]:
    command = endpoint.command
    assert command is not None
    codes = [ErrorCode.UNKNOWN_INVERTER, ErrorCode.UNSUPPORTED, ErrorCode.NOT_PERSISTED, ErrorCode.UNREACHABLE]
    if endpoint.method == "POST":
        codes.append(ErrorCode.INVALID_PAYLOAD)
    if command.writes:
        codes.append(ErrorCode.READ_ONLY)
    responses: dict[str, Any] = {str(HTTP_OK): _ref("values" if is_data_read(command) else "done")}
    for code in codes:  # REJECTED shares NOT_PERSISTED's 502
        responses.setdefault(str(HTTP_STATUS[code]), _ref(code.value))
    if endpoint.method == "POST":
        responses["413"] = _ref("too_large")
        responses["415"] = _ref("unsupported_media_type")
    return dict(sorted(responses.items()))


def _operation(endpoint: Endpoint, inverters: int) -> dict[str, Any]:
    command = endpoint.command
    operation: dict[str, Any]
    if command is not None:
        aliased = f" Same as {command.name}." if endpoint.name != command.name else ""
        description = f"Payload: {docs.accepted_forms(command)}. Models: {docs.applies_to(command)}."
        operation = {
            "operationId": ("REST_" if endpoint.per_inverter else "") + endpoint.name,
            "summary": command.summary + aliased,
            "description": f"{description} {command.notes}".strip(),
            "tags": [command.group],
            "responses": _command_responses(endpoint),
        }
        if endpoint.method == "POST":  # one body per command, shared by its aliases and paths
            operation["requestBody"] = {"$ref": f"#/components/requestBodies/{command.name}"}
        protected = needs_permission(command)
    elif endpoint.kind == "settings":
        operation = {
            "operationId": "getSettings",
            "summary": "The running configuration; secrets show as ***.",
            "responses": {"200": _json({"type": "object"}, "the configuration without secrets")},
        }
        protected = True
    elif endpoint.kind == "health":
        health = {"$ref": "#/components/schemas/Health"}
        operation = {
            "operationId": "health",
            "summary": "givbridge's health, as `givbridge health` judges it (for watchdogs).",
            "responses": {"200": _json(health, "healthy"), "503": _json(health, "unhealthy; reason says why")},
        }
        protected = False
    elif endpoint.kind == "api":
        operation = {
            "operationId": "api",
            "summary": "Every command with its payload forms, like GivTCP's api.json.",
            "responses": {"200": _json({"type": "object"}, "the command list")},
        }
        protected = False
    else:
        operation = {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
        }
        protected = False
    if endpoint.per_inverter:
        operation["parameters"] = [
            {
                "name": INVERTER_PARAM,
                "in": "path",
                "required": True,
                "description": "the inverter's number, from 1, in the configured order",
                "schema": {"type": "integer", "minimum": 1, "maximum": max(inverters, 1)},
            }
        ]
    if protected:
        operation["security"] = [{BEARER: []}]
        operation["responses"] = dict(
            sorted({**operation["responses"], "401": _ref("unauthorized"), "403": _ref("forbidden")}.items())
        )
    else:
        operation["security"] = []
    return operation


def document(endpoints: Sequence[Endpoint], *, inverters: int, title: str) -> dict[str, Any]:
    """The OpenAPI document for ``endpoints`` with ``inverters`` configured."""
    paths: dict[str, dict[str, Any]] = {}
    bodies: dict[str, Any] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.template, {})[endpoint.method.lower()] = _operation(endpoint, inverters)
        if endpoint.command is not None and endpoint.method == "POST":
            bodies[endpoint.command.name] = _request_body(endpoint.command)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": "givbridge's GivTCP-compatible REST shim. Commands answer after the inverter has been "
            "read back, with an honest status.",
        },
        "paths": paths,
        "components": {**COMPONENTS, "requestBodies": bodies},
    }
