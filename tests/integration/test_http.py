"""The HTTP shim end to end: httpx over real sockets, the bridge, simulated inverters over TCP.

Two rigs serve the module (starting them costs more than the tests; every case writes
absolute values and checks them, so the order of the cases does not matter):

* ``shim``: a Gen3 hybrid and an AC-coupled inverter behind a bridge connected to a real
  broker, the shim with a token, per-inverter ports, 127.0.0.2 trusted and one CORS origin;
* ``locked``: one Gen3 hybrid, ``read_only: true``, no token, 127.0.0.2 trusted, no broker
  (so it is unhealthy), an MQTT password that must never be shown;
* ``guarded``: one Gen3 hybrid with a real broker, a short ``idle_timeout`` and a small
  ``max_connections_per_client``, for the connection floods.

Every write is checked in the simulator's registers, so an ``ok`` is only accepted when the
inverter really holds the value.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from givbridge.app import Application
from givbridge.commands import REGISTRY
from givbridge.commands import docs as command_docs
from givbridge.commands.access import is_data_read
from givbridge.config_checks import ConfigError
from givbridge.http.endpoints import Endpoint, http_method, inverter_endpoints, main_endpoints
from givbridge.plant import derive
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import Broker, free_port
from tests.integration.bridge_helpers import Watch, bridge_settings, fast_clock, first_snapshot
from tests.integration.http_helpers import (
    OTHER_CLIENT,
    TOKEN,
    ZONE,
    HttpRig,
    client,
    http_rig,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORIGIN = "http://dashboard.example"
MQTT_SECRET = "mqtt-secret-pw-42"
JSON_BODY = {"Content-Type": "application/json"}
#: The guarded rig's http.idle_timeout (seconds) and max_connections_per_client.
IDLE_TIMEOUT = 3.0
PER_CLIENT = 4


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shim(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpRig]:
    http = {
        "token": TOKEN,
        "per_inverter_ports": True,
        "trusted_networks": [f"{OTHER_CLIENT}/32"],
        "cors_origins": [ORIGIN],
    }
    async with http_rig(tmp_path_factory.mktemp("shim"), ["hybrid-gen3", "ac"], broker=module_broker, http=http) as rig:
        yield rig


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def locked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpRig]:
    async with http_rig(
        tmp_path_factory.mktemp("locked"),
        ["hybrid-gen3"],
        mqtt={"username": "givbridge", "password": MQTT_SECRET},
        http={"per_inverter_ports": True, "trusted_networks": [f"{OTHER_CLIENT}/32"]},
        read_only=True,
    ) as rig:
        yield rig


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def guarded(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpRig]:
    http = {
        "trusted_networks": [f"{OTHER_CLIENT}/32"],
        "idle_timeout": IDLE_TIMEOUT,
        "max_connections_per_client": PER_CLIENT,
    }
    async with http_rig(tmp_path_factory.mktemp("guarded"), ["hybrid-gen3"], broker=module_broker, http=http) as rig:
        yield rig


def ok(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["result"] == f"{body['command']} was a success", body
    data: dict[str, Any] = body["data"]
    return data


def refused(response: httpx.Response, status: int, code: str) -> str:
    body: dict[str, Any] = response.json()
    assert response.status_code == status, body
    assert body["status"] == "error" and body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert body["result"] == f"Error: {message}"
    return message


# --- Predbat's REST usage -------------------------------------------------------------------------


async def test_readData_and_runAll_answer_givtcps_tree_as_predbat_parses_it(shim: HttpRig) -> None:
    serial = shim.serial(1)
    # Energy counters are published from the second sample on (they must be seen to count up).
    await Watch(shim.app.bridge.runners[0]).snapshot(lambda s: any(p.startswith("Energy/") for p in s.values))
    async with client(token=TOKEN) as http:  # a real read of the inverter for a caller with the token
        reads = shim.reads()
        tree = (await http.get(f"{shim.inverter_base(1)}/runAll")).json()
        assert shim.reads() > reads
    async with client() as http:  # reading needs no token
        for url in (f"{shim.base}/REST1/readData", f"{shim.base}/REST1/getCache", f"{shim.inverter_base(1)}/readData"):
            response = await http.get(url)
            assert response.status_code == 200
            assert {"Power", "Energy", "Control", "Timeslots", "Stats", serial, "Battery_Details", "raw"} <= set(
                response.json()
            ), url
    # What Predbat reads (peers.md 1.3), with the types it expects.
    assert isinstance(tree["Power"]["Power"]["SOC_kWh"], float)
    assert isinstance(tree["Power"]["Power"]["Battery_Power"], int | float)
    assert isinstance(tree[serial]["Invertor_Max_Bat_Rate"], int)
    assert isinstance(tree[serial]["Battery_Capacity_kWh"], float)
    assert tree[serial]["Invertor_Time"][:4].isdigit()
    assert tree["Stats"]["GivTCP_Version"].startswith("3")
    assert tree["Control"]["Target_SOC"] == shim.sims[0].holding(116)
    assert tree["Control"]["Mode"] in {"Eco", "Eco (Paused)", "Timed Demand", "Timed Export"}
    assert "invertor" in tree["raw"]


# Predbat's calls (peers.md 1.3): path, JSON body, registers afterwards, answer data (subset).
PREDBAT_WRITES: list[tuple[str, dict[str, Any], dict[int, int], dict[str, Any]]] = [
    ("setChargeTarget", {"chargeToPercent": 85}, {116: 85, 20: 1}, {"Target_SOC": 85}),
    ("setBatteryReserve", {"reservePercent": "30"}, {110: 30}, {"Battery_Power_Reserve": 30}),
    ("enableChargeTarget", {"state": "enable"}, {20: 1}, {"Enable_Charge_Target": "enable"}),
    ("enableChargeSchedule", {"state": "disable"}, {96: 0}, {"Enable_Charge_Schedule": "disable"}),
    ("enableChargeSchedule", {"state": "enable"}, {96: 1}, {"Enable_Charge_Schedule": "enable"}),
    (
        "setChargeSlot1",
        {"start": "01:30", "finish": "04:30"},
        {94: 130, 95: 430},
        {"Charge_start_time_slot_1": "01:30:00", "Charge_end_time_slot_1": "04:30:00"},
    ),
    ("setDischargeSlot1", {"start": "16:00", "finish": "19:00"}, {56: 1600, 57: 1900}, {}),
    ("setBatteryMode", {"mode": "Timed Export"}, {27: 0, 59: 1}, {"Mode": "Timed Export"}),
    ("setBatteryMode", {"mode": "Eco"}, {27: 1, 59: 0}, {"Mode": "Eco"}),
    ("setDischargeTarget", {"dischargeToPercent": 20, "slot": 1}, {272: 20}, {"Discharge_Target_SOC_1": 20}),
    ("setBatteryPauseMode", {"state": "PauseCharge"}, {318: 1}, {"Battery_pause_mode": "PauseCharge"}),
    ("setBatteryPauseMode", {"state": "Disabled"}, {318: 0}, {"Battery_pause_mode": "Disabled"}),
    ("setPauseSlot", {"start": "00:00", "finish": "23:59"}, {319: 0, 320: 2359}, {}),
]


@pytest.mark.parametrize(
    ("command", "body", "registers", "data"), PREDBAT_WRITES, ids=[f"{c}={b}" for c, b, *_ in PREDBAT_WRITES]
)
async def test_predbat_writes_on_givtcps_port_are_read_back(
    shim: HttpRig, command: str, body: dict[str, Any], registers: dict[int, int], data: dict[str, Any]
) -> None:
    """Predbat on the Home Assistant host: no token, a trusted network, givtcp_rest = the inverter's port."""
    async with client(local_address=OTHER_CLIENT) as http:
        got = ok(await http.post(f"{shim.inverter_base(1)}/{command}", json=body))
    assert shim.holding(*registers) == registers
    assert {key: got.get(key) for key in data} == data


