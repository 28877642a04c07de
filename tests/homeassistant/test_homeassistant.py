"""givbridge against a real Home Assistant core: every entity it announces, every control it offers.

One site for the whole module: mosquitto; Home Assistant (the pinned core from
``scripts/homeassistant-env``) onboarded through its REST API, with the MQTT integration set
up through its config flow; simulators of a Gen3 hybrid with two packs, an All-in-One, a
three-phase hybrid, an EMS and an EV charger in this process; and ``givbridge run`` as a
subprocess (so it can be killed with SIGKILL).

* every device givbridge announces (read from the broker) is in HA's device registry with
  exactly the entities its discovery document names, and HA's log carries no warning or error
  from the MQTT integration;
* every control is driven through HA's own services (each select option, each number's
  minimum, maximum and a middle value, each switch on and off, each button), HA's state
  follows within two poll periods (awaited on its ``state_changed`` events) and a fresh read
  of the simulator, independent of the bridge under test, holds the value;
* SIGKILL of givbridge makes every entity unavailable (the broker's Last Will) and a new
  givbridge brings them back; a restarted HA (its birth message) gets discovery again.

A select of times of day offers every minute (1440 options): its first, a middle and its
last option are driven. Admin buttons (reboot, restart) are off over MQTT by default and are
not pressed, and the bridge device offers none of its admin controls. The bridge runs with
``mqtt.legacy_object_id`` (HA 2025.4 predates ``default_entity_id``), so HA must give every
new entity GivTCP's entity id.
"""

# Test helpers take explicit timeouts (each wait names its own bound).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from givbridge.clock import SystemClock
from givbridge.commands.access import ADMIN_COMMANDS
from givbridge.commands.registry import REGISTRY
from givbridge.evc import registers as evc_registers
from givbridge.plant.snapshot import Snapshot
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.evc import Car, EvcSimulator, EvcSimulatorServer
from tests.brokers import HOST, MosquittoBroker, MqttProbe
from tests.homeassistant.hass import HaSocket, HomeAssistant
from tests.integration.bridge_helpers import (  # the runner class from where the other rigs take it
    InverterRunner,
    bridge_settings,
    first_snapshot,
    start,
    stop,
)
from tests.reliability.rig import BridgeProcess

