"""SimulatedPlant without sockets: identity, routing, write rules, clock and fault hooks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from givenergy_modbus.model import manifest
from givenergy_modbus.model.battery_splice import classify_transition
from givenergy_modbus.model.inverter import _DTC_RATED_POWER
from givenergy_modbus.model.register import HR, IR, is_valid_serial
from givenergy_modbus.testing import MockPlant

from givbridge.clock import ScaledClock
from givbridge.plant.families import FAMILIES, family_for
from givbridge.sim import PROFILES, SimulatedPlant, Unanswered, WriteOutcome
from givbridge.sim.profile_spec import Layout
from givbridge.sim.writes import classify_write

NOON = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)
NIGHT = datetime(2026, 1, 15, 1, 0, tzinfo=UTC)
#: Single-phase hybrids with LV packs: the families the pack- and slot-level checks apply to.
LV_HYBRIDS = sorted(f for f, p in PROFILES.items() if p.pack is not None and p.layout is Layout.SINGLE_PHASE)


def _sim(
    family: str = "hybrid-gen3",
    batteries: int | None = 2,
    start: datetime = NOON,
    seed: int = 0,
    serial: str | None = None,
    start_soc: float = 50,
    meters: int | None = None,
) -> SimulatedPlant:
    return SimulatedPlant.create(
        family,
        batteries=batteries,
        serial=serial,
        clock=ScaledClock(start=start),
        seed=seed,
        start_soc=start_soc,
        meters=meters,
    )


@pytest.mark.parametrize("family", sorted(PROFILES))
def test_each_profile_identifies_as_its_family(family: str) -> None:
    profile = PROFILES[family]
    sim = _sim(family, batteries=None)
    assert family in FAMILIES
    assert family_for(sim.holding(0), sim.holding(21)).key == family
    if profile.unit is None:
        assert profile.rated_power_w == _DTC_RATED_POWER[f"{sim.holding(0):04x}"]
    stored = sim.battery_serials or sim.unit_serials
    assert all(is_valid_serial(s) for s in (sim.serial, sim.dongle_serial, *stored))
    assert len(set(stored)) == profile.default_batteries
    serial = b"".join(sim.holding(r).to_bytes(2, "big") for r in range(13, 18)).decode()
    assert serial == sim.serial
    if profile.pack is not None:
        assert sim.holding(55) == profile.default_batteries * profile.pack.design_ah
    elif profile.hv is not None and profile.reports_capacity_ah:
        assert sim.holding(55) == profile.hv.module_ah  # the stack's modules are in series
    else:
        assert sim.holding(55) == 0


@pytest.mark.parametrize("family", LV_HYBRIDS)
def test_slot_layouts_agree_with_the_librarys_ten_slot_rule(family: str) -> None:
    profile = PROFILES[family]
    ten_slots = len(profile.discharge_slots) == 10
    assert manifest.has_extended_slots(profile.model, profile.arm_firmware) is ten_slots
    assert all(slot.target is not None for slot in profile.charge_slots + profile.discharge_slots) is ten_slots
    if family in ("hybrid-gen1", "hybrid-gen2", "hybrid-gen3"):
        assert profile.battery_max_power_w == (2600 if profile.family == "hybrid-gen1" else 3600)


def test_the_seed_decides_everything_and_arguments_are_checked() -> None:
    first, again, other = _sim(seed=3), _sim(seed=3), _sim(seed=4)
    assert (first.serial, first.battery_serials) == (again.serial, again.battery_serials)
    assert [first.input(r) for r in range(60)] == [again.input(r) for r in range(60)]
    assert first.serial != other.serial
    assert _sim(serial="SD2401G042").serial == "SD2401G042"
    with pytest.raises(ValueError, match="ac, ac-3ph, aio, ems, gateway, hybrid-3ph"):
        _sim("aio-commercial")  # no facts to simulate it from
    with pytest.raises(ValueError, match="batteries"):
        _sim(batteries=7)
    with pytest.raises(ValueError, match="batteries must be 1-4 on ems"):
        _sim("ems", batteries=0)
    with pytest.raises(ValueError, match="meters"):
        SimulatedPlant.create("hybrid-gen3", meters=9)
    with pytest.raises(ValueError, match="serial"):
        _sim(serial="XX")


@pytest.mark.parametrize("family", sorted(PROFILES))
@pytest.mark.parametrize("start", [NOON, NIGHT])
def test_every_bank_commits_through_the_librarys_guards(family: str, start: datetime) -> None:
    """What the simulator serves must survive the library's cold-start, splice and bounds guards."""
    profile = PROFILES[family]
    sim = _sim(family, batteries=min(3, profile.max_batteries), start=start, start_soc=97, meters=2)
    spec: dict[int, dict[tuple[type, int], list[int]]] = {}
    for kind, register_type, banks in (("HR", HR, profile.holding_served), ("IR", IR, profile.input_served)):
        for bank in banks:
            for base in range(bank.start, bank.stop, 60):
                count = min(60, bank.stop - base)
                spec.setdefault(0x11, {})[register_type, base] = _values(sim.read(0x11, kind, base, count))
    for address in range(0x01, 0xA1):  # every peripheral that answers IR(60,60) with data
        page = sim.read(address, "IR", 60, 60)
        # Blank pages (empty pack slots, absent meters) are what the library's all-zero guard drops.
        if address != 0x11 and isinstance(page, list) and any(page):
            spec.setdefault(address, {})[IR, 60] = page
    MockPlant.from_spec(spec, inverter_serial=sim.serial, adapter_serial=sim.dongle_serial)  # raises if any is refused