async def test_a_rate_write_is_verified_by_runAll_as_predbat_does(shim: HttpRig) -> None:
    snapshot = await first_snapshot(shim.app.bridge.runners[0])
    capacity = snapshot[f"{shim.serial()}/Battery_Capacity_kWh"]
    max_power = snapshot[f"{shim.serial()}/Invertor_Max_Bat_Rate"]
    assert isinstance(capacity, float) and isinstance(max_power, int)
    expected = derive.watts_to_rate_register(1500, capacity_kwh=capacity, max_power=max_power)
    async with client(token=TOKEN) as http:
        got = ok(await http.post(f"{shim.base}/REST1/setChargeRate", json={"chargeRate": 1500}))
        after = (await http.get(f"{shim.base}/REST1/runAll")).json()
    assert shim.holding(111) == {111: expected.register}
    assert got["Battery_Charge_Rate"] == after["Control"]["Battery_Charge_Rate"]  # the answer is what runAll reads


async def test_REST_N_addresses_inverter_N_in_the_configured_order(shim: HttpRig) -> None:
    async with client(token=TOKEN) as http:
        assert ok(await http.post(f"{shim.base}/REST2/setBatteryReserve", json={"reservePercent": 24}))
        assert shim.holding(110, number=2) == {110: 24}
        for url in (f"{shim.base}/REST2/readData", f"{shim.inverter_base(2)}/readData"):
            assert shim.serial(2) in (await http.get(url)).json()
        assert shim.serial(1) not in (await http.get(f"{shim.base}/REST2/readData")).json()
        for number in (0, 3):
            message = refused(await http.get(f"{shim.base}/REST{number}/readData"), 404, "unknown_inverter")
            assert "1 to 2" in message


