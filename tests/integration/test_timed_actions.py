"""Timed actions end to end: commands over a real broker, simulated inverters over TCP, an accelerated clock.

Time is moved on with :meth:`ScaledClock.advance`, so "30 minutes later" takes no real time, and
every step awaits the message that shows it happened. Each test sets a baseline of its own on
the simulator first and ends by checking the simulator's registers hold exactly that baseline
again, with nothing left running. One broker, two simulated inverters (a Gen3 hybrid and a
three-phase hybrid) and one bridge serve the module.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio

from givbridge.app import Application
from givbridge.clock import ScaledClock
from givbridge.commands.timed_record import DOCUMENT
from givbridge.mqtt.client import Message
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.store import JsonStore
from tests.brokers import Broker, MqttProbe
from tests.integration.bridge_helpers import bridge_settings, first_snapshot, ok
from tests.integration.sim_helpers import MIDSUMMER_NOON
from tests.unit.test_discovery_schema import problems

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = "GivEnergy"
ZONE = "Europe/London"
MINUTE = 60.0


@dataclass
class Rig:
    app: Application
    probe: MqttProbe
    clock: ScaledClock
    sims: dict[str, SimulatedPlant]  # by family
    servers: dict[str, SimulatorServer]

    def serial(self, family: str) -> str:
        return self.sims[family].serial

    def holding(self, family: str, registers: Mapping[int, int] | list[int]) -> dict[int, int]:
        return {register: self.sims[family].holding(register) for register in registers}

    def baseline(self, family: str, values: Mapping[int, int]) -> dict[int, int]:
        """Put ``values`` on the simulated inverter (as if set from its app) and return them."""
        for register, value in values.items():
            self.sims[family].set_holding(register, value)
        assert self.holding(family, list(values)) == dict(values)
        return dict(values)

    def writes(self, family: str) -> int:
        return sum(n for (kind, *_), n in self.servers[family].requests.items() if kind == "W")

    def response_topic(self, family: str, command: str) -> str:
        return f"{ROOT}/{self.serial(family)}/response/{command}"

    async def send(self, family: str, command: str, payload: str) -> dict[str, Any]:
        """Publish a command and return its answer."""
        mark = self.probe.mark()
        await self.probe.publish(f"{ROOT}/control/{self.serial(family)}/{command}", payload)
        message = await self.probe.wait_for(self.response_topic(family, command), timeout=10, after=mark)
        return _document(message)

    async def event(self, family: str, command: str, *, after: int, state: str) -> dict[str, Any]:
        """The next result on ``command``'s response topic whose state is ``state`` (reverted, pending)."""

        def wanted(message: Message) -> bool:
            document = _document(message)
            body = document.get("data") or document.get("error") or {}
            return bool(body.get("state") == state)

        return _document(await self.probe.wait_for(self.response_topic(family, command), wanted, 15, after=after))

    async def state(self, family: str, leaf: str, value: str, *, after: int) -> None:
        """Until ``Control/<leaf>`` is published as ``value``."""
        topic = f"{ROOT}/{self.serial(family)}/Control/{leaf}"
        await self.probe.wait_for_payload(topic, value, 15, after=after)

    def stored(self) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = JsonStore(self.app.settings.data_dir).load(DOCUMENT).get("actions", [])
        return actions

    def nothing_running(self) -> None:
        for family in self.sims:
            assert self.app.timed.running(self.serial(family)) == {}
        assert self.stored() == []


def _document(message: Message) -> dict[str, Any]:
    assert not message.retain
    document: dict[str, Any] = json.loads(message.payload)
    return document