def _values(result: list[int] | Unanswered) -> list[int]:
    assert not isinstance(result, Unanswered)
    return result


def test_battery_banks_move_within_the_splice_guards_thresholds() -> None:
    clock = ScaledClock(start=NIGHT)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=1, start_soc=10)
    sim.set_holding(96, 1)  # charging at full power through the night slot
    before = _values(sim.read(0x32, "IR", 60, 60))
    for _ in range(12):
        clock.advance(300)  # a slow 5-minute poll
        after = _values(sim.read(0x32, "IR", 60, 60))
        assert classify_transition(before, after) == ([], [])
        before = after


def test_reads_answer_silently_with_an_error_or_with_values_per_bank() -> None:
    gen1 = _sim("hybrid-gen1", batteries=1)
    assert gen1.read(0x11, "HR", 300, 60) is Unanswered.SILENT  # library #162
    assert gen1.read(0x11, "HR", 1000, 60) is Unanswered.ERROR
    assert gen1.read(0x11, "HR", 150, 60) is Unanswered.ERROR  # runs past HR179
    assert gen1.read(0x33, "IR", 60, 60) == [0] * 60  # empty battery slot
    assert gen1.read(0x33, "IR", 0, 60) is Unanswered.ERROR
    assert gen1.read(0x05, "IR", 60, 30) is Unanswered.SILENT  # no meter
    gen3 = _sim("hybrid-gen3")
    assert len(_values(gen3.read(0x11, "HR", 300, 60))) == 60  # pause registers live here
    assert gen3.read(0x31, "IR", 60, 60) == [0] * 60  # no LV BCU: a blank page


@pytest.mark.parametrize(
    ("family", "register", "value", "outcome"),
    [
        ("hybrid-gen3", 116, 80, WriteOutcome.STORED),
        ("hybrid-gen3", 116, 101, WriteOutcome.REJECTED),
        ("hybrid-gen3", 110, 3, WriteOutcome.REJECTED),
        ("hybrid-gen3", 94, 2359, WriteOutcome.STORED),
        ("hybrid-gen3", 94, 2400, WriteOutcome.REJECTED),
        ("hybrid-gen3", 95, 1060, WriteOutcome.REJECTED),
        ("hybrid-gen3", 27, 2, WriteOutcome.REJECTED),
        ("hybrid-gen3", 111, 50, WriteOutcome.STORED),
        ("hybrid-gen3", 242, 90, WriteOutcome.STORED),
        ("hybrid-gen3", 299, 10, WriteOutcome.STORED),
        ("hybrid-gen3", 318, 4, WriteOutcome.REJECTED),
        ("hybrid-gen3", 319, 1230, WriteOutcome.STORED),
        ("hybrid-gen3", 163, 100, WriteOutcome.REBOOT),
        ("hybrid-gen3", 163, 1, WriteOutcome.REJECTED),  # factory reset codes are not simulated
        ("hybrid-gen3", 0, 0x2001, WriteOutcome.REJECTED),
        ("hybrid-gen3", 313, 50, WriteOutcome.REJECTED),  # AC-coupled only
        ("hybrid-gen2", 242, 90, WriteOutcome.REJECTED),  # no 10-slot map
        ("hybrid-gen2", 272, 30, WriteOutcome.ACKNOWLEDGED),  # echoed, not kept (batpred #4517)
        ("hybrid-gen2", 318, 1, WriteOutcome.STORED),
        ("hybrid-gen1", 275, 30, WriteOutcome.ACKNOWLEDGED),
        ("hybrid-gen1", 318, 1, WriteOutcome.REJECTED),  # no pause on Gen1
        ("hybrid-gen1", 246, 100, WriteOutcome.REJECTED),  # HR240+ does not exist on Gen1
        ("hybrid-gen1", 37, 31, WriteOutcome.STORED),
        ("hybrid-gen1", 36, 13, WriteOutcome.REJECTED),
    ],
)
def test_write_rules_follow_the_model(family: str, register: int, value: int, outcome: WriteOutcome) -> None:
    assert classify_write(PROFILES[family], register, value) is outcome


