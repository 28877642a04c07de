"""The EV charger's commands: addressed as ``control/<charger serial>/<command>`` (or without the serial).

The charger's own settings (Start/Stop, current limit, Plug and Go, clock) are register writes
through its runner, answered only after the charger has been read back, exactly like an
inverter's: ``ok`` carries the values read back, a refusal is ``rejected``, an acknowledged
write the charger did not keep is ``not_persisted``. The emulated modes' settings (charging
mode, import cap, session energy) live in the bridge: they are saved to the data directory,
published with the charger's values and acted on at once (see :mod:`givbridge.evc.modes`).
Commands to the charger run one at a time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from givbridge.commands.inverter_time import clock_check
from givbridge.commands.results import CommandFailed, ErrorCode, json_safe
from givbridge.commands.schemas import (
    ChargeControlPayload,
    ChargingModePayload,
    CurrentLimitPayload,
    DateTimePayload,
    ImportCapPayload,
    NoPayload,
    SessionEnergyPayload,
    StatePayload,
)
from givbridge.commands.spec import ActionContext, Command, ReadbackCheck
from givbridge.commands.writing import carry_out
from givbridge.evc import registers as reg
from givbridge.evc.charger import EvCharger
from givbridge.evc.rules import ModeSettings
from givbridge.plant.snapshot import Scalar, Snapshot
from givbridge.plant.writes import WritePlan

GROUP = "EV charger"
DEVICE = "the charger"


def _charger(context: ActionContext) -> EvCharger:
    if context.charger is None:  # the executor checks first; this is for a direct caller
        raise CommandFailed(ErrorCode.UNKNOWN_INVERTER, "no EV charger is configured (settings: evc)")
    return context.charger


def _read(charger: EvCharger) -> Snapshot:
    snapshot = charger.runner.snapshot
    if snapshot is None:
        raise CommandFailed(ErrorCode.UNREACHABLE, "nothing has been read from the EV charger yet")
    return snapshot


def _leaves(snapshot: Snapshot | None, *names: str) -> dict[str, Scalar]:
    """The named charger values as ``data`` (keyed by leaf, as every command's answer)."""
    if snapshot is None:
        return {}
    return {name: snapshot[reg.path(name)] for name in names if reg.path(name) in snapshot}


async def _write(
    context: ActionContext, plan: WritePlan, names: tuple[str, ...], check: ReadbackCheck | None = None
) -> dict[str, Scalar]:
    """Write ``plan`` to the charger, confirm it from the read-back (and ``check``), answer with the fresh ``names``."""
    runner = _charger(context).runner
    applied = await carry_out(runner, plan, clock=context.clock, check=check, name=DEVICE)
    # Confirmed from the registers; report values only from a snapshot read after the write.
    return _leaves(applied.snapshot, *names)


async def set_charge_control(payload: ChargeControlPayload, context: ActionContext) -> Mapping[str, Any]:
    return await _write(context, reg.charge_control_plan(payload.mode), ("Charge_Control", "Charging_State"))


async def set_current_limit(payload: CurrentLimitPayload, context: ActionContext) -> Mapping[str, Any]:
    """The limit within the charger's range; it is also the ceiling the Hybrid and Solar modes keep to."""
    charger = _charger(context)
    snapshot = _read(charger)
    low, high = (snapshot.get(reg.path(name)) for name in ("Evse_Min_Current", "Evse_Max_Current"))
    amps = payload.current
    if isinstance(low, int | float) and low > 0:
        amps = max(amps, math.ceil(low))
    if isinstance(high, int | float) and high > 0:
        amps = min(amps, math.floor(high))
    data = await _write(context, reg.current_limit_plan(amps), ("Charge_Limit",))
    await _settings(charger, user_limit=amps, act=False)
    return data


async def set_plug_and_go(payload: StatePayload, context: ActionContext) -> Mapping[str, Any]:
    return await _write(context, reg.plug_and_go_plan(payload.state), ("Plug_and_Go",))


async def set_system_time(payload: DateTimePayload, context: ActionContext) -> Mapping[str, Any]:
    """The charger's clock, in the configured zone; confirmed within a tolerance (it keeps running)."""
    runner = _charger(context).runner
    now = context.clock.now().astimezone(runner.tz)
    wall = payload.dateTime
    if wall.tzinfo is not None:  # an instant: show it on the charger in the site's zone
        wall = wall.astimezone(runner.tz)
    wall = wall.replace(tzinfo=None, microsecond=0)
    if not 2000 <= wall.year <= 2099:
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, f"the charger's clock holds years 2000-2099, not {wall.year}")
    writes = reg.clock_writes(wall)
    plan = WritePlan(
        writes,
        expect=writes[:3],  # the date; the time of day is checked with a tolerance
        skip_unchanged=False,
        description=f"charger clock {wall:%Y-%m-%d %H:%M:%S}",
    )
    check = clock_check(wall, now, registers=reg.SYSTEM_TIME, year_base=0, device=DEVICE)
    return await _write(context, plan, ("System_Time",), check)


