"""Property-based fuzzing of the HTTP shim from its own OpenAPI document (schemathesis): no server errors.

The document is fetched from the running shim; schemathesis generates requests for every
operation in it, valid ones (which really write to the simulated inverter and are read
back) and invalid ones, and sends them over a real socket. Every answer must be a
documented status with a body matching its documented schema, and never a 5xx other than
the documented 502/503/504.

The profile is small so the test runs in seconds; ``HTTP_FUZZ_EXAMPLES=50`` runs a thorough one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.http_helpers import TOKEN, HttpRig, client, http_rig

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # schemathesis's strategies use the random module; Hypothesis warns about it on every example.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

EXAMPLES = int(os.environ.get("HTTP_FUZZ_EXAMPLES", "3"))
#: Commands that take the inverter or every connection down for a while by design (a reboot
#: waits minutes for the inverter to come back); test_http.py runs them deliberately.
DISRUPTIVE = {"reboot", "rebootInverter", "restart", "rebootAddon"}
#: The 5xx statuses the shim answers by design: the inverter did not confirm (502), givbridge is
#: unhealthy (503, /health only), the inverter is unreachable (504). Anything else is a fault.
HONEST_5XX = {502, 503, 504}


def no_server_fault(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """A server error that is not one of the documented, honest ones (500 above all)."""
    if response.status_code >= 500 and response.status_code not in HONEST_5XX:
        raise AssertionError(f"server fault {response.status_code}: {response.text[:500]}")


CHECKS = [no_server_fault, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpRig]:
    # No broker: /health answers its documented 503, and nothing here needs MQTT.
    async with http_rig(
        tmp_path_factory.mktemp("fuzz"), ["hybrid-gen3"], http={"token": TOKEN, "per_inverter_ports": True}
    ) as running:
        yield running


def fuzz(document: dict[str, Any], base_url: str, examples: int) -> list[str]:
    """Run schemathesis over every operation of ``document``; the operations fuzzed (blocking)."""
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()  # one keep-alive connection, as a real client would use
    fuzzed: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.rsplit("/", 1)[-1] in DISRUPTIVE:
            continue
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case) -> None:
                response = case.call(
                    base_url=base_url, session=session, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15
                )
                case.validate_response(response, checks=CHECKS)

            try:
                call()
            except Unsatisfiable:
                # Nothing to make invalid: an operation without parameters or body (GET /health).
                assert not mode.is_positive and "requestBody" not in str(operation.definition.raw)
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    return fuzzed


def operations(document: dict[str, Any]) -> list[str]:
    return sorted(
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
        if path.rsplit("/", 1)[-1] not in DISRUPTIVE
    )


@pytest.mark.timeout(120)
async def test_fuzzing_the_main_port_finds_no_server_error(rig: HttpRig) -> None:
    async with client() as http:
        document = (await http.get(f"{rig.base}/openapi.json")).json()
    before = rig.writes()
    fuzzed = await asyncio.to_thread(fuzz, document, rig.base, EXAMPLES)
    assert "POST /REST{inverter}/setChargeTarget" in fuzzed and "GET /REST{inverter}/readData" in fuzzed
    assert sorted(fuzzed) == operations(document)  # none skipped
    assert rig.writes() > before  # valid requests were carried out, not only refused


@pytest.mark.timeout(120)
async def test_fuzzing_an_inverter_port_finds_no_server_error(rig: HttpRig) -> None:
    async with client() as http:
        document = (await http.get(f"{rig.inverter_base(1)}/openapi.json")).json()
    fuzzed = await asyncio.to_thread(fuzz, document, rig.inverter_base(1), max(1, EXAMPLES // 3))
    assert "POST /setChargeTarget" in fuzzed
