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
from givbridge.commands.executor import parse_payload
from givbridge.commands.schemas import decode
from givbridge.http.endpoints import inverter_endpoints, main_endpoints
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
            assert endpoint.method == endpoint.command.method


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
            assert {"413", "400"} <= set(op["responses"])
    protected = {path for path, _, op in operations if op["security"]}
    assert not any(path.endswith(("/readData", "/runAll", "/health", "/api", "/openapi.json")) for path in protected)
    json.dumps(doc)  # plain JSON


def test_request_bodies_take_givtcps_forms() -> None:
    doc = document(inverter_endpoints(), inverters=1, title="t")
    bodies = doc["components"]["requestBodies"]
    target = bodies["setChargeTarget"]["content"]
    assert target["text/plain"]["example"] == "80"
    value = target["application/json"]["schema"]["properties"]["chargeToPercent"]
    assert {"type": "integer", "minimum": 4, "maximum": 100} in value["anyOf"]  # pydantic's ge/le, renamed
    assert any(branch.get("type") == "string" for branch in value["anyOf"])  # "80" as GivTCP's clients send it
    assert "text/plain" not in bodies["setChargeSlot1"]["content"]  # two values: JSON only
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
