"""Describing commands to people: ``givbridge commands`` and ``docs/commands.md``, from the registry.

Payload examples come from the payload models' field examples and the models each command
applies to from its applicability predicate, evaluated against a reference device of every
family, so the documentation cannot drift from what the executor does.

Regenerate the committed file with ``givbridge commands --format markdown > docs/commands.md``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from givbridge.commands.access import reads_only
from givbridge.commands.decoding import MAX_PAYLOAD_BYTES, TRANSACTION_KEY
from givbridge.commands.devices import reference_devices
from givbridge.commands.results import HTTP_OK, HTTP_STATUS, ErrorCode
from givbridge.commands.schemas import NoPayload, SettingsPayload
from givbridge.commands.spec import Command
from givbridge.commands.values import NUMBER_TEXT, TIME_TEXT

if TYPE_CHECKING:
    from givbridge.commands.registry import Registry

REGENERATE = "givbridge commands --format markdown > docs/commands.md"

_ERROR_MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_PAYLOAD: "the payload is malformed, out of range or not UTF-8, or over the size limit; "
    "nothing was written",
    ErrorCode.INVALID_TOPIC: "MQTT only: the control topic is malformed (an extra or empty level, a serial or "
    "command level too long or with other characters); answered on `<root>/bridge/response/<command>`, or "
    "`<root>/bridge/response/invalid_topic` when no command could be read; nothing was run",
    ErrorCode.UNKNOWN_COMMAND: "no command has that name (names are case-sensitive)",
    ErrorCode.UNKNOWN_INVERTER: "no configured inverter has that serial, or the serial was left out while "
    "several inverters are configured",
    ErrorCode.UNSUPPORTED: "the model cannot do this (the message says why), or givbridge does not do it yet",
    ErrorCode.READ_ONLY: "givbridge runs with `read_only: true`",
    ErrorCode.NOT_PERSISTED: "the inverter acknowledged the write but the read-back shows other values; "
    "`error.registers` lists register, wanted and actual",
    ErrorCode.REJECTED: "the inverter refused the write; `error.registers` lists the refused registers",
    ErrorCode.UNREACHABLE: "the inverter is not connected, did not answer, or did not come back in time",
    ErrorCode.BUSY: "`control.queue_limit` commands are already waiting for this device; nothing was written. "
    "Send it again in a few seconds (`error.retry_after`)",
    ErrorCode.EXPIRED: "the command could not start within `control.command_expiry` seconds (the device was busy "
    "or not answering); it was not written and never will be",
    ErrorCode.CANCELLED: "givbridge stopped: with `error.started` false the command never ran and nothing was "
    "written; with `error.started` true it was cut off while running and may have been partly applied",
    ErrorCode.INTERNAL: "a bug in givbridge (logged with a traceback)",
    ErrorCode.UNAUTHORIZED: "HTTP only: the command needs `Authorization: Bearer <http.token>` and it was "
    "missing or wrong",
    ErrorCode.FORBIDDEN: "this caller may not run this command (admin over MQTT while `mqtt.admin` is off or "
    "without its token; an HTTP client outside `http.trusted_networks` with no token set; a settings document "
    "that widens access from a caller without a token); the message says how to allow it",
}


def example_object(command: Command) -> dict[str, Any]:
    """A JSON payload for ``command`` built from its fields' examples (fields its name fixes left out)."""
    example: dict[str, Any] = {}
    for name, field in command.payload.model_fields.items():
        if name in command.fixed or not field.examples:
            continue
        example[name] = field.examples[0]
    return example


def raw_example(command: Command) -> str | None:
    if command.raw_field is None:
        return None
    examples = command.payload.model_fields[command.raw_field].examples or []
    return str(examples[0]) if examples else None


