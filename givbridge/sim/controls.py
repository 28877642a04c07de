"""The settings a simulated model's battery logic obeys, read from its holding registers."""

from __future__ import annotations

from collections.abc import Mapping

from givbridge.sim.physics import Controls, Window
from givbridge.sim.profile_spec import InverterProfile, SlotRegisters


def decode_controls(profile: InverterProfile, holding: Mapping[int, int], *, inverter_w: int) -> Controls:
    """The holding registers decoded through the model's control map."""
    h = holding
    m = profile.controls

    def value(register: int | None, default: int) -> int:
        return h[register] if register is not None else default

    def on(register: int | None) -> bool:
        return register is not None and h[register] == 1

    def windows(slots: tuple[SlotRegisters, ...]) -> tuple[Window, ...]:
        found = (
            Window.from_registers(h[s.start], h[s.end], h[s.target] if s.target is not None else None) for s in slots
        )
        return tuple(w for w in found if w is not None)

    full = 100 if m.limits_in_percent else 50
    mode = value(m.pause[0], 0) if m.pause is not None else 0
    return Controls(
        eco=value(m.eco, 1) == 1,
        charge_enabled=bool(m.charge_enable) and all(h[r] == 1 for r in m.charge_enable),
        charge_windows=windows(profile.charge_slots),
        discharge_enabled=on(m.discharge_enable),
        discharge_windows=windows(profile.discharge_slots),
        export_windows=windows(profile.export_slots) if on(m.export_enable) else (),
        reserve=value(m.reserve, 4),
        charge_limit=value(m.charge_limit, full),
        discharge_limit=value(m.discharge_limit, full),
        limits_in_percent=m.limits_in_percent,
        target_enabled=m.target_enable is None or on(m.target_enable),
        charge_target=value(m.target, 100),
        pause_mode=mode,
        pause_window=Window.from_registers(h[m.pause[1]], h[m.pause[2]]) if m.pause is not None else None,
        active_power_rate=value(m.active_power_rate, 100),
        export_limit_w=value(m.export_limit, inverter_w),
    )
