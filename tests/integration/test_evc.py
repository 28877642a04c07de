"""The EV charger end to end: the simulated charger over Modbus TCP, the bridge, a real broker.

Every command is published by a plain MQTT client and answered on the response topic; each
answer is checked against the simulated charger's own state, so an ``ok`` counts only when the
charger really holds the value. One rig (broker, a Gen3 inverter and a charger behind one
bridge) serves the commands; the tests that break the charger (refused writes, going offline,
a restart) get a charger-only bridge of their own.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from givbridge.app import Application
from givbridge.clock import ScaledClock
from givbridge.evc.modes import STORE_DOCUMENT
from givbridge.scan import FoundCharger, probe_charger
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.evc import Car, EvcSimulator, EvcSimulatorServer
from givbridge.store import JsonStore
from tests.brokers import Broker, MqttProbe
from tests.integration.bridge_helpers import bridge_settings, error, fast_clock, first_snapshot, ok

pytestmark = pytest.mark.asyncio(loop_scope="module")

ZONE = "Europe/London"
_roots = count(1)


@dataclass
class Rig:
    app: Application
    probe: MqttProbe
    clock: ScaledClock
    charger: EvcSimulator
    server: EvcSimulatorServer
    root: str
    inverter: str | None = None  # the inverter's serial, when the rig has one

    @property
    def serial(self) -> str:
        return self.charger.serial

    def topic(self, path: str) -> str:
        return f"{self.root}/{self.serial}/{path}"

    async def send(self, command: str, payload: str | None, *, serial: str | None = "") -> dict[str, Any]:
        """Publish a command (to the charger's serial unless ``serial`` says otherwise; None: no serial)."""
        target = self.serial if serial == "" else serial
        mark = self.probe.mark()
        topic = f"{self.root}/control/{command}" if target is None else f"{self.root}/control/{target}/{command}"
        await self.probe.publish(topic, payload)
        answered = target or self.serial
        message = await self.probe.wait_for(f"{self.root}/{answered}/response/{command}", timeout=10, after=mark)
        assert not message.retain
        document: dict[str, Any] = json.loads(message.payload)
        return document

    async def state(self, path: str, payload: str, *, after: int = 0) -> None:
        await self.probe.wait_for_payload(self.topic(path), payload, timeout=10, after=after)


@asynccontextmanager
async def rig(broker: Broker, data_dir: Path, *, inverter: bool = False, **overrides: Any) -> AsyncIterator[Rig]:
    """A charger with a car on Plug and Go (and optionally a Gen3 inverter) behind a bridge on its own root."""
    clock = fast_clock()
    root = f"EVC{next(_roots)}"
    async with AsyncExitStack() as stack:
        charger = EvcSimulator(clock=clock, tz=ZONE, seed=5)
        charger.plug_in(Car(capacity_kwh=75, soc=30))
        server = await stack.enter_async_context(EvcSimulatorServer(charger))
        ports: list[int] = []
        plant: SimulatedPlant | None = None
        if inverter:
            plant = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=5, tz=ZONE, start_soc=50)
            plant.extra_load = lambda: charger.power_w
            ports.append((await stack.enter_async_context(SimulatorServer(plant))).port)
        probe = MqttProbe.for_broker(broker, topics=(f"{root}/#", "homeassistant/device/#"))
        await probe.start()
        stack.push_async_callback(probe.stop)
        settings = bridge_settings(
            data_dir,
            ports,
            mqtt=broker.settings(root=root).model_dump(),
            evc={"host": "127.0.0.1", "port": server.port, "poll_interval": 2},
            **overrides,
        )
        app = Application(settings, clock=clock)
        await app.start()
        stack.push_async_callback(app.stop)
        for runner in app.bridge.runners:
            await first_snapshot(runner, within=15)
        assert app.charger is not None
        assert await app.mqtt.wait_connected(10), "the bridge did not connect to the broker"
        await probe.wait_for_payload(f"{root}/{charger.serial}/availability", "online", timeout=10)
        yield Rig(app, probe, clock, charger, server, root, plant.serial if plant else None)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """A Gen3 inverter and a charger behind one bridge, for the commands (each test undoes its changes)."""
    async with rig(module_broker, tmp_path_factory.mktemp("site"), inverter=True) as running:
        yield running


# --- reading -------------------------------------------------------------------------------------


async def test_the_chargers_values_are_published_under_its_serial_with_givtcps_names(site: Rig) -> None:
    await site.state("Charger/Charging_State", "Charging")
    await site.state("Charger/Connection_Status", "Connected")
    await site.state("Charger/Plug_and_Go", "enable")
    await site.state("Charger/Charge_Control", "Start")
    await site.state("Charger/Charging_Mode", "Grid")
    await site.state("Charger/Import_Cap", "0")
    await site.state("Charger/Serial_Number", site.serial)
    for path in ("Current_L1", "Active_Power", "Voltage_L1", "Meter_Energy", "Charge_Session_Energy", "System_Time"):
        await site.probe.wait_for(site.topic(f"Charger/{path}"), timeout=10)
    limit = await site.probe.wait_for(site.topic("Charger/Evse_Max_Current"), timeout=10)
    assert limit.payload == b"32"
    document = json.loads((await site.probe.wait_for(site.topic("json"), timeout=10)).payload)
    assert document["Charger"]["Error_Code"] == "Clear"
    info = await site.probe.wait_for(
        f"{site.root}/bridge/info", lambda m: json.loads(m.payload)["ev_charger"]["serial"] == site.serial, timeout=10
    )
    assert json.loads(info.payload)["ev_charger"]["available"] is True


async def test_the_charger_is_its_own_home_assistant_device_with_givtcps_entity_ids(site: Rig) -> None:
    meter = f"givevc_{site.serial}_Meter_Energy"  # published once three readings agree, then discovered too
    message = await site.probe.wait_for(
        f"homeassistant/device/givbridge_{site.serial}/config",
        lambda m: meter in json.loads(m.payload)["components"],
        timeout=10,
    )
    document = json.loads(message.payload)
    device = document["device"]
    assert (device["manufacturer"], device["model"]) == ("GivEnergy", "EV charger")
    assert f"{site.serial}_Charger" in device["identifiers"]  # GivTCP's GivEVC device keeps its area and name
    assert document["availability"] == [
        {"topic": f"{site.root}/bridge/state"},
        {"topic": f"{site.root}/{site.serial}/availability"},
    ]
    components = document["components"]
    limit = components[f"givevc_{site.serial}_Charge_Limit"]
    assert limit["platform"] == "number"
    assert limit["default_entity_id"] == f"number.givevc_{site.serial.lower()}_charge_limit"
    assert limit["command_topic"] == f"{site.root}/control/{site.serial}/setCurrentLimit"
    assert limit["state_topic"] == site.topic("Charger/Charge_Limit")
    mode = components[f"givevc_{site.serial}_Charging_Mode"]
    assert (mode["platform"], mode["options"]) == ("select", ["Grid", "Hybrid", "Solar"])
    assert components[f"givevc_{site.serial}_Plug_and_Go"]["command_topic"].endswith("/chargeMode")
    assert components[meter]["state_class"] == "total_increasing"


# --- the charger's own settings -------------------------------------------------------------------


async def test_charge_control_starts_and_stops_with_givtcps_words_and_api_jsons(site: Rig) -> None:
    data = ok(await site.send("controlCharge", "Stop"))
    assert data["Charge_Control"] == "Stop"
    assert site.charger.control == 2 and site.charger.current == 0
    data = ok(await site.send("setChargeControl", json.dumps({"mode": "start", "transaction": "t1"})))
    assert (data["Charge_Control"], data["Charging_State"]) == ("Start", "Charging")
    assert site.charger.current > 0
    writes = site.charger.writes_applied
    assert "Ready, Start, Stop" in error(await site.send("setChargeControl", "Pause"), "invalid_payload")
    assert site.charger.writes_applied == writes


