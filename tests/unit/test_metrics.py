"""The metrics collector on its own: a device's Health, Signal and snapshots as the runners keep them.

The device here is the runners' own parts (:class:`~givbridge.runtime.health.Health`,
:class:`~givbridge.runtime.signal.Signal`, a real :class:`~givbridge.plant.snapshot.Snapshot`) with the
runner's bookkeeping done by hand, so each case says exactly what a poll or a write changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from benchmarks.promql import Scrape, parse_exposition
from benchmarks.promql import sample_key as key
from givbridge.commands.results import CommandFailed, CommandResult, ErrorCode
from givbridge.commands.system import widened_access
from givbridge.config import Settings
from givbridge.metrics import BridgeMetrics
from givbridge.plant.snapshot import DeviceInfo, Snapshot
from givbridge.runtime.health import Health
from givbridge.runtime.signal import Signal

SERIAL = "SA1234G567"
AT = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)


@dataclass
class Device:
    label: str = "127.0.0.1:8899"
    serial: str | None = None
    health: Health = field(default_factory=Health)
    snapshot: Snapshot | None = None
    on_snapshot: Signal[Snapshot] = field(default_factory=lambda: Signal("snapshot"))

    async def poll(self, seconds: float, **stats: Any) -> None:
        """What a runner does after a successful poll: count it, time it, emit the snapshot."""
        self.serial = SERIAL
        self.health.succeeded(AT)
        self.health.last_poll_seconds = seconds
        await self.emit(**stats)

    async def emit(self, **stats: Any) -> None:
        values = {f"Stats/{name}": value for name, value in stats.items()}
        self.snapshot = Snapshot(DeviceInfo(SERIAL, "Hybrid Gen3", "hybrid-gen3"), AT, values)
        await self.on_snapshot.emit(self.snapshot)


def samples(metrics: BridgeMetrics) -> Scrape:
    return parse_exposition(metrics.exposition().decode())


def names(scrape: Scrape) -> set[str]:
    return {dict(labels)["__name__"] for labels in scrape}


async def test_a_device_not_yet_read_is_labelled_by_its_address_and_has_no_stats() -> None:
    metrics = BridgeMetrics()
    metrics.attach(Device(), "inverter")
    got = samples(metrics)
    assert got[key("givbridge_polls_total", device="127.0.0.1:8899", outcome="ok")] == 0
    assert got[key("givbridge_device_available", device="127.0.0.1:8899")] == 0
    assert got[key("givbridge_device_info", device="127.0.0.1:8899", kind="inverter", address="127.0.0.1:8899")] == 1
    assert not any(name.startswith(("givbridge_crc_errors", "givbridge_clock_skew")) for name in names(got))
    assert "givbridge_command_queue_depth" not in names(got)  # no queue given


async def test_values_are_read_from_health_and_the_latest_snapshot() -> None:
    metrics = BridgeMetrics()
    device = Device()
    metrics.attach(device, "inverter")
    device.health.reconnects = 3
    device.health.failed("silence", offline_after=3)
    await device.poll(0.4, CRC_Errors=2, Read_Retries=5, Dropout_Banks_Rejected=1, Write_Count=7, Clock_Skew=-12.0)
    got = samples(metrics)
    assert got[key("givbridge_polls_total", device=SERIAL, outcome="ok")] == 1
    assert got[key("givbridge_polls_total", device=SERIAL, outcome="failed")] == 1
    assert got[key("givbridge_reconnects_total", device=SERIAL)] == 2  # attempts after the first
    assert got[key("givbridge_device_available", device=SERIAL)] == 1
    assert got[key("givbridge_crc_errors_total", device=SERIAL)] == 2
    assert got[key("givbridge_read_retries_total", device=SERIAL)] == 5
    assert got[key("givbridge_dropout_banks_rejected_total", device=SERIAL)] == 1
    assert got[key("givbridge_register_writes_total", device=SERIAL, kind="eeprom")] == 7
    assert got[key("givbridge_clock_skew_seconds", device=SERIAL)] == -12
    assert got[key("givbridge_last_success_timestamp_seconds", device=SERIAL)] == AT.timestamp()
    assert key("givbridge_register_writes_total", device=SERIAL, kind="safe") not in got  # not in the snapshot
    assert not any(name.endswith("_created") for name in names(got))  # no creation-time gauges


async def test_poll_durations_are_observed_once_per_poll_not_per_read_back() -> None:
    metrics = BridgeMetrics()
    device = Device()
    metrics.attach(device, "inverter")
    await device.poll(0.4)
    await device.poll(4.0)
    await device.emit()  # the read-back after a write: the same poll's duration again
    got = samples(metrics)
    assert got[key("givbridge_poll_duration_seconds_count", device=SERIAL)] == 2
    assert got[key("givbridge_poll_duration_seconds_sum", device=SERIAL)] == 4.4
    assert got[key("givbridge_poll_duration_seconds_bucket", device=SERIAL, le="0.5")] == 1
    assert got[key("givbridge_poll_duration_seconds_bucket", device=SERIAL, le="5.0")] == 2


async def test_command_results_keep_caller_text_out_of_the_labels() -> None:
    metrics = BridgeMetrics(commands=["setChargeTarget"])
    device = Device()
    metrics.attach(device, "inverter")
    await device.poll(0.1)
    unreachable = CommandFailed(ErrorCode.UNREACHABLE, "no answer")
    unknown = CommandFailed(ErrorCode.UNKNOWN_INVERTER, "no such inverter")
    await metrics.command_answered(CommandResult.success("setChargeTarget", None, SERIAL, {}))
    await metrics.command_answered(CommandResult.failure("setChargeTarget", None, SERIAL, unreachable))
    await metrics.command_answered(CommandResult.failure("setChargeTargt", None, "XX9999X999", unknown))
    got = samples(metrics)
    name = "givbridge_command_results_total"
    assert got[key(name, device=SERIAL, command="setChargeTarget", status="ok")] == 1
    assert got[key(name, device=SERIAL, command="setChargeTarget", status="unreachable")] == 1
    assert got[key(name, device="", command="", status="unknown_inverter")] == 1


async def test_queue_depth_is_asked_for_each_device() -> None:
    device = Device()
    metrics = BridgeMetrics(queue_depth=lambda asked: 3 if asked is device else 0)
    metrics.attach(device, "ev_charger")
    got = samples(metrics)
    assert got[key("givbridge_command_queue_depth", device="127.0.0.1:8899")] == 3
    assert got[key("givbridge_device_info", device="127.0.0.1:8899", kind="ev_charger", address="127.0.0.1:8899")] == 1


def test_two_applications_in_one_process_keep_their_own_metrics() -> None:
    first, second = BridgeMetrics(), BridgeMetrics()
    first.attach(Device(label="127.0.0.1:1"), "inverter")
    assert key("givbridge_device_info", device="127.0.0.1:1", kind="inverter", address="127.0.0.1:1") in samples(first)
    assert "givbridge_device_info" not in names(samples(second))


def test_the_settings_command_needs_a_token_to_open_metrics_beyond_loopback() -> None:
    current = Settings()
    assert widened_access(Settings(metrics={"enabled": True}), current) == []
    assert widened_access(Settings(metrics={"enabled": True, "host": "0.0.0.0"}), current) == ["metrics"]
    lan = Settings(metrics={"enabled": True, "host": "0.0.0.0"})
    assert widened_access(lan, lan) == []  # already open: nothing new
    # With the shim on, /metrics is on the shim's address.
    shim = Settings(http={"enabled": True, "host": "0.0.0.0"}, metrics={"enabled": True})
    assert widened_access(shim, Settings(http={"enabled": True, "host": "0.0.0.0"})) == ["metrics"]
