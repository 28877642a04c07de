"""Register writes: what givbridge may write to a model, and how a write is confirmed.

The library (givenergy-modbus) gates writes twice: a per-model allowlist
(``manifest.write_safe_registers``) and a global one checked when a request PDU is encoded.
Both are conservative and miss registers GivTCP writes on real units every day and that
Predbat depends on; givbridge extends them here, and only here, with each addition
justified:

* per-slot charge targets HR242+3n and discharge targets HR272+3n, and the 10-slot layout's
  slot-2 pair HR243/244, on models with the extended 10-slot map (GivTCP's
  setChargeTarget1..10 / setDischargeTarget1..10; Predbat's export floor is HR272);
* battery pause mode and pause slot HR318-320 on models that have them (GivTCP's
  setBatteryPauseMode / setPauseSlot; Predbat's freeze modes);
* the three-phase AC charge and discharge limits HR1110/HR1108 (GivTCP's setChargeRate /
  setDischargeRate and its force-charge/export reverts on 3PH write them; they are in the
  library's global write allowlist, but its per-model three-phase set leaves them out).

Every other register stays exactly as the library allows. A planned write is also checked
against these sets before anything goes on the wire, so a command can never reach a register
its model does not own.

A write is only ever reported as done after the register has been read back from the
inverter: :func:`holding_block` says which bank to re-read for a register.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from givenergy_modbus.model import manifest
from givenergy_modbus.model.inverter import Model
from givenergy_modbus.pdu.write_registers import WriteHoldingRegister, WriteHoldingRegisterRequest

from givbridge.plant.families import Family

_TEN_SLOT_EXTRAS = frozenset(
    {243, 244}
    | {242 + 3 * n for n in range(10)}  # Charge_Target_SOC_1..10
    | {272 + 3 * n for n in range(10)}  # Discharge_Target_SOC_1..10
)
_PAUSE = frozenset({318, 319, 320})

# Families whose firmware has the battery pause registers (GivTCP leaves them out for Gen1
# hybrids and single-phase AC units, whose firmware lacks them).
PAUSE_FAMILIES = frozenset({"hybrid-gen2", "hybrid-gen3", "hybrid-gen3-plus", "hybrid-gen4", "polar", "aio"})


# Three-phase families whose battery rates GivTCP sets through HR1110 (charge) / HR1108 (discharge).
THREE_PHASE_RATE_FAMILIES = frozenset({"hybrid-3ph", "ac-3ph"})
_THREE_PHASE_RATES = frozenset({1108, 1110})

# The EMS's car charge boost (HR2073, watts): the library's EMS model decodes it and GivTCP's
# EMS map lists it, but the library's EMS write allowlist leaves it out. The command bounds the
# value (0-22000 W) and the read-back confirms it.
_EMS_CAR_CHARGE_BOOST = frozenset({2073})


def has_pause_registers(family: Family) -> bool:
    return family.key in PAUSE_FAMILIES


def writable_registers(model: Model, arm_firmware: int | None, family: Family) -> frozenset[int]:
    """Holding registers givbridge will write on this model."""
    allowed = set(manifest.write_safe_registers(model, arm_firmware))
    if manifest.has_extended_slots(model, arm_firmware) and not manifest.has_capability("is_ems", model):
        allowed |= _TEN_SLOT_EXTRAS
    if has_pause_registers(family):
        allowed |= _PAUSE
    if family.key in THREE_PHASE_RATE_FAMILIES:
        allowed |= _THREE_PHASE_RATES
    if family.key == "ems":
        allowed |= _EMS_CAR_CHARGE_BOOST
    return frozenset(allowed)


_EXTENSION = _TEN_SLOT_EXTRAS | _PAUSE | _EMS_CAR_CHARGE_BOOST


class RegisterWriteRequest(WriteHoldingRegisterRequest):  # type: ignore[misc]  # untyped library base
    """A single-register write admitted by givbridge's extension of the library's allowlist.

    Identical on the wire to the library's request; only the encode-time safety check also
    accepts the documented extension registers (the per-model check has already run).
    """

    def ensure_valid_state(self) -> None:
        if self.register in _EXTENSION:
            # The value checks without the request-level global-allowlist check.
            WriteHoldingRegister.ensure_valid_state(self)
        else:
            super().ensure_valid_state()


@dataclass(frozen=True, slots=True)
class RegisterWrite:
    """One holding-register write: register number and raw 16-bit value."""

    register: int
    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not 0 <= self.value <= 0xFFFF:
            raise ValueError(f"HR({self.register}) value {self.value!r} is not a 16-bit register word")


@dataclass(frozen=True, slots=True)
class WritePlan:
    """An ordered set of register writes that together make one command.

    ``expect`` lists the register values the read-back must find afterwards; by default
    every written value. ``skip_unchanged`` lets the runner leave out writes whose value
    the inverter already holds (judged by the value last read, which justified skipping them).
    """

    writes: tuple[RegisterWrite, ...]
    expect: tuple[RegisterWrite, ...] = ()
    skip_unchanged: bool = True
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]], description: str = "", **kwargs: Any) -> WritePlan:
        return cls(tuple(RegisterWrite(r, v) for r, v in pairs), description=description, **kwargs)

    @property
    def expected(self) -> tuple[RegisterWrite, ...]:
        if self.expect:
            return self.expect
        # The last write to a register is what must stick.
        final: dict[int, int] = {}
        for write in self.writes:
            final[write.register] = write.value
        return tuple(RegisterWrite(r, v) for r, v in final.items())

    @property
    def registers(self) -> frozenset[int]:
        return frozenset(w.register for w in self.writes) | frozenset(w.register for w in self.expected)


# Holding-register banks as the inverters serve them (and as the library's load_config reads
# them); a read-back re-reads the whole bank so the cache stays block-consistent.
_HOLDING_BANKS: tuple[tuple[int, int], ...] = (
    (0, 60),
    (60, 60),
    (120, 60),
    (180, 60),
    (240, 60),
    (300, 60),
    (1000, 60),
    (1060, 60),
    (1120, 5),
    (2040, 36),
)


def holding_block(register: int) -> tuple[int, int]:
    """The (base, count) bank to read to confirm ``register``."""
    for base, count in _HOLDING_BANKS:
        if base <= register < base + count:
            return base, count
    raise ValueError(f"HR({register}) is in no bank givbridge knows how to read back")


def blocks_for(registers: Iterable[int]) -> list[tuple[int, int]]:
    """The distinct banks covering ``registers``, in register order."""
    return sorted({holding_block(r) for r in registers})


def unwritable(plan: WritePlan, allowed: Sequence[int] | frozenset[int]) -> list[int]:
    """Registers of ``plan`` outside ``allowed``, for a clear refusal."""
    return sorted({w.register for w in plan.writes} - set(allowed))
