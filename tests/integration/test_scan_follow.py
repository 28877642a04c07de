"""``follow_serial``: the inverter's dongle gets a new address (DHCP) and the runner follows it.

The simulator moves from 127.0.0.2 to 127.0.0.3 on the same port; the runner searches the
/24 around its old address, 127.0.0.0/24, which is all loopback.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from givbridge.config import Settings
from givbridge.config_checks import ConfigError
from givbridge.config_loading import load_settings
from givbridge.devices.inverter import InverterRunner
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.store import JsonStore
from tests.integration.bridge_helpers import Watch, bridge_settings, fast_clock, start, stop

OLD, NEW = "127.0.0.2", "127.0.0.3"


def port_free_on_both() -> int:
    for _ in range(50):
        with socket.socket() as first:
            first.bind((OLD, 0))
            port: int = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind((NEW, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free on both addresses")


def following(tmp_path: Path, port: int, serial: str, **inverter: Any) -> Settings:
    settings = bridge_settings(tmp_path, [port])
    entry = {"host": OLD, "port": port, "serial": serial, "follow_serial": True} | inverter
    return Settings.model_validate(settings.model_dump() | {"inverters": [entry]})


async def test_the_runner_follows_its_serial_to_a_new_address_and_remembers_it(tmp_path: Path) -> None:
    clock = fast_clock()
    port = port_free_on_both()
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=21)
    settings = following(tmp_path, port, sim.serial)
    runner = InverterRunner(settings, 0, clock=clock)
    assert runner.follower is not None
    runner.follower.lost_after = 4.0  # seconds of the scaled clock: a fifth of a real second
    watch = Watch(runner)
    task = await start(runner)
    try:
        async with SimulatorServer(sim, host=OLD, port=port):
            await watch.snapshot(lambda s: s.serial == sim.serial)
        seen = len(watch.snapshots)  # the dongle is gone from OLD ...
        async with SimulatorServer(sim, host=NEW, port=port) as moved:  # ... and back at NEW
            snapshot = await watch.snapshot(after=seen, within=20)
            assert snapshot.serial == sim.serial
            assert runner.config.host == NEW
            assert runner.label == f"{NEW}:{port}"
            assert moved.requests  # it is really reading the simulator at the new address
    finally:
        await stop(task)
    remembered = JsonStore(tmp_path).load(f"address-{sim.serial}")
    assert remembered["host"] == NEW and remembered["configured_host"] == OLD

    # A restart with the same settings starts at the remembered address.
    restarted = InverterRunner(settings, 0, clock=clock)
    assert restarted.config.host == OLD
    watch = Watch(restarted)
    async with SimulatorServer(sim, host=NEW, port=port):
        task = await start(restarted)
        try:
            snapshot = await watch.snapshot()
        finally:
            await stop(task)
    assert restarted.config.host == NEW and snapshot.serial == sim.serial
    assert restarted.health.polls_failed == 0  # it never tried the old address


async def test_a_host_changed_in_the_settings_wins_over_the_remembered_one(tmp_path: Path) -> None:
    JsonStore(tmp_path).save("address-SA2314G123", {"configured_host": OLD, "host": NEW})
    settings = following(tmp_path, 8899, "SA2314G123", host="127.0.0.4")
    runner = InverterRunner(settings, 0, clock=fast_clock())
    assert runner.follower is not None
    await runner.follower.restore()
    assert runner.config.host == "127.0.0.4"


async def test_no_search_before_the_inverter_has_been_lost_for_a_while(tmp_path: Path) -> None:
    settings = following(tmp_path, 8899, "SA2314G123")
    runner = InverterRunner(settings, 0, clock=fast_clock())
    assert runner.follower is not None
    assert not await runner.follower.search_if_lost()  # never failed
    runner.health.consecutive_failures = 3
    assert not await runner.follower.search_if_lost()  # failing, but only just
    assert runner.config.host == OLD


def test_follow_serial_is_off_unless_asked(tmp_path: Path) -> None:
    settings = bridge_settings(tmp_path, [8899])
    assert InverterRunner(settings, 0).follower is None


@pytest.mark.parametrize(
    ("inverter", "message"),
    [
        ({"host": "192.0.2.10", "follow_serial": True}, "follow_serial needs serial"),
        ({"host": "dongle.lan", "serial": "SA2314G123", "follow_serial": True}, "needs search_network"),
        ({"host": "192.0.2.10", "search_network": "192.0.0.0/16"}, "at most a /20"),
    ],
)
def test_follow_serial_settings_are_checked(tmp_path: Path, inverter: dict[str, Any], message: str) -> None:
    config = tmp_path / "givbridge.json"
    config.write_text(json.dumps({"inverters": [inverter]}))
    with pytest.raises(ConfigError, match=message):
        load_settings(config, addon_options=tmp_path / "absent.json")


def test_a_host_name_can_follow_within_a_search_network(tmp_path: Path) -> None:
    inverter = {"host": "dongle.lan", "serial": "SA2314G123", "follow_serial": True, "search_network": "192.0.2.0/24"}
    settings = Settings.model_validate({"inverters": [inverter], "data_dir": tmp_path})
    runner = InverterRunner(settings, 0)
    assert runner.follower is not None and str(runner.follower.network()) == "192.0.2.0/24"
