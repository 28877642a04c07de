"""Draw the Grafana dashboard's panels from a real run: docs/metrics-dashboard.png.

    .venv/bin/pip install -e '.[docs]'              # matplotlib
    .venv/bin/python -m benchmarks.dashboard         # about 4 minutes
    .venv/bin/python -m benchmarks.dashboard --minutes 1 --out /tmp/dashboard.png

No Grafana here: this runs the real bridge (``Application``, metrics on their own listener, an
embedded MQTT broker) against two simulated inverters on 127.0.0.1 that answer after a
dongle's latency, with a fault script on the first (CRC errors, dropouts, two silences long
enough to go offline, a dropped connection, a clock jump) and a few CRC errors on the second,
and sends commands through the bridge's executor now and then (some invalid, some during a
silence). It scrapes ``/metrics`` over HTTP every few seconds, evaluates each panel's queries
from ``deploy/grafana/givbridge.json`` with :mod:`benchmarks.promql` (which refuses any query
form it does not implement) and draws them with matplotlib in the dashboard's layout.

``$device`` is "All" and ``$__rate_interval`` is ``--window`` seconds. ``--speed`` runs the
bridge's and the simulators' clock faster; the simulated dongle's latency stays real, so
poll durations (measured on that clock) then grow with the speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.promql import Labels, Scrape, evaluate, parse_exposition, substitute
from benchmarks.run import free_port
from givbridge.app import Application
from givbridge.clock import ScaledClock
from givbridge.config import Settings
from givbridge.log import configure_logging
from givbridge.mqtt.broker import EmbeddedBroker
from givbridge.sim import SimulatedPlant, SimulatorServer
from givbridge.sim.fault_script import FaultScript

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "givbridge.json"
OUTPUT = ROOT / "docs" / "metrics-dashboard.png"
#: Simulated dongles: seconds before each answer, and the inverter's own time per request.
LATENCY = 0.2
SERVICE_TIME = 0.1
#: The first inverter's faults, in seconds from the start of the run (see givbridge.sim.fault_script).
FAULTS = "crc=0.03,zero=0.01,silent=25@50/120,drop@100,clock-jump=95@140"
QUIET_FAULTS = "crc=0.01"
POLLING = {
    "poll_interval": 5,
    "settings_interval": 60,
    "timeout": 2.0,
    "retries": 1,
    "offline_after": 3,
    "backoff_min": 2,
    "backoff_max": 10,
}

# Grafana's dark theme, near enough.
BACKGROUND = "#111217"
PANEL = "#181b1f"
TEXT = "#ccccdc"
GRID = "#2c3235"
PALETTE = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a", "#c8f2c2")
UNITS = {"s": "seconds", "reqps": "per second", "ops": "per second", "short": ""}


@dataclass
class Run:
    """Scrapes of one run: their times on the run's clock (seconds from its start) and samples."""

    started: datetime
    times: list[float] = field(default_factory=list)
    scrapes: list[Scrape] = field(default_factory=list)