def _minutes(moment: datetime | int) -> int:
    """Minutes since midnight of a time, or of a slot register's HHMM."""
    if isinstance(moment, int):
        return moment // 100 * 60 + moment % 100
    return moment.hour * 60 + moment.minute


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    clock = ScaledClock(speed=20, start=MIDSUMMER_NOON)
    async with AsyncExitStack() as stack:
        sims: dict[str, SimulatedPlant] = {}
        servers: dict[str, SimulatorServer] = {}
        for index, family in enumerate(("hybrid-gen3", "hybrid-3ph")):
            sim = SimulatedPlant.create(family, clock=clock, seed=31 + index, tz=ZONE, start_soc=50)
            sims[family] = sim
            servers[family] = await stack.enter_async_context(SimulatorServer(sim))
        probe = MqttProbe.for_broker(module_broker, topics=(f"{ROOT}/#", "homeassistant/device/#"))
        await probe.start()
        stack.push_async_callback(probe.stop)
        settings = bridge_settings(
            tmp_path_factory.mktemp("timed"),
            [server.port for server in servers.values()],
            mqtt=module_broker.settings(root=ROOT).model_dump(),
        )
        app = Application(settings, clock=clock)
        await app.start()
        stack.push_async_callback(app.stop)
        for runner in app.bridge.runners:
            await first_snapshot(runner, within=15)
        assert await app.mqtt.wait_connected(10)
        yield Rig(app, probe, clock, sims, servers)


# --- the state entities --------------------------------------------------------------------------


async def test_state_entities_are_published_and_discovered_with_givtcp_ids(rig: Rig) -> None:
    for family in rig.sims:
        serial = rig.serial(family)
        for leaf, value in (("Force_Charge", "Normal"), ("Force_Charge_Num", "0"), ("Temp_Pause_Discharge", "Normal")):
            await rig.state(family, leaf, value, after=0)
        message = await rig.probe.wait_for(
            f"homeassistant/device/givbridge_{serial}/config", lambda m: b"Force_Export_Num" in m.payload, 15
        )
        document = json.loads(message.payload)
        assert not problems(message.topic, document)
        components = document["components"]
        prefix = "givtcp" if family == "hybrid-gen3" else "givtcp2"
        select = components[f"{prefix}_{serial}_Force_Charge"]
        assert select["platform"] == "select"
        assert select["default_entity_id"] == f"select.{prefix}_{serial.lower()}_force_charge"
        assert select["command_topic"] == f"{ROOT}/control/{serial}/forceCharge"
        assert select["state_topic"] == f"{ROOT}/{serial}/Control/Force_Charge"
        # Running is a state, not a choice: the select shows it as unknown, the State sensor by its word.
        assert select["options"][:4] == ["Normal", "Cancel", "2", "5"] and "1440" in select["options"]
        assert "Running" not in select["options"] and "value_template" in select
        state = components[f"{prefix}_{serial}_Force_Charge_State"]
        assert (state["platform"], state["state_topic"]) == ("sensor", select["state_topic"])
        number = components[f"{prefix}_{serial}_Temp_Pause_Charge_Num"]
        assert (number["platform"], number["min"], number["max"], number["unit_of_measurement"]) == (
            "number",
            0,
            1440,
            "min",
        )
        assert number["command_topic"] == f"{ROOT}/control/{serial}/tempPauseCharge"


# --- expiry, cancel, extend, replace ----------------------------------------------------------------


