"""The Grafana dashboard's queries against the metrics givbridge exposes, and the PromQL subset that draws them.

Every query in ``deploy/grafana/givbridge.json`` must be a form :mod:`benchmarks.promql`
evaluates (so its picture in the docs is the query's own) and must find series in what
:class:`~givbridge.metrics.BridgeMetrics` exposes (so no panel asks for a metric that is not there).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.promql import Scrape, UnsupportedQuery, evaluate, parse_exposition, substitute
from givbridge.commands.results import CommandResult
from givbridge.metrics import BridgeMetrics
from tests.unit.test_metrics import SERIAL, Device

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "givbridge.json"
VARIABLES = {"device": ".*", "__rate_interval": "60s"}


def scrape(metrics: BridgeMetrics) -> Scrape:
    return parse_exposition(metrics.exposition().decode())


def queries() -> list[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def labels(**given: str) -> frozenset[tuple[str, str]]:
    return frozenset(given.items())


async def test_every_dashboard_query_finds_series_in_what_givbridge_exposes() -> None:
    device = Device()
    metrics = BridgeMetrics(commands=["setChargeTarget"], queue_depth=lambda _: 1)
    metrics.attach(device, "inverter")
    stats = {"CRC_Errors": 1, "Read_Retries": 1, "Dropout_Banks_Rejected": 1, "Write_Count": 1, "Safe_Write_Count": 0}
    answered = CommandResult.success("setChargeTarget", None, SERIAL, {})
    await device.poll(0.7, Clock_Skew=3.0, **stats)
    await metrics.command_answered(answered)
    first = scrape(metrics)  # a rate needs two scrapes of a series
    await device.poll(1.4, Clock_Skew=4.0, **{**stats, "CRC_Errors": 2})
    await metrics.command_answered(answered)
    device.health.reconnects = 2
    times, scrapes = [0.0, 30.0], [first, scrape(metrics)]
    for title, expr in queries():
        found = evaluate(substitute(expr, VARIABLES), times, scrapes, 1)
        assert found, f"{title}: {expr} finds nothing"
        assert all(math.isfinite(value) for value in found.values()), (title, found)


def test_rate_follows_counter_resets() -> None:
    series = [0.0, 10.0, 20.0, 30.0]
    values = [5.0, 8.0, 2.0, 4.0]  # restarted between 10 s and 20 s
    scrapes = [{labels(__name__="x_total", device="a"): v} for v in values]
    assert evaluate('rate(x_total{device="a"}[60s])', series, scrapes, 3) == {labels(device="a"): (3 + 2 + 2) / 30}
    # Only the scrapes inside the window count.
    assert evaluate("rate(x_total[15s])", series, scrapes, 3) == {labels(device="a"): 2 / 10}


def test_histogram_quantile_interpolates_within_a_bucket_as_prometheus_does() -> None:
    def buckets(counts: dict[str, float]) -> Scrape:
        return {labels(__name__="d_bucket", device="a", le=le): count for le, count in counts.items()}

    scrapes = [buckets({"1.0": 0, "2.0": 0, "+Inf": 0}), buckets({"1.0": 2, "2.0": 6, "+Inf": 8})]
    expr = "histogram_quantile({q}, sum by (le, device) (rate(d_bucket[60s])))"
    # 8 observations: the median (rank 4) is half-way into the 1-2 s bucket (2 below it, 4 in it).
    assert evaluate(expr.format(q=0.5), [0, 10], scrapes, 1) == {labels(device="a"): 1.5}
    # Beyond the last finite bucket: that bucket's bound.
    assert evaluate(expr.format(q=0.95), [0, 10], scrapes, 1) == {labels(device="a"): 2.0}


@pytest.mark.parametrize(
    "expr",
    [
        "irate(x_total[60s])",
        "sum(rate(x_total[60s]))",
        'x_total{device!="a"}',
        "histogram_quantile(0.5, rate(d_bucket[60s]))",
        "rate(x_total[60s]) * 60",
    ],
)
def test_a_form_it_does_not_evaluate_is_refused(expr: str) -> None:
    with pytest.raises(UnsupportedQuery):
        evaluate(expr, [0.0], [{}], 0)
