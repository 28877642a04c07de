"""What every benchmark shares: the report, the simulated plant, and the request log."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from givbridge.clock import Clock, SystemClock
from givbridge.sim import SimulatedPlant

#: The inverter's own time per request (the part that does not overlap): 60 registers over
#: its internal serial link.
SERVICE_TIME = 0.1
#: Dongle latencies of the two dongle families (peers.md: about 0.2 s on Gateway/AIO and
#: older dongles, givenergy-local #64; about 1.1 s on Gen3 dongles, givenergy-modbus #196).
LATENCIES = (0.2, 1.1)
#: GivTCP v3 publishes every leaf every poll. For this plant (hybrid Gen3 + 2 packs) the count
#: measured side by side in issue 19 is about 561, 316 of them under raw/; GivTCP's own
#: test_cache.json gives 512 (324 raw/) for a Gen1 hybrid with 2 packs (reference/givtcp.md).
GIVTCP_PER_POLL = 561
GIVTCP_RAW_PER_POLL = 316
GIVTCP_SOURCE = "issue 19 (GivTCP v3 side by side; its test_cache.json gives 512 for a Gen1 + 2 packs)"

RequestKey = tuple[str, int, int, int]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def gen3_plant(seed: int, clock: Clock | None = None) -> SimulatedPlant:
    """The benchmarked plant: a Gen3 hybrid with two battery packs."""
    return SimulatedPlant.create(
        "hybrid-gen3", batteries=2, clock=clock or SystemClock(), seed=seed, tz="Europe/London"
    )


class StampedRequests(Counter[RequestKey]):
    """A simulator's request counter that also logs when each request arrived.

    Put in place of ``SimulatorServer.requests``: the server counts with ``+= 1``, which
    lands in ``__setitem__``, so every arrival is logged (monotonic seconds, key) in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[float, RequestKey]] = []
        self.arrived = asyncio.Event()

    def __setitem__(self, key: RequestKey, value: int) -> None:
        self.log.append((time.monotonic(), key))
        super().__setitem__(key, value)
        self.arrived.set()


def is_read(key: RequestKey) -> bool:
    return key[0] != "W"


def bank_of(key: RequestKey) -> tuple[str, int, int]:
    """The 60-register bank a request falls in (a write's register, or a read's base)."""
    kind = "HR" if key[0] == "W" else key[0]
    return kind, key[1], key[2] // 60 * 60


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Row:
    section: str
    case: str
    figure: str
    limit: str
    source: str
    verdict: str
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    #: Figures for the graphs, by series name: [(x, y), ...].
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(
        self, section: str, case: str, figure: str, limit: str, source: str, ok: bool | None, note: str = ""
    ) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "**missed**")
        self.rows.append(Row(section, case, figure, limit, source, verdict, note))

    def point(self, series: str, x: float, y: float) -> None:
        self.series.setdefault(series, []).append((x, y))

    def table(self) -> str:
        head = (
            "| section | case | measured | limit | limit's source | verdict | note |\n|---|---|---|---|---|---|---|\n"
        )
        return head + "\n".join(
            f"| {r.section} | {r.case} | {r.figure} | {r.limit} | {r.source} | {r.verdict} | {r.note} |"
            for r in self.rows
        )


def ratio(measured: float, limit: float) -> str:
    return f"{measured / limit:.2f}" if limit > 0 else "-"
