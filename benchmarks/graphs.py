"""The benchmark graphs: time against dongle latency, cost against the number of inverters."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import Report

LATENCY_PANELS = (
    ("Poll wall time", ("fast poll", "full poll")),
    ("Command, publish to confirmed ok (p95)", ("set", "command limit")),
)
COST_PANELS = (
    ("CPU per poll (ms)", ("CPU per poll",)),
    ("Peak RSS (MB)", ("RSS",)),
    ("MQTT per poll of one inverter", ("MQTT",)),
)


def draw(report: Report, directory: Path) -> list[Path]:
    """Write the graphs next to the doc; none without matplotlib (the ``docs`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written: list[Path] = []
    for name, panels, xlabel in (
        ("benchmarks-latency.png", LATENCY_PANELS, "dongle latency (s)"),
        ("benchmarks-cost.png", COST_PANELS, "inverters"),
    ):
        figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5))
        drawn = False
        for axis, (title, prefixes) in zip(axes, panels, strict=True):
            for series, points in sorted(report.series.items()):
                if not series.startswith(prefixes) or not points:
                    continue
                xs, ys = zip(*sorted(points), strict=True)
                style = "--" if "floor" in series or "limit" in series or "library" in series else "-"
                axis.plot(xs, ys, style, marker="o", label=series)
                drawn = True
            axis.set_title(title)
            axis.set_xlabel(xlabel)
            axis.set_ylabel("s" if xlabel.startswith("dongle") else "")
            axis.grid(True, alpha=0.3)
            axis.set_ylim(bottom=0)
            if axis.lines:
                axis.legend(fontsize=7)
        figure.tight_layout()
        if drawn:
            path = directory / name
            figure.savefig(path, dpi=90)
            written.append(path)
        plt.close(figure)
    return written