async def test_force_charge_runs_its_time_then_restores_the_baseline(rig: Rig) -> None:
    baseline = rig.baseline("hybrid-gen3", {111: 30, 116: 80, 242: 90, 318: 2, 94: 100, 95: 430, 96: 0})
    mark = rig.probe.mark()
    started_at = rig.sims["hybrid-gen3"].inverter_time()
    got = ok(await rig.send("hybrid-gen3", "forceCharge", "30"))
    assert (got["Force_Charge"], got["Force_Charge_Num"], got["state"]) == ("Running", 30, "running")
    assert got["baseline"] == {f"HR{r}": v for r, v in baseline.items()}
    assert got["Target_SOC"] == 100 and got["Enable_Charge_Schedule"] == "enable"
    forced = rig.holding("hybrid-gen3", baseline)
    assert {r: forced[r] for r in (111, 116, 242, 318, 96)} == {111: 50, 116: 100, 242: 100, 318: 0, 96: 1}
    assert (_minutes(forced[94]) - _minutes(started_at)) % 1440 in (0, 1)  # slot 1 from now on the inverter clock
    assert (_minutes(forced[95]) - _minutes(forced[94])) % 1440 in (30, 31)
    # Persisted before the answer: action, serial, baseline, end time, state.
    [stored] = rig.stored()
    assert stored["action"] == "forceCharge" and stored["serial"] == rig.serial("hybrid-gen3")
    assert dict(map(tuple, stored["baseline"])) == baseline and stored["state"] == "running"
    await rig.state("hybrid-gen3", "Force_Charge", "Running", after=mark)
    await rig.state("hybrid-gen3", "Force_Charge_Num", "30", after=mark)

    rig.clock.advance(10 * MINUTE)
    await rig.state("hybrid-gen3", "Force_Charge_Num", "20", after=mark)  # counted down, minute by minute
    assert rig.holding("hybrid-gen3", [116, 96]) == {116: 100, 96: 1}
    assert not rig.probe.messages(rig.response_topic("hybrid-gen3", "forceCharge"), after=mark)[1:]

    rig.clock.advance(20 * MINUTE)
    event = await rig.event("hybrid-gen3", "forceCharge", after=mark, state="reverted")
    data = ok(event)
    assert (data["Force_Charge"], data["reason"], event["transaction"]) == ("Normal", "ended", None)
    assert data["restored"] == {f"HR{r}": v for r, v in baseline.items()}
    assert rig.holding("hybrid-gen3", baseline) == baseline  # no 100 % target, no slot left behind
    await rig.state("hybrid-gen3", "Force_Charge", "Normal", after=mark)
    await rig.state("hybrid-gen3", "Force_Charge_Num", "0", after=mark)
    rig.nothing_running()


async def test_the_slot_is_placed_on_the_inverter_clock_when_that_is_off(rig: Rig) -> None:
    """GivTCP placed the slot on its container's clock, so an hour's difference meant no charge (#378)."""
    baseline = rig.baseline("hybrid-gen3", {111: 30, 116: 80, 242: 90, 318: 0, 94: 0, 95: 0, 96: 0})
    sim = rig.sims["hybrid-gen3"]
    rig.servers["hybrid-gen3"].faults.jump_clock(3600)
    try:
        inverter_now = sim.inverter_time()
        bridge_now = rig.clock.now().astimezone(inverter_now.tzinfo)
        ok(await rig.send("hybrid-gen3", "forceCharge", "45"))
        start, end = (_minutes(hhmm) for hhmm in rig.holding("hybrid-gen3", [94, 95]).values())
        assert (start - _minutes(inverter_now)) % 1440 in (0, 1)
        assert (start - _minutes(bridge_now)) % 1440 in (60, 61)  # an hour ahead of the bridge, as the inverter is
        assert (end - start) % 1440 in (45, 46)
        ok(await rig.send("hybrid-gen3", "forceCharge", "Cancel"))
    finally:
        rig.servers["hybrid-gen3"].faults.jump_clock(-3600)
    assert rig.holding("hybrid-gen3", baseline) == baseline
    rig.nothing_running()


async def test_cancel_normal_and_zero_revert_at_once(rig: Rig) -> None:
    baseline = rig.baseline("hybrid-gen3", {112: 40, 110: 20, 272: 15, 318: 1, 56: 1600, 57: 1900, 27: 1, 59: 0})
    for cancel in ("Cancel", "Normal", "0"):
        ok(await rig.send("hybrid-gen3", "forceExport", "60"))
        assert rig.holding("hybrid-gen3", [112, 110, 272, 318, 27, 59]) == {
            112: 50,
            110: 4,
            272: 4,
            318: 0,
            27: 0,
            59: 1,
        }
        data = ok(await rig.send("hybrid-gen3", "forceExport", cancel))
        assert (data["state"], data["reason"], data["Force_Export"], data["Force_Export_Num"]) == (
            "reverted",
            "cancelled",
            "Normal",
            0,
        )
        assert data["Mode"] == "Eco" and data["Battery_Power_Reserve"] == 20
        assert rig.holding("hybrid-gen3", baseline) == baseline, cancel
    writes = rig.writes("hybrid-gen3")
    data = ok(await rig.send("hybrid-gen3", "forceExport", "Cancel"))  # nothing running: nothing to write
    assert data["state"] == "not running" and rig.writes("hybrid-gen3") == writes
    rig.nothing_running()


