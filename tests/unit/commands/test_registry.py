"""The registry is the one list of commands: GivTCP's api.json, the entities and the docs all agree with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from givbridge import cli
from givbridge.commands import HTTP_STATUS, REGISTRY, Command, CommandFailed, CommandResult, ErrorCode
from givbridge.commands.decoding import decode
from givbridge.commands.docs import REGENERATE, example_object, raw_example, render_markdown
from givbridge.commands.executor import parse_payload
from givbridge.entities import load_catalogue

ROOT = Path(__file__).resolve().parents[3]
API = json.loads((ROOT / "tests" / "data" / "givtcp_api.json").read_text())["commands"]


def test_every_givtcp_api_command_is_in_the_registry() -> None:
    missing = sorted(name for name in API if name not in REGISTRY)
    assert not missing, f"api.json commands without a definition: {missing}"


# GivTCP served these changes on GET; givbridge takes them only by POST, so that a link or a
# prefetching browser cannot reboot the inverter (the shim answers 405 to the GET).
POST_ONLY_CHANGES = frozenset({"reboot", "restart"})


def test_http_methods_follow_api_json() -> None:
    for name, entry in API.items():
        definition = REGISTRY.get(name)
        assert definition is not None
        expected = "POST" if name in POST_ONLY_CHANGES else entry["method"]
        assert definition.method == expected, name
    assert {name for name, entry in API.items() if entry["method"] == "GET"} >= POST_ONLY_CHANGES


def test_aliases_resolve_to_one_definition() -> None:
    assert REGISTRY.get("rebootInverter") is REGISTRY.get("reboot")
    assert REGISTRY.get("rebootAddon") is REGISTRY.get("restart")
    assert REGISTRY.get("controlCharge") is REGISTRY.get("setChargeControl")
    assert REGISTRY.get("setchargetarget") is None  # case-sensitive, as GivTCP


def test_every_entity_command_exists() -> None:
    catalogue = load_catalogue()
    commands = {d.command for d in catalogue.definitions.values() if d.command is not None}
    assert commands, "the catalogue defines controls"
    assert sorted(c for c in commands if c not in REGISTRY) == []


def test_numbered_families_are_complete() -> None:
    for stem, count in (
        ("setChargeTarget", 10),
        ("setDischargeTarget", 10),
        ("setChargeStart", 10),
        ("setChargeEnd", 10),
        ("setDischargeStart", 10),
        ("setDischargeEnd", 10),
        ("setExportTarget", 3),
        ("setExportStart", 3),
        ("setExportEnd", 3),
        ("setEMSChargeTarget", 3),
        ("setEMSDischargeTarget", 3),
        ("setEMSChargeStart", 3),
        ("setEMSDischargeEnd", 3),
        ("setChargeSlot", 3),
        ("setDischargeSlot", 3),
        ("setExportSlot", 3),
    ):
        assert all(f"{stem}{n}" in REGISTRY for n in range(1, count + 1)), stem


@pytest.mark.parametrize("definition", list(REGISTRY), ids=lambda c: c.name)
def test_documented_examples_parse_and_report(definition: Command) -> None:
    """Each command's documented payloads are accepted, and its updates name real payload fields."""
    forms = [example_object(definition)]
    raw = raw_example(definition)
    if raw is not None:
        forms.append(raw)  # type: ignore[arg-type]
    for form in forms:
        if definition.name == "settings":
            continue  # its example is a whole configuration, tested with the command
        model = parse_payload(definition, decode(form))
        fields = {**model.model_dump(), "serial": "SA0000A000"}
        for template in definition.updates:
            template.format_map(fields)  # a KeyError here is a template naming no field
    assert definition.summary.endswith((".", ")"))
    assert definition.group


def test_every_error_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert HTTP_STATUS[ErrorCode.READ_ONLY] == 423
    assert HTTP_STATUS[ErrorCode.UNREACHABLE] == 504


def test_result_documents() -> None:
    ok = CommandResult.success("setChargeTarget", "t-1", "SA1", {"Target_SOC": 80})
    assert ok.document() == {
        "status": "ok",
        "command": "setChargeTarget",
        "transaction": "t-1",
        "data": {"Target_SOC": 80},
    }
    assert ok.http_status == 200
    failure = CommandFailed(
        ErrorCode.NOT_PERSISTED, "kept", {"registers": [{"register": 110, "wanted": 5, "actual": 4}]}
    )
    error = CommandResult.failure("setBatteryReserve", 7, "SA1", failure)
    assert json.loads(error.to_json()) == {
        "status": "error",
        "command": "setBatteryReserve",
        "transaction": 7,
        "error": {
            "code": "not_persisted",
            "message": "kept",
            "registers": [{"register": 110, "wanted": 5, "actual": 4}],
        },
    }
    assert error.http_status == 502


def test_committed_docs_match_the_registry() -> None:
    committed = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    assert committed == render_markdown(REGISTRY), f"docs/commands.md is stale; regenerate with: {REGENERATE}"


def test_cli_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["commands"]) == 0
    listing = capsys.readouterr().out
    for definition in REGISTRY:
        assert f"  {definition.name}" in listing
    assert cli.main(["commands", "--format", "json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert {entry["name"] for entry in parsed} == {c.name for c in REGISTRY}
