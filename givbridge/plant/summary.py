"""The plant summary: totals across every inverter one bridge polls.

GivTCP has nothing like it (each inverter is its own island), so the names are givbridge's,
kept in GivTCP's shape: when more than one inverter is configured the application
publishes a device with the id ``plant`` (``<root>/plant/Power/Power/PV_Power``,
``<root>/plant/json``, ``<root>/plant/availability``) whose values reuse the inverters'
leaf names and entity definitions:

========================================  ==================================================
``Power/Power/PV_Power``                  PV power, W
``Power/Power/Load_Power``                house load, W
``Power/Power/Grid_Power``                grid power, W, + exporting (and Import/Export_Power)
``Power/Power/Battery_Power``             battery power, W, + discharging (and Charge/Discharge_Power)
``Power/Power/SOC_kWh``                   energy stored, kWh
``Power/Power/Battery_Capacity_kWh``      capacity of the batteries counted in SOC_kWh, kWh
``Power/Power/SOC``                       SOC_kWh / Battery_Capacity_kWh, %
``Stats/Inverters_Online``                devices online and read (counted as rule 2 allows)
``Stats/Inverters_Configured``            devices configured
``Stats/Last_Updated_Time``               the newest snapshot in the totals
========================================  ==================================================

How it counts (:func:`summarise` is pure; the rules are its whole behaviour):

1. Only devices that are online and have been read count. The others are left out, not
   estimated: ``Inverters_Online`` says how many are in, and the summary's availability is
   online while at least one is.
2. No double counting behind a controller: a Gateway measures its whole parallel plant,
   so its All-in-Ones add nothing; an EMS measures grid, load and battery power for its
   inverters, so they add only their PV and stored energy (the EMS's own
   ``Remaining_Battery_Wh`` is not used: whether it counts the energy above the reserve or
   all of it is not known). This holds whether the controller is online or not, so the
   totals never switch between two ways of counting the same thing (see
   :mod:`givbridge.plant.topology` for how the bridge knows who controls whom).
3. Grid and load, ``plant.grid`` setting. ``shared`` (the default: several inverters on one
   supply each have a grid CT on it): the grid readings all measure the same flow, so the
   plant's grid power is their mean; each inverter's load is its own output less that
   shared flow, so the house load is the sum of the loads plus the grid power once for
   every load figure but one; a PV-only inverter, which reports no load, adds its PV power
   (its output feeds the house). ``separate`` (each inverter on its own supply and CT):
   grid and load are plain sums. Where the CTs sit otherwise (one inverter's CT on a
   sub-circuit), neither is exact: the per-inverter values stay the reference.
4. Stored energy and capacity are summed over the devices reporting both; SOC is their
   ratio. PV and battery power are plain sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from givbridge.plant import derive
from givbridge.plant.snapshot import DeviceInfo, Scalar, Snapshot, as_number
from givbridge.plant.topology import PlantTopology

PLANT_ID = "plant"  # the summary's "serial": its topic level and discovery owner
PLANT_FAMILY = "plant"
PLANT_MODEL = "Plant summary"

GridMeter = Literal["shared", "separate"]
Reading = Literal["pv", "load", "grid", "battery", "stored", "capacity"]

# Where each reading sits in a snapshot, first match wins ({serial}: the device's own group).
# The EMS publishes its plant readings directly under Power (GivTCP's layout for it).
_PATHS: Mapping[Reading, tuple[str, ...]] = {
    "pv": ("Power/Power/PV_Power",),
    "load": ("Power/Power/Load_Power", "Power/Calculated_Load_Power"),
    "grid": ("Power/Power/Grid_Power", "Power/Grid_Power"),
    "battery": ("Power/Power/Battery_Power", "Power/Battery_Power"),
    "stored": ("Power/Power/SOC_kWh",),
    "capacity": ("{serial}/Battery_Capacity_kWh",),
}
_ALL: frozenset[Reading] = frozenset(_PATHS)
# What a controller measures for the units it controls (rule 2).
_CONTROLLER_READINGS: Mapping[str, frozenset[Reading]] = {
    "gateway": _ALL,
    "ems": frozenset({"grid", "load", "battery"}),
    "ems-commercial": frozenset({"grid", "load", "battery"}),
}
# Families that report no load of their own but whose output feeds the house (rule 3).
_GENERATORS = frozenset({"pv"})


@dataclass(frozen=True, slots=True)
class Member:
    """One configured device as the summary sees it."""

    snapshot: Snapshot | None
    online: bool


def readings(snapshot: Snapshot) -> dict[Reading, float]:
    """The summary's readings in one device's snapshot (those it has)."""
    found: dict[Reading, float] = {}
    for reading, paths in _PATHS.items():
        for path in paths:
            value = as_number(snapshot.get(path.format(serial=snapshot.serial)))
            if value is not None:
                found[reading] = value
                break
    return found


def contribution(snapshot: Snapshot, topology: PlantTopology) -> dict[Reading, float]:
    """What one online device adds to the totals: its readings less those its controller measures."""
    found = readings(snapshot)
    owner = topology.owner_of(snapshot.serial)
    if owner is None:
        return found
    covered = _CONTROLLER_READINGS.get(owner.family, _ALL)
    return {reading: value for reading, value in found.items() if reading not in covered}


def summarise(
    members: Sequence[Member], topology: PlantTopology, *, grid_meter: GridMeter = "shared"
) -> Snapshot | None:
    """The plant summary of ``members`` (every configured device), or None before any has been read."""
    read = [member.snapshot for member in members if member.snapshot is not None]
    if not read:
        return None
    counted = [m.snapshot for m in members if m.online and m.snapshot is not None]
    values: dict[str, Scalar] = {
        "Stats/Inverters_Online": len(counted),
        "Stats/Inverters_Configured": len(members),
    }
    if counted:
        values.update(_totals([(s, contribution(s, topology)) for s in counted], grid_meter))
        values["Stats/Last_Updated_Time"] = max(s.taken_at for s in counted)
    info = DeviceInfo(serial=PLANT_ID, model=PLANT_MODEL, family=PLANT_FAMILY)
    return Snapshot(info=info, taken_at=max(s.taken_at for s in read), values=values)


def _totals(parts: Sequence[tuple[Snapshot, dict[Reading, float]]], grid_meter: GridMeter) -> dict[str, Scalar]:
    def values(reading: Reading) -> list[float]:
        return [found[reading] for _, found in parts if reading in found]

    out: dict[str, Scalar] = {}
    power = "Power/Power/"
    if pv := values("pv"):
        out[power + "PV_Power"] = round(sum(pv))
    grids = values("grid")
    grid = (sum(grids) / len(grids) if grid_meter == "shared" else sum(grids)) if grids else None
    if grid is not None:
        out[power + "Grid_Power"] = round(grid)
        out[power + "Import_Power"], out[power + "Export_Power"] = derive.split_grid_power(round(grid))
    loads = values("load")
    if loads:
        load = sum(loads)
        if grid_meter == "shared":
            both = sum(1 for _, found in parts if "load" in found and "grid" in found)
            if grid is not None and both > 1:
                load += (both - 1) * grid
            load += sum(found.get("pv", 0.0) for s, found in parts if s.info.family in _GENERATORS)
        out[power + "Load_Power"] = max(round(load), 0)
    if battery := values("battery"):
        total = round(sum(battery))
        out[power + "Battery_Power"] = total
        out[power + "Charge_Power"], out[power + "Discharge_Power"] = derive.split_battery_power(total)
    paired = [(found["stored"], found["capacity"]) for _, found in parts if {"stored", "capacity"} <= found.keys()]
    if paired:
        stored = round(sum(kwh for kwh, _ in paired), 2)
        capacity = round(sum(cap for _, cap in paired), 2)
        out[power + "SOC_kWh"] = stored
        out[power + "Battery_Capacity_kWh"] = capacity
        if capacity > 0:
            out[power + "SOC"] = min(round(100 * stored / capacity), 100)
    return out