def accepted_forms(command: Command) -> str:
    """One line saying what a payload for ``command`` may look like."""
    if issubclass(command.payload, NoPayload):
        if reads_only(command):
            return "no payload (anything sent is ignored)"
        return "any payload, which is ignored, e.g. `{}` or `restart`; over MQTT not an empty message"
    if issubclass(command.payload, SettingsPayload):
        return "a JSON object: a whole givbridge configuration document"
    forms = []
    raw = raw_example(command)
    if raw is not None:
        forms.append(f"raw `{raw}`")
    forms.append(f"JSON `{json.dumps(example_object(command))}`")
    return " or ".join(forms)


def field_notes(command: Command) -> list[str]:
    notes = []
    for name, field in command.payload.model_fields.items():
        if name in command.fixed or field.description is None:
            continue
        optional = "" if field.is_required() else " (optional)"
        notes.append(f"`{name}`{optional}: {field.description}")
    return notes


def applies_to(command: Command) -> str:
    """The model families the command applies to, by display name; "every model" when all."""
    if command.status == "dead":
        return "none (GivTCP never implemented it)"
    if command.target != "inverter":
        return "the bridge" if command.target == "bridge" else "EV chargers"
    devices = reference_devices()
    names = [device.family.display for device in devices if command.applies.reason(device) is None]
    others = [device.family.display for device in devices if device.family.display not in names]
    if not others:
        return "every model"
    if not names:
        return "none of the known models"
    if len(others) < len(names):
        return "every model except " + ", ".join(others)
    return ", ".join(names)


def _status_word(command: Command) -> str:
    return {"ready": "", "dead": " (GivTCP stub, not implemented)"}[command.status]


