"""Commands end to end on a real broker: published by a plain MQTT client, carried out on a simulated
Gen3 hybrid, answered on the response topic. Each assertion checks the simulator's registers, so an
``ok`` is only accepted when the inverter really holds the value.

One broker, simulator and bridge serve the whole module (starting them costs more than the tests):
every case writes absolute values and checks them, so the order of the cases does not matter.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from givbridge.app import Application
from givbridge.commands.modes import SAVED_RESERVE
from givbridge.mqtt.client import MqttClient
from givbridge.mqtt.control import ControlSubscriber
from givbridge.mqtt.topics import Topics
from givbridge.plant import derive
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import Broker, MqttProbe
from tests.integration.bridge_helpers import bridge_settings, error, fast_clock, first_snapshot, ok

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = "GivEnergy"
ZONE = "Europe/London"
#: A second topic root, served by a second control subscriber in the retained-message test.
OTHER_ROOT = "Retained"


# --- the rig: broker + simulators + bridge + a probe, shared by a module ----------------------------


@dataclass
class Rig:
    app: Application
    probe: MqttProbe
    sims: dict[str, SimulatedPlant]  # by serial
    servers: dict[str, SimulatorServer]
    root: str = ROOT

    @property
    def serial(self) -> str:
        return next(iter(self.sims))

    @property
    def sim(self) -> SimulatedPlant:
        return self.sims[self.serial]

    def holding(self, *registers: int, serial: str | None = None) -> dict[int, int]:
        sim = self.sims[serial or self.serial]
        return {register: sim.holding(register) for register in registers}

    def writes(self, serial: str | None = None) -> int:
        """Register writes that have reached the simulated dongle so far."""
        server = self.servers[serial or self.serial]
        return sum(n for (kind, *_), n in server.requests.items() if kind == "W")

    async def publish(
        self, command: str, payload: str | bytes | None, *, serial: str | None = None, single: bool = False
    ) -> int:
        """Publish a command; returns the probe mark to await its answer from."""
        mark = self.probe.mark()
        topic = f"{self.root}/control/{command}" if single else f"{self.root}/control/{serial or self.serial}/{command}"
        await self.probe.publish(topic, payload)
        return mark

    async def answer(self, command: str, mark: int, *, serial: str | None = None, within: float = 10) -> dict[str, Any]:
        message = await self.probe.wait_for(
            f"{self.root}/{serial or self.serial}/response/{command}", timeout=within, after=mark
        )
        assert not message.retain
        document: dict[str, Any] = json.loads(message.payload)
        return document

    async def send(
        self, command: str, payload: str | bytes | None, *, serial: str | None = None, single: bool = False
    ) -> dict[str, Any]:
        mark = await self.publish(command, payload, serial=serial, single=single)
        return await self.answer(command, mark, serial=serial)


@asynccontextmanager
async def rig(
    broker: Broker, data_dir: Path, families: list[str], *, root: str = ROOT, **overrides: Any
) -> AsyncIterator[Rig]:
    """Simulators of ``families`` behind one bridge publishing under ``root`` (one root per rig: two
    bridges on one root would both answer every command)."""
    clock = fast_clock()
    async with AsyncExitStack() as stack:
        sims: dict[str, SimulatedPlant] = {}
        servers: dict[str, SimulatorServer] = {}
        for index, family in enumerate(families):
            sim = SimulatedPlant.create(family, batteries=1, clock=clock, seed=11 + index, tz=ZONE, start_soc=50)
            sims[sim.serial] = sim
            servers[sim.serial] = await stack.enter_async_context(SimulatorServer(sim))
        probe = MqttProbe.for_broker(broker, topics=(f"{root}/+/response/#", f"{OTHER_ROOT}/#"))
        await probe.start()
        stack.push_async_callback(probe.stop)
        mqtt = {**broker.settings(root=root).model_dump(), **overrides.pop("mqtt", {})}
        settings = bridge_settings(data_dir, [s.port for s in servers.values()], mqtt=mqtt, **overrides)
        app = Application(settings, clock=clock)
        await app.start()
        stack.push_async_callback(app.stop)
        for runner in app.bridge.runners:
            await first_snapshot(runner, within=15)
        assert await app.mqtt.wait_connected(10), "the bridge did not connect to the broker"
        yield Rig(app, probe, sims, servers, root)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gen3(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    async with rig(module_broker, tmp_path_factory.mktemp("gen3"), ["hybrid-gen3"]) as running:
        yield running


# --- every implemented command's happy path --------------------------------------------------------

HAPPY_PATHS: list[tuple[str, str, dict[int, int], dict[str, Any]]] = [
    # command, payload, simulator registers afterwards, answer data (subset)
    ("setChargeTarget", "80", {116: 80, 20: 1}, {"Target_SOC": 80, "Enable_Charge_Target": "enable"}),
    ("setChargeTarget", "75.0", {116: 75, 20: 1}, {"Target_SOC": 75}),  # a Home Assistant number
    ("enableChargeTarget", "disable", {20: 0, 116: 100}, {"Enable_Charge_Target": "disable", "Target_SOC": 100}),
    ("enableChargeTarget", "enable", {20: 1}, {"Enable_Charge_Target": "enable"}),
    ("enableChargeSchedule", "disable", {96: 0}, {"Enable_Charge_Schedule": "disable"}),
    ("enableChargeSchedule", "enable", {96: 1}, {"Enable_Charge_Schedule": "enable"}),
    ("enableDischargeSchedule", "enabled", {59: 1}, {"Enable_Discharge_Schedule": "enable"}),
    ("enableDischargeSchedule", "off", {59: 0}, {"Enable_Discharge_Schedule": "disable"}),
    ("setEcoMode", "disable", {27: 0}, {"Eco_Mode": "disable"}),
    ("setEcoMode", "enable", {27: 1}, {"Eco_Mode": "enable"}),
    ("enableRTC", "disable", {166: 0}, {"Real_Time_Control": "disable"}),
    ("enableRTC", "enable", {166: 1}, {"Real_Time_Control": "enable"}),
    ("setChargeTarget3", "85", {248: 85}, {"Charge_Target_SOC_3": 85}),
    ("setDischargeTarget1", "25", {272: 25}, {"Discharge_Target_SOC_1": 25}),
    ("setDischargeTarget", '{"dischargeToPercent": "30", "slot": "2"}', {275: 30}, {"Discharge_Target_SOC_2": 30}),
    ("setDischargeTarget", '{"exportToPercent": 35, "slot": 3}', {278: 35}, {"Discharge_Target_SOC_3": 35}),
    ("setBatteryReserve", "20", {110: 20}, {"Battery_Power_Reserve": 20}),
    ("setBatteryReserve", "2", {110: 4}, {"Battery_Power_Reserve": 4}),  # raised to 4, as GivTCP
    ("setBatteryCutoff", "6", {114: 6}, {"Battery_Power_Cutoff": 6}),
    ("setActivePowerRate", "90", {50: 90}, {"Active_Power_Rate": 90}),
    ("setBatteryPauseMode", "PauseCharge", {318: 1}, {"Battery_pause_mode": "PauseCharge"}),
    ("setBatteryPauseMode", "enable", {318: 3}, {"Battery_pause_mode": "PauseBoth"}),
    ("setBatteryPauseMode", "Disabled", {318: 0}, {"Battery_pause_mode": "Disabled"}),
    (
        "setPauseSlot",
        '{"start": "00:00", "finish": "23:59"}',
        {319: 0, 320: 2359},
        {"Battery_pause_start_time_slot": "00:00:00", "Battery_pause_end_time_slot": "23:59:00"},
    ),
    ("setPauseStart", "01:30:00", {319: 130}, {"Battery_pause_start_time_slot": "01:30:00"}),
    ("setPauseEnd", "05:00", {320: 500}, {"Battery_pause_end_time_slot": "05:00:00"}),
    (
        "setChargeSlot1",
        '{"start": "01:00", "finish": "04:30", "chargeToPercent": "95"}',
        {94: 100, 95: 430, 242: 95},
        {"Charge_start_time_slot_1": "01:00:00", "Charge_end_time_slot_1": "04:30:00", "Charge_Target_SOC_1": 95},
    ),
    (
        "setChargeSlot",
        '{"start": "13:00", "finish": "14:00", "slot": "2"}',
        {243: 1300, 244: 1400},
        {"Charge_start_time_slot_2": "13:00:00", "Charge_end_time_slot_2": "14:00:00"},
    ),
    ("setChargeSlot3", '{"start": "02:00", "finish": "03:00"}', {246: 200, 247: 300}, {}),
    ("setChargeStart1", "16:30:00", {94: 1630}, {"Charge_start_time_slot_1": "16:30:00"}),  # a select option
    ("setChargeEnd10", "23:00", {268: 2300}, {"Charge_end_time_slot_10": "23:00:00"}),
    (
        "setDischargeSlot1",
        '{"start": "16:00", "finish": "19:00", "dischargeToPercent": 10}',
        {56: 1600, 57: 1900, 272: 10},
        {"Discharge_start_time_slot_1": "16:00:00", "Discharge_Target_SOC_1": 10},
    ),
    ("setDischargeSlot2", '{"start": "20:00", "finish": "21:00"}', {44: 2000, 45: 2100}, {}),
    (
        "setDischargeSlot",
        '{"start": "21:00", "finish": "22:30", "slot": 3, "dischargeToPercent": "15"}',
        {276: 2100, 277: 2230, 278: 15},
        {"Discharge_end_time_slot_3": "22:30:00", "Discharge_Target_SOC_3": 15},
    ),
    ("setDischargeStart2", "17:15", {44: 1715}, {"Discharge_start_time_slot_2": "17:15:00"}),
    ("setDischargeEnd5", "18:45", {283: 1845}, {"Discharge_end_time_slot_5": "18:45:00"}),
    ("setBatteryCalibration", "start", {29: 1}, {"Battery_Calibration": "Start"}),
    ("setBatteryCalibration", "Off", {29: 0}, {"Battery_Calibration": "Off"}),
]


@pytest.mark.parametrize(
    ("command", "payload", "registers", "data"), HAPPY_PATHS, ids=[f"{c}={p}" for c, p, *_ in HAPPY_PATHS]
)
async def test_command_is_written_read_back_and_answered(
    gen3: Rig, command: str, payload: str, registers: dict[int, int], data: dict[str, Any]
) -> None:
    answer = await gen3.send(command, payload)
    got = ok(answer)
    assert gen3.holding(*registers) == registers
    assert {key: got.get(key) for key in data} == data
    assert answer["command"] == command and answer["transaction"] is None


async def test_rates_in_watts_answer_the_watts_the_register_allows(gen3: Rig) -> None:
    snapshot = await first_snapshot(gen3.app.bridge.runners[0])
    capacity = snapshot[f"{gen3.serial}/Battery_Nominal_Capacity_kWh"]  # HR111/112 are C/100 of HR55's capacity
    max_power = snapshot[f"{gen3.serial}/Invertor_Max_Bat_Rate"]
    assert isinstance(capacity, float) and isinstance(max_power, int)
    for command, payload, register, leaf in (
        ("setChargeRate", "2000", 111, "Battery_Charge_Rate"),
        ("setDischargeRate", "1500.0", 112, "Battery_Discharge_Rate"),
        ("setChargeRate", "0", 111, "Battery_Charge_Rate"),
        ("setDischargeRate", str(max_power), 112, "Battery_Discharge_Rate"),
    ):
        expected = derive.watts_to_rate_register(round(float(payload)), capacity_kwh=capacity, max_power=max_power)
        got = ok(await gen3.send(command, payload))
        assert gen3.holding(register) == {register: expected.register}
        assert got[leaf] == expected.watts


async def test_battery_modes_and_discharge_enable_restore_the_reserve(gen3: Rig) -> None:
    ok(await gen3.send("setBatteryReserve", "23"))
    steps: list[tuple[str, str, dict[int, int], str]] = [
        ("setBatteryMode", "Timed Export", {27: 0, 59: 1, 110: 23}, "Timed Export"),
        ("setBatteryMode", "timed demand", {27: 1, 59: 1, 110: 23}, "Timed Demand"),
        ("setBatteryMode", "Eco (Paused)", {27: 1, 59: 0, 110: 100}, "Eco (Paused)"),
        ("setBatteryMode", '{"mode": "Eco"}', {27: 1, 59: 0, 110: 23}, "Eco"),
        ("enableDischarge", "disable", {110: 100}, "Eco (Paused)"),
        ("enableDischarge", "enable", {110: 23}, "Eco"),
    ]
    for command, payload, registers, mode in steps:
        got = ok(await gen3.send(command, payload))
        assert gen3.holding(*registers) == registers, (command, payload)
        assert got["Mode"] == mode
    assert (await gen3.app.commands.memory(gen3.serial))[SAVED_RESERVE] == 23


async def test_clock_commands(gen3: Rig) -> None:
    ok(await gen3.send("setDateTime", "01/05/2024 16:30:00"))
    assert abs(gen3.sim.inverter_time().replace(tzinfo=None) - datetime(2024, 5, 1, 16, 30)) < timedelta(minutes=1)
    got = ok(await gen3.send("setDateTime", '{"dateTime": "2024-01-10T12:00:00+00:00"}'))
    assert got["Invertor_Time"].startswith("2024-01-10T12:00")
    ok(await gen3.send("syncDateTime", "restart"))  # a Home Assistant button's payload
    bridge_now = gen3.app.clock.now()
    assert abs(gen3.sim.inverter_time() - bridge_now) < timedelta(seconds=30)


async def test_reading_commands(gen3: Rig) -> None:
    for command in ("readData", "getCache"):
        tree = ok(await gen3.send(command, ""))
        assert {"Control", "Power", "Timeslots", "raw", gen3.serial} <= set(tree)
        assert tree["Control"]["Target_SOC"] == gen3.sim.holding(116)
        assert "invertor" in tree["raw"]
    reads = sum(n for (kind, *_), n in gen3.servers[gen3.serial].requests.items() if kind == "HR")
    ok(await gen3.send("runAll", None))
    after = sum(n for (kind, *_), n in gen3.servers[gen3.serial].requests.items() if kind == "HR")
    assert after > reads  # a real read, not a cache


# --- payload forms ----------------------------------------------------------------------------------


async def test_json_form_and_transactions_are_echoed(gen3: Rig) -> None:
    answer = await gen3.send("setChargeTarget", '{"chargeToPercent": "61", "transaction": "abc-1"}')
    assert ok(answer)["Target_SOC"] == 61 and answer["transaction"] == "abc-1"
    answer = await gen3.send("setChargeTarget", '{"chargeToPercent": 62, "transaction": 42}')
    assert ok(answer)["Target_SOC"] == 62 and answer["transaction"] == 42
    answer = await gen3.send("setChargeTarget", '{"chargeToPercent": 101, "transaction": "bad-1"}')
    error(answer, "invalid_payload")
    assert answer["transaction"] == "bad-1"


async def test_the_serial_may_be_left_out_with_one_inverter(gen3: Rig) -> None:
    answer = await gen3.send("setChargeTarget", "63", single=True)
    assert ok(answer)["Target_SOC"] == 63
    assert gen3.holding(116) == {116: 63}


async def test_serials_match_in_any_case(gen3: Rig) -> None:
    mark = await gen3.publish("setChargeTarget", "64", serial=gen3.serial.lower())
    assert ok(await gen3.answer("setChargeTarget", mark))["Target_SOC"] == 64


# --- refusals: nothing reaches the dongle ----------------------------------------------------------

INVALID: list[tuple[str, str | bytes]] = [
    ("setChargeTarget", "101"),
    ("setChargeTarget", "3"),
    ("setChargeTarget", "80.5"),
    ("setChargeTarget", "eighty"),
    ("setChargeTarget", ""),
    ("setChargeTarget", '{"chargeToPercent": true}'),
    ("setChargeTarget", '{"chargeToPercent": 80, "bogus": 1}'),
    ("setChargeTarget", '{"chargeToPercent": 80'),
    ("setChargeTarget", b"\xff\xfe\x80"),
    ("setChargeTarget", "8" * 5000),
    ("setChargeStart1", "24:61"),
    ("setChargeStart1", "9"),
    ("setChargeSlot1", "16:00"),
    ("setChargeSlot1", '{"start": "16:00"}'),
    ("setBatteryMode", "Sport"),
    ("setBatteryMode", "Export (Paused)"),
    ("setBatteryReserve", "-1"),
    ("enableChargeSchedule", "maybe"),
    ("setDateTime", "31/02/2024 10:00:00"),
    ("setDischargeTarget", '{"dischargeToPercent": 30, "slot": 11}'),
    ("setChargeTarget3", '{"chargeToPercent": 80, "slot": 4}'),
]


@pytest.mark.parametrize(("command", "payload"), INVALID, ids=[f"{c}={p[:20]!r}" for c, p in INVALID])
async def test_bad_input_never_writes(gen3: Rig, command: str, payload: str | bytes) -> None:
    before = gen3.writes()
    message = error(await gen3.send(command, payload), "invalid_payload")
    assert message
    assert gen3.writes() == before


async def test_unknown_command_and_unknown_inverter(gen3: Rig) -> None:
    before = gen3.writes()
    assert "no command" in error(await gen3.send("setChargeTargett", "80"), "unknown_command")
    mark = await gen3.publish("setChargeTarget", "80", serial="ZZ9999Z999")
    assert "ZZ9999Z999" in error(await gen3.answer("setChargeTarget", mark, serial="ZZ9999Z999"), "unknown_inverter")
    assert gen3.writes() == before


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        ("setChargeRateAC", "50"),  # no HR300 block on a DC hybrid
        ("setForceCharge", "enable"),  # three-phase only
        ("setEMSChargeStart1", "01:00"),  # EMS only
        ("setExportTarget1", "20"),
        ("setCarChargeBoost", "2500"),
        ("setExportLimit", "3000"),  # a GivTCP stub
    ],
)
async def test_commands_this_model_cannot_do_are_unsupported(gen3: Rig, command: str, payload: str) -> None:
    before = gen3.writes()
    assert error(await gen3.send(command, payload), "unsupported")
    assert gen3.writes() == before


async def test_a_write_the_inverter_does_not_keep_is_not_persisted(gen3: Rig) -> None:
    ok(await gen3.send("setBatteryCutoff", "5"))
    gen3.servers[gen3.serial].faults.writes_not_persisted = True
    try:
        answer = await gen3.send("setBatteryCutoff", "9")
    finally:
        gen3.servers[gen3.serial].faults.writes_not_persisted = False
    error(answer, "not_persisted")
    assert answer["error"]["registers"] == [{"register": 114, "wanted": 9, "actual": 5}]
    assert gen3.holding(114) == {114: 5}


# --- concurrency and delivery ----------------------------------------------------------------------


async def test_concurrent_commands_to_one_inverter_do_not_interleave(gen3: Rig) -> None:
    windows = [("01:00", "02:00"), ("03:15", "04:45"), ("05:00", "06:30")]
    mark = gen3.probe.mark()
    for start, finish in windows:  # all published before any answer arrives
        await gen3.probe.publish(
            f"{ROOT}/control/{gen3.serial}/setChargeSlot1", json.dumps({"start": start, "finish": finish})
        )
    await gen3.probe.publish(f"{ROOT}/control/{gen3.serial}/setChargeTarget", "66")
    topic = f"{ROOT}/{gen3.serial}/response/setChargeSlot1"
    await gen3.probe.wait_for(topic, lambda m: len(gen3.probe.messages(topic, after=mark)) == 3, after=mark)
    answers = [json.loads(m.payload) for m in gen3.probe.messages(topic, after=mark)]
    seen = [(ok(a)["Charge_start_time_slot_1"][:5], ok(a)["Charge_end_time_slot_1"][:5]) for a in answers]
    assert seen == windows  # each answer is its own window, in order: no half-written slot
    assert gen3.holding(94, 95) == {94: 500, 95: 630}
    assert ok(await gen3.answer("setChargeTarget", mark))["Target_SOC"] == 66


async def test_retained_commands_are_not_run(gen3: Rig) -> None:
    """A retained command would run on every reconnect; givbridge refuses it."""
    before, start = gen3.holding(116), gen3.probe.mark()
    topic = f"{OTHER_ROOT}/control/{gen3.serial}/setChargeTarget"
    await gen3.probe.publish(topic, "77", retain=True)
    settings = gen3.app.settings.mqtt.model_copy(update={"client_id": "givbridge-retained-test", "root": OTHER_ROOT})
    client = MqttClient(settings)
    ControlSubscriber(client, Topics(OTHER_ROOT), gen3.app.commands).attach()
    await client.start()
    try:
        assert await client.wait_connected(10)
        await gen3.probe.assert_nothing(f"{OTHER_ROOT}/+/response/#", within=0.5, after=start)
        assert gen3.holding(116) == before
        # The same subscriber does run the command sent live (not retained).
        mark = gen3.probe.mark()
        await gen3.probe.publish(topic, "78")
        answer = await gen3.probe.wait_for(f"{OTHER_ROOT}/{gen3.serial}/response/setChargeTarget", after=mark)
        assert json.loads(answer.payload)["data"]["Target_SOC"] == 78
    finally:
        await client.stop()
        await gen3.probe.clear_retained(topic)


async def test_many_commands_at_once_each_get_one_answer(gen3: Rig) -> None:
    mark = gen3.probe.mark()
    sent = [("setChargeTarget", "70"), ("bogus", "1"), ("setEcoMode", "enable"), ("setChargeTarget", "x")]
    await asyncio.gather(*(gen3.probe.publish(f"{ROOT}/control/{gen3.serial}/{c}", p) for c, p in sent))
    for command in ("setChargeTarget", "bogus", "setEcoMode"):
        await gen3.answer(command, mark)
    topic = f"{ROOT}/{gen3.serial}/response/setChargeTarget"
    await gen3.probe.wait_for(topic, lambda m: len(gen3.probe.messages(topic, after=mark)) == 2, after=mark)
    await gen3.probe.assert_nothing(f"{ROOT}/+/response/#", within=0.3, after=gen3.probe.mark())
    assert len(gen3.probe.messages(f"{ROOT}/+/response/#", after=mark)) == len(sent)
