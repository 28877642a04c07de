"""Electricity tariffs: what today's imports cost, what exports earned, what the battery holds.

With a ``tariffs:`` section configured, every inverter gets a :class:`TariffTracker` that
follows its lifetime import, export and AC-charge counters (as the hygiene layer cleaned
them, so they never go back or jump) and publishes GivTCP's ``Energy/Rates/*`` values plus a
few GivTCP lacked, all in the configured currency:

- ``Day_Rate``, ``Night_Rate``, ``Export_Rate``: the configured prices per kWh;
- ``Current_Rate``, ``Current_Rate_Type``: the import price now, and ``Day`` or ``Night``;
- ``Day_Energy_kWh``, ``Night_Energy_kWh``: kWh imported today at each rate;
- ``Day_Cost``, ``Night_Cost``, ``Import_Cost_Today``: what they cost;
- ``Import_ppkwh_Today``: the average price of today's imports (the current rate until
  something has been imported);
- ``Export_Income_Today``, ``Export_ppkwh_Today``: what today's exports earned, per kWh;
- ``Battery_Value``, ``Battery_ppkwh``: what the stored energy cost, and per kWh.

Which rate applies: with ``dynamic: false`` the night rate runs from ``night_start`` to
``day_start`` by this host's clock in the configured time zone (DST included), the day rate
the rest of the day; with one rate only, always the day rate. With ``dynamic: true`` the rate
is whatever the ``switchRate`` command last set (day until the first switch), and survives
restarts.

Energy is attributed to the rate in force when it is counted: each snapshot adds the growth
of the counters since the previous one. "Today" is the inverter's day, like its own today
counters: the figures reset when the inverter's clock passes midnight. Growth over a gap of
more than :data:`MAX_GAP` between two readings (by our clock: the bridge or the inverter was
down) is not charged at all, rather than at whatever rate happens to apply when it ends.

The battery's value is an average cost: energy stored from the grid (the growth of the AC
charge counter) is added at the current import rate, solar charge adds energy at no cost,
and discharging keeps the price per kWh, so the value falls with the stored energy. On
AC-coupled sites with other solar on the AC side, that solar counts as grid charge (the
inverter cannot tell them apart), as in GivTCP.

Everything is kept in ``tariff-<serial>`` in the data directory: a restart keeps today's
figures and the battery's value, and the first reading after it charges the energy counted
while the bridge was down (if that was less than :data:`MAX_GAP`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal

from givbridge.clock import Clock
from givbridge.config import TariffSettings
from givbridge.log import get_logger
from givbridge.plant.snapshot import Scalar, Snapshot, as_number
from givbridge.store import JsonStore, ThrottledSave

log = get_logger(__name__)

RateType = Literal["Day", "Night"]
DAY: RateType = "Day"
NIGHT: RateType = "Night"
GROUP = "Energy/Rates"

#: Readings further apart than this are not charged: the rate in between is unknown.
MAX_GAP = timedelta(hours=1)
#: How often the accumulators are written to disk at most (always on a new day or a switch).
SAVE_INTERVAL = 60.0
_IMPORT_TOTAL = "Energy/Total/Import_Energy_Total_kWh"
_EXPORT_TOTAL = "Energy/Total/Export_Energy_Total_kWh"
_AC_CHARGE_TOTAL = "Energy/Total/AC_Charge_Energy_Total_kWh"
_STORED = "Power/Power/SOC_kWh"
_EMPTY_KWH = 0.01  # below this the battery holds nothing worth pricing


# --------------------------------------------------------------------------- pure rules


def rate_type_at(local: time, settings: TariffSettings) -> RateType:
    """The rate the clock says applies at local wall time ``local``."""
    day, night = settings.day_start, settings.night_start
    if settings.import_night_rate is None or day is None or night is None:
        return DAY
    if night < day:  # e.g. night 00:30-04:30
        return NIGHT if night <= local < day else DAY
    return DAY if day <= local < night else NIGHT  # e.g. night 23:30-05:30, across midnight


def import_rate(settings: TariffSettings, rate: RateType) -> float:
    """The import price of ``rate`` (the day price when there is no night price)."""
    if rate == NIGHT and settings.import_night_rate is not None:
        return settings.import_night_rate
    return settings.import_day_rate


@dataclass(frozen=True, slots=True)
class Reading:
    """What one snapshot tells the tariff tracker."""

    local: datetime  # the inverter's local time: its midnight starts a new day
    taken_at: datetime  # our clock: how long since the previous reading
    import_total: float | None
    export_total: float | None
    ac_charge_total: float | None
    stored_kwh: float | None


@dataclass(frozen=True, slots=True)
class TariffState:
    """The accumulators of one inverter; what is persisted."""

    day: date | None = None  # the inverter's day the today figures belong to
    at: datetime | None = None  # when the last reading was taken (our clock)
    switched: RateType | None = None  # set by switchRate (dynamic tariffs)
    import_total: float | None = None  # the lifetime counters at the last reading
    export_total: float | None = None
    ac_charge_total: float | None = None
    stored_kwh: float | None = None
    day_energy: float = 0.0
    night_energy: float = 0.0
    day_cost: float = 0.0
    night_cost: float = 0.0
    export_energy: float = 0.0
    export_income: float = 0.0
    battery_value: float = 0.0

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["day"] = self.day.isoformat() if self.day else None
        document["at"] = self.at.isoformat() if self.at else None
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> TariffState:
        """The state in ``document``; a damaged document costs only what cannot be read."""
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            raw = document.get(name, default)
            try:
                if name == "day":
                    values[name] = date.fromisoformat(raw) if isinstance(raw, str) else None
                elif name == "at":
                    moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
                    values[name] = moment if moment is not None and moment.tzinfo is not None else None
                elif name == "switched":
                    values[name] = raw if raw in (DAY, NIGHT) else None
                elif raw is None:
                    values[name] = default
                elif isinstance(raw, int | float) and not isinstance(raw, bool):
                    values[name] = float(raw)
            except ValueError:
                continue
        return cls(**values)


def advance(state: TariffState, reading: Reading, rate: RateType, settings: TariffSettings) -> TariffState:
    """The state after ``reading``, its growth charged at ``rate``."""
    today = reading.local.date()
    if state.day is None or today > state.day:  # the inverter's midnight (a clock set back keeps the day)
        state = replace(
            state,
            day=today,
            day_energy=0.0,
            night_energy=0.0,
            day_cost=0.0,
            night_cost=0.0,
            export_energy=0.0,
            export_income=0.0,
        )
    counted = state.at is not None and timedelta(0) <= reading.taken_at - state.at <= MAX_GAP
    imported = _growth(state.import_total, reading.import_total) if counted else 0.0
    exported = _growth(state.export_total, reading.export_total) if counted else 0.0
    grid_charged = _growth(state.ac_charge_total, reading.ac_charge_total) if counted else 0.0
    price = import_rate(settings, rate)
    changes: dict[str, Any] = {
        "at": reading.taken_at,
        "import_total": _latest(state.import_total, reading.import_total),
        "export_total": _latest(state.export_total, reading.export_total),
        "ac_charge_total": _latest(state.ac_charge_total, reading.ac_charge_total),
        "stored_kwh": _latest(state.stored_kwh, reading.stored_kwh),
        "export_energy": state.export_energy + exported,
        "export_income": state.export_income + exported * settings.export_rate,
        "battery_value": battery_value(
            state.battery_value,
            before=state.stored_kwh,
            after=reading.stored_kwh,
            grid_charged=grid_charged,
            price=price,
        ),
    }
    if rate == NIGHT:
        changes.update(night_energy=state.night_energy + imported, night_cost=state.night_cost + imported * price)
    else:
        changes.update(day_energy=state.day_energy + imported, day_cost=state.day_cost + imported * price)
    return replace(state, **changes)


def battery_value(
    value: float, *, before: float | None, after: float | None, grid_charged: float, price: float
) -> float:
    """What the stored energy cost, after the battery went from ``before`` to ``after`` kWh.

    Grid-charged kWh are added at ``price`` (conversion losses included, since they were
    paid for) whether or not the stored energy has stepped yet (it moves in whole percent,
    the charge counter in 0.1 kWh); solar adds energy for nothing. Emptying keeps the price
    per kWh, so the value falls in proportion.
    """
    if after is None:
        return value
    if after < _EMPTY_KWH:
        return 0.0
    value += grid_charged * price
    if before is not None and after < before:
        value *= after / before
    return value


def published(state: TariffState, rate: RateType, settings: TariffSettings) -> dict[str, Scalar]:
    """The ``Energy/Rates/*`` values of ``state`` with ``rate`` in force."""
    current = import_rate(settings, rate)
    imported = state.day_energy + state.night_energy
    cost = state.day_cost + state.night_cost
    stored = state.stored_kwh or 0.0
    values: dict[str, Scalar] = {
        "Day_Rate": settings.import_day_rate,
        "Export_Rate": settings.export_rate,
        "Current_Rate": current,
        "Current_Rate_Type": rate,
        "Day_Energy_kWh": round(state.day_energy, 2),
        "Day_Cost": round(state.day_cost, 4),
        "Import_Cost_Today": round(cost, 4),
        "Import_ppkwh_Today": round(cost / imported, 4) if imported > 0 else current,
        "Export_Income_Today": round(state.export_income, 4),
        "Export_ppkwh_Today": (
            round(state.export_income / state.export_energy, 4) if state.export_energy > 0 else settings.export_rate
        ),
        "Battery_Value": round(state.battery_value, 4),
        "Battery_ppkwh": round(state.battery_value / stored, 4) if stored >= _EMPTY_KWH else 0.0,
    }
    if settings.import_night_rate is not None:
        values.update(
            Night_Rate=settings.import_night_rate,
            Night_Energy_kWh=round(state.night_energy, 2),
            Night_Cost=round(state.night_cost, 4),
        )
    return {f"{GROUP}/{leaf}": value for leaf, value in values.items()}


def reading_of(snapshot: Snapshot, tz: tzinfo) -> Reading:
    """The counters a snapshot holds, timed by the inverter's clock (ours if it has none)."""
    clock = snapshot.get(f"{snapshot.serial}/Invertor_Time")
    local = clock if isinstance(clock, datetime) else snapshot.taken_at
    return Reading(
        local=local.astimezone(tz),
        taken_at=snapshot.taken_at.astimezone(UTC),
        import_total=as_number(snapshot.get(_IMPORT_TOTAL)),
        export_total=as_number(snapshot.get(_EXPORT_TOTAL)),
        ac_charge_total=as_number(snapshot.get(_AC_CHARGE_TOTAL)),
        stored_kwh=as_number(snapshot.get(_STORED)),
    )


def _growth(before: float | None, after: float | None) -> float:
    # Counters reaching us have been through hygiene: they only fall when the inverter's
    # totals were really reset, and then there is nothing to charge.
    if before is None or after is None or after < before:
        return 0.0
    return after - before


def _latest(before: float | None, after: float | None) -> float | None:
    return after if after is not None else before


# --------------------------------------------------------------------------- per inverter


class TariffTracker:
    """One inverter's tariff accounting: fed by its snapshots, persisted in the data directory."""

    def __init__(self, settings: TariffSettings, *, tz: tzinfo, clock: Clock, store: JsonStore) -> None:
        self.settings = settings
        self.tz = tz
        self.clock = clock
        self.store = store
        self.serial: str | None = None
        self.state: TariffState | None = None  # None until the stored state is loaded
        self._saver = ThrottledSave(store, clock, SAVE_INTERVAL, "the tariff figures")
        self._lock = asyncio.Lock()

    @property
    def document(self) -> str:
        assert self.serial is not None
        return f"tariff-{self.serial}"

    def rate_type(self) -> RateType:
        """The rate in force now."""
        if self.settings.dynamic:
            return (self.state.switched if self.state else None) or DAY
        return rate_type_at(self.clock.now().astimezone(self.tz).time(), self.settings)

    def values(self) -> dict[str, Scalar]:
        """This inverter's ``Energy/Rates/*`` as last charged."""
        if self.state is None:
            return {}
        return published(self.state, self.rate_type(), self.settings)

    async def enrich(self, snapshot: Snapshot) -> dict[str, Scalar]:
        """The runner's pipeline stage: charge this snapshot's counters, then its ``Energy/Rates/*`` from them.

        It runs on the cleaned snapshot before that is published, so the rates published with a
        poll include the energy that poll counted.
        """
        await self.observe(snapshot)
        return self.values()

    async def observe(self, snapshot: Snapshot) -> None:
        """Charge what the counters grew by since the previous snapshot."""
        async with self._lock:
            await self._load(snapshot.serial)
            assert self.state is not None
            before = self.state
            self.state = advance(before, reading_of(snapshot, self.tz), self.rate_type(), self.settings)
            await self._save(force=self.state.day != before.day)

    async def switch(self, rate: RateType) -> None:
        """Make ``rate`` the one in force (``switchRate``); kept across restarts."""
        async with self._lock:
            if self.state is None:
                if self.serial is None:
                    raise LookupError("the inverter has not been read yet")
                await self._load(self.serial)
            assert self.state is not None
            if self.state.switched != rate:
                log.info("tariff rate switched", serial=self.serial, rate=rate)
            self.state = replace(self.state, switched=rate)
            await self._save(force=True)

    async def save(self) -> None:
        """Write the state now (on shutdown)."""
        async with self._lock:
            await self._save(force=True)

    async def _load(self, serial: str) -> None:
        if self.state is not None and self.serial == serial:
            return
        self.serial = serial
        stored = await asyncio.to_thread(self.store.load, self.document)
        self.state = TariffState.from_json(stored)

    async def _save(self, *, force: bool) -> None:
        if self.state is None or self.serial is None:
            return
        await self._saver.save(self.document, self.state.to_json, force=force)


class Tariffs:
    """The tariff trackers of every inverter of a bridge, one per device (whatever object stands for it)."""

    def __init__(self, settings: TariffSettings, *, clock: Clock, store: JsonStore) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store
        self._trackers: dict[int, TariffTracker] = {}

    def track(self, device: object, *, tz: tzinfo, serial: str | None) -> TariffTracker:
        """A new tracker for ``device`` (``serial`` when known early; else from its first snapshot).

        Its :meth:`TariffTracker.enrich` is a stage of the device's snapshot pipeline.
        """
        tracker = TariffTracker(self.settings, tz=tz, clock=self.clock, store=self.store)
        tracker.serial = serial
        self._trackers[id(device)] = tracker
        return tracker

    def for_runner(self, device: object) -> TariffTracker:
        return self._trackers[id(device)]

    def __iter__(self) -> Iterator[TariffTracker]:
        return iter(self._trackers.values())

    async def save_all(self) -> None:
        for tracker in self:
            await tracker.save()