pytestmark = [pytest.mark.homeassistant, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

ROOT = "GivEnergy"
ZONE = "Europe/London"
DISCOVERY = "homeassistant/device/"
#: Seconds between the bridge's reads of measurements and of settings (the controls' values,
#: at the shortest interval givbridge allows). HA's state must follow a control within two
#: settings reads (a command is confirmed by reading the inverter back, so it comes far sooner).
POLL = 5.0
SETTINGS_POLL = 10.0
SETTLE = 2 * SETTINGS_POLL

#: The devices of the site, by the short names the cases use: (family, packs, seed).
INVERTERS = {
    "hybrid": ("hybrid-gen3", 2, 81),
    "aio": ("aio", None, 82),
    "three-phase": ("hybrid-3ph", None, 83),
    "ems": ("ems", None, 84),
}
DEVICES = [*INVERTERS, "charger", "bridge"]

#: The timed actions' selects and numbers (their state topics' last part).
TIMED_ACTIONS = frozenset(
    f"{action}{suffix}"
    for action in ("Force_Charge", "Force_Export", "Temp_Pause_Charge", "Temp_Pause_Discharge")
    for suffix in ("", "_Num")
)

#: Values that the bridge itself owns (timed actions, charger modes), not the device's
#: registers: HA's state is checked, a read of the simulator has nothing to say about them.
BRIDGE_OWNED = frozenset(
    {
        *(f"Control/{name}" for name in TIMED_ACTIONS),
        "Charger/Charging_Mode", "Charger/Import_Cap", "Charger/Max_Session_Energy",
    }
)  # fmt: skip


def _is_time_of_day(options: list[str]) -> bool:
    return len(options) > 100 and all(len(option) == 8 and option[2] == ":" for option in options[:3])


def values_to_drive(component: dict[str, Any]) -> list[str]:
    """What to set a control to, as HA would send it, in order."""
    platform = component["platform"]
    if platform == "select":
        options: list[str] = component["options"]
        if _is_time_of_day(options):
            return [options[0], options[len(options) // 2], options[-1]]
        return list(options)
    if platform == "number":
        low, high, step = component["min"], component["max"], component.get("step", 1)
        middle = low + round((high - low) / 2 / step) * step
        return [_number_text(value) for value in (low, high, middle)]
    if platform == "switch":
        return ["on", "off"]
    if platform == "button":
        return ["press"]
    raise AssertionError(f"no way to drive a {platform}")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class Site:
    ha: HomeAssistant
    socket: HaSocket
    broker: MosquittoBroker
    probe: MqttProbe
    bridge: BridgeProcess
    serials: dict[str, str]  # device name -> serial
    readers: dict[str, InverterRunner]  # device name -> a reader of its simulator, not the bridge's
    charger: EvcSimulator
    #: discovery documents by device identifier, as the broker carries them.
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: entity ids HA gave each unique id.
    entity_ids: dict[str, str] = field(default_factory=dict)

    def document(self, device: str) -> dict[str, Any]:
        identifier = "givbridge_bridge_GivEnergy" if device == "bridge" else f"givbridge_{self.serials[device]}"
        return self.documents[identifier]

    def controls(self, device: str) -> dict[str, dict[str, Any]]:
        """The device's controls by their name (the unique id after the serial), with their component."""
        prefix_end = "_bridge_GivEnergy_" if device == "bridge" else f"_{self.serials[device]}_"
        controls = {}
        for component in self.document(device)["components"].values():
            if "command_topic" in component:
                controls[component["unique_id"].split(prefix_end, 1)[1]] = component
        return controls


def _bridge(directory: Path, broker: MosquittoBroker, ports: list[int], evc_port: int) -> BridgeProcess:
    """``givbridge run`` over every inverter simulator and the charger, at the site's poll periods."""
    bridge = BridgeProcess(
        directory, ports[0], broker,
        poll_interval=POLL, settings_interval=SETTINGS_POLL, timeout=2.0, retries=1, offline_after=3,
    )  # fmt: skip
    settings = json.loads(bridge.config.read_text())
    settings["inverters"] = [{"host": HOST, "port": port} for port in ports]
    settings["evc"] = {"host": HOST, "port": evc_port, "poll_interval": POLL}
    settings["mqtt"]["client_id"] = "givbridge-under-home-assistant"
    # HA 2025.4 predates default_entity_id: object_id keeps GivTCP's entity ids there.
    settings["mqtt"]["legacy_object_id"] = True
    bridge.config.write_text(json.dumps(settings))
    return bridge


def _latest_documents(probe: MqttProbe) -> dict[str, dict[str, Any]]:
    """Each device's latest discovery document on the broker, by device identifier."""
    documents: dict[str, dict[str, Any]] = {}
    for message in probe.messages(f"{DISCOVERY}+/config"):
        identifier = message.topic[len(DISCOVERY) :].split("/")[0]
        if message.payload:
            documents[identifier] = json.loads(message.payload)
        else:
            documents.pop(identifier, None)
    return documents


async def _discovery_documents(probe: MqttProbe, serials: dict[str, str]) -> None:
    """Until each device of the site has announced itself."""
    wanted = {f"givbridge_{serial}" for serial in serials.values()} | {"givbridge_bridge_GivEnergy"}
    await probe.wait_for(f"{DISCOVERY}+/config", lambda m: wanted <= set(_latest_documents(probe)), timeout=60)


async def _sync(site: Site) -> None:
    """Take the latest documents (a device's grows as values become publishable: a counter once
    polls agree on it) and HA's entity ids, once HA has created every entity they name."""
    site.documents = _latest_documents(site.probe)
    registry = await _registered(site)
    site.entity_ids = {unique_id: entry["entity_id"] for unique_id, entry in registry.items()}


async def _registered(site: Site, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """HA's entity registry entries of the MQTT integration by unique id, once every announced
    entity is there. HA reports discovery as done nowhere, so this asks again until it is."""
    wanted = {c["unique_id"] for d in site.documents.values() for c in d["components"].values()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        entries = await site.socket.command("config/entity_registry/list")
        by_unique_id = {e["unique_id"]: e for e in entries if e["platform"] == "mqtt"}
        if wanted <= set(by_unique_id) or loop.time() > deadline:
            return by_unique_id
        await asyncio.sleep(1.0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(ha_core_python: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    base = tmp_path_factory.mktemp("home-assistant-site")
    clock = SystemClock()
    async with AsyncExitStack() as stack:
        broker = MosquittoBroker(base / "mosquitto")
        await broker.start()
        stack.push_async_callback(broker.stop)
        ha = HomeAssistant(ha_core_python, base / "config")
        await ha.start()
        stack.push_async_callback(ha.stop)
        await ha.onboard()
        await ha.add_mqtt(HOST, broker.port)
        socket = await ha.socket()
        stack.push_async_callback(lambda: socket.close())

        serials: dict[str, str] = {}
        ports: dict[str, int] = {}
        for name, (family, packs, seed) in INVERTERS.items():
            sim = SimulatedPlant.create(family, batteries=packs, clock=clock, seed=seed, tz=ZONE, start_soc=50)
            server = await stack.enter_async_context(SimulatorServer(sim))
            serials[name], ports[name] = sim.serial, server.port
        charger = EvcSimulator(clock=clock, tz=ZONE, seed=85)
        charger.plug_in(Car(capacity_kwh=75, soc=30))
        charger_server = await stack.enter_async_context(EvcSimulatorServer(charger))
        serials["charger"] = charger.serial

        probe = MqttProbe.for_broker(broker, topics=("homeassistant/#", f"{ROOT}/#"))
        await probe.start()
        stack.push_async_callback(probe.stop)
        bridge = _bridge(base / "givbridge", broker, list(ports.values()), charger_server.port)
        await bridge.start()
        stack.push_async_callback(bridge.stop)

        # A reader of each simulator of its own, to check what the simulator holds without
        # asking the bridge under test: polls only when asked (refresh_all).
        readers: dict[str, InverterRunner] = {}
        for name, port in ports.items():
            settings = bridge_settings(
                base / f"reader-{name}", [port], polling={"poll_interval": 3600, "settings_interval": 3600}
            )
            reader = InverterRunner(settings, 0, clock=clock)
            task = await start(reader)
            stack.push_async_callback(stop, task)
            await first_snapshot(reader, within=30)
            readers[name] = reader

        running = Site(ha, socket, broker, probe, bridge, serials, readers, charger)
        try:
            await _discovery_documents(probe, serials)
        except AssertionError as failure:
            log = bridge.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{failure}\ngivbridge's log:\n{log}") from None
        await _sync(running)
        yield running


# --- entities ------------------------------------------------------------------------------------


async def test_every_announced_entity_is_created_on_its_device(site: Site) -> None:
    await _sync(site)
    devices = await site.socket.command("config/device_registry/list")
    entries = await site.socket.command("config/entity_registry/list")
    for identifier, document in site.documents.items():
        device = next((d for d in devices if ["mqtt", identifier] in d["identifiers"]), None)
        assert device is not None, f"HA has no device {identifier}"
        created = {e["unique_id"] for e in entries if e["device_id"] == device["id"] and e["platform"] == "mqtt"}
        announced = {c["unique_id"] for c in document["components"].values()}
        assert created == announced, (identifier, sorted(announced - created), sorted(created - announced))
        assert len(created) == len(document["components"])
    models = {device: site.document(device)["device"]["model"] for device in DEVICES}
    assert models == {
        "hybrid": "Hybrid Gen3", "aio": "All-in-One", "three-phase": "Three-phase Hybrid", "ems": "EMS",
        "charger": "EV charger", "bridge": "GivEnergy MQTT bridge",
    }  # fmt: skip
    packs = [d for d in site.documents.values() if d["device"].get("model") == "Battery pack"]
    assert len([d for d in packs if d["device"].get("via_device") == f"givbridge_{site.serials['hybrid']}"]) == 2


async def test_every_entity_gets_the_entity_id_givbridge_asked_for(site: Site) -> None:
    """GivTCP's ids (``sensor.givtcp_<serial>_soc_kwh``...) hold on an HA older than 2025.10 too."""
    await _sync(site)
    wrong = {
        component["unique_id"]: (component["default_entity_id"], site.entity_ids[component["unique_id"]])
        for document in site.documents.values()
        for component in document["components"].values()
        if "default_entity_id" in component
        and site.entity_ids[component["unique_id"]] != component["default_entity_id"]
    }
    assert not wrong, sorted(wrong.items())[:10]
    hybrid = site.serials["hybrid"].lower()
    assert f"sensor.givtcp_{hybrid}_soc_kwh" in site.entity_ids.values()


async def test_every_enabled_entity_has_a_state_and_is_available(site: Site) -> None:
    states = await site.socket.states()
    entries = await site.socket.command("config/entity_registry/list")
    enabled = [e for e in entries if e["platform"] == "mqtt" and e["disabled_by"] is None]
    assert enabled
    missing = [e["entity_id"] for e in enabled if e["entity_id"] not in states]
    assert not missing, missing
    # Each comes up once HA has its availability topics (retained) and a state.
    await _wait_all(site, [e["entity_id"] for e in enabled], True, SETTLE)


async def test_home_assistant_logs_nothing_wrong_from_mqtt(site: Site) -> None:
    assert not site.ha.mqtt_problems(), "\n".join(site.ha.mqtt_problems())


# --- controls ------------------------------------------------------------------------------------


def _state_path(site: Site, device: str, component: dict[str, Any]) -> str:
    topic: str = component["state_topic"]
    return topic.split(f"/{site.serials[device]}/", 1)[1]


def _timed(component: dict[str, Any]) -> bool:
    return str(component.get("state_topic", "")).rsplit("/", 1)[-1] in TIMED_ACTIONS


def _matches(component: dict[str, Any], value: str, state: str) -> bool:
    """Whether HA's state shows ``value`` (as HA was asked to set it).

    A timed action's select shows Normal while it does not run; while it runs its state is
    Running, which nobody can choose, so the select is unknown (its ``<Name> State`` sensor says
    Running). Its number shows the minutes left, which may have ticked down by one by the time
    HA shows it.
    """
    if component["platform"] == "select" and _timed(component):
        return state == ("Normal" if value in ("Normal", "Cancel") else "unknown")
    if component["platform"] == "number":
        try:
            shown, wanted = float(state), float(value)
        except ValueError:
            return False
        if _timed(component) and wanted > 0 and shown == wanted - 1:
            return True
        return _same_number(component, wanted, shown)
    return state == value


def _same_number(component: dict[str, Any], wanted: float, shown: float) -> bool:
    """Whether a number control shows ``wanted``. A battery rate steps in 1 % of capacity
    (95.25 W on a 9.525 kWh battery): the register holds exactly the step HA chose, and its
    watts are shown whole, as GivTCP shows them (1714.5 W shows as 1714)."""
    step = float(component.get("step", 1))
    if component.get("unit_of_measurement") == "W" and not step.is_integer():
        return shown == math.floor(wanted)
    return math.isclose(shown, wanted, abs_tol=step / 1000)


def _held(component: dict[str, Any], value: str, held: object) -> bool:
    """Whether a value the simulator holds (as the reader decoded it) is ``value``."""
    platform = component["platform"]
    if platform == "switch":
        return held == (component["state_on"] if value == "on" else component["state_off"])
    if platform == "number":
        return isinstance(held, int | float) and _same_number(component, float(value), float(held))
    return str(held) == value


async def _simulator_value(site: Site, device: str, path: str) -> object:
    if device == "charger":
        charger = site.charger
        held: dict[str, object] = {
            "Charger/Charge_Limit": charger.limit_tenths / 10,
            "Charger/Plug_and_Go": "enable" if charger.plug_and_go else "disable",
            "Charger/Charge_Control": evc_registers.CHARGE_CONTROLS[charger.control],
        }
        return held[path]
    snapshot: Snapshot = await site.readers[device].refresh_all()
    assert path in snapshot, f"{path} is not in a fresh read of the {device} simulator"
    return snapshot[path]


def _response_topic(component: dict[str, Any]) -> str:
    """Where givbridge answers the control's command: under the device's serial, or the bridge's."""
    *_, kind, target, command = component["command_topic"].split("/")
    if (kind, target) == ("bridge", "request"):  # the bridge's controls: <root>/bridge/request/<key>
        return f"{ROOT}/bridge/response/+"
    return f"{ROOT}/{'bridge' if target == 'control' else target}/response/{command}"


async def drive(site: Site, device: str, component: dict[str, Any], value: str) -> None:
    """Set one control to one value through HA's service, then check givbridge's answer, HA's
    state and what the simulator holds."""
    entity_id = site.entity_ids[component["unique_id"]]
    platform = component["platform"]
    mark, probe_mark = site.socket.mark(), site.probe.mark()
    if platform == "button":
        await site.socket.call("button", "press", entity_id)
    elif platform == "select":
        await site.socket.call("select", "select_option", entity_id, option=value)
    elif platform == "number":
        await site.socket.call("number", "set_value", entity_id, value=value)
    else:
        await site.socket.call("switch", f"turn_{value}", entity_id)
    # Every command gets exactly one answer, after the device was read back.
    message = await site.probe.wait_for(_response_topic(component), timeout=SETTLE, after=probe_mark)
    answer = json.loads(message.payload)
    assert answer["status"] == "ok", f"{entity_id} = {value}: givbridge answered {answer}"
    if platform == "button":
        return
    leaf = component["state_topic"].rsplit("/", 1)[1]
    read_back = answer.get("data", {}).get(leaf)
    if read_back is not None and not _timed(component):
        assert _held(component, value, read_back), f"{entity_id} = {value}: givbridge read back {read_back!r}"
    if not _matches(component, value, site.socket.current[entity_id]["state"]):
        await site.socket.state_change(entity_id, lambda s: _matches(component, value, s["state"]), SETTLE, after=mark)
    if device == "bridge":
        return
    path = _state_path(site, device, component)
    if path in BRIDGE_OWNED:
        return
    held = await _simulator_value(site, device, path)
    assert _held(component, value, held), f"{entity_id} = {value} in HA, the simulator holds {held!r}"


def _cases(site: Site, device: str) -> list[tuple[str, dict[str, Any], str]]:
    cases = []
    for name, component in sorted(site.controls(device).items()):
        if component["platform"] == "button":
            command = REGISTRY.get(component["command_topic"].rsplit("/", 1)[1])
            if command is not None and command.name in ADMIN_COMMANDS:
                continue  # off over MQTT by default (mqtt.admin: off)
        for value in values_to_drive(component):
            cases.append((name, component, value))
    return cases


async def _drive_all(site: Site, device: str) -> list[str]:
    failures: list[str] = []
    if device == "bridge":  # its controls (restart, log level) are admin: not offered with mqtt.admin off
        assert site.controls(device) == {}, "HA is offered admin controls that would only be refused"
        return failures
    assert site.controls(device), f"{device} has no controls"
    cases = _cases(site, device)
    for name, component, value in cases:
        try:
            await drive(site, device, component, value)
        except AssertionError as failure:
            failures.append(f"{device} {name}={value}: {failure}")
    # Timed actions started by the selects and numbers above end now, not minutes later.
    for component in site.controls(device).values():
        if component["platform"] == "select" and "Cancel" in component["options"]:
            await drive(site, device, component, "Cancel")
    return failures


async def test_every_control_works_through_home_assistant(site: Site) -> None:
    """Each device's controls one after the other, the devices at once (as HA users and
    automations do): givbridge queues each device's commands and serves the devices in parallel."""
    # Every control has its first state (the bridge has read every device's settings).
    controls = [
        site.entity_ids[c["unique_id"]]
        for device in DEVICES
        for c in site.controls(device).values()
        if c["platform"] != "button"  # a button's state is when it was last pressed
    ]
    await _wait_known(site, controls)
    failures = await asyncio.gather(*(_drive_all(site, device) for device in DEVICES))
    assert not any(failures), "\n".join(f for found in failures for f in found)


# --- availability ---------------------------------------------------------------------------------


async def _wait_all(site: Site, entity_ids: list[str], available: bool, timeout: float) -> None:
    """Until each of ``entity_ids`` is (un)available in HA: now, or by a state change from now on."""

    def ok(state: dict[str, Any]) -> bool:
        return (state["state"] != "unavailable") is available

    mark = site.socket.mark()
    states = await site.socket.states()
    for entity_id in [e for e in entity_ids if not ok(states[e])]:
        await site.socket.state_change(entity_id, ok, timeout, after=mark)


async def _wait_known(site: Site, entity_ids: list[str]) -> None:
    """Until each of ``entity_ids`` has a state in HA (not unknown, not unavailable)."""
    mark = site.socket.mark()
    states = await site.socket.states()
    for entity_id in entity_ids:
        if states[entity_id]["state"] in ("unknown", "unavailable"):
            await site.socket.state_change(
                entity_id, lambda s: s["state"] not in ("unknown", "unavailable"), SETTLE, after=mark
            )


def _enabled_entity_ids(site: Site, states: dict[str, dict[str, Any]], *, with_availability: bool = True) -> list[str]:
    """HA's entity ids of the enabled entities (those with a state) whose discovery gives them an
    availability (all but the bridge's own connectivity sensor), or of those without one."""
    entity_ids = []
    for document in site.documents.values():
        for component in document["components"].values():
            entity_id = site.entity_ids[component["unique_id"]]
            has_availability = "availability" in component or "availability" in document
            if entity_id in states and has_availability is with_availability:
                entity_ids.append(entity_id)
    return entity_ids


async def test_a_killed_bridge_goes_unavailable_and_comes_back(site: Site) -> None:
    await _sync(site)
    states = await site.socket.states()
    entity_ids = _enabled_entity_ids(site, states)
    (connectivity,) = _enabled_entity_ids(site, states, with_availability=False)
    await _wait_all(site, entity_ids, True, SETTLE)
    mark = site.socket.mark()
    await site.bridge.kill()
    # The broker publishes the Last Will (bridge/state offline): every entity's availability,
    # and the bridge's connectivity sensor (always available) shows it.
    await _wait_all(site, entity_ids, False, 30)
    await site.socket.state_change(connectivity, lambda s: s["state"] == "off", 30, after=mark)
    mark = site.socket.mark()
    await site.bridge.start()
    await _wait_all(site, entity_ids, True, 60)
    await site.socket.state_change(connectivity, lambda s: s["state"] == "on", 30, after=mark)


async def test_a_restarted_home_assistant_gets_discovery_again(site: Site) -> None:
    before = await site.socket.states()
    entity_ids = _enabled_entity_ids(site, before)
    await site.socket.close()
    await site.ha.stop()
    mark = site.probe.mark()
    await site.ha.start()
    # HA's birth message, then givbridge announces every device again.
    await site.probe.wait_for_payload("homeassistant/status", "online", timeout=60, after=mark)
    for identifier in site.documents:
        await site.probe.wait_for(f"{DISCOVERY}{identifier}/config", lambda m: bool(m.payload), 30, after=mark)
    site.socket = await site.ha.socket()
    await _sync(site)
    assert set(site.entity_ids.values()) >= set(entity_ids)
    await _wait_all(site, entity_ids, True, 60)
    assert not site.ha.mqtt_problems(), "\n".join(site.ha.mqtt_problems())


async def test_givbridge_logged_no_error(site: Site) -> None:
    assert not site.bridge.errors(), "\n".join(site.bridge.errors())
