"""Commands defined here but not carried out yet, and GivTCP's dead stubs.

Each has its payload model, so its input is validated and documented today; its action
answers ``unsupported`` with the reason. Completing one later means replacing
``action=not_yet(...)`` with a real action or planner; nothing else has to change.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from givbridge.commands.schemas import (
    ChargeControlPayload,
    ChargingModePayload,
    CurrentLimitPayload,
    DateTimePayload,
    DurationPayload,
    ExportLimitPayload,
    ImportCapPayload,
    LocalControlModePayload,
    NoPayload,
    PvInputModePayload,
    RatePayload,
    SessionEnergyPayload,
    StatePayload,
)
from givbridge.commands.spec import ActionContext, Command, unsupported


def not_yet(reason: str) -> Callable[[Any, ActionContext], Awaitable[Mapping[str, Any]]]:
    """An action that answers ``unsupported`` with ``reason``."""

    async def answer(payload: Any, context: ActionContext) -> Mapping[str, Any]:
        raise unsupported(reason)

    return answer


_TIMED = "not available yet: timed actions (with a revert that survives restarts) are still being built"
_EVC = "not available yet: EV charger support is still being built"
_TARIFF = "not available yet: tariff tracking is still being built"

_timed = functools.partial(
    Command,
    group="Timed actions",
    payload=DurationPayload,
    raw_field="duration",
    status="later",
    action=not_yet(_TIMED),
)
_evc = functools.partial(Command, group="EV charger", target="evc", status="later", action=not_yet(_EVC))
_dead = functools.partial(Command, group="Not implemented by GivTCP", status="dead")

COMMANDS: tuple[Command, ...] = (
    _timed(
        name="forceCharge",
        summary="Charge the battery from the grid at full rate for N minutes, then restore the settings.",
        updates=("Control/Force_Charge", "Control/Force_Charge_Num"),
    ),
    _timed(
        name="forceExport",
        summary="Discharge at full power for N minutes, then restore the settings.",
        updates=("Control/Force_Export", "Control/Force_Export_Num"),
    ),
    _timed(
        name="tempPauseCharge",
        summary="Set the charge rate to 0 W for N minutes, then restore it.",
        updates=("Control/Temp_Pause_Charge", "Control/Temp_Pause_Charge_Num"),
    ),
    _timed(
        name="tempPauseDischarge",
        summary="Set the discharge rate to 0 W for N minutes, then restore it.",
        updates=("Control/Temp_Pause_Discharge", "Control/Temp_Pause_Discharge_Num"),
    ),
    Command(
        name="switchRate",
        summary="Tell the tariff tracker the day or night rate applies now (dynamic tariffs).",
        group="Tariff",
        payload=RatePayload,
        raw_field="rate",
        status="later",
        writes=False,
        action=not_yet(_TARIFF),
    ),
    _evc(
        name="setChargeControl",
        summary="Start or stop the EV charger (EVC HR95 = Ready/Start/Stop).",
        payload=ChargeControlPayload,
        raw_field="mode",
        aliases=("controlCharge",),
        notes="api.json's start/stop are accepted in any case (GivTCP only takes Ready/Start/Stop).",
    ),
    _evc(
        name="setChargingMode",
        summary="The EV charger's mode: Grid, Hybrid (surplus solar topped up from the grid) or Solar.",
        payload=ChargingModePayload,
        raw_field="mode",
        notes="api.json documents state: enable/disable; GivTCP takes Grid/Hybrid/Solar (as mode or state).",
    ),
    _evc(
        name="setCurrentLimit",
        summary="The EV charger's current limit, 6-32 A.",
        payload=CurrentLimitPayload,
        raw_field="current",
    ),
    _evc(
        name="setImportCap",
        summary="Cap the site's grid import while the EV charges, in amps.",
        payload=ImportCapPayload,
        raw_field="current",
    ),
    _evc(
        name="setMaxSessionEnergy",
        summary="Stop the EV charge once a session has delivered this many kWh.",
        payload=SessionEnergyPayload,
        raw_field="energy",
    ),
    _evc(
        name="chargeMode",
        summary="The EV charger's Plug and Go switch.",
        payload=StatePayload,
        raw_field="state",
        aliases=("setChargeMode",),
    ),
    _evc(
        name="setSystemTime",
        summary="Set the EV charger's clock.",
        payload=DateTimePayload,
        raw_field="dateTime",
        notes="Broken in GivTCP (strptime called on the module).",
    ),
    _evc(
        name="getEVCCache",
        summary="The EV charger's latest values.",
        payload=NoPayload,
        method="GET",
        writes=False,
    ),
    _dead(
        name="setLocalControlMode",
        summary="GivTCP stub: local control mode (Load/Battery/Grid).",
        payload=LocalControlModePayload,
        raw_field="state",
        action=not_yet("GivTCP never implemented this control and its register is unknown"),
    ),
    _dead(
        name="setPVInputMode",
        summary="GivTCP stub: PV input mode (Independent/1x2).",
        payload=PvInputModePayload,
        raw_field="state",
        action=not_yet("GivTCP never implemented this control and its register is unknown"),
    ),
    _dead(
        name="setExportLimit",
        summary="GivTCP stub: export power limit in watts.",
        payload=ExportLimitPayload,
        raw_field="limit",
        action=not_yet("GivTCP never implemented this; the register is not confirmed on any model givbridge can write"),
    ),
)
