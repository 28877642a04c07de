"""The HTTP shim's pure parts: who may write, the route table, the OpenAPI document, the answers."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from pydantic import SecretStr

from givbridge.commands import REGISTRY, CommandFailed, CommandResult, ErrorCode
from givbridge.commands import docs as command_docs
from givbridge.commands.access import AccessPolicy, client_address, is_data_read, needs_permission
from givbridge.commands.decoding import decode
from givbridge.commands.executor import parse_payload
from givbridge.config import HttpSettings
from givbridge.http.browser import BrowserGuard, body_type_refusal, media_type
from givbridge.http.connections import ConnectionGuard
from givbridge.http.endpoints import http_method, inverter_endpoints, main_endpoints
from givbridge.http.openapi import document
from givbridge.http.routes import Answer, error_document, result_document

TOKEN = "s3cret-token"
NETWORKS = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")]


@pytest.fixture
def policy() -> AccessPolicy:
    return AccessPolicy(SecretStr(TOKEN), NETWORKS)


# --- access ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["192.0.2.7", "::ffff:192.0.2.7", "2001:db8::5"])
def test_trusted_clients_need_no_token(policy: AccessPolicy, host: str) -> None:
    assert policy.check(host, None) is None


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        (None, "send 'Authorization: Bearer"),
        ("", "send 'Authorization: Bearer"),
        (f"Basic {TOKEN}", "must be 'Bearer"),
        ("Bearer", "must be 'Bearer"),
        ("Bearer wrong", "wrong"),
        (f"Bearer {TOKEN}x", "wrong"),
    ],
)
def test_other_clients_need_the_right_token(policy: AccessPolicy, authorization: str | None, words: str) -> None:
    refusal = policy.check("198.51.100.9", authorization)
    assert refusal is not None and refusal.status == 401 and words in refusal.message


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  Bearer   {TOKEN}  "])
def test_the_token_lets_anyone_in(policy: AccessPolicy, authorization: str) -> None:
    assert policy.check("198.51.100.9", authorization) is None
    assert policy.check(None, authorization) is None


def test_without_a_token_untrusted_clients_are_forbidden() -> None:
    policy = AccessPolicy(None, NETWORKS)
    refusal = policy.check("198.51.100.9", f"Bearer {TOKEN}")
    assert refusal is not None and refusal.status == 403
    assert "http.token" in refusal.message and "http.trusted_networks" in refusal.message
    assert policy.check("192.0.2.1", None) is None
    assert AccessPolicy(SecretStr(""), []).check("127.0.0.1", "Bearer ") is not None  # an empty token is no token


@pytest.mark.parametrize("host", [None, "", "not-an-address", "testclient"])
def test_a_client_without_an_address_is_never_trusted(host: str | None) -> None:
    assert client_address(host) is None
    assert AccessPolicy(None, [ipaddress.ip_network("0.0.0.0/0")]).check(host, None) is not None


def test_only_device_data_reads_are_open() -> None:
    assert {c.name for c in REGISTRY if is_data_read(c)} == {"readData", "getCache", "runAll", "getEVCCache"}
    assert needs_permission(REGISTRY.get("reboot"))  # type: ignore[arg-type]  # a GET that writes
    assert needs_permission(REGISTRY.get("restart"))  # type: ignore[arg-type]  # a GET on the bridge
    assert needs_permission(REGISTRY.get("settings"))  # type: ignore[arg-type]


# --- browsers -------------------------------------------------------------------------------------

ALLOWED = "http://homeassistant.local:8123"


@pytest.mark.parametrize(
    ("origin", "fetch_site"),
    [
        (None, None),  # curl, Predbat's requests: no browser headers
        (None, "none"),  # typed into the address bar
        (None, "same-origin"),
        (ALLOWED, None),
        (ALLOWED, "cross-site"),  # a listed origin is cross-site by nature
        ("HTTP://HomeAssistant.local:8123/", "same-site"),
    ],
)
def test_requests_without_a_foreign_browser_origin_go_ahead(origin: str | None, fetch_site: str | None) -> None:
    assert BrowserGuard([ALLOWED]).check(origin, fetch_site) is None


@pytest.mark.parametrize(
    ("origin", "fetch_site", "words"),
    [
        ("http://evil.example", None, "http://evil.example"),
        ("http://evil.example", "cross-site", "http.cors_origins"),
        ("null", None, "null"),  # sandboxed frames and local files
        ("", None, "unnamed origin"),
        ("http://homeassistant.local:8124", None, "8124"),  # another port is another origin
        (None, "cross-site", "Sec-Fetch-Site: cross-site"),
        (None, "Same-Site", "Sec-Fetch-Site"),
    ],
)
def test_a_foreign_browser_origin_is_refused(origin: str | None, fetch_site: str | None, words: str) -> None:
    refusal = BrowserGuard([ALLOWED]).check(origin, fetch_site)
    assert refusal is not None and refusal.status == 403 and refusal.code == "cross_origin"
    assert words in refusal.message
    assert BrowserGuard([]).check(ALLOWED, None) is not None  # nothing listed: every page is foreign


@pytest.mark.parametrize(
    ("content_type", "has_body"),
    [("application/json", True), ("Application/JSON; charset=utf-8", True), (None, False), ("application/json", False)],
)
def test_json_bodies_and_no_body_are_accepted(content_type: str | None, has_body: bool) -> None:
    assert body_type_refusal(content_type, has_body=has_body) is None


@pytest.mark.parametrize(
    ("content_type", "has_body"),
    [
        ("text/plain", True),
        ("text/plain;charset=UTF-8", False),  # a simple type is refused even without a body
        ("application/x-www-form-urlencoded", True),  # curl -d
        ("multipart/form-data; boundary=x", True),
        ("application/xml", True),
        (None, True),  # a browser can send an untyped body without a preflight too
        ("", True),
    ],
)
def test_other_body_types_are_refused_with_415(content_type: str | None, has_body: bool) -> None:
    refusal = body_type_refusal(content_type, has_body=has_body)
    assert refusal is not None and refusal.status == 415 and refusal.code == "unsupported_media_type"
    assert "Content-Type: application/json" in refusal.message
    assert media_type(content_type) != "application/json"


def test_cors_origins_must_be_exact_origins() -> None:
    settings = HttpSettings(cors_origins=[" HTTP://Dash.Example:8080/ ", "https://ha.example"])
    assert settings.cors_origins == ["http://dash.example:8080", "https://ha.example"]
    for bad in ("*", "null", "dash.example", "http://dash.example/panel", "ftp://dash.example", "http://*.example"):
        with pytest.raises(ValueError, match="scheme://host"):
            HttpSettings(cors_origins=[bad])


# --- connections ----------------------------------------------------------------------------------


class Conn:
    """A connection as the guard sees it; records being closed to make room."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def test_a_client_over_its_bound_loses_its_longest_idle_connection() -> None:
    guard = ConnectionGuard(per_client=2, total=100)
    first, second, third = Conn("first"), Conn("second"), Conn("third")
    assert guard.opened(first, "127.0.0.11") and guard.opened(second, "127.0.0.11")
    other = Conn("other")
    assert guard.opened(other, "127.0.0.12")
    assert guard.opened(third, "127.0.0.11")  # room made: the first, idle longest, is closed
    assert first.evicted and not second.evicted and not other.evicted
    assert guard.of("127.0.0.11") == 2 and len(guard) == 3 and guard.evicted == 1
    guard.closed(first)  # its transport reports the loss later: counted once only
    assert guard.of("127.0.0.11") == 2


