"""The few PromQL forms givbridge's Grafana dashboard uses, evaluated over scrapes kept in memory.

Only what ``deploy/grafana/givbridge.json`` needs, so the dashboard's own queries can be drawn
from a real run without a Prometheus or Grafana server (:mod:`benchmarks.dashboard`):

* ``metric{matchers}``: an instant vector (``=`` and ``=~`` matchers);
* ``rate(metric{matchers}[window])``: per-second increase over the window, counter resets
  taken into account (without Prometheus's extrapolation to the window's edges);
* ``sum by (labels) (<rate>)``;
* ``histogram_quantile(q, sum by (le, ...) (rate(metric_bucket{...}[window])))``, interpolated
  inside the bucket as Prometheus does.

Anything else is refused with :class:`UnsupportedQuery`, so a dashboard query this cannot
evaluate is never drawn wrongly. Dashboard variables are substituted first (``$device`` with
its "All" value, ``$__rate_interval`` with the window the run chooses).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
#: One scrape: every sample by its labels (``__name__`` included) -> value.
Scrape = Mapping[Labels, float]
Vector = dict[Labels, float]

_SELECTOR = re.compile(r"(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<matchers>[^}]*)\})?")
_MATCHER = re.compile(r'\s*(?P<label>\w+)\s*(?P<op>=~|=)\s*"(?P<value>[^"]*)"\s*')
_RATE = re.compile(rf"rate\((?P<selector>{_SELECTOR.pattern})\[(?P<window>\d+)(?P<unit>[smh])\]\)")
_SUM = re.compile(r"sum by \((?P<labels>[\w, ]+)\) \((?P<inner>.+)\)")
_QUANTILE = re.compile(r"histogram_quantile\((?P<q>[0-9.]+), (?P<inner>.+)\)")
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_exposition(text: str) -> Scrape:
    """A scrape's samples (Prometheus's text format, read by prometheus_client's own parser)."""
    return {
        frozenset({**sample.labels, "__name__": sample.name}.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample_key(name: str, **labels: str) -> Labels:
    """The key of sample ``name`` with ``labels`` in a :data:`Scrape`."""
    return frozenset({**labels, "__name__": name}.items())


class UnsupportedQuery(ValueError):
    """A query outside the forms this module evaluates."""


@dataclass(frozen=True, slots=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)

    def matches(self, labels: Labels) -> bool:
        found = dict(labels)
        if found.get("__name__") != self.name:
            return False
        for label, op, value in self.matchers:
            given = found.get(label, "")
            if op == "=" and given != value:
                return False
            if op == "=~" and not re.fullmatch(value, given):
                return False
        return True


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """``expr`` with each ``$name`` replaced (longest names first, so ``$__rate_interval`` is whole)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${name}", variables[name])
    return expr


def _selector(text: str) -> Selector:
    match = _SELECTOR.fullmatch(text.strip())
    if match is None:
        raise UnsupportedQuery(f"not a selector: {text!r}")
    matchers: list[tuple[str, str, str]] = []
    for part in filter(str.strip, (match["matchers"] or "").split(",")):
        found = _MATCHER.fullmatch(part)
        if found is None:
            raise UnsupportedQuery(f"unsupported matcher {part!r} (only = and =~ with a quoted value)")
        matchers.append((found["label"], found["op"], found["value"]))
    return Selector(match["name"], tuple(matchers))


def _without(labels: Labels, *names: str) -> Labels:
    return frozenset((k, v) for k, v in labels if k not in names)


def _instant(selector: Selector, scrape: Scrape) -> Vector:
    return {labels: value for labels, value in scrape.items() if selector.matches(labels)}


def _rate(selector: Selector, window: float, times: Sequence[float], scrapes: Sequence[Scrape], at: int) -> Vector:
    """Per-second increase of each matching series over the scrapes within ``window`` before ``times[at]``."""
    start = times[at] - window
    points: dict[Labels, list[tuple[float, float]]] = {}
    for index in range(at + 1):
        if times[index] < start:
            continue
        for labels, value in _instant(selector, scrapes[index]).items():
            points.setdefault(_without(labels, "__name__"), []).append((times[index], value))
    result: Vector = {}
    for labels, series in points.items():
        if len(series) < 2:
            continue
        increase = 0.0
        for (_, before), (_, after) in itertools.pairwise(series):
            increase += after - before if after >= before else after  # a counter reset starts again from 0
        result[labels] = increase / (series[-1][0] - series[0][0])
    return result


def _quantile(q: float, buckets: Vector) -> Vector:
    """Prometheus's histogram_quantile over cumulative ``le`` buckets, per group of the other labels."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for labels, count in buckets.items():
        le = dict(labels).get("le")
        if le is None:
            raise UnsupportedQuery("histogram_quantile needs the le label kept by its sum")
        groups.setdefault(_without(labels, "le"), []).append((float(le), count))
    result: Vector = {}
    for labels, bounds in groups.items():
        bounds.sort()
        total = bounds[-1][1]
        if not math.isinf(bounds[-1][0]) or total <= 0:
            continue  # no +Inf bucket or no observations in the window: no value, as in Prometheus
        rank = q * total
        lower, below = 0.0, 0.0
        for upper, cumulative in bounds:
            if cumulative >= rank:
                if math.isinf(upper):
                    result[labels] = lower  # beyond the last finite bucket: its bound
                elif cumulative == below:
                    result[labels] = upper
                else:
                    result[labels] = lower + (upper - lower) * (rank - below) / (cumulative - below)
                break
            lower, below = upper, cumulative
    return result


def evaluate(expr: str, times: Sequence[float], scrapes: Sequence[Scrape], at: int) -> Vector:
    """``expr`` (one of the module's forms) at the time of scrape ``at``; labels without ``__name__``
    wherever Prometheus drops it."""
    expr = expr.strip()
    if match := _QUANTILE.fullmatch(expr):
        inner = match["inner"]
        summed = _SUM.fullmatch(inner)
        if summed is None or "le" not in {label.strip() for label in summed["labels"].split(",")}:
            raise UnsupportedQuery(f"histogram_quantile over anything but a sum by (le, ...): {expr!r}")
        return _quantile(float(match["q"]), evaluate(inner, times, scrapes, at))
    if match := _SUM.fullmatch(expr):
        if not _RATE.fullmatch(match["inner"].strip()):
            raise UnsupportedQuery(f"sum over anything but a rate: {expr!r}")
        keep = {label.strip() for label in match["labels"].split(",")}
        sums: Vector = {}
        for labels, value in evaluate(match["inner"], times, scrapes, at).items():
            group = frozenset((k, v) for k, v in labels if k in keep)
            sums[group] = sums.get(group, 0.0) + value
        return sums
    if match := _RATE.fullmatch(expr):
        window = int(match["window"]) * _UNITS[match["unit"]]
        return _rate(_selector(match["selector"]), window, times, scrapes, at)
    if _SELECTOR.fullmatch(expr):
        return _instant(_selector(expr), scrapes[at])
    raise UnsupportedQuery(f"not one of the dashboard's forms: {expr!r}")
