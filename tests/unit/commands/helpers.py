"""Pure inputs for planner tests: reference devices, a snapshot with chosen values, a plan's writes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from givbridge.commands import REGISTRY
from givbridge.commands.decoding import decode
from givbridge.commands.devices import reference_device
from givbridge.commands.executor import parse_payload
from givbridge.commands.spec import Command, PlanInput, Planned
from givbridge.devices.context import DeviceContext
from givbridge.plant.snapshot import DeviceInfo, Scalar, Snapshot

ZONE = ZoneInfo("Europe/London")
NOW = datetime(2024, 5, 1, 15, 30, 10, tzinfo=UTC).astimezone(ZONE)  # 16:30:10 BST


def snapshot(device: DeviceContext, values: Mapping[str, Scalar] | None = None) -> Snapshot:
    """A snapshot of ``device`` holding ``values`` (paths relative to the serial's tree; ``{serial}`` expands)."""
    resolved = {path.replace("{serial}", device.serial): value for path, value in (values or {}).items()}
    info = DeviceInfo(serial=device.serial, model=device.family.display, family=device.family.key)
    return Snapshot(info=info, taken_at=NOW, values=resolved)


def command(name: str) -> Command:
    found = REGISTRY.get(name)
    assert found is not None, name
    return found


def plan(
    name: str,
    payload: str | Mapping[str, Any],
    family: str = "hybrid-gen3",
    *,
    values: Mapping[str, Scalar] | None = None,
    memory: Mapping[str, int] | None = None,
    arm_firmware: int | None = None,
) -> Planned:
    """Plan ``name`` for a reference device of ``family``, checking first that it applies there."""
    definition = command(name)
    device = reference_device(family, arm_firmware=arm_firmware)
    reason = definition.applies.reason(device)
    assert reason is None, reason
    model = parse_payload(definition, decode(payload))
    assert definition.plan is not None
    return definition.plan(model, PlanInput(device, snapshot(device, values), memory or {}, NOW))


def writes(planned: Planned) -> list[tuple[int, int]]:
    return [(w.register, w.value) for w in planned.plan.writes]
