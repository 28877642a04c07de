"""``GET /metrics`` end to end: the real bridge polling simulators over TCP, scraped over real sockets.

Two rigs: the HTTP shim with metrics on (``/metrics`` on its main port, a command through the
shim, a CRC fault in the simulator), and metrics alone (``http.enabled`` false), served on a
listener of their own. Each scrape is parsed with prometheus_client's own text parser.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.promql import Scrape, parse_exposition, sample_key
from givbridge.app import Application
from givbridge.config_checks import ConfigError
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import free_port
from tests.integration.bridge_helpers import Watch, bridge_settings, fast_clock, first_snapshot, ok
from tests.integration.http_helpers import TOKEN, ZONE, HttpRig, client, http_rig

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Families every device has from its first poll on (name as the parser reports it, without _total).
DEVICE_FAMILIES = (
    "givbridge_polls",
    "givbridge_reconnects",
    "givbridge_device_available",
    "givbridge_device_connected",
    "givbridge_last_success_timestamp_seconds",
    "givbridge_poll_duration_seconds",
)
#: And an inverter's, from the Stats of its snapshots.
INVERTER_FAMILIES = (
    "givbridge_read_retries",
    "givbridge_crc_errors",
    "givbridge_dropout_banks_rejected",
    "givbridge_register_writes",
    "givbridge_clock_skew_seconds",
)


async def scrape(url: str) -> tuple[Scrape, set[str]]:
    """Every sample at ``url``, and the families' names."""
    async with client() as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    families = {family.name for family in text_string_to_metric_families(response.text)}
    return parse_exposition(response.text), families


def value(samples: Scrape, name: str, **labels: str) -> float:
    key = sample_key(name, **labels)
    assert key in samples, f"no {name}{labels} in {[dict(k) for k in samples if dict(k)['__name__'] == name]}"
    return samples[key]


def devices(samples: Scrape, name: str) -> set[str]:
    found = [dict(labels) for labels in samples]
    return {labels["device"] for labels in found if labels["__name__"] == name and "device" in labels}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpRig]:
    async with http_rig(
        tmp_path_factory.mktemp("metrics"), ["hybrid-gen3"], http={"token": TOKEN}, metrics={"enabled": True}
    ) as rig:
        yield rig


async def test_every_family_is_there_for_the_device(shim: HttpRig) -> None:
    samples, families = await scrape(f"{shim.base}/metrics")
    serial = shim.serial()
    for family in (*DEVICE_FAMILIES, *INVERTER_FAMILIES, "givbridge_build_info", "givbridge_device_info"):
        assert family in families, family
    for name in ("givbridge_polls_total", "givbridge_crc_errors_total", "givbridge_poll_duration_seconds_count"):
        assert devices(samples, name) == {serial}, name
    assert value(samples, "givbridge_device_available", device=serial) == 1
    assert value(
        samples, "givbridge_device_info", device=serial, kind="inverter", address=shim.app.bridge.runners[0].label
    )
    assert value(samples, "givbridge_register_writes_total", device=serial, kind="eeprom") >= 0


async def test_a_poll_moves_the_poll_counters(shim: HttpRig) -> None:
    serial = shim.serial()
    watch = Watch(shim.app.bridge.runners[0])
    before, _ = await scrape(f"{shim.base}/metrics")
    await watch.count(2, within=15)  # two snapshots: at least one is a whole poll after the scrape
    after, _ = await scrape(f"{shim.base}/metrics")
    assert value(after, "givbridge_polls_total", device=serial, outcome="ok") > value(
        before, "givbridge_polls_total", device=serial, outcome="ok"
    )
    assert value(after, "givbridge_poll_duration_seconds_count", device=serial) > value(
        before, "givbridge_poll_duration_seconds_count", device=serial
    )
    # Every observation is in the +Inf bucket, and the histogram's count agrees with the poll counters.
    assert value(after, "givbridge_poll_duration_seconds_bucket", device=serial, le="+Inf") == value(
        after, "givbridge_poll_duration_seconds_count", device=serial
    )