async def get(port: int, path: str) -> str:
    """One HTTP GET to 127.0.0.1:``port``, the body as text (the run's own scraper: no client library)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise RuntimeError(f"GET {path}: {status.decode(errors='replace')}")
    return body.decode()


async def commands(app: Application, clock: ScaledClock, serial: str) -> None:
    """A command every 15 s: charge targets, one in four invalid; those during a silence go unanswered."""
    for number in itertools.count():
        await clock.sleep(15)
        payload = {"chargeToPercent": 150} if number % 4 == 3 else {"chargeToPercent": 80 + number % 10}
        await app.commands.execute("setChargeTarget", payload, serial=serial)


async def record(minutes: float, speed: float, scrape_every: float) -> Run:
    clock = ScaledClock(speed=speed)
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(broker.stop)
        servers = []
        # Serials are configured, as most users do, so each device is labelled by its serial from the start.
        for seed, family in enumerate(("hybrid-gen3", "ac")):
            sim = SimulatedPlant.create(family, batteries=1, clock=clock, seed=seed, start_soc=40)
            servers.append(
                await stack.enter_async_context(SimulatorServer(sim, latency=LATENCY, service_time=SERVICE_TIME))
            )
        data = stack.enter_context(tempfile.TemporaryDirectory())
        settings = Settings(
            inverters=[{"host": "127.0.0.1", "port": server.port, "serial": server.plant.serial} for server in servers],
            mqtt={"host": "127.0.0.1", "port": broker.port, "client_id": "givbridge-dashboard"},
            metrics={"enabled": True, "port": 0},
            polling=POLLING,
            data_dir=Path(data),
        )
        app = Application(settings, clock=clock)
        await app.start()
        stack.push_async_callback(app.stop)
        assert app.http is not None and app.http.port is not None
        run = Run(started=clock.now())
        tasks = [
            asyncio.create_task(FaultScript.parse(FAULTS).run(servers[0].faults, clock)),
            asyncio.create_task(FaultScript.parse(QUIET_FAULTS).run(servers[1].faults, clock)),
            asyncio.create_task(commands(app, clock, servers[0].plant.serial)),
        ]
        try:
            end = clock.monotonic() + minutes * 60
            while (now := clock.monotonic()) < end:
                run.times.append(now)
                run.scrapes.append(parse_exposition(await get(app.http.port, "/metrics")))
                await clock.sleep(scrape_every)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return run


def legend(template: str, labels: dict[str, str]) -> str:
    """A Grafana legend format (``{{device}} {{kind}}``) filled in."""
    text = template
    for key, value in labels.items():
        text = text.replace(f"{{{{{key}}}}}", value)
    return text


def series(panel: dict[str, Any], run: Run, window: float) -> list[tuple[str, list[float], list[float]]]:
    """Each line of ``panel``: its legend, times and values (NaN where the query had no value)."""
    variables = {"device": ".*", "__rate_interval": f"{window:.0f}s"}
    lines: list[tuple[str, list[float], list[float]]] = []
    for target in panel["targets"]:
        expr = substitute(target["expr"], variables)
        by_labels: dict[Labels, list[float]] = {}
        for at in range(len(run.times)):
            for labels, value in evaluate(expr, run.times, run.scrapes, at).items():
                by_labels.setdefault(labels, [math.nan] * len(run.times))[at] = value
        for labels, values in sorted(by_labels.items(), key=lambda item: sorted(item[0])):
            lines.append((legend(target.get("legendFormat", ""), dict(labels)), run.times, values))
    return lines


def draw(dashboard: dict[str, Any], run: Run, window: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_height = 0.42  # inches per Grafana grid row
    figure = plt.figure(figsize=(16, rows * unit_height + 0.5), facecolor=BACKGROUND)
    top = 1 - 0.5 / (rows * unit_height + 0.5)
    figure.text(
        0.01,
        1 - 0.25 / (rows * unit_height + 0.5),
        f"{dashboard['title']}  ·  device: All  ·  rendered by benchmarks/dashboard.py from the dashboard's own "
        f"queries over a {run.times[-1] / 60:.0f}-minute run against the simulator (not by Grafana)",
        color=TEXT,
        fontsize=11,
        va="center",
    )
    start = run.started

    def clock_time(seconds: float, _: object = None) -> str:
        return datetime.fromtimestamp(start.timestamp() + seconds).strftime("%H:%M:%S")

    for panel in panels:
        grid = panel["gridPos"]
        # The panel's box in figure fractions, then the plot inside it, leaving room for the
        # title above and the tick labels and legend below.
        box_left, box_width = grid["x"] / 24 + 0.003, grid["w"] / 24 - 0.006
        box_height = grid["h"] / rows * top - 0.008
        box_bottom = top - (grid["y"] + grid["h"]) / rows * top + 0.004
        row_inch = 1 / (rows * unit_height + 0.5)  # one inch, as a fraction of the figure's height
        frame = figure.add_axes((box_left, box_bottom, box_width, box_height), facecolor=PANEL)
        left, width = box_left + 0.5 / 16, box_width - 0.65 / 16
        bottom, height = box_bottom + 0.62 * row_inch, box_height - 0.95 * row_inch
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(GRID)
        frame.text(
            0.01, 0.97, panel["title"], color=TEXT, fontsize=10, fontweight="bold", va="top", transform=frame.transAxes
        )
        axes = figure.add_axes((left, bottom, width, height), facecolor=PANEL)
        axes.tick_params(colors=TEXT, labelsize=8)
        for spine in axes.spines.values():
            spine.set_visible(False)
        axes.grid(color=GRID, linewidth=0.6)
        axes.xaxis.set_major_locator(MaxNLocator(nbins=max(3, grid["w"] // 3), steps=[1, 2, 3, 6, 10]))
        axes.xaxis.set_major_formatter(FuncFormatter(clock_time))
        lines = series(panel, run, window)
        if not any(any(not math.isnan(v) for v in values) for _, _, values in lines):
            axes.text(0.5, 0.5, "No data", color=TEXT, fontsize=12, ha="center", va="center", transform=axes.transAxes)
            axes.set_yticks([])
            axes.set_xlim(run.times[0], run.times[-1])
            continue
        defaults = panel["fieldConfig"]["defaults"]
        for (name, times, values), colour in zip(lines, itertools.cycle(PALETTE), strict=False):
            step = "post" if defaults.get("decimals") == 0 else None
            if step:
                axes.step(times, values, where="post", label=name, color=colour, linewidth=1.6)
            else:
                axes.plot(times, values, label=name, color=colour, linewidth=1.6)
        axes.set_xlim(run.times[0], run.times[-1])
        if "min" in defaults:
            axes.set_ylim(bottom=defaults["min"])
        if "max" in defaults:
            axes.set_ylim(top=defaults["max"] * 1.05)
        unit = UNITS.get(defaults.get("unit", ""), defaults.get("unit", ""))
        if unit:
            axes.set_ylabel(unit, color=TEXT, fontsize=8)
        columns = max(2, grid["w"] // 3)  # as many as fit the panel's width
        legend_box = axes.legend(loc="upper left", bbox_to_anchor=(0, -0.1), ncol=columns, fontsize=7.5, frameon=False)
        for text in legend_box.get_texts():
            text.set_color(TEXT)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90, facecolor=BACKGROUND)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the run on its clock")
    parser.add_argument("--speed", type=float, default=1.0, help="how much faster than real time the run's clock goes")
    parser.add_argument("--scrape-every", type=float, default=5.0, help="seconds between scrapes (run's clock)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of $__rate_interval")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    dashboard = json.loads(DASHBOARD.read_text())
    configure_logging("error", "console")  # the faults are the point: their warnings are not news
    run = asyncio.run(record(args.minutes, args.speed, args.scrape_every))
    draw(dashboard, run, args.window, args.out)
    print(f"{len(run.scrapes)} scrapes; wrote {args.out}")


if __name__ == "__main__":
    main()