async def test_sending_it_again_extends_it_and_keeps_the_first_baseline(rig: Rig) -> None:
    baseline = rig.baseline("hybrid-gen3", {111: 25})
    mark = rig.probe.mark()
    ok(await rig.send("hybrid-gen3", "tempPauseCharge", "10"))
    assert rig.holding("hybrid-gen3", [111]) == {111: 0}
    rig.clock.advance(5 * MINUTE)
    await rig.state("hybrid-gen3", "Temp_Pause_Charge_Num", "5", after=mark)
    got = ok(await rig.send("hybrid-gen3", "tempPauseCharge", "30"))
    assert got["baseline"] == {"HR111": 25} and got["Temp_Pause_Charge_Num"] == 30  # not the 0 it holds now
    rig.clock.advance(10 * MINUTE)  # past the first end
    await rig.state("hybrid-gen3", "Temp_Pause_Charge_Num", "20", after=mark)
    assert rig.holding("hybrid-gen3", [111]) == {111: 0}
    assert len(rig.probe.messages(rig.response_topic("hybrid-gen3", "tempPauseCharge"), after=mark)) == 2  # answers
    rig.clock.advance(20 * MINUTE)
    ok(await rig.event("hybrid-gen3", "tempPauseCharge", after=mark, state="reverted"))
    assert rig.holding("hybrid-gen3", baseline) == baseline
    rig.nothing_running()


async def test_force_export_reverts_a_running_force_charge_first(rig: Rig) -> None:
    charge = {111: 30, 116: 85, 242: 95, 94: 200, 95: 300, 96: 0}
    export = {112: 45, 110: 12, 272: 10, 56: 1700, 57: 1800, 27: 1, 59: 0}
    baseline = rig.baseline("hybrid-gen3", {**charge, **export, 318: 3})
    mark = rig.probe.mark()
    ok(await rig.send("hybrid-gen3", "forceCharge", "60"))
    got = ok(await rig.send("hybrid-gen3", "forceExport", "30"))
    assert got["baseline"]["HR318"] == 3  # the force charge's pause-mode change was undone first
    replaced = ok(await rig.event("hybrid-gen3", "forceCharge", after=mark, state="reverted"))
    assert replaced["reason"] == "replaced by forceExport"
    assert rig.holding("hybrid-gen3", charge) == charge
    assert rig.holding("hybrid-gen3", [110, 27, 59]) == {110: 4, 27: 0, 59: 1}
    assert set(rig.app.timed.running(rig.serial("hybrid-gen3"))) == {"forceExport"}
    ok(await rig.send("hybrid-gen3", "forceExport", "Cancel"))
    assert rig.holding("hybrid-gen3", baseline) == baseline
    rig.nothing_running()


