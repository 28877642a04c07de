"""Every value Home Assistant is offered is one its command accepts, and every entity id names a serial.

A control's options, min, max and step are derived from its command's payload model and the
device's own limits (:mod:`givbridge.mqtt.discovery.controls`). This checks the result the
way HA would use it: for each control of each simulated family's discovery documents, each
select option and each number's min, max and a mid value on its step grid is sent as HA sends
it (a number as ``80``, not ``80.0``; HA drops the ``.0`` of a whole value), parsed by the
command's payload model and, for a register command, planned for that device. Nothing here
opens a socket: the snapshots are built from the simulator's registers.

The entity ids of every simulated family name a serial (a stack's and a meter's the
inverter's), so none repeats across a plant, and none but the inverter's own matches Predbat's
serial detection.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from givbridge.commands.decoding import decode
from givbridge.commands.devices import reference_device
from givbridge.commands.executor import parse_payload
from givbridge.commands.registry import REGISTRY
from givbridge.commands.results import CommandFailed
from givbridge.commands.spec import Command, PlanInput
from givbridge.devices.context import DeviceContext
from givbridge.entities import TIME_SLOT_OPTIONS, load_catalogue
from givbridge.mqtt.discovery.addresses import resolved_limits
from givbridge.mqtt.discovery.controls import number_range
from givbridge.mqtt.discovery.documents import DiscoveryBuilder
from givbridge.mqtt.state import MESSAGES_PATH
from givbridge.mqtt.topics import DiscoveryTopics, Topics
from givbridge.plant import Snapshot, build_snapshot
from givbridge.plant.families import FAMILIES
from givbridge.sim import PROFILES
from tests.unit.plant import family_registers
from tests.unit.plant.registers import plant_from
from tests.unit.plant.test_entity_coverage import ev_charger
from tests.unit.test_discovery import ADMIN_ON

TAKEN_AT = datetime(2026, 6, 20, 11, 0, 30, tzinfo=UTC)
ZONE = ZoneInfo("Europe/London")
CATALOGUE = load_catalogue()
BUILDER = DiscoveryBuilder(
    topics=Topics("GivEnergy"),
    discovery_topics=DiscoveryTopics("homeassistant"),
    catalogue=CATALOGUE,
    policy=ADMIN_ON,  # the admin controls too: they are offered when mqtt.admin is on
)
# Values the bridge itself publishes beside the registers' (the timed actions, the tariff's rate).
BRIDGE_CONTROLS = {f"Control/{key}" for key in CATALOGUE if CATALOGUE.sources[key] in ("timed.yaml", "tariffs.yaml")}
# A slot select offers all 1,440 minutes of the day: each is parsed, a sample is also planned.
PLANNED_SLOT_TIMES = frozenset(TIME_SLOT_OPTIONS[::97]) | {TIME_SLOT_OPTIONS[-1]}


@dataclass(frozen=True)
class Offer:
    """One value HA may send: which entity offers it, to which command, as what text."""

    entity: str
    command: Command
    text: str


def family_snapshot(family: str) -> Snapshot:
    plant = plant_from(family_registers.simulated(family))
    return build_snapshot(plant, family=FAMILIES[family], taken_at=TAKEN_AT, tz=ZONE)


def ha_number_text(value: float) -> str:
    """A number as HA's MQTT number entity sends it: a whole value without ``.0``."""
    return str(int(value)) if float(value).is_integer() else str(value)


def grid_mid(low: float, high: float, step: float) -> float:
    """A value half way between ``low`` and ``high`` on the step grid that starts at ``low``."""
    return low + step * math.floor((high - low) / step / 2)


def context_of(snapshot: Snapshot) -> DeviceContext | None:
    """The device as the commands see it (the simulator's firmware is its family's reference one)."""
    if snapshot.info.family not in FAMILIES:
        return None  # the EV charger: its commands are actions
    return reference_device(snapshot.info.family, serial=snapshot.serial)


def offers(snapshot: Snapshot) -> Iterator[Offer]:
    """Every value the discovery documents of ``snapshot``'s device let HA send."""
    paths = {*snapshot.values, MESSAGES_PATH, *BRIDGE_CONTROLS}
    discovery = BUILDER.inverter(snapshot, prefix="givtcp", paths=paths, context=context_of(snapshot))
    assert discovery.undefined == () and discovery.unresolved == (), (discovery.undefined, discovery.unresolved)
    for device in discovery.devices:
        for config in device.document["components"].values():
            if "command_topic" not in config:
                continue
            command = REGISTRY.get(config["command_topic"].rsplit("/", 1)[-1])
            assert command is not None, config["command_topic"]
            entity = config["default_entity_id"]
            for text in _texts(config):
                yield Offer(entity, command, text)


