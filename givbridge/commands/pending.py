"""GivTCP's dead stubs: commands its API lists but never carried out.

Each has its payload model, so its input is validated and documented; its action answers
``unsupported`` with the reason. Implementing one means replacing ``action=stub(...)``
with a real action or planner (and its status with the default); nothing else has to change.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from givbridge.commands.schemas import ExportLimitPayload, LocalControlModePayload, PvInputModePayload
from givbridge.commands.spec import ActionContext, Command, unsupported


def stub(reason: str) -> Callable[[Any, ActionContext], Awaitable[Mapping[str, Any]]]:
    """An action that answers ``unsupported`` with ``reason``."""

    async def answer(payload: Any, context: ActionContext) -> Mapping[str, Any]:
        raise unsupported(reason)

    return answer


_dead = functools.partial(Command, group="Not implemented by GivTCP", status="dead")

COMMANDS: tuple[Command, ...] = (
    _dead(
        name="setLocalControlMode",
        summary="GivTCP stub: local control mode (Load/Battery/Grid).",
        payload=LocalControlModePayload,
        raw_field="state",
        action=stub("GivTCP never implemented this control and its register is unknown"),
    ),
    _dead(
        name="setPVInputMode",
        summary="GivTCP stub: PV input mode (Independent/1x2).",
        payload=PvInputModePayload,
        raw_field="state",
        action=stub("GivTCP never implemented this control and its register is unknown"),
    ),
    _dead(
        name="setExportLimit",
        summary="GivTCP stub: export power limit in watts.",
        payload=ExportLimitPayload,
        raw_field="limit",
        action=stub("GivTCP never implemented this; the register is not confirmed on any model givbridge can write"),
    ),
)