async def test_raw_bodies_and_transactions(shim: HttpRig) -> None:
    async with client(token=TOKEN) as http:
        # The value alone, declared as JSON (a number is JSON; bare text like Cancel is read as the value too).
        response = await http.post(f"{shim.base}/REST1/setChargeTarget", content="77", headers=JSON_BODY)
        assert ok(response)["Target_SOC"] == 77
        assert shim.holding(116) == {116: 77}
        response = await http.post(
            f"{shim.base}/REST1/setChargeTarget", json={"chargeToPercent": "78", "transaction": "predbat-1"}
        )
        assert ok(response)["Target_SOC"] == 78 and response.json()["transaction"] == "predbat-1"
        response = await http.post(
            f"{shim.base}/REST1/setChargeTarget", json={"chargeToPercent": 101, "transaction": 7}
        )
        refused(response, 400, "invalid_payload")
        assert response.json()["transaction"] == 7


# --- honest statuses ------------------------------------------------------------------------------

BAD: list[tuple[str, str, str | dict[str, Any] | None, int, str]] = [
    # method, path under /REST1, body, status, code
    ("POST", "setChargeTarget", {"chargeToPercent": 101}, 400, "invalid_payload"),
    ("POST", "setChargeTarget", '{"chargeToPercent": 80', 400, "invalid_payload"),
    ("POST", "setChargeTarget", {"chargeToPercent": 80, "bogus": 1}, 400, "invalid_payload"),
    ("POST", "setChargeTarget", None, 400, "invalid_payload"),
    ("POST", "setChargeSlot1", {"start": "25:00", "finish": "04:00"}, 400, "invalid_payload"),
    ("POST", "setChargeTargett", {"chargeToPercent": 80}, 404, "unknown_command"),
    ("GET", "setChargeTarget", None, 405, "method_not_allowed"),
    # Changes are never made by GET, even those GivTCP served by GET.
    ("GET", "reboot", None, 405, "method_not_allowed"),
    ("GET", "rebootInverter", None, 405, "method_not_allowed"),
    ("GET", "restart", None, 405, "method_not_allowed"),
    ("GET", "rebootAddon", None, 405, "method_not_allowed"),
    ("GET", "setLogLevel", None, 405, "method_not_allowed"),
    ("POST", "readData", None, 405, "method_not_allowed"),
    ("POST", "setForceCharge", {"state": "enable"}, 409, "unsupported"),  # three-phase only
    ("POST", "setEMSChargeStart1", {"start": "01:00"}, 409, "unsupported"),  # EMS only
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"), BAD, ids=[f"{m} {p} {s}" for m, p, _, s, _ in BAD]
)
async def test_refusals_have_honest_statuses_and_write_nothing(
    shim: HttpRig, method: str, path: str, body: str | dict[str, Any] | None, status: int, code: str
) -> None:
    before = shim.writes()
    content = body if isinstance(body, str) else json.dumps(body) if body is not None else None
    headers = JSON_BODY if content is not None else None
    async with client(token=TOKEN) as http:
        response = await http.request(method, f"{shim.base}/REST1/{path}", content=content, headers=headers)
    assert refused(response, status, code)
    if status == 405:
        command = REGISTRY.get(path)
        assert command is not None and response.headers["allow"] == http_method(command)
    assert shim.writes() == before