def render_text(registry: Registry) -> str:
    """The ``givbridge commands`` listing: one block per command."""
    lines: list[str] = []
    for group, commands in registry.groups().items():
        lines.append(f"{group}:")
        for command in commands:
            aliases = f" (also {', '.join(command.aliases)})" if command.aliases else ""
            lines.append(f"  {command.name}{aliases}{_status_word(command)}")
            lines.append(f"      {command.summary}")
            lines.append(f"      payload: {accepted_forms(command)}")
            lines.append(f"      models:  {applies_to(command)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(registry: Registry) -> str:
    """``docs/commands.md``."""
    out: list[str] = [
        "# givbridge commands",
        "",
        f"<!-- Generated from givbridge/commands; do not edit. Regenerate with: {REGENERATE} -->",
        "",
        "Every command is one definition in `givbridge/commands/`: the MQTT control topics, the HTTP shim, "
        "Home Assistant's command topics and this page all come from it.",
        "",
        "## Sending a command",
        "",
        "- MQTT: publish to `<root>/control/<serial>/<command>` (root `GivEnergy` unless configured), or to "
        "`<root>/control/<command>` when exactly one inverter is configured. Retained messages are ignored "
        "(a retained command would run again on every reconnect).",
        "- Payload: GivTCP's raw value (`80`, `80.0`, `enable`, `16:30`, `16:30:00`, `Eco (Paused)`) or a JSON "
        "object with the api.json keys, values as strings or numbers, optionally with a `transaction` "
        f"(string or number) that the answer echoes. At most {MAX_PAYLOAD_BYTES} bytes of UTF-8.",
        '- An empty MQTT message (no bytes, only spaces, or `""`) runs only reads ('
        + ", ".join(f"`{command.name}`" for command in registry if reads_only(command))
        + "); any other command answers `invalid_payload` (on `<root>/bridge/response/<command>` when the topic "
        "names no serial) and runs nothing. Clearing a "
        "retained command publishes an empty retained message, which the broker delivers to a connected givbridge "
        "as an ordinary one: it must not run the command again. Commands that take no value accept any payload "
        "instead, e.g. `{}` or Home Assistant's button payload `restart`. Over HTTP a `POST` without a body is a "
        "deliberate request and runs.",
        "- Who may: reads are open; device writes over MQTT are open to whoever the broker lets publish "
        "(restrict `<root>/control/#` with a broker ACL), over HTTP they need the token or a trusted network; "
        "`runAll` from an unauthorised HTTP client serves the last poll. Admin commands (`settings`, `restart`, "
        "`setLogLevel`, `reboot`) over MQTT are refused unless `mqtt.admin` is `on`, or `token` and the JSON "
        'payload carries `"token": "<mqtt.admin_token>"`; Home Assistant, which cannot send the token, is offered '
        "their entities (the givbridge device's restart button and log-level select, each inverter's reboot "
        "button) only with `on`. See the security model in the README.",
        "- Numbers, as text or JSON numbers, are plain ASCII decimals: `80`, `-10`, `80.5`, `80.0`, spaces around "
        "allowed, at most 15 digits before the point. Exponents (`6e1`), underscores (`1_0_0`), hex (`0x10`), "
        "`inf`/`nan` (JSON `NaN`/`Infinity` too), digits of other scripts (Arabic-Indic, full-width) and true/false "
        "are refused with `invalid_payload`. Timed actions take 1-1440 minutes in every form.",
        "- Topic levels: the serial is 1-32 letters, digits, `-` or `_`; the command a letter then up to 63 "
        "letters, digits or `_`. A malformed control topic is logged and answered with `invalid_topic` on "
        "`<root>/bridge/response/<command>` (or `<root>/bridge/response/invalid_topic` when the last level is "
        "not a command name). A retained message gets no answer, malformed or not: the broker replays it "
        "on every reconnect, after the live one was answered.",
        "- Answer: exactly one JSON document on `<root>/<serial>/response/<command>` (not retained), sent after "
        "the inverter has been read back: `ok` is never sent for a value that was not read back.",
        "- Commands to one device run one at a time. At most `control.queue_limit` wait (one more is answered "
        "`busy` at once), one that could not start within `control.command_expiry` seconds is answered `expired` "
        "and never written, and at shutdown the ones left are answered `cancelled`.",
        "- A command published while givbridge is not connected to the broker, or before `<root>/bridge/state` "
        "reads `online` again after a reconnect, is lost: never run, never answered.",
        "",
        "```json",
        '{"status": "ok", "command": "setChargeTarget", "transaction": "42", '
        '"data": {"Target_SOC": 80, "Enable_Charge_Target": "enable"}}',
        '{"status": "error", "command": "setChargeTarget", "transaction": "42", '
        '"error": {"code": "invalid_payload", "message": "..."}}',
        "```",
        "",
        "`data` holds the values read back after the write, keyed by GivTCP leaf name (the command's *Updates*).",
        "",
        "| Error code | HTTP status | Meaning |",
        "|---|---|---|",
        f"| (ok) | {HTTP_OK} | done and read back |",
        *(f"| `{code.value}` | {HTTP_STATUS[code]} | {_ERROR_MEANINGS[code]} |" for code in ErrorCode),
        "",
    ]
    groups = registry.groups()
    out += ["## Contents", ""]
    for group, commands in groups.items():
        out.append(f"- **{group}**: " + ", ".join(f"[{c.name}](#{c.name.lower()})" for c in commands))
    out.append("")
    for group, commands in groups.items():
        out += [f"## {group}", ""]
        for command in commands:
            out += _command_markdown(command)
    return "\n".join(out).rstrip() + "\n"


def _command_markdown(command: Command) -> list[str]:
    lines = [f"### {command.name}", "", f"{command.summary}{_status_word(command)}", ""]
    facts = [f"- Payload: {accepted_forms(command)}"]
    facts += [f"  - {note}" for note in field_notes(command)]
    facts.append(f"- Models: {applies_to(command)}")
    if command.updates:
        facts.append(f"- Updates: {_leaves(command.updates)}")
    facts.append(f"- HTTP: `{command.method} /{command.name}`")
    if command.aliases:
        facts.append(f"- Also called: {', '.join(f'`{alias}`' for alias in command.aliases)}")
    if command.notes:
        facts.append(f"- Notes: {command.notes}")
    return [*lines, *facts, ""]


def _leaves(paths: Iterable[str]) -> str:
    return ", ".join(f"`{path.rsplit('/', 1)[-1]}`" for path in paths)


# Bounds by their JSON Schema names: pydantic leaves them under its own on annotated fields.
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
_BOUNDS.update({name: name for name in list(_BOUNDS.values())})
_KEPT = ("description", "examples", "default")


def _accepted_value(schema: Mapping[str, Any]) -> dict[str, Any]:
    """One field's schema widened to what its parser accepts: numbers also as text, switches as words."""
    meta = {key: schema[key] for key in _KEPT if key in schema}
    if "anyOf" in schema:
        branches: list[dict[str, Any]] = []
        for branch in schema["anyOf"]:
            widened = _accepted_value(branch)
            branches += widened["anyOf"] if set(widened) == {"anyOf"} else [widened]
        return {"anyOf": branches, **meta}
    kind = schema.get("type")
    if kind in ("integer", "number"):
        bounds = {_BOUNDS[key]: value for key, value in schema.items() if key in _BOUNDS}
        return {"anyOf": [{"type": kind, **bounds}, {"type": "string", "pattern": NUMBER_TEXT}], **meta}
    if kind == "boolean":
        return {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}, {"type": "string"}], **meta}
    if kind == "string" and schema.get("format") == "time":
        return {"type": "string", "pattern": TIME_TEXT, **meta}
    if kind in ("string", "null"):
        return {"type": kind, **meta}  # other formats (date-time) are parsed more leniently than JSON Schema's
    return dict(schema)


