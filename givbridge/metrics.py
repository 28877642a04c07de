"""Prometheus metrics (``metrics.enabled``): what the bridge's devices and commands are doing, as numbers.

Served at ``GET /metrics`` in Prometheus's text format, by the HTTP shim's main port when
``http.enabled``, else by a listener of its own on ``metrics.host``:``metrics.port``
(:mod:`givbridge.http.server`). Everything lives in a registry of this object's own, never
prometheus_client's global one, so several applications (or tests) in one process do not clash.

Nearly everything is read when scraped, from what the bridge keeps anyway, so polling pays
nothing for it:

* each device's :class:`~givbridge.runtime.health.Health` (polls by outcome, reconnects, availability,
  connection, last success);
* the ``Stats/...`` values of its latest snapshot (the library's CRC failures, retries and
  refused dropouts, hygiene rejections, write counters, clock skew), the same numbers the
  bridge publishes on MQTT;
* a queue-depth function, when the application gives one.

Two things are observed as they happen: each successful poll's duration (a histogram, fed by
the device's ``on_snapshot`` signal: a snapshot that follows a new successful poll, not a
read-back) and each command answer (:meth:`BridgeMetrics.command_answered`, connected to the
executor's one answer point), counted by device, command and status.

Devices are labelled ``device``: the serial once known, the configured address until then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from givbridge import __version__
from givbridge.plant.snapshot import Scalar, Snapshot

if TYPE_CHECKING:
    from givbridge.commands.results import CommandResult

#: What the exposition is served as (text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Seconds; from a simulator's few milliseconds to a slow dongle's full poll of every bank.
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)

Kind = Literal["inverter", "ev_charger"]

#: Lifetime counters the runners put in every snapshot: ``Stats`` leaf -> metric name and help.
SNAPSHOT_COUNTERS: Mapping[str, tuple[str, str]] = {
    "Read_Retries": ("givbridge_read_retries", "Requests the library sent again after no or a bad answer"),
    "CRC_Errors": ("givbridge_crc_errors", "Answers the library dropped for a bad CRC"),
    "Dropout_Banks_Rejected": (
        "givbridge_dropout_banks_rejected",
        "Register banks the library refused as dongle dropouts (zeros or half-filled)",
    ),
    "Battery_Splices_Rejected": (
        "givbridge_battery_splices_rejected",
        "Battery banks the library refused as spliced from two reads",
    ),
    "Rejected_Values": ("givbridge_rejected_values", "Readings the bridge's hygiene rules kept from being published"),
    "Rejected_Samples": ("givbridge_rejected_samples", "Whole polls the bridge's hygiene rules rejected"),
}
#: ``Stats`` leaf of each kind of register write (GivTCP's Write_Count and Safe_Write_Count).
WRITE_COUNTERS: Mapping[str, str] = {"Write_Count": "eeprom", "Safe_Write_Count": "safe"}


class DeviceHealth(Protocol):
    """What is read of a device's health (a :class:`~givbridge.runtime.health.Health`)."""

    @property
    def connected(self) -> bool: ...
    @property
    def available(self) -> bool: ...
    @property
    def polls_ok(self) -> int: ...
    @property
    def polls_partial(self) -> int: ...
    @property
    def polls_failed(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def last_success(self) -> datetime | None: ...
    @property
    def last_poll_seconds(self) -> float | None: ...


class SnapshotSignal(Protocol):
    def connect(self, listener: Callable[[Snapshot], Awaitable[None]]) -> None: ...


class Device(Protocol):
    """A device runner as metrics see it: the inverters' and the EV charger's both are one."""

    @property
    def serial(self) -> str | None: ...
    @property
    def label(self) -> str: ...
    @property
    def health(self) -> DeviceHealth: ...
    @property
    def snapshot(self) -> Snapshot | None: ...
    @property
    def on_snapshot(self) -> SnapshotSignal: ...


QueueDepth = Callable[[Device], int]


def device_label(device: Device) -> str:
    """The ``device`` label: the serial once known, else the configured address."""
    return device.serial or device.label


class BridgeMetrics:
    """The bridge's metrics: a private registry, the two observed metrics and the scrape-time collector."""

    def __init__(self, *, commands: Collection[str] = (), queue_depth: QueueDepth | None = None) -> None:
        # The text format has no place for a series' creation time, so the library would add a
        # ``_created`` gauge beside every counter and histogram: noise on every dashboard. (A
        # switch for the whole process; nothing in givbridge wants those series.)
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.registry = CollectorRegistry(auto_describe=False)
        self._commands = frozenset(commands)  # names a command label may take; anything else is ""
        self.devices: list[tuple[Device, Kind]] = []
        self.poll_duration = Histogram(
            "givbridge_poll_duration_seconds",
            "Wall time of each successful poll of a device",
            ["device"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.command_results = Counter(
            "givbridge_command_results",
            "Commands answered, by device, command and status (ok or the error code)",
            ["device", "command", "status"],
            registry=self.registry,
        )
        self.registry.register(_DeviceCollector(self.devices, queue_depth))

    def attach(self, device: Device, kind: Kind) -> None:
        """Report ``device``; its poll durations are observed from now on."""
        self.devices.append((device, kind))
        seen = _successful_polls(device.health)

        async def observe(snapshot: Snapshot) -> None:
            nonlocal seen
            polls = _successful_polls(device.health)
            duration = device.health.last_poll_seconds
            if polls != seen and duration is not None:  # a new poll, not the read-back after a write
                self.poll_duration.labels(device=snapshot.serial).observe(duration)
            seen = polls

        device.on_snapshot.connect(observe)

    async def command_answered(self, result: CommandResult) -> None:
        """Count one command's answer (connected to the executor's answers)."""
        known = {device.serial for device, _ in self.devices}
        self.command_results.labels(
            # Both come from the caller until the command is found: a typo must not make a series.
            device=result.serial if result.serial in known else "",
            command=result.command if result.command in self._commands else "",
            status="ok" if result.ok else str(result.code),
        ).inc()

    def exposition(self) -> bytes:
        """Every metric, in Prometheus's text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


def _successful_polls(health: DeviceHealth) -> int:
    return health.polls_ok + health.polls_partial


class _DeviceCollector(Collector):
    """The scrape-time metrics: read from each device's health and latest snapshot when asked."""

    def __init__(self, devices: list[tuple[Device, Kind]], queue_depth: QueueDepth | None) -> None:
        self.devices = devices
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        yield from _build_info()
        info = GaugeMetricFamily(
            "givbridge_device_info", "A device the bridge runs (always 1)", labels=["device", "kind", "address"]
        )
        polls = CounterMetricFamily(
            "givbridge_polls", "Polls of a device by outcome (ok, partial, failed)", labels=["device", "outcome"]
        )
        reconnects = CounterMetricFamily(
            "givbridge_reconnects", "Connection attempts to a device after the first", labels=["device"]
        )
        available = GaugeMetricFamily(
            "givbridge_device_available", "1 while the device is announced online, else 0", labels=["device"]
        )
        connected = GaugeMetricFamily(
            "givbridge_device_connected", "1 while the bridge holds a connection to the device", labels=["device"]
        )
        last_success = GaugeMetricFamily(
            "givbridge_last_success_timestamp_seconds",
            "Unix time of the device's last successful poll",
            labels=["device"],
        )
        counters = {
            leaf: CounterMetricFamily(name, documentation, labels=["device"])
            for leaf, (name, documentation) in SNAPSHOT_COUNTERS.items()
        }
        writes = CounterMetricFamily(
            "givbridge_register_writes",
            "Register writes over the device's lifetime (kept in the data directory), as GivTCP counts them: "
            "eeprom (Write_Count) or safe (Safe_Write_Count, registers that do not wear the EEPROM)",
            labels=["device", "kind"],
        )
        skew = GaugeMetricFamily(
            "givbridge_clock_skew_seconds",
            "Seconds the inverter's clock is ahead of the bridge's (negative: behind), at the last poll",
            labels=["device"],
        )
        queue = GaugeMetricFamily("givbridge_command_queue_depth", "Commands waiting for the device", labels=["device"])
        for device, kind in self.devices:
            label = device_label(device)
            health = device.health
            info.add_metric([label, kind, device.label], 1)
            polls.add_metric([label, "ok"], health.polls_ok)
            polls.add_metric([label, "partial"], health.polls_partial)
            polls.add_metric([label, "failed"], health.polls_failed)
            reconnects.add_metric([label], max(0, health.reconnects - 1))
            available.add_metric([label], int(health.available))
            connected.add_metric([label], int(health.connected))
            if health.last_success is not None:
                last_success.add_metric([label], health.last_success.timestamp())
            if self.queue_depth is not None:
                queue.add_metric([label], self.queue_depth(device))
            values: Mapping[str, Scalar] = device.snapshot.values if device.snapshot is not None else {}
            for leaf, family in counters.items():
                if (value := _number(values.get(f"Stats/{leaf}"))) is not None:
                    family.add_metric([label], value)
            for leaf, write_kind in WRITE_COUNTERS.items():
                if (value := _number(values.get(f"Stats/{leaf}"))) is not None:
                    writes.add_metric([label, write_kind], value)
            if (value := _number(values.get("Stats/Clock_Skew"))) is not None:
                skew.add_metric([label], value)
        yield from (info, polls, reconnects, available, connected, last_success, *counters.values(), writes, skew)
        if self.queue_depth is not None:
            yield queue


def _build_info() -> Iterable[Metric]:
    build = GaugeMetricFamily("givbridge_build_info", "The running givbridge (always 1)", labels=["version"])
    build.add_metric([__version__], 1)
    return (build,)


def _number(value: Scalar | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