def _texts(config: dict[str, Any]) -> Iterator[str]:
    platform = config["platform"]
    if platform == "select":
        assert config["options"], config["default_entity_id"]
        yield from config["options"]
    elif platform == "number":
        low, high, step = config["min"], config["max"], config["step"]
        assert low <= high and step > 0, config["default_entity_id"]
        for value in (low, high, grid_mid(low, high, step)):
            yield ha_number_text(value)
    elif platform == "switch":
        yield from (config["payload_on"], config["payload_off"])
    elif platform == "button":
        yield config["payload_press"]
    elif platform == "time":
        yield from ("00:00:00", "23:59:00")  # HA's time entity sends HH:MM:SS


def memory_of(snapshot: Snapshot) -> dict[str, int]:
    remembered: dict[str, int] = {}
    for observe in REGISTRY.observers:
        remembered.update(observe(snapshot))
    return remembered


def refusals(snapshot: Snapshot) -> list[str]:
    """What the device's commands refuse of the values its entities offer."""
    device = context_of(snapshot)
    assert device is not None
    given = PlanInput(device, snapshot, memory_of(snapshot), TAKEN_AT.astimezone(ZONE))
    problems: list[str] = []
    for offer in offers(snapshot):
        where = f"{offer.entity} -> {offer.command.name} {offer.text!r}"
        try:
            model = parse_payload(offer.command, decode(offer.text))
        except CommandFailed as exc:  # every refusal is reported, not just the first
            problems.append(f"{where}: {exc}")
            continue
        if offer.command.target != "inverter" or offer.command.plan is None:
            continue  # an action (timed, charger, bridge): its payload model is its whole contract here
        if offer.text in TIME_SLOT_OPTIONS and offer.text not in PLANNED_SLOT_TIMES:
            continue
        reason = offer.command.applies.reason(device)
        if reason is not None:
            problems.append(f"{where}: does not apply here: {reason}")
            continue
        try:
            offer.command.plan(model, given)
        except CommandFailed as exc:
            problems.append(f"{where}: {exc}")
    return problems


@pytest.mark.parametrize("family", sorted(PROFILES))
def test_every_offered_value_is_accepted_by_its_command(family: str) -> None:
    problems = refusals(family_snapshot(family))
    assert not problems, "\n".join(problems)


def test_every_offered_value_of_the_ev_charger_is_accepted() -> None:
    charger = ev_charger(TAKEN_AT, ZONE)
    found = list(offers(charger))
    assert {offer.command.name for offer in found} >= {"setCurrentLimit", "setChargeControl", "setChargingMode"}
    problems = []
    for offer in found:
        try:
            parse_payload(offer.command, decode(offer.text))
        except CommandFailed as exc:
            problems.append(f"{offer.entity} -> {offer.command.name} {offer.text!r}: {exc}")
    assert not problems, "\n".join(problems)
    limit = next(o for o in found if o.entity.endswith("_charge_limit") and o.command.name == "setCurrentLimit")
    assert limit is not None


def test_the_charge_limit_is_the_chargers_own_range() -> None:
    charger = ev_charger(TAKEN_AT, ZONE)
    limits = resolved_limits(charger)
    offered = number_range(CATALOGUE["Charge_Limit"], REGISTRY.get("setCurrentLimit"), limits)
    assert offered is not None
    low, high = (charger.get(f"Charger/{leaf}") for leaf in ("Evse_Min_Current", "Evse_Max_Current"))
    assert isinstance(low, float) and isinstance(high, float)
    assert (offered.min, offered.max) == (math.ceil(low), math.floor(high))


@pytest.mark.parametrize("family", ["hybrid-gen1", "hybrid-gen3", "aio", "hybrid-3ph"])
def test_a_rate_offers_only_watts_the_register_can_hold(family: str) -> None:
    """Each step of the rate slider is one register step, so what HA sets is what the inverter keeps."""
    snapshot = family_snapshot(family)
    limits = resolved_limits(snapshot)
    offered = number_range(CATALOGUE["Battery_Charge_Rate"], REGISTRY.get("setChargeRate"), limits)
    assert offered is not None
    step = limits["battery_rate_step"]
    assert step is not None and offered.step == step
    if FAMILIES[family].phases == 3:
        assert offered.min == offered.step  # 1 %: the three-phase limit takes 1-100
    else:
        assert offered.min == 0
        capacity = snapshot.get(f"{snapshot.serial}/Battery_Nominal_Capacity_kWh") or snapshot.get(
            f"{snapshot.serial}/Battery_Capacity_kWh"
        )
        assert isinstance(capacity, float) and step == pytest.approx(capacity * 10, abs=0.001)
    assert offered.max == limits["battery_max_power"]


