"""The runner's own reads judged as a poll's are: the library's verdict on each answer, as noted by ObservedPlant."""

from __future__ import annotations

from givenergy_modbus.model.register import HR
from givenergy_modbus.pdu import ReadHoldingRegistersResponse

from givbridge.devices.library import ObservedPlant, ReadVerdict

INVERTER = 0x11


def answer(base: int, values: list[int]) -> ReadHoldingRegistersResponse:
    return ReadHoldingRegistersResponse(
        base_register=base,
        register_count=len(values),
        register_values=values,
        device_address=INVERTER,
        inverter_serial_number="SA1234G567",
        data_adapter_serial_number="WF1234G567",
    )


def test_a_full_bank_of_zeros_over_data_is_refused_and_counted_as_a_dropout() -> None:
    plant = ObservedPlant()
    held = answer(60, list(range(1, 61)))
    plant.update(held)
    assert plant.verdict(held) is ReadVerdict.CLEAN
    dropout = answer(60, [0] * 60)
    plant.update(dropout)
    assert plant.verdict(dropout) is ReadVerdict.REFUSED
    assert plant.dropouts == 1
    assert plant.register_caches[INVERTER].get(HR(60)) == 1  # the last good bank is kept
    again = answer(60, list(range(1, 61)))
    plant.update(again)
    assert plant.verdict(again) is ReadVerdict.CLEAN
    assert plant.verdict(dropout) is ReadVerdict.REFUSED  # a verdict belongs to its own answer


def test_a_full_bank_of_zeros_where_nothing_was_held_is_data() -> None:
    plant = ObservedPlant()
    empty = answer(300, [0] * 60)
    plant.update(empty)
    assert plant.verdict(empty) is ReadVerdict.CLEAN
    assert plant.dropouts == 0


def test_a_short_bank_of_zeros_over_data_needs_confirming() -> None:
    """The library cannot judge banks under 60 registers; the runner must read them again."""
    plant = ObservedPlant()
    forced = answer(1120, [0, 0, 0, 1, 0])
    plant.update(forced)
    assert plant.verdict(forced) is ReadVerdict.CLEAN
    zeros = answer(1120, [0] * 5)
    plant.update(zeros)
    assert plant.verdict(zeros) is ReadVerdict.UNCONFIRMED_ZERO
    assert plant.dropouts == 0  # committed by the library, so not one of its dropouts


def test_an_answer_the_plant_never_saw_is_not_believed() -> None:
    plant = ObservedPlant()
    plant.update(answer(0, list(range(1, 61))))
    assert plant.verdict(answer(0, list(range(1, 61)))) is ReadVerdict.REFUSED
