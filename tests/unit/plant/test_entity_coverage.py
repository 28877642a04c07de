"""The builder and the entity definitions agree: every published leaf is defined, and fits its definition."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from givbridge.clock import ScaledClock
from givbridge.entities import EntityCatalogue, load_catalogue, resolve_limit
from givbridge.evc import registers as evc_registers
from givbridge.evc.rules import ModeSettings
from givbridge.plant import Snapshot, build_snapshot, vocab
from givbridge.plant.families import FAMILIES
from givbridge.plant.snapshot import DeviceInfo
from givbridge.sim import PROFILES
from givbridge.sim.evc import Car, EvcSimulator
from tests.unit.plant import family_registers as families
from tests.unit.plant.registers import Device, ac_one_pack, gen1_two_packs, gen3_ten_slots, plant_from

# Fixture name -> (family, register factory): the capture-based plants, then one simulated
# plant per simulated family (a three-unit Gateway and an EMS with every meter slot fitted,
# so each of their numbered leaves appears).
FIXTURES: dict[str, tuple[str, Callable[[], dict[int, Device]]]] = {
    "hybrid-gen1": ("hybrid-gen1", gen1_two_packs),
    "hybrid-gen3": ("hybrid-gen3", gen3_ten_slots),
    "ac": ("ac", ac_one_pack),
    "hybrid-3ph capture": ("hybrid-3ph", families.three_phase_hybrid),
    "aio capture": ("aio", families.all_in_one),
    "hybrid-hv-gen3 capture": ("hybrid-hv-gen3", families.hv_gen3),
    "ems capture": ("ems", families.ems_two_inverters),
    "gateway capture": ("gateway", families.gateway_two_aios),
    **{
        f"{family} simulated": (family, functools.partial(families.simulated, family))
        for family in sorted(PROFILES)
        if family not in ("gateway", "ems")
    },
    "gateway simulated": ("gateway", functools.partial(families.simulated, "gateway", batteries=3, meters=8)),
    "ems simulated": ("ems", functools.partial(families.simulated, "ems", batteries=4, meters=8)),
}
BRIDGE_OWNED = {"stats.yaml", "timed.yaml", "tariffs.yaml"}


@pytest.fixture(scope="module")
def catalogue() -> EntityCatalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def snapshots() -> dict[str, Snapshot]:
    taken_at = datetime(2026, 6, 5, 11, 20, tzinfo=UTC)
    tz = ZoneInfo("Europe/London")
    built = {
        name: build_snapshot(plant_from(make()), family=FAMILIES[family], taken_at=taken_at, tz=tz)
        for name, (family, make) in FIXTURES.items()
    }
    built["ev charger simulated"] = ev_charger(taken_at, tz)
    return built


def ev_charger(taken_at: datetime, tz: ZoneInfo) -> Snapshot:
    """A three-phase charger after a finished session (so both session times exist), with the modes' settings."""
    clock = ScaledClock(speed=1, start=taken_at)
    sim = EvcSimulator(clock=clock, tz=str(tz), phases=3)
    sim.plug_in(Car(soc=50))
    clock.advance(1800)
    sim.unplug()
    registers = dict(enumerate(sim.registers()))
    values = evc_registers.decode(registers, tz)
    serial = evc_registers.serial_of(registers)
    assert serial is not None
    values.update(ModeSettings().values())
    info = DeviceInfo(serial, evc_registers.CHARGER_MODEL, evc_registers.CHARGER_FAMILY)
    return Snapshot(info=info, taken_at=taken_at, values=values)