async def test_a_write_the_inverter_does_not_keep_is_502(shim: HttpRig) -> None:
    async with client(token=TOKEN) as http:
        ok(await http.post(f"{shim.base}/REST1/setBatteryCutoff", json={"dischargeToPercent": 5}))
        shim.servers[0].faults.writes_not_persisted = True
        try:
            response = await http.post(f"{shim.base}/REST1/setBatteryCutoff", json={"dischargeToPercent": 9})
        finally:
            shim.servers[0].faults.writes_not_persisted = False
    refused(response, 502, "not_persisted")
    assert response.json()["error"]["registers"] == [{"register": 114, "wanted": 9, "actual": 5}]
    assert shim.holding(114) == {114: 5}


async def test_an_inverter_that_does_not_answer_is_504(shim: HttpRig) -> None:
    runner = shim.app.bridge.runners[0]
    watch = Watch(runner)
    shim.servers[0].faults.silence()
    try:
        async with client(token=TOKEN) as http:
            response = await http.post(f"{shim.base}/REST1/setBatteryCutoff", json={"dischargeToPercent": 7})
    finally:
        shim.servers[0].faults.end_silence()
    refused(response, 504, "unreachable")
    assert shim.holding(114) != {114: 7}
    if not runner.health.available:
        await watch.available(True, within=20)


async def test_read_only_is_423_and_nothing_is_sent(locked: HttpRig) -> None:
    before = locked.writes()
    async with client(local_address=OTHER_CLIENT) as http:
        message = refused(
            await http.post(f"{locked.base}/REST1/setChargeTarget", json={"chargeToPercent": 80}), 423, "read_only"
        )
    assert "read_only" in message and locked.writes() == before


# --- every command path ---------------------------------------------------------------------------


def _url(base: str, endpoint: Endpoint) -> str:
    return base + endpoint.template.replace("{inverter}", "1")


async def test_every_command_path_reaches_the_executor(locked: HttpRig) -> None:
    """Each name and alias in the registry, on the main port and the inverter's own port, is answered
    by the executor for that command (read-only: nothing is written, writes answer 423)."""
    faces = [(locked.base, main_endpoints()), (locked.inverter_base(1), inverter_endpoints())]
    seen: set[str] = set()
    async with client(local_address=OTHER_CLIENT, timeout=30) as http:
        for base, endpoints in faces:
            for endpoint in endpoints:
                command = endpoint.command
                if command is None:
                    continue
                if endpoint.method == "GET":
                    response = await http.get(_url(base, endpoint))
                else:  # a valid example for writes (to reach the read-only check); {} for the rest
                    body = command_docs.example_object(command) if command.writes else {}
                    response = await http.post(_url(base, endpoint), json=body)
                where = f"{endpoint.method} {_url(base, endpoint)}"
                assert response.status_code not in (401, 403, 405, 413, 500), (where, response.text)
                body_ = response.json()
                if response.status_code == 200 and is_data_read(command):
                    assert locked.serial() in body_, where  # GivTCP's tree for this inverter
                else:
                    assert body_["command"] == endpoint.name, (where, body_)
                if command.writes and command.target == "inverter":
                    assert response.status_code == 423, (where, body_)
                seen.add(endpoint.name)
    assert seen == REGISTRY.names
    assert locked.writes() == 0