@pytest.mark.parametrize(
    ("payload", "amps"),
    [("16", 16), ('{"current": "20"}', 20), ("16.4", 16), ("12.0", 12), ("40", 32), ('{"current": 6}', 6)],
    ids=["raw", "json-string", "decimal", "ha-number", "above-max", "json-number"],
)
async def test_current_limit_takes_numbers_or_strings_and_holds_the_chargers_range(
    site: Rig, payload: str, amps: int
) -> None:
    mark = site.probe.mark()
    data = ok(await site.send("setCurrentLimit", payload))
    assert data == {"Charge_Limit": float(amps)}
    assert site.charger.limit_tenths == amps * 10
    await site.state("Charger/Charge_Limit", str(amps), after=mark)
    assert site.app.charger is not None and site.app.charger.modes.settings.user_limit == amps


async def test_current_limit_refuses_what_cannot_be_a_current(site: Rig) -> None:
    ok(await site.send("setCurrentLimit", "32"))
    writes = site.charger.writes_applied
    for payload in ("5", "abc", "-6", '{"amps": 10}'):
        error(await site.send("setCurrentLimit", payload), "invalid_payload")
    assert site.charger.writes_applied == writes
    assert site.charger.limit_tenths == 320


async def test_a_charger_command_that_cannot_start_in_time_expires_unwritten(site: Rig) -> None:
    """The charger's commands wait in the same bounded, expiring queue as an inverter's."""
    ok(await site.send("setCurrentLimit", "32"))
    assert site.app.charger is not None
    writes = site.charger.writes_applied
    async with site.app.charger.command_lock:  # held, as a command stuck on the charger would
        message = error(await site.send("setCurrentLimit", "10"), "expired")  # control.command_expiry (60 s)
        assert "command_expiry" in message
    assert ok(await site.send("setCurrentLimit", "31")) == {"Charge_Limit": 31.0}
    assert site.charger.writes_applied == writes + 1  # the expired limit was never written
    assert site.charger.limit_tenths == 310


async def test_plug_and_go_switch(site: Rig) -> None:
    assert ok(await site.send("chargeMode", "disable")) == {"Plug_and_Go": "disable"}
    assert site.charger.plug_and_go is False
    assert ok(await site.send("setChargeMode", json.dumps({"state": "enable"}))) == {"Plug_and_Go": "enable"}
    assert site.charger.plug_and_go is True


async def test_system_time_is_set_in_the_configured_zone_and_read_back(site: Rig) -> None:
    data = ok(await site.send("setSystemTime", "01/05/2026 16:30:00"))
    shown = datetime.fromisoformat(data["System_Time"])
    assert abs(shown.replace(tzinfo=None) - datetime(2026, 5, 1, 16, 30)) < timedelta(minutes=1)
    assert abs(site.charger.wall_clock() - datetime(2026, 5, 1, 16, 30)) < timedelta(minutes=2)
    error(await site.send("setSystemTime", "31/02/2026 10:00:00"), "invalid_payload")
    now = site.clock.now().astimezone().isoformat(timespec="seconds")
    ok(await site.send("setSystemTime", json.dumps({"dateTime": now})))  # an instant, in any zone
    assert abs(site.charger.wall_clock() - site.clock.now().astimezone().replace(tzinfo=None)) < timedelta(minutes=2)


async def test_get_evc_cache(site: Rig) -> None:
    data = ok(await site.send("getEVCCache", None))
    assert data["Charger"]["Serial_Number"] == site.serial
    assert data["Charger"]["Charging_Mode"] in ("Grid", "Hybrid", "Solar")
    assert data["Stats"]["status"] == "online"


# --- the emulated modes' settings -----------------------------------------------------------------


