"""Which inverters another device controls: All-in-Ones behind a Gateway, inverters under an EMS.

A Gateway runs up to three All-in-Ones in parallel and an EMS manages up to four inverters;
each reports the serials of its units in its own rollup, and the snapshot builders carry
them as :attr:`~givbridge.plant.snapshot.DeviceInfo.managed`. When the controller and a unit
are both polled by this bridge, the unit is *managed*:

* commands that change something and are addressed to the unit are answered ``unsupported``,
  naming the controller to send them to: GivTCP's advice for parallel All-in-Ones is to
  control the Gateway only, and an EMS schedules its inverters itself, so a setting written
  to a unit directly would fight its controller;
* Home Assistant discovery publishes the unit's controls as read-only sensors;
* the plant summary takes the totals the controller measures instead of adding up its units
  (see :mod:`givbridge.plant.summary`).

Only configured controllers count: an All-in-One whose Gateway givbridge does not poll is
treated as a standalone inverter. A controller snapshot that lists no units (its rollup has
not been read) changes nothing, so a failed rollup read cannot flip the units' entities.
The relation is remembered in the data directory by the bridge, so after a restart the
units' entities stay read-only while their controller is being connected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from givbridge.plant.families import FAMILIES
from givbridge.plant.snapshot import DeviceInfo

# Families whose snapshots list the inverters they control.
CONTROLLER_FAMILIES = frozenset({"gateway", "ems", "ems-commercial"})


@dataclass(frozen=True, slots=True)
class Controller:
    """The device that controls a managed unit."""

    serial: str
    family: str  # family key of the controller

    @property
    def display(self) -> str:
        family = FAMILIES.get(self.family)
        return f"{family.display if family else self.family} {self.serial}"

    def refusal(self, unit: str, command: str) -> str:
        """Why ``command`` is not carried out on ``unit``, and where to send it instead."""
        if self.family == "gateway":
            relation = f"{unit} runs in parallel behind the {self.display}, which takes its settings"
        else:
            relation = f"{unit} is managed by the {self.display}, which takes the plant's settings"
        return f"{relation}: send the command to control/{self.serial}/{command}"


class PlantTopology:
    """Managed unit serial -> its :class:`Controller`; pure state (the bridge persists :meth:`record`)."""

    def __init__(self, owners: Mapping[str, Controller] | None = None) -> None:
        self._owners: dict[str, Controller] = dict(owners or {})

    def owner_of(self, serial: str | None) -> Controller | None:
        """The controller of ``serial``, or None for an inverter that controls itself."""
        return self._owners.get(serial) if serial is not None else None

    def units_of(self, controller: str) -> tuple[str, ...]:
        """The serials ``controller`` controls, sorted."""
        return tuple(sorted(unit for unit, owner in self._owners.items() if owner.serial == controller))

    @property
    def owners(self) -> Mapping[str, Controller]:
        return dict(self._owners)

    def observe(self, info: DeviceInfo) -> bool:
        """Take the units a controller reports in its snapshot; True when the relation changed."""
        if info.family not in CONTROLLER_FAMILIES or not info.managed:
            return False
        controller = Controller(info.serial, info.family)
        wanted = {unit: controller for unit in info.managed if unit != info.serial}
        current = {unit: owner for unit, owner in self._owners.items() if owner.serial == info.serial}
        if current == wanted:
            return False
        for unit in current:
            del self._owners[unit]
        self._owners.update(wanted)  # a unit moved to another controller follows its latest report
        return True

    def retain(self, controllers: Iterable[str]) -> bool:
        """Forget units of controllers that are no longer configured; True when something was forgotten."""
        keep = set(controllers)
        gone = [unit for unit, owner in self._owners.items() if owner.serial not in keep]
        for unit in gone:
            del self._owners[unit]
        return bool(gone)

    def record(self) -> dict[str, Any]:
        """A JSON-ready record of the relation."""
        return {
            "managed": {
                unit: {"controller": owner.serial, "family": owner.family}
                for unit, owner in sorted(self._owners.items())
            }
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PlantTopology:
        """The relation :meth:`record` wrote; anything unreadable is left out (it is learnt again)."""
        owners: dict[str, Controller] = {}
        managed = record.get("managed")
        if isinstance(managed, Mapping):
            for unit, entry in managed.items():
                if not isinstance(entry, Mapping):
                    continue
                serial, family = entry.get("controller"), entry.get("family")
                if isinstance(unit, str) and isinstance(serial, str) and family in CONTROLLER_FAMILIES:
                    owners[unit] = Controller(serial, str(family))
        return cls(owners)
