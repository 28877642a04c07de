"""The rules of the charger's emulated modes: Grid, Hybrid and Solar charging, the import cap, the session limit.

GivEnergy's cloud offers these modes; over Modbus the charger only has a current limit and
Start/Stop, so (like GivTCP) givbridge emulates them. Each pass of the controller takes the
charger's latest snapshot and the *live* inverter snapshot and decides a current limit and
whether to start or stop; every decision is a plain function (:func:`decide`) of those values,
the settings and a little memory, so it is tested without sockets. The controller that runs
the passes and carries the decisions out is :mod:`givbridge.evc.modes`.

Surplus
    ``PV_Power - Load_Power + Active_Power(charger)`` watts: the solar power the house itself
    does not use. The inverter's ``Load_Power`` includes the charger (it sits on the house
    side of the grid CT), so the charger's own draw is added back. It is turned into amps per
    phase with the charger's voltage and phase count (watts / (volts x phases): GivTCP
    compared watts with 6, a unit slip, and only counted phase L1). The battery is left out:
    solar the battery would have stored goes to the car first, and the battery never
    discharges into the car on the strength of this figure.

Grid
    The bridge does not touch the limit, except that an import cap lowers it, and raises it back
    to the last limit set with ``setCurrentLimit`` (the charger's maximum if none) as headroom
    returns.
Hybrid
    Limit = the surplus, but never below the charger's minimum (the grid tops it up to the
    minimum; GivTCP added the minimum *on top* of the surplus, importing 6 A all the time).
    Never above the last limit set with ``setCurrentLimit``.
Solar
    Charge only from surplus: start once the surplus has reached the charger's minimum for
    :data:`START_AFTER` seconds, follow it, stop once it has been below the minimum for
    :data:`STOP_AFTER` seconds (clouds pass; contactors should not chatter).
Import cap (amps, 0 = off)
    The grid current the house may draw. From the grid power and the charger's current draw
    the controller knows what the house draws without the car and keeps the car's limit so
    that both stay under :data:`CAP_HEADROOM` of the cap: the limit comes down *before* the
    grid current reaches the cap (GivTCP reacted only past 95 %, and subtracted from the limit
    rather than from what the car really drew). If not even the minimum fits, charging stops,
    and resumes when it fits again. The grid current is computed from the CT's power
    (``Grid_Power`` / voltage), not the inverter terminal's ``Grid_Current``.
Max session energy (kWh, 0 = off)
    Stop once the session has delivered this much; nothing restarts it until the car is
    unplugged (a new session), whatever the mode.

Limits only go up once per :data:`RAISE_EVERY` seconds and always in whole amps; they come down
at once. The settings (mode, cap, session energy, the user's limit) are a JSON document in the
data directory, so they survive restarts; the controller's short-term memory does not need to.
Without fresh inverter values (none configured, or not read for :data:`STALE_AFTER` seconds or
three passes) Hybrid, Solar and the cap change nothing and say so in the log; without fresh
charger values nothing changes at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from givbridge.evc import registers as reg
from givbridge.plant.families import FAMILIES
from givbridge.plant.snapshot import Scalar, Snapshot

if TYPE_CHECKING:
    pass


GRID, HYBRID, SOLAR = reg.CHARGING_MODES
START, STOP = "Start", "Stop"

CAP_HEADROOM = 0.95  # keep the grid current under 95 % of the cap
START_AFTER = 60.0  # seconds of enough surplus before Solar starts a charge
STOP_AFTER = 120.0  # seconds of too little surplus before Solar stops it
RAISE_EVERY = 60.0  # seconds between two increases of the limit
STALE_AFTER = 120.0  # values older than this (or three passes) are not acted on
NEW_SESSION_DROP_KWH = 0.05  # session energy falling by more than this: the charger started a new session
DEFAULT_VOLTS = 230.0


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class ModeSettings:
    """What the user chose; persisted."""

    charging_mode: str = GRID
    import_cap: int = 0  # A, 0 = off
    max_session_energy: float = 0.0  # kWh, 0 = off
    user_limit: int | None = None  # A, the last setCurrentLimit

    def values(self) -> dict[str, Scalar]:
        """The settings as the charger's snapshot publishes them (GivTCP's names)."""
        return {
            reg.path("Charging_Mode"): self.charging_mode,
            reg.path("Import_Cap"): self.import_cap,
            reg.path("Max_Session_Energy"): self.max_session_energy,
        }

    def document(self) -> dict[str, Any]:
        return {
            "charging_mode": self.charging_mode,
            "import_cap": self.import_cap,
            "max_session_energy": self.max_session_energy,
            "user_limit": self.user_limit,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ModeSettings:
        """Settings from the data directory; anything unusable falls back to its default."""
        defaults = cls()
        mode = document.get("charging_mode")
        cap = document.get("import_cap")
        energy = document.get("max_session_energy")
        limit = document.get("user_limit")
        return cls(
            charging_mode=mode if mode in reg.CHARGING_MODES else defaults.charging_mode,
            import_cap=cap if isinstance(cap, int) and not isinstance(cap, bool) and 0 <= cap <= 100 else 0,
            max_session_energy=float(energy)
            if isinstance(energy, int | float) and not isinstance(energy, bool) and 0 <= energy <= 100
            else 0.0,
            user_limit=limit if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit <= 100 else None,
        )


# --------------------------------------------------------------------------- what a pass sees


def _number(value: Scalar) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class ChargerView:
    """The charger values a decision needs."""

    connected: bool
    charging: bool
    control: str | None  # Ready / Start / Stop
    limit: float | None  # A
    draw: float  # A per phase, the largest phase
    power: float  # W
    minimum: int  # A
    maximum: int  # A
    phases: int
    volts: float
    session_energy: float  # kWh

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> ChargerView:
        def number(name: str, default: float = 0.0) -> float:
            found = _number(snapshot.get(reg.path(name)))
            return default if found is None else found

        voltages = [number(f"Voltage_L{n}") for n in (1, 2, 3)]
        live = [v for v in voltages if v >= reg.LIVE_PHASE_VOLTS]
        control = snapshot.get(reg.path("Charge_Control"))
        return cls(
            connected=snapshot.get(reg.path("Connection_Status")) == reg.CABLE_STATES[1],
            charging=snapshot.get(reg.path("Charging_State")) == reg.CHARGING_STATES[reg.CHARGING],
            control=control if isinstance(control, str) else None,
            limit=_number(snapshot.get(reg.path("Charge_Limit"))),
            draw=max(number(f"Current_L{n}") for n in (1, 2, 3)),
            power=number("Active_Power"),
            minimum=math.ceil(number("Evse_Min_Current", 6.0)) or 6,
            maximum=math.floor(number("Evse_Max_Current", 32.0)) or 32,
            phases=3 if len(live) == 3 else 1,
            volts=sum(live) / len(live) if live else DEFAULT_VOLTS,
            session_energy=number("Charge_Session_Energy"),
        )


@dataclass(frozen=True, slots=True)
class SiteView:
    """The inverter values a decision needs (GivTCP names, ``Power/Power/*``)."""

    pv: float  # W
    load: float  # W, the house including the charger
    grid: float  # W, + export, - import (Grid_Power's sign)
    volts: float
    phases: int

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> SiteView | None:
        pv = _number(snapshot.get("Power/Power/PV_Power"))
        load = _number(snapshot.get("Power/Power/Load_Power"))
        grid = _number(snapshot.get("Power/Power/Grid_Power"))
        volts = _number(snapshot.get("Power/Power/Grid_Voltage"))
        if pv is None or load is None or grid is None:
            return None
        family = FAMILIES.get(snapshot.info.family)
        return cls(
            pv=pv,
            load=load,
            grid=grid,
            volts=volts if volts is not None and volts >= reg.LIVE_PHASE_VOLTS else DEFAULT_VOLTS,
            phases=family.phases if family is not None else 1,
        )

    def import_amps(self) -> float:
        """Grid current per phase, + when importing (from the CT's power, not the inverter terminal)."""
        return -self.grid / (self.volts * self.phases)


def surplus_amps(charger: ChargerView, site: SiteView) -> float:
    """Solar amps per charger phase the house does not use itself (the charger's own draw added back)."""
    return (site.pv - site.load + charger.power) / (charger.volts * charger.phases)


# --------------------------------------------------------------------------- decisions


@dataclass(slots=True)
class Memory:
    """What the controller remembers between passes (not persisted: it is minutes' worth)."""

    session_done: bool = False  # the session energy limit stopped this session
    cap_stopped: bool = False  # the import cap stopped charging
    last_session_energy: float = 0.0
    enough_since: float | None = None  # Solar: since when the surplus has reached the minimum
    short_since: float | None = None  # Solar: since when it has not
    raised_at: float | None = None  # when the limit last went up


@dataclass(frozen=True, slots=True)
class Decision:
    limit: int | None = None  # A to write, when it differs from what the charger holds
    control: str | None = None  # Start / Stop to send, when it differs
    reason: str = ""

    @property
    def acts(self) -> bool:
        return self.limit is not None or self.control is not None


def decide(settings: ModeSettings, charger: ChargerView, site: SiteView | None, memory: Memory, now: float) -> Decision:
    """One pass: the limit and control the charger should get now (see the module docstring).

    ``now`` is monotonic seconds; ``memory`` is updated in place.
    """
    if not charger.connected:
        memory.session_done = memory.cap_stopped = False
        memory.enough_since = memory.short_since = None
        memory.last_session_energy = 0.0
        return Decision(reason="no car connected")
    if charger.session_energy < memory.last_session_energy - NEW_SESSION_DROP_KWH:
        memory.session_done = False  # the charger started a new session
    memory.last_session_energy = charger.session_energy

    limit_max = min(charger.maximum, settings.user_limit or charger.maximum)
    running = charger.charging or charger.control == START

    if settings.max_session_energy > 0 and charger.session_energy >= settings.max_session_energy:
        memory.session_done = True
    if memory.session_done:
        why = f"the session has delivered {charger.session_energy:.1f} kWh (limit {settings.max_session_energy:g})"
        return Decision(control=STOP if running else None, reason=why)

    mode = settings.charging_mode
    needs_site = mode in (HYBRID, SOLAR) or settings.import_cap > 0
    if needs_site and site is None:
        return Decision(reason="no live inverter values: nothing changed")

    want_limit: int | None = None
    want_running: bool | None = None  # None: leave Start/Stop to the user
    reason = mode
    if mode == GRID:
        if settings.import_cap > 0:
            want_limit = limit_max
    else:
        assert site is not None
        surplus = surplus_amps(charger, site)
        whole = math.floor(surplus)
        reason = f"{mode}: surplus {surplus:.1f} A"
        if mode == HYBRID:
            want_limit = _clamp(whole, charger.minimum, limit_max)
        else:
            want_running, want_limit = _solar(whole, charger, limit_max, running, memory, now)

    if settings.import_cap > 0:
        assert site is not None
        house = site.import_amps() - (charger.draw if charger.charging else 0.0)
        allowed = math.floor(settings.import_cap * CAP_HEADROOM - house)
        reason += f"; cap {settings.import_cap} A leaves {allowed} A"
        if allowed < charger.minimum:
            if running or charger.charging:
                memory.cap_stopped = True
            return Decision(control=STOP if running else None, reason=reason + ": below the minimum, stopped")
        if want_limit is not None:
            want_limit = min(want_limit, allowed)
    if memory.cap_stopped:
        # Headroom is back (or the cap was removed): resume what the cap stopped; Solar
        # decides its own starts.
        memory.cap_stopped = False
        if mode != SOLAR and want_running is None:
            want_running = True

    control = None
    if want_running is True and not running:
        control = START
    elif want_running is False and running:
        control = STOP
    limit = None
    active = (running and control != STOP) or control == START  # a limit means nothing to a stopped charger
    if active and want_limit is not None and want_limit != charger.limit:
        rising = charger.limit is not None and want_limit > charger.limit
        if not rising or memory.raised_at is None or now - memory.raised_at >= RAISE_EVERY:
            limit = want_limit
            if rising:
                memory.raised_at = now
    return Decision(limit=limit, control=control, reason=reason)


def _clamp(amps: int, low: int, high: int) -> int:
    return max(low, min(high, amps))


def _solar(
    whole: int, charger: ChargerView, limit_max: int, running: bool, memory: Memory, now: float
) -> tuple[bool | None, int]:
    """Solar mode's start/stop (with its delays) and limit."""
    if whole >= charger.minimum:
        memory.short_since = None
        if memory.enough_since is None:
            memory.enough_since = now
        start = running or now - memory.enough_since >= START_AFTER
        return (True if start else None), _clamp(whole, charger.minimum, limit_max)
    memory.enough_since = None
    if memory.short_since is None:
        memory.short_since = now
    stop = now - memory.short_since >= STOP_AFTER
    return (False if stop else None), charger.minimum
