"""The simulated RS485 bus besides the device and its LV packs: which peripheral answers at which
address, with which input-register banks, rendered from the plant's state at the moment of a read.

An HV stack's BMS (0xA0), BCU (0x70), modules (0x50+) and BAMS page (0x90), and the meters at
0x01-0x08 (fitted ones with readings, the rest with a blank page or nothing, per model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from givbridge.sim.physics import PlantState
from givbridge.sim.profile_spec import (
    BAMS_ADDRESS,
    BMS_ADDRESS,
    FIRST_BCU_ADDRESS,
    FIRST_MODULE_ADDRESS,
    METER_ADDRESSES,
    InverterProfile,
)
from givbridge.sim.render_hv import Module, Stack, bams_registers, bcu_registers, bms_registers, module_registers
from givbridge.sim.render_meter import Meter, meter_product_registers, meter_registers

#: The meters' product registers (function 0x16).
METER_PRODUCT_BANK = range(60, 69)


def overlaps(bank: range, span: range) -> bool:
    return bank.start < span.stop and span.start < bank.stop


def contains(bank: range, span: range) -> bool:
    return bank.start <= span.start and span.stop <= bank.stop


@dataclass(frozen=True, slots=True)
class Page:
    """A peripheral on the bus: the input-register banks it answers and how they render now."""

    banks: tuple[range, ...]
    render: Callable[[], dict[int, int]]
    product: Callable[[], dict[int, int]] | None = None  # meter product registers (MR)


def _blank(bank: range) -> Callable[[], dict[int, int]]:
    return lambda: dict.fromkeys(bank, 0)


def peripheral_pages(
    profile: InverterProfile,
    stack: Stack | None,
    meters: tuple[Meter, ...],
    state: Callable[[], PlantState],
    *,
    ac_coupled_pv: bool,
) -> dict[int, Page]:
    """Every peripheral besides the device and its LV packs, by address; ``state`` is the plant's now."""
    pages: dict[int, Page] = {}
    if stack is not None:
        bank, wide = range(60, 120), range(60, 180)
        pages[BMS_ADDRESS] = Page((bank,), lambda: bms_registers(stack))
        pages[FIRST_BCU_ADDRESS] = Page((wide,), lambda: bcu_registers(stack, state()))
        for n, module in enumerate(stack.modules):
            pages[FIRST_MODULE_ADDRESS + n] = Page((bank,), partial(_render_module, module, stack, state))
        if stack.spec.has_bams:
            pages[BAMS_ADDRESS] = Page((bank,), lambda: bams_registers(stack, state()))
    meter_bank = range(60, 120)
    if profile.ghost_meter_pages:
        # Some firmware answers every meter address, with a blank page where none is fitted.
        pages.update({address: Page((meter_bank,), _blank(meter_bank)) for address in METER_ADDRESSES})
    for meter in meters:
        pages[meter.address] = Page(
            (meter_bank,),
            partial(_render_meter, meter, state, ac_coupled_pv),
            partial(meter_product_registers, meter),
        )
    return pages


def _render_module(module: Module, stack: Stack, state: Callable[[], PlantState]) -> dict[int, int]:
    return module_registers(module, stack, state())


def _render_meter(meter: Meter, state: Callable[[], PlantState], ac_coupled_pv: bool) -> dict[int, int]:
    return meter_registers(meter, state(), ac_coupled_pv=ac_coupled_pv)
