"""The immutable, typed result of one poll of one device.

A ``Snapshot`` is what every layer above ``plant/`` sees of an inverter: values keyed by
their GivTCP path (``Power/Power/SOC``, ``Energy/Today/PV_Energy_Today_kWh``,
``<serial>/Invertor_Time``, ``Battery_Details/Battery_Stack_1/<pack>/Battery_SOC``), so
the MQTT and HTTP layers can stay GivTCP-compatible without knowing any register.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from datetime import datetime, time
from types import MappingProxyType
from typing import Any

# A published value. ``time`` is a slot boundary (rendered HH:MM:SS), ``datetime`` is
# timezone-aware (rendered ISO-8601 with offset).
Scalar = int | float | str | bool | datetime | time | None


def as_number(value: object) -> float | None:
    """``value`` as a float if it is a number (a bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class Deferred(Mapping[str, Scalar]):
    """A read-only mapping built the first time it is read, then kept.

    A snapshot's ``raw`` section is one: few bridges read it (it is published only on request
    and served by the HTTP shim), and building it every poll was a sixth of a poll's work
    outside the library. What it is built from must not change afterwards (the library's
    decoded models are immutable).
    """

    __slots__ = ("_build", "_built")

    def __init__(self, build: Callable[[], Mapping[str, Scalar]]) -> None:
        self._build: Callable[[], Mapping[str, Scalar]] | None = build
        self._built: Mapping[str, Scalar] | None = None

    def _mapping(self) -> Mapping[str, Scalar]:
        if self._built is None:
            assert self._build is not None
            self._built = MappingProxyType(dict(self._build()))
            self._build = None  # what it was built from can go now
        return self._built

    def __getitem__(self, key: str) -> Scalar:
        return self._mapping()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __contains__(self, key: object) -> bool:
        return key in self._mapping()

    def keys(self) -> KeysView[str]:
        return self._mapping().keys()

    def items(self) -> ItemsView[str, Scalar]:
        return self._mapping().items()

    def values(self) -> ValuesView[Scalar]:
        return self._mapping().values()

    def __repr__(self) -> str:
        return f"Deferred({dict(self._mapping())!r})"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Identity of a polled device: what discovery and ``bridge/info`` describe."""

    serial: str
    model: str  # human model name, e.g. "Hybrid Gen3"
    family: str  # givbridge model family key, e.g. "hybrid-gen3"
    firmware: str | None = None
    battery_serials: tuple[str, ...] = ()
    meter_ids: tuple[int, ...] = ()
    # Serials of the inverters this device controls: the All-in-Ones a Gateway runs in
    # parallel, the inverters an EMS manages (see givbridge/plant/topology.py).
    managed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All values of one device at one poll, keyed by GivTCP path relative to ``<root>/<serial>/``."""

    info: DeviceInfo
    taken_at: datetime
    values: Mapping[str, Scalar] = field(default_factory=dict)
    # GivTCP's ``raw`` section: the library's decoded register fields, keyed
    # ``invertor/<field>`` and ``batteries/<battery-serial>/<field>``. Served by the REST
    # shim's readData (Predbat reads raw.invertor.*) and published only on request.
    raw: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze the mappings so no consumer can mutate a shared snapshot (a Deferred is read-only
        # already, and copying it would build it).
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        if not isinstance(self.raw, Deferred):
            object.__setattr__(self, "raw", MappingProxyType(dict(self.raw)))

    @property
    def serial(self) -> str:
        return self.info.serial

    def get(self, path: str, default: Scalar = None) -> Scalar:
        return self.values.get(path, default)

    def __getitem__(self, path: str) -> Scalar:
        return self.values[path]

    def __contains__(self, path: object) -> bool:
        return path in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def as_tree(self, *, include_raw: bool = False) -> dict[str, Any]:
        """Nest the flat paths into GivTCP's JSON shape (``{"Power": {"Power": {"SOC": 54}}}``)."""
        tree = nest(self.values)
        if include_raw:
            tree["raw"] = nest(self.raw)
        return tree


def nest(flat: Mapping[str, Scalar]) -> dict[str, Any]:
    """Turn ``{"a/b/c": 1}`` into ``{"a": {"b": {"c": 1}}}``."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree
