"""Every simulator fault against the whole bridge on a real broker, with the invariants checked throughout.

One broker, simulated Gen3 hybrid and bridge serve the module (starting them costs more than
a scenario). Each scenario injects one fault, asserts what the bridge must do about it
(availability, command results, what is published), and leaves the simulator healthy; after
each one the rig checks that no counter went down, no ``ok`` was unconfirmed and nothing
crashed (see ``invariants.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from givenergy_modbus.pdu import ReadInputRegistersRequest

from givbridge.commands.results import ErrorCode
from givbridge.devices.sending import late_patience
from givbridge.plant.snapshot import Snapshot
from tests.brokers import Broker
from tests.integration.sim_helpers import RawLink
from tests.reliability.rig import TARGET_SOC, Rig, bridge_rig

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    async with bridge_rig(module_broker, tmp_path_factory.mktemp("bridge")) as running:
        yield running


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def scenario(rig: Rig) -> AsyncIterator[None]:
    """Each scenario starts and ends with a healthy inverter and clean invariants."""
    await rig.healthy()
    yield
    await rig.healthy()
    rig.assert_clean()


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["status"] == "ok", answer
    data: dict[str, Any] = answer["data"]
    return data


def failed(answer: dict[str, Any], code: ErrorCode) -> None:
    assert answer["status"] == "error" and answer["error"]["code"] == code.value, answer


def topic(rig: Rig, path: str) -> str:
    return f"{rig.checker.root}/{rig.serial}/{path}"


async def test_latency_under_the_timeout_is_tolerated_and_over_it_is_an_outage(rig: Rig) -> None:
    mark = rig.checker.mark(rig.serial)
    rig.server.faults.extra_latency = 0.2  # the bridge waits 0.5 s for an answer
    await rig.polls(4)
    ok(await rig.set_target(61))
    assert rig.checker.mark(rig.serial) == mark, "a slow dongle is not an outage"

    rig.server.faults.extra_latency = 1.0
    await rig.checker.went(rig.serial, "offline", after=mark)
    failed(await rig.set_target(62), ErrorCode.UNREACHABLE)
    rig.server.faults.extra_latency = 0.0
    await rig.checker.went(rig.serial, "online", after=mark + 1)
    ok(await rig.set_target(62))


async def test_a_silent_window_is_an_outage_that_ends_by_itself(rig: Rig) -> None:
    mark = rig.checker.mark(rig.serial)
    before = rig.sim.holding(TARGET_SOC)
    # Long enough for offline_after polls to fail: each waits out its timeout, and the next
    # poll's requests first wait for the lost answers for up to two more (late_patience).
    polling = rig.app.settings.polling
    rig.server.faults.silence(polling.offline_after * (polling.timeout + late_patience(polling)) + 0.5)
    transaction = rig.checker.send(
        "setChargeTarget", {"chargeToPercent": 63}, serial=rig.serial, expect={TARGET_SOC: 63}
    )
    failed(await rig.checker.result(transaction), ErrorCode.UNREACHABLE)
    assert rig.sim.holding(TARGET_SOC) == before  # lost on the way, never written
    await rig.checker.went(rig.serial, "offline", after=mark)
    await rig.checker.went(rig.serial, "online", after=mark + 1)


async def test_dropped_connections_are_rebuilt_without_an_outage_even_mid_command(rig: Rig) -> None:
    mark = rig.checker.mark(rig.serial)
    for _ in range(3):
        reconnects = rig.runner.health.reconnects

        def reconnected(_: Snapshot, before: int = reconnects) -> bool:
            return rig.runner.health.reconnects > before

        rig.server.faults.drop_connections()
        await rig.watch.snapshot(reconnected, after=len(rig.watch.snapshots))
    assert rig.checker.mark(rig.serial) == mark, "a connection rebuilt at once is not an outage"

    # Dropped while the write is in flight: the inverter got it, the bridge never saw the echo.
    rig.server.faults.extra_latency = 0.3
    seen = rig.server.requests.copy()
    transaction = rig.checker.send(
        "setChargeTarget", {"chargeToPercent": 64}, serial=rig.serial, expect={TARGET_SOC: 64}
    )
    await rig.server.requested(lambda key: key[0] == "W", after=seen)
    rig.server.faults.drop_connections()
    failed(await rig.checker.result(transaction), ErrorCode.UNREACHABLE)
    rig.server.faults.extra_latency = 0.0
    # Once back, the state shows what the inverter really holds, whichever writes of the plan landed.
    await rig.checker.value(topic(rig, "Control/Target_SOC"), lambda v: v == str(rig.sim.holding(TARGET_SOC)))


async def test_a_stale_socket_is_replaced_while_the_dongle_serves_others(rig: Rig) -> None:
    [stale] = rig.server.connections
    other = await RawLink.open(rig.server.port)
    try:
        mark = rig.checker.mark(rig.serial)
        stale.faults.silence()  # only the bridge's socket goes quiet, for good
        await rig.checker.went(rig.serial, "offline", after=mark)
        await rig.checker.went(rig.serial, "online", after=mark + 1)  # on a new connection
        assert stale not in rig.server.connections
        await other.request(ReadInputRegistersRequest(base_register=0, register_count=60, device_address=0x11))
        ok(await rig.set_target(72))
    finally:
        await other.close()


async def test_refused_connections_are_an_outage_until_the_dongle_accepts_again(rig: Rig) -> None:
    mark = rig.checker.mark(rig.serial)
    rig.server.faults.refuse_connections = True
    rig.server.faults.drop_connections()
    await rig.checker.went(rig.serial, "offline", after=mark)
    failed(await rig.set_target(65), ErrorCode.UNREACHABLE)
    rig.server.faults.refuse_connections = False
    await rig.checker.went(rig.serial, "online", after=mark + 1)
    ok(await rig.set_target(65))


async def test_corrupted_crcs_are_counted_and_never_published(rig: Rig) -> None:
    errors = topic(rig, "Stats/CRC_Errors")
    before = float(await rig.checker.value(errors, lambda v: True))
    rig.server.faults.crc_rate = 0.1
    await rig.polls(8, within=30)
    for percent in (66, 67, 68):
        await rig.set_target(percent)  # ok only if the inverter holds it (checked by the rig)
    rig.server.faults.crc_rate = 0.0
    await rig.checker.value(errors, lambda v: float(v) > before)


async def test_garbage_between_frames_is_skipped(rig: Rig) -> None:
    mark = rig.checker.mark(rig.serial)
    rig.server.faults.garbage_rate = 1.0  # noise in front of every answer
    await rig.polls(5)
    ok(await rig.set_target(69))
    assert rig.checker.mark(rig.serial) == mark


async def test_all_zero_banks_never_reach_the_published_values(rig: Rig) -> None:
    soc = topic(rig, "Power/Power/SOC")
    start = rig.checker.probe.mark()
    rig.server.faults.zero_rate = 0.3  # transient dropouts of any bank
    await rig.polls(8, within=30)
    rig.server.faults.zero_rate = 0.0
    rig.server.faults.zero_bank(0x11, "IR", 0)  # the measurement bank stays zero for a while
    await rig.polls(3, within=30)
    # The simulated battery never reads 0 %: neither what was published meanwhile (on change,
    # so perhaps nothing) nor what the state shows now.
    published = [float(m.text) for m in rig.checker.probe.messages(soc, after=start)]
    assert all(value > 0 for value in published), published
    assert float(rig.checker.latest[soc]) > 0


async def test_frozen_values_keep_counters_still_until_they_thaw(rig: Rig) -> None:
    pv_total = topic(rig, "Energy/Total/PV_Energy_Total_kWh")
    rig.server.faults.frozen = True
    await rig.polls(2)
    frozen = rig.sim.input(11)  # IR11-12: PV total, unchanged while frozen
    rig.clock.advance(1800)  # half an hour of midsummer sun
    await rig.polls(3)
    assert rig.sim.input(11) == frozen
    still = float(await rig.checker.value(pv_total, lambda v: True))
    rig.server.faults.frozen = False
    rig.clock.advance(1800)
    await rig.checker.value(pv_total, lambda v: float(v) > still)


async def test_writes_acknowledged_but_not_kept_are_never_reported_ok(rig: Rig) -> None:
    rig.server.faults.writes_not_persisted = True
    writes = rig.writes()
    answer = await rig.set_target(70)
    failed(answer, ErrorCode.NOT_PERSISTED)
    assert rig.writes() > writes and rig.sim.holding(TARGET_SOC) != 70
    rig.server.faults.writes_not_persisted = False
    ok(await rig.set_target(70))


async def test_inverter_clock_jumps_show_as_skew_and_reset_today_only_at_its_midnight(rig: Rig) -> None:
    skew = topic(rig, "Stats/Clock_Skew")
    pv_today = topic(rig, "Energy/Today/PV_Energy_Today_kWh")
    await rig.checker.value(skew, lambda v: abs(float(v)) < 60)
    await rig.checker.value(pv_today, lambda v: float(v) > 5)  # a midsummer morning's worth
    rig.server.faults.jump_clock(-2 * 3600)
    await rig.checker.value(skew, lambda v: -7300 < float(v) < -7100)
    await rig.polls(3)
    # To 00:20 tomorrow: the inverter's today counters start again, and so may the published ones.
    inverter_now = rig.sim.inverter_time()
    jump = ((inverter_now + timedelta(days=1)).replace(hour=0, minute=20) - inverter_now).total_seconds()
    rig.server.faults.jump_clock(jump)
    await rig.checker.value(pv_today, lambda v: float(v) <= 1.0)
    rig.server.faults.jump_clock(2 * 3600 - jump)
    await rig.checker.value(skew, lambda v: abs(float(v)) < 60)
    ok(await rig.set_target(71))