async def _settings(charger: EvCharger, *, act: bool = True, **changes: Any) -> ModeSettings:
    try:
        return await charger.modes.update(act=act, **changes)
    except OSError as exc:
        raise CommandFailed(ErrorCode.NOT_PERSISTED, f"could not save the charger's mode settings: {exc}") from None


async def _mode_setting(context: ActionContext, name: str, **changes: Any) -> Mapping[str, Any]:
    """Change an emulated-mode setting; the answer is what was saved, as the charger's values now show it."""
    settings = await _settings(_charger(context), **changes)
    return {name: settings.values()[reg.path(name)]}


async def set_charging_mode(payload: ChargingModePayload, context: ActionContext) -> Mapping[str, Any]:
    return await _mode_setting(context, "Charging_Mode", charging_mode=payload.mode)


async def set_import_cap(payload: ImportCapPayload, context: ActionContext) -> Mapping[str, Any]:
    return await _mode_setting(context, "Import_Cap", import_cap=payload.current)


async def set_max_session_energy(payload: SessionEnergyPayload, context: ActionContext) -> Mapping[str, Any]:
    return await _mode_setting(context, "Max_Session_Energy", max_session_energy=payload.energy)


async def get_evc_cache(payload: NoPayload, context: ActionContext) -> Mapping[str, Any]:
    """GivTCP's EVC cache: ``{"Charger": {...}, "Stats": {...}}`` as last read."""
    tree: dict[str, Any] = json_safe(_read(_charger(context)).as_tree())
    return tree


_evc = functools.partial(Command, group=GROUP, target="evc")

COMMANDS: tuple[Command, ...] = (
    _evc(
        name="setChargeControl",
        summary="Start or stop charging: Ready, Start or Stop (HR95, confirmed by the control in force, HR94).",
        payload=ChargeControlPayload,
        raw_field="mode",
        aliases=("controlCharge",),
        action=set_charge_control,
        updates=("Charger/Charge_Control", "Charger/Charging_State"),
        notes="api.json's start/stop are accepted in any case (GivTCP only took Ready/Start/Stop, and its REST "
        "view answered an error after writing). In Solar mode the bridge starts and stops charging itself; "
        "switch to Grid or Hybrid to keep a manual Stop.",
    ),
    _evc(
        name="setChargingMode",
        summary="The emulated charging mode: Grid, Hybrid (surplus solar, topped up from the grid to the "
        "minimum) or Solar (surplus solar only).",
        payload=ChargingModePayload,
        raw_field="mode",
        action=set_charging_mode,
        updates=("Charger/Charging_Mode",),
        notes="Kept by the bridge (saved in the data directory), not the charger. api.json documents state: "
        "enable/disable: enable selects Hybrid, disable Grid. See the README for how each mode decides.",
    ),
    _evc(
        name="setCurrentLimit",
        summary="The charger's current limit in amps, held within its own minimum and maximum (HR91, confirmed "
        "by HR36).",
        payload=CurrentLimitPayload,
        raw_field="current",
        action=set_current_limit,
        updates=("Charger/Charge_Limit",),
        notes="Numbers or strings, decimals rounded (GivTCP failed on a string or on 16.0). Also the ceiling "
        "the Hybrid and Solar modes keep to, and the limit Grid mode returns to after the import cap.",
    ),
    _evc(
        name="setImportCap",
        summary="Cap the site's grid current while the car charges, in amps (0 removes the cap).",
        payload=ImportCapPayload,
        raw_field="current",
        action=set_import_cap,
        updates=("Charger/Import_Cap",),
        notes="Kept by the bridge. The charge limit comes down before the grid current reaches the cap, "
        "computed from the inverter's grid power; charging stops if even the minimum does not fit.",
    ),
    _evc(
        name="setMaxSessionEnergy",
        summary="Stop the charge once a session has delivered this many kWh (0 removes the limit).",
        payload=SessionEnergyPayload,
        raw_field="energy",
        action=set_max_session_energy,
        updates=("Charger/Max_Session_Energy",),
        notes="Kept by the bridge; decimals are fine (GivTCP's MQTT path failed on 20.5). Nothing restarts the "
        "session until the car is unplugged.",
    ),
    _evc(
        name="chargeMode",
        summary="The charger's Plug and Go switch: charge as soon as a car is plugged in (HR93).",
        payload=StatePayload,
        raw_field="state",
        aliases=("setChargeMode",),
        action=set_plug_and_go,
        updates=("Charger/Plug_and_Go",),
    ),
    _evc(
        name="setSystemTime",
        summary="Set the charger's clock (HR97-102), in the configured time zone.",
        payload=DateTimePayload,
        raw_field="dateTime",
        action=set_system_time,
        updates=("Charger/System_Time",),
        notes="Broken in GivTCP (strptime called on the module). A time with an offset is converted to the "
        "configured time zone first.",
    ),
    _evc(
        name="getEVCCache",
        summary="The charger's latest values, as GivTCP's EVC cache.",
        payload=NoPayload,
        method="GET",
        writes=False,
        action=get_evc_cache,
    ),
)