def test_selects_offer_only_what_their_command_takes() -> None:
    snapshot = family_snapshot("hybrid-gen3")
    found: dict[str, list[str]] = {}
    for offer in offers(snapshot):
        found.setdefault(offer.entity, []).append(offer.text)
    sn = snapshot.serial.lower()
    assert found[f"select.givtcp_{sn}_mode"] == ["Eco", "Eco (Paused)", "Timed Demand", "Timed Export"]
    assert found[f"select.givtcp_{sn}_battery_calibration"] == ["Off", "Start", "Charge Only"]
    assert "Running" not in found[f"select.givtcp_{sn}_force_charge"]
    aio = family_snapshot("aio")
    rate_ac = [o.text for o in offers(aio) if o.entity.endswith("_battery_charge_rate_ac")]
    assert rate_ac[0] == "1"  # setChargeRateAC refuses 0


def test_a_control_whose_command_does_not_apply_is_shown_read_only() -> None:
    snapshot = family_snapshot("hybrid-3ph")  # HR1002 (active power rate) is outside its write allowlist
    paths = {*snapshot.values, MESSAGES_PATH}
    free = BUILDER.inverter(snapshot, prefix="givtcp", paths=paths)
    known = BUILDER.inverter(snapshot, prefix="givtcp", paths=paths, context=context_of(snapshot))
    unique_id = f"givtcp_{snapshot.serial}_Active_Power_Rate"
    before = next(d.document["components"][unique_id] for d in free.devices if unique_id in d.document["components"])
    after = next(d.document["components"][unique_id] for d in known.devices if unique_id in d.document["components"])
    assert before["platform"] == "number" and "command_topic" in before
    assert after["platform"] == "sensor" and "command_topic" not in after
    assert (after["unit_of_measurement"], after["entity_category"]) == ("%", "diagnostic")


# --- entity ids ---------------------------------------------------------------------------------

PREDBAT_SERIAL = re.compile(r"sensor\.givtcp_(.+)_soc_kwh")  # Predbat's GivTCP template: geserial


def entity_ids(snapshot: Snapshot, prefix: str) -> list[str]:
    paths = {*snapshot.values, MESSAGES_PATH, *BRIDGE_CONTROLS}
    discovery = BUILDER.inverter(snapshot, prefix=prefix, paths=paths)
    return [c["default_entity_id"] for d in discovery.devices for c in d.document["components"].values()]


@pytest.mark.parametrize("family", sorted(PROFILES))
def test_every_entity_id_names_a_serial_and_only_the_inverters_looks_like_one(family: str) -> None:
    snapshot = family_snapshot(family)
    ids = entity_ids(snapshot, "givtcp")
    serials = {snapshot.serial, *snapshot.info.battery_serials, *_module_serials(snapshot)}
    nameless = [e for e in ids if not any(serial.lower() in e for serial in serials)]
    assert not nameless, nameless
    detected = {m[1] for e in ids if (m := PREDBAT_SERIAL.fullmatch(e))}
    assert detected <= {snapshot.serial.lower()}, detected


def _module_serials(snapshot: Snapshot) -> set[str]:
    """HV modules' serials: the third level of ``Battery_Details/<stack>/<module>/<leaf>``."""
    return {p.split("/")[2] for p in snapshot.values if p.startswith("Battery_Details/") and p.count("/") == 3}


def test_two_all_in_ones_behind_a_gateway_share_no_entity_id() -> None:
    first = family_snapshot("aio")
    other = "CH2414G999"
    values = {path.replace(first.serial, other): value for path, value in first.values.items()}
    second = Snapshot(replace(first.info, serial=other), first.taken_at, values)
    gateway = family_snapshot("gateway")
    ids = [*entity_ids(first, "givtcp"), *entity_ids(second, "givtcp2"), *entity_ids(gateway, "givtcp3")]
    assert len(ids) == len(set(ids))
    # Even under one prefix (two bridges, or a prefix set by hand) the stack's ids differ.
    same_prefix = [*entity_ids(first, "givtcp"), *entity_ids(second, "givtcp")]
    stack = [e for e in same_prefix if "battery_stack" in e]
    assert stack and len(stack) == len(set(stack))
    assert {m[1] for e in ids if (m := PREDBAT_SERIAL.fullmatch(e))} == {first.serial.lower()}


def test_the_chargers_entity_ids_name_its_serial() -> None:
    charger = ev_charger(TAKEN_AT, ZONE)
    ids = entity_ids(charger, "givevc")
    assert ids and all(charger.serial.lower() in e for e in ids)
