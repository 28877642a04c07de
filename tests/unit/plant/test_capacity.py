"""SOC_kWh and Battery_Capacity_kWh from what the packs really hold; the rate registers stay on HR55."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from givbridge.plant import build_snapshot, derive
from givbridge.plant.families import FAMILIES
from tests.unit.plant.registers import PACK_1, gen3_ten_slots, plant_from

LONDON = ZoneInfo("Europe/London")
TAKEN_AT = datetime(2026, 6, 5, 11, 20, tzinfo=UTC)


def test_usable_capacity_is_the_packs_calibrated_ah_at_pack_volts() -> None:
    assert derive.usable_capacity_kwh([(150.88, 186.0)]) == round(150.88 * 51.2 / 1000, 2)
    assert derive.usable_capacity_kwh([(189.61, 160.0), (150.88, 186.0)]) == 17.43


@pytest.mark.parametrize(
    ("packs", "nominal"),
    [
        ([], None),  # no LV packs (an HV stack, or not read yet)
        ([(None, 186.0)], None),  # not reported
        ([(150.0, 0.0)], None),  # no design figure to judge it by
        ([(20.0, 186.0)], None),  # a default or garbage reading (GivTCP #268)
        ([(400.0, 186.0)], None),
        ([(186.0, 186.0)], 5.43),  # packs the inverter is not configured for (HR55 says 106 Ah)
    ],
)
def test_implausible_or_missing_pack_figures_fall_back_to_the_nominal(
    packs: list[tuple[float | None, float | None]], nominal: float | None
) -> None:
    assert derive.usable_capacity_kwh(packs, nominal_kwh=nominal) is None


@given(
    soc=st.integers(0, 100),
    packs=st.lists(st.tuples(st.floats(90, 230), st.sampled_from([106.0, 160.0, 186.0])), min_size=1, max_size=6),
)
def test_a_full_battery_holds_its_capacity(soc: int, packs: list[tuple[float, float]]) -> None:
    """SOC_kWh is a share of the same capacity Predbat divides it by, whatever the packs report."""
    capacity = derive.usable_capacity_kwh(packs) or derive.capacity_from_ah(sum(d for _, d in packs), 51.2)
    assert capacity is not None
    assert derive.soc_kwh(100, capacity) == capacity
    assert 0 <= derive.soc_kwh(soc, capacity) <= capacity


def test_snapshot_capacity_follows_the_pack_and_rates_follow_hr55() -> None:
    devices = gen3_ten_slots()
    snapshot = build_snapshot(plant_from(devices), family=FAMILIES["hybrid-gen3"], taken_at=TAKEN_AT, tz=LONDON)
    serial = snapshot.serial
    assert snapshot[f"{serial}/Battery_Capacity_kWh"] == 7.73  # 150.88 Ah calibrated x 51.2 V
    assert snapshot[f"{serial}/Battery_Nominal_Capacity_kWh"] == 9.52  # HR55 = 186 Ah
    assert snapshot["Power/Power/SOC_kWh"] == derive.soc_kwh(46, 7.73)
    assert snapshot["Control/Battery_Charge_Rate"] == 1523  # HR111 = 16 % of the nominal 9.52 kWh

    devices[PACK_1].ir(r84=0, r85=1000)  # a pack reporting 10 Ah: not believed
    garbage = build_snapshot(plant_from(devices), family=FAMILIES["hybrid-gen3"], taken_at=TAKEN_AT, tz=LONDON)
    assert garbage[f"{serial}/Battery_Capacity_kWh"] == 9.52
    assert garbage["Power/Power/SOC_kWh"] == derive.soc_kwh(46, 9.52)