def test_writes_land_at_the_inverter_addresses_only_and_reboot_takes_it_offline() -> None:
    clock = ScaledClock(start=NOON)
    sim = SimulatedPlant.create("hybrid-gen1", batteries=1, clock=clock)
    assert sim.write(0x31, 110, 20) is WriteOutcome.STORED
    assert sim.holding(110) == sim.holding(110, address=0x32) == 20
    assert sim.write(0x33, 110, 30) is None
    assert sim.write(0x11, 163, 100) is WriteOutcome.REBOOT
    assert sim.offline and sim.read(0x11, "IR", 0, 60) is Unanswered.SILENT
    assert sim.state.flows.battery_w == 0 and sim.state.flows.grid_w < 0  # the house runs off the grid
    clock.advance(sim.reboot_seconds)
    assert not sim.offline and sim.holding(110) == 20 and sim.holding(163) == 0


def test_the_write_log_records_every_answered_write_with_its_old_value() -> None:
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=ScaledClock(start=NOON), seed=4)
    mark = sim.writes_answered
    sim.set_holding(116, 90)  # set directly: not a write the inverter answered
    assert sim.write(0x11, 116, 70) is WriteOutcome.STORED
    assert sim.write(0x11, 116, 101) is WriteOutcome.REJECTED
    assert sim.write(0x11, 38, 7) is WriteOutcome.STORED  # the clock's hour, read from the clock
    assert sim.write(0x33, 116, 60) is None  # nothing answers at 0x33: not logged
    logged = [(r.register, r.old, r.new, r.outcome, r.accepted) for r in sim.writes_since(mark)]
    assert logged == [
        (116, 90, 70, WriteOutcome.STORED, True),
        (116, 70, 101, WriteOutcome.REJECTED, False),
        (38, 12, 7, WriteOutcome.STORED, True),
    ]
    assert [r.sequence for r in sim.write_log] == [mark + 1, mark + 2, mark + 3] and sim.writes_answered == mark + 3


def test_clock_registers_follow_writes_jumps_and_midnight() -> None:
    clock = ScaledClock(start=datetime(2026, 1, 15, 23, 50, tzinfo=UTC))
    sim = SimulatedPlant.create("hybrid-gen2", batteries=1, clock=clock, seed=2)
    assert [sim.holding(r) for r in range(35, 40)] == [26, 1, 15, 23, 50]
    clock.advance(900)
    assert sim.input(26) < 5  # grid import today restarted at the inverter's midnight
    sim.shift_clock(-3600)
    assert [sim.holding(r) for r in range(37, 40)] == [15, 23, 5]
    sim.set_holding(38, 7)
    assert sim.inverter_time().replace(second=0, microsecond=0) == datetime(2026, 1, 15, 7, 5, tzinfo=sim.zone)


def test_fault_hooks_freeze_measurements_and_drop_writes() -> None:
    clock = ScaledClock(start=NOON)
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=6)
    sim.frozen = True
    before = [sim.input(r) for r in range(60)]
    clock.advance(3600)
    assert [sim.input(r) for r in range(60)] == before
    assert sim.holding(38) == 13  # the clock still runs
    sim.frozen = False
    clock.advance(600)
    assert (sim.input(11) << 16) + sim.input(12) > (before[11] << 16) + before[12]  # PV total moves again
    sim.persist_writes = False
    assert sim.write(0x11, 116, 60) is WriteOutcome.ACKNOWLEDGED
    assert sim.holding(116) == 100
    with pytest.raises(ValueError, match="does not exist"):
        sim.set_holding(1000, 1)