def input_schema(command: Command) -> dict[str, Any]:
    """JSON Schema of the JSON object ``command`` accepts, as the executor parses it.

    The payload models describe parsed values (an integer percentage); senders write GivTCP's
    forms, so numbers may also come as text and switches as words. Fields the command's name
    fixes may be left out, and every object may carry a ``transaction`` to echo.
    """
    if issubclass(command.payload, NoPayload):
        return {"type": "object", "description": accepted_forms(command)}
    if issubclass(command.payload, SettingsPayload):
        return {"type": "object", "additionalProperties": True, "description": accepted_forms(command)}
    model = command.payload.model_json_schema()
    properties: dict[str, Any] = {}
    for name, schema in model.get("properties", {}).items():
        if name in command.fixed:
            value = command.fixed[name]
            properties[name] = {"enum": [value, str(value)], "description": f"{value}: set by the command's name"}
        else:
            properties[name] = _accepted_value(schema)
    properties[TRANSACTION_KEY] = {
        "anyOf": [{"type": "string"}, {"type": "number"}],
        "description": "any string or number; echoed in the answer",
    }
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in model.get("required", []) if name not in command.fixed],
        "additionalProperties": False,
    }


def listing(registry: Registry) -> list[dict[str, Any]]:
    """Every command as data: the JSON listing, and the HTTP shim's ``/api``."""
    return [
        {
            "name": command.name,
            "aliases": list(command.aliases),
            "group": command.group,
            "summary": command.summary,
            "status": command.status,
            "method": command.method,
            "target": command.target,
            "writes": command.writes,
            "payload": accepted_forms(command),
            "raw_field": command.raw_field,
            "example": example_object(command),
            "payload_schema": input_schema(command),
            "models": applies_to(command),
            "updates": list(command.updates),
            "notes": command.notes,
        }
        for command in registry
    ]


def render_json(registry: Registry) -> str:
    """A machine-readable listing, for tools that build on the command set."""
    return json.dumps(listing(registry), indent=2, default=str) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["text", "markdown", "json"],
        default="text",
        help=f"markdown is docs/commands.md ({REGENERATE})",
    )


async def main(args: argparse.Namespace) -> int:
    """``givbridge commands``."""
    from givbridge.commands.registry import REGISTRY

    render = {"text": render_text, "markdown": render_markdown, "json": render_json}[args.format]
    print(render(REGISTRY), end="")
    return 0