async def test_two_inverters_run_different_actions_each_on_its_own_clock(rig: Rig) -> None:
    gen3 = rig.baseline("hybrid-gen3", {111: 35, 116: 70, 242: 75, 318: 0, 94: 0, 95: 0, 96: 0})
    tph = rig.baseline("hybrid-3ph", {1108: 60})
    mark = rig.probe.mark()
    ok(await rig.send("hybrid-gen3", "forceCharge", "20"))
    got = ok(await rig.send("hybrid-3ph", "tempPauseDischarge", "40"))
    assert rig.holding("hybrid-3ph", [1108]) == {1108: 1}  # three-phase: the lowest limit it takes, not 0
    assert got["baseline"] == {"HR1108": 60}
    rig.clock.advance(20 * MINUTE)
    ok(await rig.event("hybrid-gen3", "forceCharge", after=mark, state="reverted"))
    assert rig.holding("hybrid-gen3", gen3) == gen3
    await rig.state("hybrid-3ph", "Temp_Pause_Discharge_Num", "20", after=mark)
    assert rig.holding("hybrid-3ph", [1108]) == {1108: 1}
    rig.clock.advance(20 * MINUTE)
    ok(await rig.event("hybrid-3ph", "tempPauseDischarge", after=mark, state="reverted"))
    assert rig.holding("hybrid-3ph", tph) == tph
    rig.nothing_running()


# --- failures ----------------------------------------------------------------------------------------


async def test_an_inverter_offline_at_the_end_time_is_reverted_when_it_is_back(rig: Rig) -> None:
    baseline = rig.baseline("hybrid-gen3", {112: 35})
    mark = rig.probe.mark()
    ok(await rig.send("hybrid-gen3", "tempPauseDischarge", "10"))
    assert rig.holding("hybrid-gen3", [112]) == {112: 0}
    server = rig.servers["hybrid-gen3"]
    server.faults.silence()
    try:
        rig.clock.advance(10 * MINUTE)
        pending = await rig.event("hybrid-gen3", "tempPauseDischarge", after=mark, state="pending")
        assert pending["status"] == "error" and pending["error"]["code"] == "unreachable"
        assert "pending" in pending["error"]["message"]
        assert rig.holding("hybrid-gen3", [112]) == {112: 0}  # nothing got through
        [stored] = rig.stored()
        assert stored["state"] == "pending" and stored["attempts"] >= 1
    finally:
        server.faults.end_silence()
    event = await rig.event("hybrid-gen3", "tempPauseDischarge", after=mark, state="reverted")
    assert ok(event)["restored"] == {"HR112": 35}
    assert rig.holding("hybrid-gen3", baseline) == baseline
    rig.nothing_running()


async def test_a_start_the_inverter_does_not_keep_is_undone_and_not_left_running(rig: Rig) -> None:
    baseline = rig.baseline("hybrid-gen3", {111: 40})
    server = rig.servers["hybrid-gen3"]
    server.faults.writes_not_persisted = True
    try:
        answer = await rig.send("hybrid-gen3", "tempPauseCharge", "15")
    finally:
        server.faults.writes_not_persisted = False
    assert answer["status"] == "error" and answer["error"]["code"] == "not_persisted"
    assert rig.holding("hybrid-gen3", baseline) == baseline
    rig.nothing_running()


async def test_a_register_the_model_no_longer_allows_is_reported_not_restored(rig: Rig) -> None:
    baseline = rig.baseline("hybrid-gen3", {112: 40, 110: 20, 272: 15, 318: 1, 56: 1600, 57: 1900, 27: 1, 59: 0})
    ok(await rig.send("hybrid-gen3", "forceExport", "60"))
    runner = rig.app.bridge.runner_for(rig.serial("hybrid-gen3"))
    assert runner is not None and runner.context is not None
    allowed = runner.context
    # As after a firmware update that took HR272 out of the model's write allowlist.
    runner.context = replace(allowed, writable=allowed.writable - {272})
    try:
        answer = await rig.send("hybrid-gen3", "forceExport", "Cancel")
    finally:
        runner.context = allowed
    assert answer["status"] == "error" and answer["error"]["code"] == "rejected", answer
    assert answer["error"]["not_restored"] == {"HR272": 15}  # the value it should have gone back to
    assert "HR272" not in answer["error"]["restored"] and answer["error"]["restored"]["HR112"] == 40
    assert rig.holding("hybrid-gen3", [272]) == {272: 4}  # nothing was sent for it
    assert rig.holding("hybrid-gen3", {r: v for r, v in baseline.items() if r != 272}) == {
        r: v for r, v in baseline.items() if r != 272
    }
    rig.baseline("hybrid-gen3", {272: 15})
    rig.nothing_running()


