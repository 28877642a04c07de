"""Command payloads: one model per command's payload, made of the value types in
:mod:`givbridge.commands.values`; :mod:`givbridge.commands.decoding` turns a message into the
form a model validates.

Every model forbids keys it does not know, so a misspelt key is an error rather than a
silently ignored write. Keys follow GivTCP's api.json, with the spellings its documentation and
working code disagree on accepted both ways (``dischargeToPercent``/``exportToPercent``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

from givbridge.commands.values import (
    DATETIME_WORDS,
    SETTABLE_MODES,
    SWITCH_WORDS,
    TIME_WORDS,
    AcPercent,
    AnyPercent,
    BatteryMode,
    Calibration,
    DateTime,
    Duration,
    EmsSlotNumber,
    PauseMode,
    Percent,
    SlotNumber,
    SlotTime,
    Switch,
    Watts,
    choice,
    decimal_number,
    rounded_number,
    whole_number,
)
from givbridge.evc.registers import CHARGE_CONTROLS, CHARGING_MODES
from givbridge.log import LOG_LEVELS
from givbridge.plant import vocab


class Payload(BaseModel):
    """Base of every command payload: unknown keys are errors, values are immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NoPayload(Payload):
    """A command that takes no value; whatever is sent (a button's ``restart``) is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class StatePayload(Payload):
    state: Switch = Field(description=SWITCH_WORDS, examples=["enable"])


class ChargeTargetPayload(Payload):
    chargeToPercent: Percent = Field(description="4-100 %", examples=[80])


class SlotChargeTargetPayload(Payload):
    chargeToPercent: Percent = Field(description="4-100 %", examples=[80])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])


class SlotDischargeTargetPayload(Payload):
    dischargeToPercent: Percent = Field(
        validation_alias=AliasChoices("dischargeToPercent", "exportToPercent"),
        description="4-100 % (api.json's exportToPercent is accepted too)",
        examples=[20],
    )
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])


class ExportTargetPayload(Payload):
    exportToPercent: Percent = Field(description="4-100 %", examples=[20])
    slot: EmsSlotNumber = Field(description="slot 1-3", examples=[1])


class EmsChargeTargetPayload(Payload):
    chargeToPercent: Percent = Field(description="4-100 %", examples=[80])
    slot: EmsSlotNumber = Field(description="slot 1-3", examples=[1])


class EmsDischargeTargetPayload(Payload):
    dischargeToPercent: Percent = Field(description="4-100 %", examples=[20])
    slot: EmsSlotNumber = Field(description="slot 1-3", examples=[1])


class ReservePayload(Payload):
    reservePercent: AnyPercent = Field(description="0-100 %; below 4 is raised to 4 as GivTCP does", examples=[20])


class CutoffPayload(Payload):
    dischargeToPercent: AnyPercent = Field(description="0-100 %; below 4 is raised to 4 as GivTCP does", examples=[4])


class ChargeRatePayload(Payload):
    chargeRate: Watts = Field(
        description="watts, 0 up to the battery's rating (more means the maximum)", examples=[2500]
    )


class DischargeRatePayload(Payload):
    dischargeRate: Watts = Field(
        description="watts, 0 up to the battery's rating (more means the maximum)", examples=[2500]
    )


class ChargeRateAcPayload(Payload):
    chargeRate: AcPercent = Field(description="1-100 % of the AC rating", examples=[50])


class DischargeRateAcPayload(Payload):
    dischargeRate: AcPercent = Field(description="1-100 % of the AC rating", examples=[50])


class ActivePowerRatePayload(Payload):
    activePowerRate: AnyPercent = Field(description="0-100 % of the inverter's rated output", examples=[100])


class BatteryModePayload(Payload):
    mode: BatteryMode = Field(description=", ".join(SETTABLE_MODES), examples=["Eco"])


class PauseModePayload(Payload):
    state: PauseMode = Field(
        description=", ".join(vocab.PAUSE_MODES) + "; enable = PauseBoth, disable = Disabled",
        examples=["PauseCharge"],
    )


class CalibrationPayload(Payload):
    state: Calibration = Field(description="Off, Start or Charge Only (any case)", examples=["Start"])


class ChargeSlotPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:00"])
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])
    chargeToPercent: Percent | None = Field(None, description="optional target 4-100 %", examples=[80])


class DischargeSlotPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:00"])
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])
    dischargeToPercent: AnyPercent | None = Field(
        None, description="optional target 0-100 %, raised to 4 at least", examples=[20]
    )


class WindowPayload(Payload):
    """A start/finish pair with no slot number (the pause slot)."""

    start: SlotTime = Field(description=TIME_WORDS, examples=["16:00"])
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])


class ExportSlotPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:00"])
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])
    slot: EmsSlotNumber = Field(description="slot 1-3", examples=[1])


class SlotStartPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:30"])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])


class SlotEndPayload(Payload):
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])
    slot: SlotNumber = Field(description="slot 1-10", examples=[1])


class PauseStartPayload(Payload):
    start: SlotTime = Field(description=TIME_WORDS, examples=["16:30"])


class PauseEndPayload(Payload):
    finish: SlotTime = Field(description=TIME_WORDS, examples=["19:00"])


class DateTimePayload(Payload):
    dateTime: DateTime = Field(description=DATETIME_WORDS, examples=["01/05/2024 16:30:00"])


class CarChargeBoostPayload(Payload):
    boost: Annotated[int, BeforeValidator(whole_number), Field(ge=0, le=22000)] = Field(
        validation_alias=AliasChoices("boost", "state"), description="0-22000 W", examples=[2500]
    )


class DurationPayload(Payload):
    duration: Duration = Field(description="minutes 1-1440, or Cancel (also Normal or 0)", examples=["30"])


class LogLevelPayload(Payload):
    level: Annotated[str, BeforeValidator(choice(LOG_LEVELS))] = Field(
        description=f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]} (any case)", examples=["debug"]
    )


class SettingsPayload(Payload):
    """A whole givbridge configuration document; checked against givbridge.config when run."""

    model_config = ConfigDict(extra="allow", frozen=True)


# EV charger payloads (commands/evc.py), and the tariff's.
class ChargeControlPayload(Payload):
    mode: Annotated[str, BeforeValidator(choice(CHARGE_CONTROLS))] = Field(
        description="Ready, Start or Stop (any case, so api.json's start/stop too)", examples=["Start"]
    )


# api.json documents state: enable/disable for setChargingMode (a leftover of an on/off solar
# switch): enable turns on the solar-following mode that still guarantees a charge (Hybrid),
# disable goes back to plain grid charging.
_GRID, _HYBRID, _ = CHARGING_MODES
ChargingMode = Annotated[str, BeforeValidator(choice(CHARGING_MODES, {vocab.ENABLE: _HYBRID, vocab.DISABLE: _GRID}))]


class ChargingModePayload(Payload):
    mode: ChargingMode = Field(
        validation_alias=AliasChoices("mode", "state"),
        description="Grid, Hybrid or Solar (any case); api.json's enable means Hybrid, disable Grid",
        examples=["Hybrid"],
    )


class CurrentLimitPayload(Payload):
    current: Annotated[int, BeforeValidator(rounded_number), Field(ge=6, le=80)] = Field(
        description="6-80 A, rounded to whole amps, then held within the charger's own range "
        "(Evse_Min_Current to Evse_Max_Current)",
        examples=[16],
    )


class ImportCapPayload(Payload):
    current: Annotated[int, BeforeValidator(whole_number), Field(ge=0, le=100)] = Field(
        description="0-100 A of grid current (0 removes the cap)", examples=[60]
    )


class SessionEnergyPayload(Payload):
    energy: Annotated[float, BeforeValidator(decimal_number), Field(ge=0, le=100)] = Field(
        description="0-100 kWh, decimals allowed (0 removes the limit)", examples=["20.5"]
    )


class RatePayload(Payload):
    rate: Annotated[str, BeforeValidator(choice(("day", "night")))] = Field(
        description="day or night", examples=["day"]
    )


class LocalControlModePayload(Payload):
    state: Annotated[str, BeforeValidator(choice(("Load", "Battery", "Grid")))] = Field(
        description="Load, Battery or Grid", examples=["Load"]
    )


class PvInputModePayload(Payload):
    state: Annotated[str, BeforeValidator(choice(("Independent", "1x2")))] = Field(
        description="Independent or 1x2", examples=["Independent"]
    )


class ExportLimitPayload(Payload):
    limit: Watts = Field(validation_alias=AliasChoices("limit", "state"), description="watts", examples=[3600])