def leaf(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def test_every_published_leaf_has_a_definition(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    missing = sorted({leaf(path) for s in snapshots.values() for path in s.values} - set(catalogue))
    assert not missing, f"leaves published without an entity definition: {missing}"


def test_every_definition_is_published_by_some_model(
    catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]
) -> None:
    published = {leaf(path) for s in snapshots.values() for path in s.values}
    # Definitions of values the bridge itself supplies are checked by the bridge's tests.
    register_derived = {key for key in catalogue if catalogue.sources[key] not in BRIDGE_OWNED}
    unused = sorted(register_derived - published)
    assert not unused, f"definitions no fixture publishes (dead, or a fixture is missing): {unused}"


def test_published_values_fit_their_definitions(catalogue: EntityCatalogue, snapshots: dict[str, Snapshot]) -> None:
    problems: list[str] = []
    for family, snapshot in snapshots.items():
        limits = {
            "battery_max_power": _number(snapshot.get(f"{snapshot.serial}/Invertor_Max_Bat_Rate")),
            "inverter_max_power": _number(snapshot.get(f"{snapshot.serial}/Invertor_Max_Inv_Rate")),
        }
        for path, value in snapshot.values.items():
            definition = catalogue[leaf(path)]
            where = f"{family} {path}={value!r}"
            options = definition.option_values()
            if definition.platform == "select":
                shown = value.strftime("%H:%M:%S") if isinstance(value, time) else value
                if options is None or shown not in options:
                    problems.append(f"{where}: not one of the select options")
            elif definition.platform == "switch":
                if value not in (definition.state_on, definition.state_off):
                    problems.append(f"{where}: not a switch state")
            elif definition.device_class == "timestamp":
                if not (isinstance(value, datetime) and value.utcoffset() is not None):
                    problems.append(f"{where}: a timestamp must be a timezone-aware datetime")
            elif definition.device_class == "enum":
                if options is None or value not in options:
                    problems.append(f"{where}: not one of the enum options")
            elif definition.platform == "number" or definition.unit or definition.state_class:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    problems.append(f"{where}: a numeric entity needs a number")
                    continue
                bounds = definition.bounds
                low = resolve_limit(bounds.min, limits) if bounds else None
                high = resolve_limit(bounds.max, limits) if bounds else None
                if (low is not None and value < low) or (high is not None and value > high):
                    problems.append(f"{where}: outside bounds {low}..{high}")
    assert not problems, "\n".join(problems)


def test_select_options_are_givtcps_words(catalogue: EntityCatalogue) -> None:
    assert catalogue["Mode"].options == vocab.MODES
    assert catalogue["Battery_pause_mode"].options == vocab.PAUSE_MODES
    assert catalogue["Battery_Calibration"].options == vocab.CALIBRATIONS
    assert set(vocab.CALIBRATION_BY_STAGE.values()) <= set(vocab.CALIBRATIONS)
    assert catalogue["Car_Charge_Mode"].options == vocab.CAR_CHARGE_MODES


def test_enum_options_are_every_word_the_librarys_codes_become(catalogue: EntityCatalogue) -> None:
    from givenergy_modbus.model.battery import State
    from givenergy_modbus.model.inverter import Status, WorkMode
    from givenergy_modbus.model.meter import MeterStatus

    assert catalogue["DC_Status"].options == tuple(vocab.givtcp_enum_word(s.name) for s in Status)
    assert catalogue["Gateway_State"].options == tuple(vocab.givtcp_enum_word(s.name) for s in State)
    assert catalogue["Gateway_Mode"].options == tuple(vocab.spaced_word(m.name) for m in WorkMode)
    assert catalogue["Meter_1_Status"].options == tuple(vocab.givtcp_enum_word(s.name) for s in MeterStatus)


def test_predbat_controls_have_the_commands_it_drives(catalogue: EntityCatalogue) -> None:
    # The entities Predbat's GivTCP template writes through (peers.md section 1.3).
    expected = {
        "Battery_Charge_Rate": "setChargeRate",
        "Battery_Discharge_Rate": "setDischargeRate",
        "Battery_Power_Reserve": "setBatteryReserve",
        "Target_SOC": "setChargeTarget",
        "Enable_Charge_Target": "enableChargeTarget",
        "Enable_Charge_Schedule": "enableChargeSchedule",
        "Mode": "setBatteryMode",
        "Charge_start_time_slot_1": "setChargeStart1",
        "Charge_end_time_slot_1": "setChargeEnd1",
        "Discharge_start_time_slot_1": "setDischargeStart1",
        "Discharge_end_time_slot_1": "setDischargeEnd1",
        "Battery_pause_mode": "setBatteryPauseMode",
        "Battery_pause_start_time_slot": "setPauseStart",
        "Battery_pause_end_time_slot": "setPauseEnd",
        "Discharge_Target_SOC_1": "setDischargeTarget1",
        "Real_Time_Control": "enableRTC",
        "Reboot_Invertor": "rebootInverter",
    }
    assert {key: catalogue[key].command for key in expected} == expected
    assert catalogue["Battery_Charge_Rate"].max == "battery_rate_max"  # the rating, within C/2
    assert (catalogue["Battery_Capacity_kWh"].unit, catalogue["SOC_kWh"].unit) == ("kWh", "kWh")


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