# --- permission -----------------------------------------------------------------------------------


async def test_writes_need_the_token(shim: HttpRig) -> None:
    url = f"{shim.base}/REST1/setChargeTarget"
    before = shim.writes()
    async with client() as http:
        response = await http.post(url, json={"chargeToPercent": 60})
        assert "token" in refused(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.post(url, json={"chargeToPercent": 60}, headers={"Authorization": "Bearer nope"})
        assert "wrong" in refused(wrong, 401, "unauthorized")
        basic = await http.post(url, json={"chargeToPercent": 60}, headers={"Authorization": f"Basic {TOKEN}"})
        refused(basic, 401, "unauthorized")
        refused(await http.post(f"{shim.base}/REST1/reboot"), 401, "unauthorized")
        refused(await http.post(f"{shim.base}/restart"), 401, "unauthorized")
        refused(await http.get(f"{shim.inverter_base(1)}/settings"), 401, "unauthorized")
        refused(await http.post(f"{shim.base}/settings", json={}), 401, "unauthorized")
    assert shim.writes() == before
    async with client(token=TOKEN) as http:
        assert ok(await http.post(url, json={"chargeToPercent": 60}))["Target_SOC"] == 60
    assert shim.holding(116) == {116: 60}


async def test_a_trusted_network_writes_without_the_token(shim: HttpRig) -> None:
    async with client(local_address=OTHER_CLIENT) as http:
        assert ok(await http.post(f"{shim.base}/REST1/setChargeTarget", json={"chargeToPercent": 61}))
    assert shim.holding(116) == {116: 61}
    async with client(local_address="127.0.0.3") as http:  # next door, not trusted
        refused(
            await http.post(f"{shim.base}/REST1/setChargeTarget", json={"chargeToPercent": 62}), 401, "unauthorized"
        )
    assert shim.holding(116) == {116: 61}


async def test_without_a_token_only_trusted_networks_may_write(locked: HttpRig) -> None:
    async with client() as http:
        response = await http.post(f"{locked.base}/REST1/setChargeTarget", json={"chargeToPercent": 80})
        message = refused(response, 403, "forbidden")
        assert "http.token" in message and "http.trusted_networks" in message
        refused(await http.get(f"{locked.base}/settings"), 403, "forbidden")
        assert (await http.get(f"{locked.base}/REST1/readData")).status_code == 200  # reads stay open


async def test_the_body_is_capped(shim: HttpRig) -> None:
    limit = shim.app.settings.http.max_body_bytes
    big = json.dumps({"chargeToPercent": 80, "padding": "x" * limit})
    before = shim.writes()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while streaming
        for _ in range(8):
            yield b" " * (limit // 4)

    async with client(token=TOKEN) as http:
        message = refused(await http.post(f"{shim.base}/REST1/setChargeTarget", content=big), 413, "payload_too_large")
        assert str(limit) in message
        refused(await http.post(f"{shim.base}/REST1/setChargeTarget", content=chunks()), 413, "payload_too_large")
        assert (await http.get(f"{shim.base}/health")).status_code == 200  # still serving
    assert shim.writes() == before


# --- settings, health, api, openapi, CORS ---------------------------------------------------------


async def test_settings_never_show_secrets(locked: HttpRig, shim: HttpRig) -> None:
    async with client(local_address=OTHER_CLIENT) as http:
        response = await http.get(f"{locked.base}/settings")
    assert response.status_code == 200 and MQTT_SECRET not in response.text
    assert response.json()["mqtt"]["password"] == "***" and response.json()["read_only"] is True
    async with client(token=TOKEN) as http:
        shown = await http.get(f"{shim.base}/settings")
        assert TOKEN not in shown.text and shown.json()["http"]["token"] == "***"
        # What GET shows can be sent back: the masked token keeps the real one.
        saved = ok(await http.post(f"{shim.base}/settings", content=shown.content, headers=JSON_BODY))
    assert saved["changed"] == [] and TOKEN not in json.dumps(saved)
    stored = json.loads(await asyncio.to_thread(Path(saved["saved"]).read_text))
    assert stored["http"]["token"] == TOKEN


async def test_health_reports_the_same_facts_as_givbridge_health(shim: HttpRig, locked: HttpRig) -> None:
    async with client() as http:
        healthy = await http.get(f"{shim.base}/health")
        unhealthy = await http.get(f"{locked.inverter_base(1)}/health")
    assert healthy.status_code == 200
    assert healthy.json()["healthy"] is True and healthy.json()["reason"].startswith("healthy")
    assert [i["serial"] for i in healthy.json()["inverters"]] == [shim.serial(1), shim.serial(2)]
    assert unhealthy.status_code == 503
    assert unhealthy.json()["healthy"] is False and "MQTT" in unhealthy.json()["reason"]


async def test_api_lists_every_command_with_its_payload(shim: HttpRig) -> None:
    async with client() as http:  # open
        api = (await http.get(f"{shim.inverter_base(2)}/api")).json()
    assert set(api["commands"]) == {command.name for command in REGISTRY}
    target = api["commands"]["setChargeTarget"]
    assert target["method"] == "POST" and target["url"] == "/setChargeTarget" and target["needs_permission"]
    assert target["example"] == {"chargeToPercent": 80} and "chargeToPercent" in target["payload"]
    assert "chargeToPercent" in target["payload_schema"]["required"]
    slot = api["commands"]["setChargeSlot1"]["payload_schema"]
    assert set(slot["required"]) == {"start", "finish"}  # the slot is in the name
    read = api["commands"]["readData"]
    assert read["method"] == "GET" and not read["needs_permission"]
    assert api["commands"]["reboot"]["aliases"] == ["rebootInverter"]


async def test_openapi_documents_both_faces(shim: HttpRig) -> None:
    async with client() as http:
        main = (await http.get(f"{shim.base}/openapi.json")).json()
        own = (await http.get(f"{shim.inverter_base(1)}/openapi.json")).json()
    operation = main["paths"]["/REST{inverter}/setChargeTarget"]["post"]
    assert operation["requestBody"] == {"$ref": "#/components/requestBodies/setChargeTarget"}
    assert operation["parameters"][0]["schema"] == {"type": "integer", "minimum": 1, "maximum": 2}
    assert operation["security"] == [{"bearer": []}] and {"200", "400", "401", "409", "502", "504"} <= set(
        operation["responses"]
    )
    assert main["paths"]["/REST{inverter}/readData"]["get"]["security"] == []
    assert "/restart" in main["paths"] and "/setChargeTarget" not in main["paths"]
    assert "/setChargeTarget" in own["paths"] and not any(path.startswith("/REST") for path in own["paths"])
    body = main["components"]["requestBodies"]["setChargeTarget"]["content"]
    assert list(body) == ["application/json"] and body["application/json"]["example"] == {"chargeToPercent": 80}
    assert "415" in operation["responses"]


async def test_cors_is_off_unless_an_origin_is_configured(shim: HttpRig, locked: HttpRig) -> None:
    async with client() as http:
        allowed = await http.get(f"{shim.base}/REST1/readData", headers={"Origin": ORIGIN})
        other = await http.get(f"{shim.base}/REST1/readData", headers={"Origin": "http://evil.example"})
        default = await http.get(f"{locked.base}/REST1/readData", headers={"Origin": ORIGIN})
        preflight = await http.options(
            f"{shim.base}/REST1/setChargeTarget",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )
    assert allowed.headers.get("access-control-allow-origin") == ORIGIN
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in default.headers
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN


# --- concurrency ----------------------------------------------------------------------------------


async def test_concurrent_posts_to_one_inverter_are_serialised_and_each_answered(shim: HttpRig) -> None:
    windows = [("01:00", "02:00"), ("03:15", "04:45"), ("05:00", "06:30"), ("07:10", "08:20"), ("09:00", "10:40")]
    async with client(token=TOKEN) as http:
        url = f"{shim.base}/REST1/setChargeSlot1"
        responses = await asyncio.gather(
            *(http.post(url, json={"start": start, "finish": finish}) for start, finish in windows),
            http.post(f"{shim.base}/REST1/setChargeTarget", json={"chargeToPercent": 66}),
            http.get(f"{shim.base}/REST1/readData"),
        )
    *slots, target, read = responses
    # Each answer is its own window, whole: the writes of two requests never interleaved.
    seen = [(ok(r)["Charge_start_time_slot_1"][:5], ok(r)["Charge_end_time_slot_1"][:5]) for r in slots]
    assert seen == windows
    assert ok(target)["Target_SOC"] == 66 and read.status_code == 200
    last = shim.holding(94, 95)
    assert (f"{last[94] // 100:02d}:{last[94] % 100:02d}", f"{last[95] // 100:02d}:{last[95] % 100:02d}") in windows


# --- lifecycle ------------------------------------------------------------------------------------


async def test_a_full_queue_is_503_busy_and_a_stop_answers_the_waiting_503_cancelled(tmp_path: Path) -> None:
    control = {"queue_limit": 1, "command_expiry": 3600}
    async with http_rig(tmp_path, ["hybrid-gen3"], http={"token": TOKEN}, control=control) as rig:
        writes = rig.writes()
        url = f"{rig.base}/REST1/setChargeTarget"
        async with client(token=TOKEN) as http, rig.app.bridge.runners[0].command_lock:  # the device is busy
            posts = {asyncio.create_task(http.post(url, json={"chargeToPercent": p})) for p in (61, 62)}
            # One of the two waits for the device; the other is refused at once, while it is still held.
            done, (waiting,) = await asyncio.wait(posts, return_when=asyncio.FIRST_COMPLETED)
            busy = done.pop().result()
            assert "queue_limit" in refused(busy, 503, "busy")
            assert busy.headers["retry-after"] == str(busy.json()["error"]["retry_after"])
            await rig.app.stop()
            assert "nothing was written" in refused(await waiting, 503, "cancelled")
        assert rig.writes() == writes


async def test_a_taken_port_is_a_clear_error_and_stop_closes_the_ports(tmp_path: Path) -> None:
    clock = fast_clock()
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=5, tz=ZONE)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with SimulatorServer(sim) as server:
            mqtt = {"port": free_port()}  # no broker: not needed here
            settings = bridge_settings(tmp_path, [server.port], mqtt=mqtt, http={"enabled": True, "port": port})
            app = Application(settings, clock=clock)
            try:
                with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
                    await app.start()
            finally:
                await app.stop()
            settings = bridge_settings(tmp_path, [server.port], mqtt=mqtt, http={"enabled": True, "port": 0})
            app = Application(settings, clock=clock)
            await app.start()
            try:
                assert app.http is not None and app.http.port is not None
                free = app.http.port
                await first_snapshot(app.bridge.runners[0])
                async with client() as http:
                    assert (await http.get(f"http://127.0.0.1:{free}/REST1/readData")).status_code == 200
            finally:
                started = time.monotonic()
                await app.stop()
                assert time.monotonic() - started < 2.0
    with pytest.raises(httpx.ConnectError):
        async with client() as http:
            await http.get(f"http://127.0.0.1:{free}/health")


# --- web pages ------------------------------------------------------------------------------------


async def test_a_foreign_web_page_changes_nothing_even_from_a_trusted_network(shim: HttpRig) -> None:
    """A page the user opens makes their browser post from inside the trusted network; it is refused."""
    url = f"{shim.base}/REST1/setChargeTarget"
    await _set_target(shim, 64)
    before = shim.writes()
    async with client(local_address=OTHER_CLIENT) as http:  # trusted: no token needed
        foreign = await http.post(url, json={"chargeToPercent": 40}, headers={"Origin": "http://evil.example"})
        assert "http://evil.example" in refused(foreign, 403, "cross_origin")
        no_origin = await http.post(url, json={"chargeToPercent": 40}, headers={"Sec-Fetch-Site": "cross-site"})
        assert "Sec-Fetch-Site" in refused(no_origin, 403, "cross_origin")
        # The CORS "simple request" types, which a page sends without a preflight, with or without headers.
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            response = await http.post(url, content='{"chargeToPercent": 40}', headers={"Content-Type": kind})
            assert "Content-Type: application/json" in refused(response, 415, "unsupported_media_type")
        untyped = await http.post(url, content="40")
        refused(untyped, 415, "unsupported_media_type")
        # A reboot from a page: refused before anything is sent to the inverter.
        reboot = await http.post(f"{shim.base}/REST1/reboot", headers={"Origin": "null"})
        refused(reboot, 403, "cross_origin")
    assert shim.writes() == before and shim.holding(116) == {116: 64}


async def test_a_listed_origin_may_change_things_with_the_token(shim: HttpRig) -> None:
    async with client(token=TOKEN) as http:
        preflight = await http.options(
            f"{shim.base}/REST1/setChargeTarget",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        response = await http.post(
            f"{shim.base}/REST1/setChargeTarget",
            json={"chargeToPercent": 57},
            headers={"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"},
        )
    assert ok(response)["Target_SOC"] == 57 and response.headers["access-control-allow-origin"] == ORIGIN
    assert shim.holding(116) == {116: 57}


async def _set_target(rig: HttpRig, percent: int) -> None:
    async with client(local_address=OTHER_CLIENT) as http:
        ok(await http.post(f"{rig.base}/REST1/setChargeTarget", json={"chargeToPercent": percent}))
    assert rig.holding(116) == {116: percent}


# --- idle connections -----------------------------------------------------------------------------


async def _connect(rig: HttpRig, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", rig.shim.port, local_addr=(source, 0))


async def _closed_by_the_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (bounded: it must close on its own)."""
    return await asyncio.wait_for(reader.read(), timeout=IDLE_TIMEOUT + 20)


async def test_idle_sockets_do_not_lock_out_health_or_predbat_and_are_closed(guarded: HttpRig) -> None:
    await _set_target(guarded, 70)
    # 200 sockets that send nothing or stop halfway: 20 from 127.0.0.1 (the watchdog's own address),
    # 3 each from 60 other addresses, and from Predbat's trusted address half-sent writes.
    sources = ["127.0.0.1"] * 20 + [f"127.0.0.{10 + n % 60}" for n in range(176)]
    idle = [await _connect(guarded, source) for source in sources]
    head = b"POST /REST1/setChargeTarget HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    stalled = [
        head,  # the head never ends
        head + b"Content-Length: 23\r\n\r\n",  # no body
        head + b'Content-Length: 23\r\n\r\n{"chargeToPercent": 3',  # all but the last two bytes of 33
        b"GET /health HTTP/1.1\r\nHo",
    ]
    for partial in stalled:
        reader, writer = await _connect(guarded, OTHER_CLIENT)
        writer.write(partial)
        await writer.drain()
        idle.append((reader, writer))
    assert len(idle) == 200
    try:
        async with client() as http:
            health = await http.get(f"{guarded.base}/health")
        assert health.status_code == 200, health.text
        async with client(local_address=OTHER_CLIENT) as http:  # Predbat, on an address already at its bound
            got = ok(await http.post(f"{guarded.base}/REST1/setChargeTarget", json={"chargeToPercent": 72}))
        assert got["Target_SOC"] == 72 and guarded.holding(116) == {116: 72}
        assert guarded.shim.connections.evicted > 0  # room was made by closing idle sockets
        for reader, _ in idle:  # every idle socket is closed by the server, without an answer
            assert await _closed_by_the_server(reader) == b""
    finally:
        for _, writer in idle:
            writer.close()
    assert guarded.holding(116) == {116: 72}  # the half-sent write of 33 was never carried out


async def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(guarded: HttpRig) -> None:
    reader, writer = await _connect(guarded, "127.0.0.1")
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        answered = await _closed_by_the_server(reader)  # the answer, then the close once idle
    finally:
        writer.close()
    assert answered.startswith(b"HTTP/1.1 200 ") and b'"healthy":true' in answered
