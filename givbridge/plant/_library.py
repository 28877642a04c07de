"""The one place givbridge reads givenergy-modbus's decoded models.

The library is untyped (its models are generated pydantic classes), so every attribute read
would otherwise be ``Any`` and leak into the builders. :class:`ModelView` and
:class:`PlantView` are the boundary: each read states the type it expects and checks it at
run time, so a value the library could not decode (``None``) or decoded to something
unexpected comes back as ``None`` and the builders simply omit it. Nothing outside this
module touches a library object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from enum import Enum
from typing import Any

from givenergy_modbus.model.battery import State
from givenergy_modbus.model.ems import EmsInverterStatus
from givenergy_modbus.model.inverter import Status, WorkMode
from givenergy_modbus.model.manifest import ir44_is_inverter_output
from givenergy_modbus.model.meter import MeterStatus
from givenergy_modbus.model.register import HR
from givenergy_modbus.model.register_cache import RegisterCache

from givbridge.plant.registers import ARM_FIRMWARE, DEVICE_TYPE_CODE, TEN_SLOT_CHARGE_2, TEN_SLOT_CHARGE_2_FIELD

JsonScalar = int | float | str | bool

# Library enums some models store as plain integers (their pydantic config keeps enum values):
# the EMS and Gateway rollups. Builders ask for a code's member name by what it is.
_CODED_ENUMS: Mapping[str, type[Enum]] = {
    "status": Status,  # inverter / EMS status: NORMAL, WARNING, ...
    "meter_status": MeterStatus,  # DISABLED, ONLINE, OFFLINE
    "battery_state": State,  # STATIC, CHARGE, DISCHARGE (the Gateway's aio_state)
    "work_mode": WorkMode,  # INITIALISING, OFF_GRID, ON_GRID, ...
    "ems_inverter_status": EmsInverterStatus,  # ABSENT, ONLINE: the only EMS slot codes known
}


@dataclass(frozen=True, slots=True)
class SlotSource:
    """Where one time slot lives: the library field that decodes it and its two holding registers."""

    field: str
    start_register: int
    end_register: int


@dataclass(frozen=True, slots=True)
class SlotTimes:
    """A decoded start/end pair; either end is None when its register held no valid time."""

    start: time | None
    end: time | None


class ModelView:
    """Typed, read-only access to one decoded library model (inverter, battery or meter)."""

    __slots__ = ("_model",)

    def __init__(self, model: Any) -> None:
        self._model = model

    def _get(self, name: str) -> object:
        return getattr(self._model, name, None)

    def integer(self, name: str) -> int | None:
        value = self._get(name)
        # bool is an int subclass, and an on/off flag read as 0/1 would hide a wrong field name.
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        return None

    def number(self, name: str) -> float | None:
        value = self._get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    def flag(self, name: str) -> bool | None:
        value = self._get(name)
        return value if isinstance(value, bool) else None

    def text(self, name: str) -> str | None:
        value = self._get(name)
        if isinstance(value, Enum):  # str-valued enums (Model) are not free text
            return None
        return value if isinstance(value, str) and value else None

    def enum_name(self, name: str) -> str | None:
        """The member name of an enum-decoded register (``LITHIUM``), as GivTCP words derive from it."""
        value = self._get(name)
        return value.name if isinstance(value, Enum) else None

    def coded_name(self, name: str, kind: str) -> str | None:
        """The member name of a register the model keeps as a raw code (``ONLINE`` for 1 as a meter status).

        ``kind`` names the code table (``status``, ``meter_status``, ``battery_state``,
        ``work_mode``, ``ems_inverter_status``); a code the table does not know is None
        rather than a guess.
        """
        value = self._get(name)
        if isinstance(value, Enum):
            return value.name
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        try:
            return _CODED_ENUMS[kind](value).name
        except ValueError:
            return None

    def slot(self, name: str) -> SlotTimes | None:
        value = self._get(name)
        if value is None:
            return None
        start, end = getattr(value, "start", None), getattr(value, "end", None)
        return SlotTimes(
            start if isinstance(start, time) else None,
            end if isinstance(end, time) else None,
        )

    def timestamp(self, name: str) -> datetime | None:
        value = self._get(name)
        return value if isinstance(value, datetime) else None

    def is_valid(self) -> bool:
        check = getattr(self._model, "is_valid", None)
        return bool(check()) if callable(check) else False

    def dump(self) -> dict[str, JsonScalar]:
        """The model's fields as JSON-safe scalars, GivTCP ``raw`` style.

        Enums become their value, datetimes and times their string form, a time slot becomes
        ``<name>_start`` / ``<name>_end`` as HHMM integers (GivTCP's raw shape); lists and
        undecoded (None) fields are left out.
        """
        out: dict[str, JsonScalar] = {}
        fields: Mapping[str, object] = self._model.model_dump()
        for name, value in fields.items():
            if isinstance(value, Enum):
                value = value.value
            if isinstance(value, bool | int | float | str):
                out[name] = value
            elif isinstance(value, datetime):
                out[name] = str(value)
            elif isinstance(value, time):
                out[name] = value.isoformat()
            elif hasattr(value, "start") and hasattr(value, "end"):  # a library TimeSlot
                for edge in ("start", "end"):
                    at = getattr(value, edge)
                    if isinstance(at, time):
                        out[f"{name}_{edge}"] = at.hour * 100 + at.minute
        return out


@dataclass(frozen=True, slots=True)
class HvStackView:
    """One HV battery stack: its BCU and the modules that answered with a serial, in address order."""

    bcu: ModelView
    modules: tuple[ModelView, ...]


@dataclass(frozen=True, slots=True)
class PlantView:
    """What the snapshot builders need to know about one polled plant, fully typed."""

    serial: str
    device_type_code: int  # raw HR(0)
    arm_firmware: int  # raw HR(21)
    inverter: ModelView
    # LV packs with a valid serial, in bus-address order; placeholders for packs that did not
    # answer are dropped because they carry no data and no name to publish it under.
    batteries: tuple[ModelView, ...]
    meters: tuple[tuple[int, ModelView], ...]  # (meter id = device address 1..8, meter)
    has_battery: bool  # any storage at all: LV packs, HV stacks or AIO modules
    charge_slots: tuple[SlotSource, ...]  # slot 1 first
    discharge_slots: tuple[SlotSource, ...]
    extended_slots: bool  # the 10-slot map with per-slot SOC targets (HR 240-299)
    has_ac_config_block: bool  # HR 300-359 (AC-side rate limits HR313/314): AC-coupled and AIO
    # True on AC-coupled and All-in-One units, where IR(44..46) count the inverter's AC output
    # rather than PV generation (the library routes those registers by model).
    ir44_is_inverter_output: bool
    holding_registers: frozenset[int]  # HR numbers present in the inverter's register cache
    # When the bank holding the inverter clock (HR35-40) was last read, on the caller's clock;
    # lets the builder show the inverter's time now rather than at that read.
    clock_read_at: datetime | None = None
    # HV storage (All-in-One, HV Gen3, three-phase): one entry per BCU, in address order.
    hv_stacks: tuple[HvStackView, ...] = ()
    # The plant controllers' own models (the IR/HR 2040 rollup, the IR 1600-1859 rollup).
    ems: ModelView | None = None
    gateway: ModelView | None = None

    def has_holding(self, *registers: int) -> bool:
        """Whether every given holding register has been read from the inverter."""
        return all(r in self.holding_registers for r in registers)


class PlantNotReady(ValueError):
    """The plant has not been detected, or its inverter identity has not been read yet."""


def read_plant(plant: Any, *, clock_read_at: datetime | None = None) -> PlantView:
    """Take everything the builders need from a library ``Plant`` in one pass."""
    caps = plant.capabilities
    if caps is None:
        raise PlantNotReady("plant has no capabilities: run detection (or Plant.from_caches) first")
    cache: RegisterCache = plant.register_caches.get(caps.inverter_address, RegisterCache())
    dtc = cache.get(HR(DEVICE_TYPE_CODE))
    arm_fw = cache.get(HR(ARM_FIRMWARE))
    serial = plant.inverter_serial
    if not isinstance(dtc, int) or not isinstance(arm_fw, int) or not serial:
        raise PlantNotReady("inverter identity (HR0, HR21, serial) has not been read")

    inverter = plant.inverter
    batteries = tuple(ModelView(b) for b in plant.batteries)
    meters: dict[int, Any] = plant.meters
    slot_map = inverter.slot_map
    model = caps.device_type
    holding = frozenset(r.index for r, value in cache.items() if value is not None and isinstance(r, HR))
    return PlantView(
        serial=str(serial),
        device_type_code=dtc,
        arm_firmware=arm_fw,
        inverter=ModelView(inverter),
        batteries=tuple(b for b in batteries if b.is_valid()),
        meters=tuple((int(addr), ModelView(m)) for addr, m in sorted(meters.items())),
        has_battery=bool(caps.lv_battery_addresses or caps.bcu_stacks or caps.aio_battery_module_addresses),
        charge_slots=_slot_sources("charge", slot_map.charge_slots, extended=bool(caps.has_extended_slots)),
        discharge_slots=_slot_sources("discharge", slot_map.discharge_slots, extended=False),
        extended_slots=bool(caps.has_extended_slots),
        has_ac_config_block=bool(caps.has_ac_config_block),
        ir44_is_inverter_output=bool(ir44_is_inverter_output(model)),
        holding_registers=holding,
        clock_read_at=clock_read_at,
        hv_stacks=tuple(
            HvStackView(ModelView(stack.bcu), tuple(ModelView(m) for m in stack.bmus if m.is_valid()))
            for stack in plant.hv_stacks
            if stack.bcu.is_valid()
        ),
        ems=ModelView(plant.ems) if plant.ems is not None else None,
        gateway=ModelView(plant.gateway) if plant.gateway is not None else None,
    )


# On 10-slot firmware charge slot 2 is read where GivTCP reads it (see plant.registers).
_TEN_SLOT_CHARGE_2 = SlotSource(TEN_SLOT_CHARGE_2_FIELD, *TEN_SLOT_CHARGE_2)


def _slot_sources(kind: str, pairs: Any, *, extended: bool) -> tuple[SlotSource, ...]:
    sources = [SlotSource(f"{kind}_slot_{n}", int(start), int(end)) for n, (start, end) in enumerate(pairs, start=1)]
    if extended and kind == "charge":
        sources[1] = _TEN_SLOT_CHARGE_2
    return tuple(sources)