def test_a_connection_with_a_request_in_is_never_evicted() -> None:
    guard = ConnectionGuard(per_client=2, total=100)
    working, waiting = Conn("working"), Conn("waiting")
    guard.opened(working, "127.0.0.11")
    guard.opened(waiting, "127.0.0.11")
    guard.busy(working)
    new = Conn("new")
    assert guard.opened(new, "127.0.0.11") and waiting.evicted and not working.evicted
    guard.busy(new)
    assert not guard.opened(Conn("refused"), "127.0.0.11")  # every connection of the client is busy
    guard.idle(working)  # its answer is out: it waits for the next request, and may go
    assert guard.opened(Conn("later"), "127.0.0.11") and working.evicted


def test_over_the_total_the_longest_idle_of_anyone_makes_way() -> None:
    guard = ConnectionGuard(per_client=8, total=3)
    a, b, c = Conn("a"), Conn("b"), Conn("c")
    for conn, client in ((a, "127.0.0.11"), (b, "127.0.0.12"), (c, "127.0.0.13")):
        assert guard.opened(conn, client)
    guard.idle(a)  # a waits again after an answer: now b has been idle longest
    assert guard.opened(Conn("d"), "127.0.0.14")
    assert b.evicted and not a.evicted and not c.evicted and len(guard) == 3
    guard.closed(c)
    assert guard.opened(Conn("e"), "127.0.0.15") and not a.evicted  # room without evicting


# --- route table ----------------------------------------------------------------------------------


def test_every_command_name_is_routed_once_per_face() -> None:
    main, own = main_endpoints(), inverter_endpoints()
    for endpoints in (main, own):
        assert not [key for key, n in Counter((e.path, e.method) for e in endpoints).items() if n > 1]
    rest = {e.name for e in main if e.path.startswith("/REST{inverter:int}/")}
    assert rest == REGISTRY.names == {e.name for e in own if e.command is not None}
    at_root = {e.name for e in main if e.command is not None and not e.per_inverter}
    assert at_root == {name for c in REGISTRY if c.target == "bridge" for name in c.names}
    for endpoint in (*main, *own):
        if endpoint.command is not None:
            assert endpoint.method == http_method(endpoint.command)