@pytest.mark.parametrize("payload", ["1441", "-1", "Running", "2.5", '{"minutes": 30}'])
async def test_bad_durations_write_nothing(rig: Rig, payload: str) -> None:
    writes = rig.writes("hybrid-gen3")
    answer = await rig.send("hybrid-gen3", "forceCharge", payload)
    assert answer["status"] == "error" and answer["error"]["code"] == "invalid_payload"
    assert rig.writes("hybrid-gen3") == writes
    rig.nothing_running()


# --- what a revert writes ----------------------------------------------------------------------------


def _register_writes(rig: Rig, family: str, register: int) -> int:
    return sum(
        n for (kind, _, written, _), n in rig.servers[family].requests.items() if (kind, written) == ("W", register)
    )


async def test_a_revert_leaves_alone_what_someone_changed_and_skips_what_it_never_changed(rig: Rig) -> None:
    # HR111 already holds the 50 forceCharge writes: the action does not change it.
    baseline = rig.baseline("hybrid-gen3", {111: 50, 116: 80, 242: 90, 318: 0, 94: 0, 95: 0, 96: 0})
    ok(await rig.send("hybrid-gen3", "forceCharge", "60"))
    assert rig.holding("hybrid-gen3", [116, 96]) == {116: 100, 96: 1}
    rig.sims["hybrid-gen3"].set_holding(116, 90)  # someone sets the target from the app meanwhile
    rate_writes = _register_writes(rig, "hybrid-gen3", 111)
    data = ok(await rig.send("hybrid-gen3", "forceCharge", "Cancel"))
    assert data["left_alone"] == {"HR116": 90}
    assert "HR116" not in data["restored"] and "HR111" not in data["restored"]
    assert data["restored"]["HR96"] == 0 and data["restored"]["HR242"] == 90
    assert _register_writes(rig, "hybrid-gen3", 111) == rate_writes  # never written back
    assert rig.holding("hybrid-gen3", baseline) == {**baseline, 116: 90}  # their 90 stays
    rig.baseline("hybrid-gen3", {116: 80})
    rig.nothing_running()


async def test_a_baseline_that_cannot_be_read_cleanly_refuses_the_start_and_writes_nothing(rig: Rig) -> None:
    rig.baseline("hybrid-gen3", {111: 30, 116: 80, 242: 90, 318: 0, 94: 0, 95: 0, 96: 0})
    server = rig.servers["hybrid-gen3"]
    writes = rig.writes("hybrid-gen3")
    server.faults.zero_bank(0x11, "HR", 240)  # every read of HR(240-299), with HR242, is a dropout page
    try:
        answer = await rig.send("hybrid-gen3", "forceCharge", "30")
    finally:
        server.faults.clear()
    assert answer["status"] == "error" and answer["error"]["code"] == "unreachable", answer
    assert "nothing was written" in answer["error"]["message"] and "HR(240,60)" in answer["error"]["message"]
    assert rig.writes("hybrid-gen3") == writes
    rig.nothing_running()


async def test_a_baseline_the_registers_cannot_hold_refuses_the_start_and_writes_nothing(rig: Rig) -> None:
    # HR94 (charge slot 1 start) reads 25:99: no time to give back when the action ends.
    rig.baseline("hybrid-gen3", {111: 30, 116: 80, 242: 90, 318: 0, 94: 2599, 95: 0, 96: 0})
    writes = rig.writes("hybrid-gen3")
    answer = await rig.send("hybrid-gen3", "forceCharge", "30")
    assert answer["status"] == "error" and answer["error"]["code"] == "unsupported", answer
    assert "nothing was written" in answer["error"]["message"] and "HR94" in answer["error"]["message"]
    assert rig.writes("hybrid-gen3") == writes
    rig.baseline("hybrid-gen3", {94: 0})
    rig.nothing_running()
