"""GivTCP's state words, exactly as it publishes them.

Home Assistant selects and switches, Predbat and users' automations compare these strings
literally, so they are spelt once here and nowhere else in the builders. The discovery
templates carry the same words as select options; a test checks the two agree.
"""

from __future__ import annotations

from typing import Final

ENABLE: Final = "enable"
DISABLE: Final = "disable"

# Battery "Mode" (HR27 eco / HR59 timed discharge / HR110 reserve), GivTCP's select order.
MODE_ECO: Final = "Eco"
MODE_ECO_PAUSED: Final = "Eco (Paused)"
MODE_TIMED_DEMAND: Final = "Timed Demand"
MODE_TIMED_EXPORT: Final = "Timed Export"
MODE_UNKNOWN: Final = "Unknown"
MODE_EXPORT_PAUSED: Final = "Export (Paused)"
MODES: Final = (MODE_ECO, MODE_ECO_PAUSED, MODE_TIMED_DEMAND, MODE_TIMED_EXPORT, MODE_UNKNOWN, MODE_EXPORT_PAUSED)

# HR318 battery pause mode, indexed by the register value.
PAUSE_MODES: Final = ("Disabled", "PauseCharge", "PauseDischarge", "PauseBoth")

# HR29 battery calibration as the Control select shows it: the two values a user can write
# (1 = Start, 3 = Charge Only), Off, and Running for the stages the inverter steps through.
CALIBRATION_OFF: Final = "Off"
CALIBRATION_RUNNING: Final = "Running"
CALIBRATION_BY_STAGE: Final = {0: CALIBRATION_OFF, 1: "Start", 3: "Charge Only"}
CALIBRATIONS: Final = (*CALIBRATION_BY_STAGE.values(), CALIBRATION_RUNNING)


# HR2072, the EMS car charging mode, GivTCP's select order (indexed by the register value).
CAR_CHARGE_MODES: Final = ("Stop", "Eco", "Eco+", "Fast")


def spaced_word(member_name: str | None) -> str | None:
    """``ON_GRID`` -> ``On grid``, GivTCP's rendering of the Gateway's work mode."""
    return member_name.replace("_", " ").capitalize() if member_name else None


def enable_word(flag: bool | None) -> str | None:
    """GivTCP's ``enable``/``disable`` for a register flag; None when the flag was not read."""
    if flag is None:
        return None
    return ENABLE if flag else DISABLE


def givtcp_enum_word(member_name: str | None) -> str | None:
    """GivTCP's rendering of a library enum member: ``LITHIUM`` -> ``Lithium``, ``EM115`` -> ``Em115``."""
    return member_name.capitalize() if member_name else None
