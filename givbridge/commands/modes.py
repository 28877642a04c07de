"""Battery modes: GivTCP's virtual Mode, discharge enable, pause mode and calibration.

GivTCP's battery "Mode" is not a register: it is read from HR27 (eco), HR59 (timed
discharge) and HR110 (reserve), and set by writing those. "Eco (Paused)" is Eco with the
reserve at 100 %, so the battery holds its charge; going back to "Eco" restores the reserve
the user had before, which givbridge remembers per device (the last reserve below 100 % it
read), across restarts, as GivTCP does with its pickle.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from givbridge.commands import devices as dev
from givbridge.commands.schemas import BatteryModePayload, CalibrationPayload, PauseModePayload, StatePayload
from givbridge.commands.spec import Command, PlanInput, Planned
from givbridge.devices.context import DeviceContext
from givbridge.plant import registers as reg
from givbridge.plant import vocab
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.writes import WritePlan

GROUP = "Modes"

#: Memory key: the last battery reserve below 100 % read from the device.
SAVED_RESERVE = "reserve"
#: What "restore the reserve" means before any reserve below 100 % was ever seen (GivTCP's default).
DEFAULT_RESERVE = 4
RESERVE_PATH = "Control/Battery_Power_Reserve"
PAUSED_RESERVE = 100

_CALIBRATION_STAGE = {word: stage for stage, word in vocab.CALIBRATION_BY_STAGE.items()}


def observe(snapshot: Snapshot) -> Mapping[str, int]:
    """What to remember from a snapshot: the reserve, when it is a real one (not the 100 % of a pause)."""
    reserve = snapshot.get(RESERVE_PATH)
    if isinstance(reserve, int) and not isinstance(reserve, bool) and 4 <= reserve < PAUSED_RESERVE:
        return {SAVED_RESERVE: reserve}
    return {}


def saved_reserve(given: PlanInput) -> int:
    return given.memory.get(SAVED_RESERVE, DEFAULT_RESERVE)


def plan_battery_mode(payload: BatteryModePayload, given: PlanInput) -> Planned:
    reserve = dev.reserve_register(given.device)
    # HR59 even on three-phase units, as GivTCP's mode setter does.
    pairs: list[tuple[int, int]]
    if payload.mode == vocab.MODE_ECO:
        pairs = [(reg.ECO_MODE, 1), (reg.ENABLE_DISCHARGE, 0), (reserve, saved_reserve(given))]
    elif payload.mode == vocab.MODE_ECO_PAUSED:
        pairs = [(reg.ECO_MODE, 1), (reg.ENABLE_DISCHARGE, 0), (reserve, PAUSED_RESERVE)]
    elif payload.mode == vocab.MODE_TIMED_DEMAND:
        pairs = [(reg.ECO_MODE, 1), (reg.ENABLE_DISCHARGE, 1)]
    else:  # Timed Export
        pairs = [(reg.ECO_MODE, 0), (reg.ENABLE_DISCHARGE, 1)]
    return Planned(WritePlan.of(pairs, f"mode {payload.mode}"))


def plan_enable_discharge(payload: StatePayload, given: PlanInput) -> Planned:
    """GivTCP v2's switch: off holds the battery (reserve 100 %), on restores the remembered reserve."""
    value = saved_reserve(given) if payload.state else PAUSED_RESERVE
    return Planned(
        WritePlan.of([(dev.reserve_register(given.device), value)], f"discharge {'on' if payload.state else 'off'}")
    )


def plan_pause_mode(payload: PauseModePayload, given: PlanInput) -> Planned:
    return Planned(WritePlan.of([(reg.PAUSE_MODE, vocab.PAUSE_MODES.index(payload.state))], f"pause {payload.state}"))


def plan_calibration(payload: CalibrationPayload, given: PlanInput) -> Planned:
    return Planned(WritePlan.of([(reg.CALIBRATION, _CALIBRATION_STAGE[payload.state])], f"calibration {payload.state}"))


def _mode_registers(device: DeviceContext) -> tuple[int, ...]:
    return (reg.ECO_MODE, reg.ENABLE_DISCHARGE, dev.reserve_register(device))


_mode = functools.partial(Command, group=GROUP)

COMMANDS: tuple[Command, ...] = (
    _mode(
        name="setBatteryMode",
        summary="Set GivTCP's battery Mode: Eco, Eco (Paused), Timed Demand or Timed Export.",
        payload=BatteryModePayload,
        raw_field="mode",
        plan=plan_battery_mode,
        updates=("Control/Mode", "Control/Eco_Mode", "Control/Enable_Discharge_Schedule", RESERVE_PATH),
        applies=dev.applies("inverters with a battery", battery=True, registers=_mode_registers),
        notes="Eco: HR27=1, HR59=0, reserve = the last reserve below 100 % (4 if none was seen). "
        "Eco (Paused): HR27=1, HR59=0, reserve 100. Timed Demand: HR27=1, HR59=1. Timed Export: HR27=0, HR59=1. "
        "Mode names are matched in any case; Unknown and Export (Paused) are states, not settable modes.",
    ),
    _mode(
        name="enableDischarge",
        summary="Allow (enable) or stop (disable) battery discharge: disable holds it with a 100 % reserve.",
        payload=StatePayload,
        raw_field="state",
        plan=plan_enable_discharge,
        updates=(RESERVE_PATH, "Control/Mode"),
        applies=dev.applies("inverters with a battery", battery=True, registers=lambda d: (dev.reserve_register(d),)),
        notes="Dead in GivTCP v3 (the write is commented out, so MQTT drops it and REST times out). "
        "givbridge has v2's meaning: disable sets the reserve to 100 % and enable restores the last reserve "
        "below 100 % (4 if none was seen).",
    ),
    _mode(
        name="setBatteryPauseMode",
        summary=f"Battery pause mode (HR{reg.PAUSE_MODE}) applied during the pause slot.",
        payload=PauseModePayload,
        raw_field="state",
        plan=plan_pause_mode,
        updates=("Control/Battery_pause_mode",),
        applies=dev.applies(
            "hybrids with the pause registers (not Gen1 or AC)",
            battery=True,
            when=dev.needs_pause,
            registers=dev.fixed_registers(reg.PAUSE_MODE),
        ),
        notes="api.json documents enable/disable, which GivTCP rejects; givbridge maps enable to PauseBoth "
        "and disable to Disabled. 0-3 select by index.",
    ),
    _mode(
        name="setBatteryCalibration",
        summary="Start or stop a battery SOC calibration (HR29): Off, Start or Charge Only.",
        payload=CalibrationPayload,
        raw_field="state",
        plan=plan_calibration,
        updates=("Control/Battery_Calibration", "{serial}/Battery_Calibration_Status"),
        applies=dev.applies("inverters with a battery", battery=True, registers=dev.fixed_registers(reg.CALIBRATION)),
        notes="Any case is accepted (GivTCP rejects api.json's lowercase values).",
    ),
)