async def test_mode_settings_are_answered_saved_and_published(site: Rig) -> None:
    assert site.app.charger is not None
    store = JsonStore(site.app.settings.data_dir)
    mark = site.probe.mark()
    assert ok(await site.send("setChargingMode", "Solar")) == {"Charging_Mode": "Solar"}
    await site.state("Charger/Charging_Mode", "Solar", after=mark)
    assert store.load(STORE_DOCUMENT)["charging_mode"] == "Solar"
    # api.json's form: {"state": "enable" | "disable"}.
    assert ok(await site.send("setChargingMode", json.dumps({"state": "enable"}))) == {"Charging_Mode": "Hybrid"}
    assert ok(await site.send("setChargingMode", "disable")) == {"Charging_Mode": "Grid"}
    assert "Grid, Hybrid, Solar" in error(await site.send("setChargingMode", "Turbo"), "invalid_payload")

    assert ok(await site.send("setImportCap", json.dumps({"current": "60"}))) == {"Import_Cap": 60}
    await site.state("Charger/Import_Cap", "60", after=mark)
    error(await site.send("setImportCap", "150"), "invalid_payload")
    assert ok(await site.send("setMaxSessionEnergy", json.dumps({"energy": "20.5"}))) == {"Max_Session_Energy": 20.5}
    await site.state("Charger/Max_Session_Energy", "20.5", after=mark)
    assert store.load(STORE_DOCUMENT) | {"user_limit": None} == {
        "charging_mode": "Grid",
        "import_cap": 60,
        "max_session_energy": 20.5,
        "user_limit": None,
    }
    ok(await site.send("setImportCap", "0"))
    ok(await site.send("setMaxSessionEnergy", "0"))


