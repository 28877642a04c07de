"""The simulated three-phase, HV, EMS, Gateway, AC and PV-only plants, without sockets.

What answers where (and how a missing bank answers), that the one physics engine stays
consistent when its flows are split per phase, per module or per managed unit, meters, and
the write rules of each register variant.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from givbridge.clock import ScaledClock
from givbridge.sim import SimulatedPlant, Unanswered, WriteOutcome
from givbridge.sim.profiles import PROFILES
from givbridge.sim.writes import classify_write

NOON = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
NIGHT = datetime(2026, 1, 15, 1, 0, tzinfo=UTC)


def _sim(family: str, start: datetime = NOON, **kwargs: object) -> SimulatedPlant:
    return SimulatedPlant.create(family, clock=ScaledClock(start=start), seed=9, **kwargs)  # type: ignore[arg-type]


def _signed(raw: int) -> int:
    return raw - 0x10000 if raw >= 0x8000 else raw


def _u32(sim: SimulatedPlant, high: int) -> int:
    return (sim.input(high) << 16) | sim.input(high + 1)


def _s32(sim: SimulatedPlant, high: int) -> int:
    value = _u32(sim, high)
    return value - (1 << 32) if value >= 1 << 31 else value


def test_missing_banks_answer_as_each_model_does() -> None:
    aio = _sim("aio")
    assert aio.read(0x11, "HR", 1000, 60) is Unanswered.ERROR  # captured HR(1100,60) error, library #105
    assert aio.read(0x32, "IR", 60, 60) is Unanswered.SILENT  # "nothing at 0x32"
    assert aio.read(0x05, "IR", 60, 30) == [0] * 30  # a blank page at every meter address
    hv = _sim("hybrid-hv-gen3")
    assert hv.read(0x11, "IR", 1000, 60) == [0] * 60  # answers the 1000-range with zeros (hass#295)
    assert hv.read(0x05, "IR", 60, 30) is Unanswered.SILENT
    gateway = _sim("gateway")
    assert gateway.read(0x32, "IR", 60, 60) is Unanswered.SILENT  # library #358
    assert gateway.read(0x11, "IR", 0, 60) == [0] * 60
    three_phase = _sim("hybrid-3ph")
    assert three_phase.read(0x11, "IR", 0, 60) == [0] * 60  # the single-phase map reads zeros
    assert three_phase.read(0x11, "HR", 300, 60) is Unanswered.ERROR
    assert len(three_phase.read(0x90, "IR", 60, 60)) == 60  # type: ignore[arg-type]  # the BAMS page
    assert three_phase.read(0x70, "HR", 0, 60) is Unanswered.ERROR
    ems = _sim("ems")
    assert len(ems.read(0x11, "HR", 60, 60)) == 60  # type: ignore[arg-type]  # answered, as captured
    assert ems.read(0x11, "HR", 300, 60) is Unanswered.ERROR


def test_three_phase_splits_one_power_balance_over_the_phases() -> None:
    sim = _sim("hybrid-3ph")
    flows = sim.state.flows
    inverter = [_signed(sim.input(1091 + n)) for n in range(3)]
    grid = [_signed(sim.input(1083 + n)) for n in range(3)]
    assert abs(sum(inverter) - flows.inverter_w) <= 2
    assert abs(_s32(sim, 1069) / 10 - flows.inverter_w) <= 0.1
    assert abs(sum(grid) - flows.grid_w) <= 2  # + export, per phase
    load = [i - g for i, g in zip(inverter, grid, strict=True)]
    assert abs(sum(load) - _u32(sim, 1089) / 10) <= 3
    assert (_u32(sim, 1017) + _u32(sim, 1019)) / 10 == pytest.approx(flows.pv_w, abs=0.2)
    charge, discharge = _u32(sim, 1138) / 10, _u32(sim, 1136) / 10
    assert discharge - charge == pytest.approx(flows.battery_w, abs=0.2)
    assert sim.input(1132) == round(sim.state.soc)
    assert all(390 < sim.input(1061 + n) / 10 < 430 for n in range(3))  # line to line


def test_hv_stack_pages_agree_with_the_inverter() -> None:
    sim = _sim("aio", start_soc=70)
    stack = sim.storage.stack
    assert stack is not None and len(stack.modules) == 4
    assert sim.input(61, address=0xA0) == 1 and sim.input(62, address=0xA0) == 4
    assert sim.input(64, address=0x70) == 4
    stack_volts = sim.input(73, address=0x70) / 10
    assert stack_volts == pytest.approx(sim.input(50) / 100, abs=0.2)  # IR50 is the stack on an AIO
    cells = [sim.input(60 + n, address=0x50 + m) for m in range(4) for n in range(24)]
    assert sum(cells) / 1000 == pytest.approx(stack_volts, abs=0.2)
    assert sim.input(80, address=0x70) >> 8 >= round(sim.state.soc) - 1  # the fullest module
    temperatures = [sim.input(90 + n, address=0x50) for n in range(24)]
    assert all(temperatures[:12]) and not any(temperatures[12:])  # All-in-One modules: 12 sensors
    serial = b"".join(sim.input(114 + n, address=0x50).to_bytes(2, "big") for n in range(5)).decode()
    assert serial == sim.battery_serials[0]


def test_ems_rollup_reports_its_managed_inverters() -> None:
    sim = _sim("ems", batteries=3, meters=2)
    flows = sim.state.flows
    per_inverter = [_signed(sim.input(2054 + n)) for n in range(3)]
    assert abs(sum(per_inverter) - _signed(sim.input(2090))) <= 2
    assert _signed(sim.input(2090)) == round(flows.battery_w)
    assert _signed(sim.input(2089)) == round(-flows.grid_w)  # the rollup's grid meter: + importing
    assert sim.input(2044) == 3 and sim.input(2045) == 0b010_010_010
    assert sim.input(2041) == 2 and sim.input(2043) == 0b01_00_01  # meters 1 and 3 online (capture: 17)
    assert sim.meter_addresses == (0x01, 0x03)
    serial = b"".join(sim.input(2071 + n).to_bytes(2, "big") for n in range(5)).decode()
    assert serial == sim.unit_serials[1]


def test_gateway_rollup_reports_its_all_in_ones() -> None:
    sim = _sim("gateway", batteries=3)
    flows = sim.state.flows
    assert sim.input(1700) == 3
    assert _signed(sim.input(1616)) == round(flows.grid_w)  # + exporting
    assert sim.input(1617) == round(flows.pv_w)
    assert _signed(sim.input(1702)) == round(-flows.inverter_w)  # + charging, before the library negates it
    assert sum(_signed(sim.input(1816 + n)) for n in range(3)) == pytest.approx(-flows.inverter_w, abs=3)
    assert [sim.input(1801 + n) for n in range(3)] == pytest.approx([sim.state.soc] * 3, abs=2)
    version = [sim.input(1600 + n) for n in range(4)]
    assert version == [0x4741, 0x4141, 0x0000, 0x0104]  # GAAA0014


def test_ac_coupled_sites_charge_from_a_separate_pv_inverter() -> None:
    sim = _sim("ac", start_soc=40)
    flows = sim.state.flows
    assert flows.pv_w > 1000 and flows.battery_w < 0  # surplus PV charges the battery through the AC side
    assert sim.input(18) == sim.input(20) == 0  # the AC unit sees no PV
    assert _signed(sim.input(30)) == pytest.approx(flows.inverter_w + flows.pv_w - flows.load_w, abs=2)
    assert _signed(sim.input(24)) == round(flows.inverter_w)


def test_pv_only_has_nothing_to_charge() -> None:
    sim = _sim("pv")
    assert sim.battery_serials == () and sim.state.flows.battery_w == 0
    assert sim.input(59) == 0 and sim.holding(55) == 0
    assert _signed(sim.input(30)) > 0  # noon: the PV exports what the house does not use
    with pytest.raises(ValueError, match="batteries must be 0-0"):
        _sim("pv", batteries=1)


def test_meters_up_to_eight_with_product_registers() -> None:
    sim = _sim("hybrid-gen3", meters=8)
    assert sim.meter_addresses == tuple(range(1, 9))
    grid = sim.read(0x01, "IR", 60, 30)
    assert isinstance(grid, list)
    assert _signed(grid[11]) == round(-sim.state.flows.grid_w)  # IR71: + importing
    assert grid[0] == round(sim.state.grid_v * 10)
    product = sim.read(0x03, "MR", 60, 9)
    assert isinstance(product, list) and product[7] == 3 and product[8] == 9600
    assert sim.read(0x11, "MR", 60, 9) is Unanswered.SILENT  # only meters answer function 0x16
    three_phase = _sim("hybrid-3ph", meters=1).read(0x01, "IR", 60, 30)
    assert isinstance(three_phase, list) and all(three_phase[:3])  # every phase metered


@pytest.mark.parametrize(
    ("family", "register", "value", "outcome"),
    [
        ("hybrid-3ph", 1111, 80, WriteOutcome.STORED),  # the three-phase target
        ("hybrid-3ph", 1111, 101, WriteOutcome.REJECTED),
        ("hybrid-3ph", 1109, 3, WriteOutcome.REJECTED),
        ("hybrid-3ph", 1110, 50, WriteOutcome.STORED),  # GivTCP's 3PH charge rate
        ("hybrid-3ph", 1113, 2330, WriteOutcome.STORED),
        ("hybrid-3ph", 1122, 2, WriteOutcome.REJECTED),
        ("hybrid-3ph", 116, 80, WriteOutcome.REJECTED),  # the single-phase target is not written on 3PH
        ("hybrid-3ph", 313, 50, WriteOutcome.REJECTED),
        ("ac-3ph", 1108, 100, WriteOutcome.STORED),
        ("ems", 2040, 0, WriteOutcome.STORED),
        ("ems", 2053, 130, WriteOutcome.STORED),
        ("ems", 2055, 90, WriteOutcome.STORED),  # charge slot 1's target
        ("ems", 2064, 101, WriteOutcome.REJECTED),
        ("ems", 2072, 1, WriteOutcome.REJECTED),  # car charge mode: outside the library's EMS set
        ("ems", 116, 80, WriteOutcome.REJECTED),
        ("gateway", 94, 130, WriteOutcome.STORED),
        ("gateway", 313, 60, WriteOutcome.STORED),  # GivTCP's Gateway rate
        ("gateway", 1111, 80, WriteOutcome.REJECTED),
        ("ac", 313, 60, WriteOutcome.STORED),
        ("ac", 318, 1, WriteOutcome.REJECTED),  # no pause on AC
        ("ac", 272, 30, WriteOutcome.ACKNOWLEDGED),  # echoed, not kept (batpred #4517)
        ("aio", 245, 85, WriteOutcome.STORED),
        ("aio", 1111, 80, WriteOutcome.REJECTED),
        ("hybrid-hv-gen3", 116, 85, WriteOutcome.STORED),
        ("pv", 50, 80, WriteOutcome.STORED),
    ],
)
def test_write_rules_follow_each_register_variant(
    family: str, register: int, value: int, outcome: WriteOutcome
) -> None:
    assert classify_write(PROFILES[family], register, value) is outcome


def test_three_phase_controls_drive_the_physics() -> None:
    sim = _sim("hybrid-3ph", start=NIGHT, start_soc=40)
    assert sim.state.flows.battery_w > 0  # self-consumption at night
    for register, value in ((1113, 30), (1114, 300), (1111, 90), (1112, 1), (1123, 1)):
        sim.set_holding(register, value)  # charge slot 1 00:30-03:00 to 90 %, AC and force charge on
    # Charging from the grid: the 11 kW inverter limits the 12 kW battery rating.
    assert sim.state.flows.battery_w == pytest.approx(-sim.rating.inverter_w * 0.96, rel=0.01)
    sim.set_holding(1110, 50)  # the AC charge limit: 50 % of the battery rating
    assert sim.state.flows.battery_w == pytest.approx(-sim.rating.battery_max_w / 2, rel=0.01)


def test_ems_export_slot_discharges_to_its_target() -> None:
    sim = _sim("ems", start=NIGHT, start_soc=80)
    for register, value in ((2062, 30), (2063, 300), (2064, 50)):  # export 00:30-03:00 down to 50 %
        sim.set_holding(register, value)
    flows = sim.state.flows
    assert flows.battery_w == pytest.approx(sim.rating.battery_max_w, rel=0.01)
    assert flows.grid_w > 0  # exporting
    sim.set_holding(2040, 0)  # plant control off: back to self-consumption
    assert sim.state.flows.grid_w <= 1