async def test_commands_are_counted_by_status(shim: HttpRig) -> None:
    serial = shim.serial()
    before, _ = await scrape(f"{shim.base}/metrics")
    labels = {"device": serial, "command": "setChargeTarget"}
    async with client(token=TOKEN) as http:
        ok((await http.post(f"{shim.base}/REST1/setChargeTarget", json={"chargeToPercent": 81})).json())
        refused = await http.post(f"{shim.base}/REST1/setChargeTarget", json={"chargeToPercent": 181})
        assert refused.status_code == 400
        unknown = await http.post(f"{shim.base}/REST1/noSuchCommand", json={})
        assert unknown.status_code == 404
    assert shim.holding(116) == {116: 81}
    after, _ = await scrape(f"{shim.base}/metrics")

    def moved(status: str, **which: str) -> float:
        key = sample_key("givbridge_command_results_total", status=status, **which)
        return after[key] - before.get(key, 0.0)

    assert moved("ok", **labels) == 1
    assert moved("invalid_payload", **labels) == 1
    # A name that is no command is counted without it (a typo must not make a new series).
    assert moved("unknown_command", device="", command="") == 1
    assert not any("noSuchCommand" in dict(labels).values() for labels in after)


async def test_a_corrupted_crc_moves_the_crc_counter(shim: HttpRig) -> None:
    serial = shim.serial()
    runner = shim.app.bridge.runners[0]
    watch = Watch(runner)
    before, _ = await scrape(f"{shim.base}/metrics")
    counted = value(before, "givbridge_crc_errors_total", device=serial)
    shim.servers[0].faults.corrupt_crc(1)
    await watch.snapshot(lambda s: float(s["Stats/CRC_Errors"]) > counted, within=15)
    after, _ = await scrape(f"{shim.base}/metrics")
    assert value(after, "givbridge_crc_errors_total", device=serial) > counted


async def test_without_the_setting_the_shim_has_no_metrics(tmp_path_factory: pytest.TempPathFactory) -> None:
    async with (
        http_rig(tmp_path_factory.mktemp("nometrics"), ["hybrid-gen3"]) as rig,
        client() as http,
    ):
        response = await http.get(f"{rig.base}/metrics")
    assert response.status_code == 404


async def test_metrics_alone_have_their_own_listener(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("alone")
    clock = fast_clock()
    async with AsyncExitStack() as stack:
        sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=5, tz=ZONE, start_soc=50)
        server = await stack.enter_async_context(SimulatorServer(sim))
        settings = bridge_settings(
            data_dir,
            [server.port],
            mqtt={"host": "127.0.0.1", "port": free_port(), "client_id": "givbridge-metrics-alone"},
            metrics={"enabled": True, "port": 0},
        )
        assert not settings.http.enabled
        app = Application(settings, clock=clock)
        stack.push_async_callback(app.stop)
        await app.start()
        await first_snapshot(app.bridge.runners[0], within=15)
        assert app.http is not None and app.http.port is not None
        base = f"http://127.0.0.1:{app.http.port}"
        samples, families = await scrape(f"{base}/metrics")
        assert devices(samples, "givbridge_polls_total") == {sim.serial}
        assert "givbridge_crc_errors" in families
        async with client() as http:
            assert (await http.get(f"{base}/REST1/readData")).status_code == 404  # no REST shim there
            assert (await http.get(f"{base}/health")).status_code == 404


async def test_a_metrics_port_in_use_is_a_configuration_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = bridge_settings(
            tmp_path_factory.mktemp("taken"),
            [],
            mqtt={"host": "127.0.0.1", "port": free_port(), "client_id": "givbridge-metrics-taken"},
            metrics={"enabled": True, "port": port},
        )
        app = Application(settings, clock=fast_clock())
        try:
            with pytest.raises(ConfigError, match=rf"127.0.0.1:{port} \(metrics.port\).*metrics settings"):
                await app.start()
        finally:
            await app.stop()


async def test_queue_depth_counts_the_commands_waiting_for_the_device(shim: HttpRig) -> None:
    serial = shim.serial()
    runner = shim.app.bridge.runners[0]
    commands = shim.app.commands
    async with runner.command_lock:  # the device is busy (as during a timed action's revert)
        waiting = asyncio.create_task(commands.execute("setChargeTarget", "82", serial=serial))
        for _ in range(100):  # let the command reach the queue: it awaits nothing on the way, no time passes
            if commands.queue.waiting(runner.command_lock):
                break
            await asyncio.sleep(0)
        during, _ = await scrape(f"{shim.base}/metrics")
    ok((await waiting).document())
    after, _ = await scrape(f"{shim.base}/metrics")
    assert value(during, "givbridge_command_queue_depth", device=serial) == 1
    assert value(after, "givbridge_command_queue_depth", device=serial) == 0