async def test_hybrid_mode_acts_on_the_live_inverter_at_once(site: Rig) -> None:
    assert site.app.charger is not None
    modes = site.app.charger.modes
    ok(await site.send("setCurrentLimit", "32"))
    before = len(modes.history)
    ok(await site.send("setChargingMode", "Hybrid"))
    answered = len(modes.history)
    try:
        # The mode change ran a pass with the inverter's latest values before it was answered (GivTCP's
        # loop came round every 30 s); the modes' own passes may run beside it.
        first = next(i for i in range(before, answered) if modes.history[i].decision.reason.startswith("Hybrid"))
        record = modes.history[first]
        assert record.surplus is not None
        assert record.decision.limit in (None, max(6, min(32, int(record.surplus // 1))))
        assert record.applied or record.decision.limit is None
        assert site.charger.limit_tenths >= 60
    finally:
        ok(await site.send("setChargingMode", "Grid"))
        ok(await site.send("setCurrentLimit", "32"))


# --- addressing --------------------------------------------------------------------------------


async def test_commands_find_the_charger_by_its_serial_or_alone(site: Rig) -> None:
    assert site.inverter is not None
    # Without a serial: the charger's commands go to the charger, the inverter's to the inverter.
    assert ok(await site.send("setCurrentLimit", "30", serial=None)) == {"Charge_Limit": 30.0}
    # The inverter's serial is not the charger's, and the charger's is no inverter's.
    message = error(await site.send("setCurrentLimit", "30", serial=site.inverter), "unknown_inverter")
    assert site.serial in message
    mark = site.probe.mark()
    await site.probe.publish(f"{site.root}/control/{site.serial}/setChargeTarget", "80")
    answer = await site.probe.wait_for(f"{site.root}/{site.serial}/response/setChargeTarget", timeout=10, after=mark)
    assert json.loads(answer.payload)["error"]["code"] == "unknown_inverter"
    ok(await site.send("setCurrentLimit", "32"))


# --- a charger that refuses, goes away, restarts -----------------------------------------------------


async def test_a_charger_refusing_writes_is_answered_as_such_and_nothing_is_reported_done(
    module_broker: Broker, tmp_path: Path
) -> None:
    async with rig(module_broker, tmp_path) as charger_only:
        sim = charger_only.charger
        sim.faults.refuse_writes = True  # no local control: "EVC Modbus is read-only" (GivTCP #467)
        message = error(await charger_only.send("setCurrentLimit", "10"), "rejected")
        assert "HR91" in message and "charger refused" in message
        error(await charger_only.send("controlCharge", "Stop"), "rejected")
        assert (sim.limit_tenths, sim.control) == (320, 1)
        # The emulated modes are the bridge's own settings: still taken.
        ok(await charger_only.send("setChargingMode", "Solar"))

        sim.faults.refuse_writes = False
        sim.faults.ignore_writes = True  # acknowledged, not kept
        answer = await charger_only.send("setCurrentLimit", "10")
        error(answer, "not_persisted")
        assert answer["error"]["registers"] == [{"register": 36, "wanted": 100, "actual": 320}]
        assert sim.limit_tenths == 320


async def test_a_charger_going_offline_is_unavailable_and_commands_say_unreachable(
    module_broker: Broker, tmp_path: Path
) -> None:
    async with rig(module_broker, tmp_path) as charger_only:
        availability = f"{charger_only.root}/{charger_only.serial}/availability"
        mark = charger_only.probe.mark()
        await charger_only.server.go_offline()
        await charger_only.probe.wait_for_payload(availability, "offline", timeout=10, after=mark)
        health = charger_only.app.health_writer.document()["ev_charger"]
        assert health["serial"] == charger_only.serial and health["available"] is False and health["last_error"]
        assert "charger" in error(await charger_only.send("setCurrentLimit", "10"), "unreachable")
        # The getEVCCache answer still has the last values read; the charger's own writes wait.
        assert ok(await charger_only.send("getEVCCache", None))["Charger"]["Serial_Number"] == charger_only.serial

        mark = charger_only.probe.mark()
        await charger_only.server.come_back()
        await charger_only.probe.wait_for_payload(availability, "online", timeout=10, after=mark)
        assert ok(await charger_only.send("setCurrentLimit", "10")) == {"Charge_Limit": 10.0}
        assert charger_only.charger.limit_tenths == 100


async def test_a_returned_charger_is_found_by_a_probe_not_the_backoff(module_broker: Broker, tmp_path: Path) -> None:
    # A reconnect backoff of ten minutes (30 s here): only a probe brings the charger back within 10 s.
    slow_backoff = {"backoff_min": 600, "backoff_max": 600, "offline_after": 1}
    async with rig(module_broker, tmp_path, polling=slow_backoff) as charger_only:
        availability = f"{charger_only.root}/{charger_only.serial}/availability"
        assert charger_only.app.charger is not None
        charger = charger_only.app.charger.runner
        mark = charger_only.probe.mark()
        await charger_only.server.go_offline()
        await charger_only.probe.wait_for_payload(availability, "offline", timeout=10, after=mark)
        reconnects = charger.health.reconnects
        mark = charger_only.probe.mark()
        await charger_only.server.come_back()
        await charger_only.probe.wait_for_payload(availability, "online", timeout=10, after=mark)
        assert charger.health.reconnects == reconnects + 1  # one reconnect, the one the probe asked for


async def test_mode_settings_survive_a_restart(module_broker: Broker, tmp_path: Path) -> None:
    async with rig(module_broker, tmp_path) as first:
        ok(await first.send("setChargingMode", "Solar"))
        ok(await first.send("setImportCap", "40"))
        ok(await first.send("setMaxSessionEnergy", "12.5"))
    async with rig(module_broker, tmp_path) as second:
        await second.state("Charger/Charging_Mode", "Solar")
        await second.state("Charger/Import_Cap", "40")
        await second.state("Charger/Max_Session_Energy", "12.5")


async def test_read_only_refuses_the_charger_too(module_broker: Broker, tmp_path: Path) -> None:
    async with rig(module_broker, tmp_path, read_only=True) as watching:
        error(await watching.send("setCurrentLimit", "10"), "read_only")
        error(await watching.send("setChargingMode", "Solar"), "read_only")
        assert watching.charger.limit_tenths == 320
        assert ok(await watching.send("getEVCCache", None))["Charger"]["Charging_Mode"] == "Grid"


# --- givbridge simulate --evc ---------------------------------------------------------------------


async def test_simulate_serves_a_charger_beside_the_inverter() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "givbridge.cli", "simulate"),
        *("--port", "0", "--evc", "0", "--latency", "0", "--seed", "4"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode() for _ in range(2)]
        match = re.search(r"EV charger (\S+) on 127\.0\.0\.1:(\d+)", lines[1])
        assert match, lines
        found = await probe_charger("127.0.0.1", int(match.group(2)))
        assert isinstance(found, FoundCharger) and found.serial == match.group(1)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