def test_only_reads_of_device_data_are_served_by_get() -> None:
    """A GET never changes anything: GivTCP's GET reboot and restart are POST here (a link could send them)."""
    get = {c.name for c in REGISTRY if http_method(c) == "GET"}
    assert get == {"readData", "getCache", "runAll", "getEVCCache"}
    for command in REGISTRY:
        if command.writes or command.target == "bridge":
            assert http_method(command) == "POST", command.name
    served = {(e.name, e.method) for e in (*main_endpoints(), *inverter_endpoints()) if e.command is not None}
    assert ("reboot", "POST") in served and ("reboot", "GET") not in served
    assert ("restart", "POST") in served and ("rebootAddon", "GET") not in served


# --- OpenAPI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("face", ["main", "inverter"])
def test_the_openapi_document_is_complete_and_consistent(face: str) -> None:
    endpoints = main_endpoints() if face == "main" else inverter_endpoints()
    doc = document(endpoints, inverters=3, title="t")
    assert doc["openapi"].startswith("3.1")
    operations = [(path, method, op) for path, methods in doc["paths"].items() for method, op in methods.items()]
    assert len(operations) == len(endpoints)
    assert len({op["operationId"] for _, _, op in operations}) == len(operations)
    components = doc["components"]
    for path, method, op in operations:
        assert "200" in op["responses"] or "503" in op["responses"], path
        for response in op["responses"].values():
            if "$ref" in response:
                assert response["$ref"].rsplit("/", 1)[-1] in components["responses"]
        if "{inverter}" in path:
            assert op["parameters"][0]["schema"]["maximum"] == 3
        if op["security"]:
            assert {"401", "403"} <= set(op["responses"]), path
        if method == "post":
            name = op["requestBody"]["$ref"].rsplit("/", 1)[-1]
            assert name in components["requestBodies"]
            assert {"413", "415", "400"} <= set(op["responses"])
    protected = {path for path, _, op in operations if op["security"]}
    assert not any(path.endswith(("/readData", "/runAll", "/health", "/api", "/openapi.json")) for path in protected)
    json.dumps(doc)  # plain JSON


def test_request_bodies_take_givtcps_forms() -> None:
    doc = document(inverter_endpoints(), inverters=1, title="t")
    bodies = doc["components"]["requestBodies"]
    assert all(set(body["content"]) == {"application/json"} for body in bodies.values())  # JSON, nothing else
    target = bodies["setChargeTarget"]["content"]["application/json"]
    assert target["example"] == {"chargeToPercent": 80}
    as_object, alone = target["schema"]["oneOf"]  # an object, or the one value alone (80, "80")
    assert alone["type"] == ["string", "number"]
    value = as_object["properties"]["chargeToPercent"]
    assert {"type": "integer", "minimum": 4, "maximum": 100} in value["anyOf"]  # pydantic's ge/le, renamed
    assert any(branch.get("type") == "string" for branch in value["anyOf"])  # "80" as GivTCP's clients send it
    assert "oneOf" not in bodies["setChargeSlot1"]["content"]["application/json"]["schema"]  # two values: an object
    assert bodies["syncDateTime"]["required"] is False


@pytest.mark.parametrize("command", list(REGISTRY), ids=lambda c: c.name)
def test_every_documented_example_is_accepted(command: Any) -> None:
    schema = command_docs.input_schema(command)
    example = command_docs.example_object(command)
    if "properties" in schema:
        assert set(example) <= set(schema["properties"])
    assert set(schema.get("required", [])) <= set(example) | set(command.fixed)
    parse_payload(command, decode(json.dumps(example)))  # raises if the executor would refuse it


# --- answers --------------------------------------------------------------------------------------


def test_answers_carry_givtcps_result_text() -> None:
    done = result_document(CommandResult.success("setChargeTarget", "t1", "SA1234G567", {"Target_SOC": 80}))
    assert done["result"] == "setChargeTarget was a success" and done["data"] == {"Target_SOC": 80}
    failure = CommandFailed(ErrorCode.READ_ONLY, "givbridge runs with read_only: true")
    failed = result_document(CommandResult.failure("setChargeTarget", None, None, failure))
    assert failed["result"] == "Error: givbridge runs with read_only: true" and failed["status"] == "error"
    assert error_document("forbidden", "no", "x") == {
        "status": "error",
        "command": "x",
        "transaction": None,
        "error": {"code": "forbidden", "message": "no"},
        "result": "Error: no",
    }


def test_an_answer_is_always_valid_json() -> None:
    body = Answer({"a": float("nan"), "b": [float("inf"), 1.5], "c": "ok"}).body
    assert json.loads(body) == {"a": None, "b": [None, 1.5], "c": "ok"}


def test_a_transaction_that_json_cannot_echo_is_refused() -> None:
    with pytest.raises(CommandFailed) as raised:
        decode('{"chargeToPercent": 80, "transaction": NaN}')
    assert raised.value.code is ErrorCode.INVALID_PAYLOAD


def test_the_web_stack_is_loaded_only_with_the_shim() -> None:
    """A bridge without ``http.enabled`` never imports starlette or uvicorn (idle memory is measured)."""
    probe = (
        "import sys, givbridge.app, givbridge.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'h11', 'anyio'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"
