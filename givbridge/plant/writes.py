"""Register writes: what givbridge may write to a model, and how a write is confirmed.

The library (givenergy-modbus) gates writes twice: a per-model allowlist
(``manifest.write_safe_registers``) and a global one checked when a request PDU is encoded.
Both are conservative and miss registers GivTCP writes on real units every day and that
Predbat depends on; givbridge extends them here, and only here, with the additions
:mod:`givbridge.plant.registers` names and justifies (the 10-slot layout's charge-slot-2 pair
and per-slot targets, the battery pause registers, the three-phase AC limits, the EMS's car
charge boost).

Every other register stays exactly as the library allows. A planned write is also checked
against these sets before anything goes on the wire, so a command can never reach a register
its model does not own.

A write is only ever reported as done after the register has been read back from the
inverter: :func:`holding_block` says which bank to re-read for a register.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from givenergy_modbus.model import manifest
from givenergy_modbus.model.inverter import Model
from givenergy_modbus.pdu.write_registers import WriteHoldingRegister, WriteHoldingRegisterRequest

from givbridge.plant import registers as reg
from givbridge.plant.families import Family
from givbridge.plant.registers import has_pause_registers


def writable_registers(model: Model, arm_firmware: int | None, family: Family) -> frozenset[int]:
    """Holding registers givbridge will write on this model."""
    allowed = set(manifest.write_safe_registers(model, arm_firmware))
    if manifest.has_extended_slots(model, arm_firmware) and not manifest.has_capability("is_ems", model):
        allowed |= reg.TEN_SLOT_WRITES
    if has_pause_registers(family):
        allowed |= reg.PAUSE_REGISTERS
    if family.key in reg.THREE_PHASE_RATE_FAMILIES:
        allowed |= reg.THREE_PHASE_RATE_WRITES
    if family.key == "ems":
        allowed |= reg.EMS_WRITES
    return frozenset(allowed)


# The three-phase AC limits are in the library's global allowlist already.
_EXTENSION = reg.TEN_SLOT_WRITES | reg.PAUSE_REGISTERS | reg.EMS_WRITES


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
# them); a read-back re-reads the whole bank so the cache stays block-consistent. The banks of
# the single-phase map are 60 registers from HR0 to HR299; the AC config block, the three-phase
# blocks and the EMS window are the library's own ranges.
_HOLDING_BANKS: tuple[tuple[int, int], ...] = (
    *((base, 60) for base in range(0, 300, 60)),
    *(
        (block.base_register, block.register_count)
        for block in (
            *manifest.LOAD_CONFIG_RANGES["has_ac_config_block"],
            *manifest.LOAD_CONFIG_THREE_PHASE_RANGES,
            *manifest.LOAD_CONFIG_RANGES["is_ems"],
        )
    ),
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
