"""The registry: every command givbridge knows, by name and alias.

It is the only list of commands. The MQTT control subscriber, the HTTP shim, discovery's
command topics, ``givbridge commands`` and ``docs/commands.md`` all read it; a command added
to one of the family modules below is everywhere at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from givbridge.commands import (
    evc,
    inverter_time,
    modes,
    pending,
    rates,
    slots,
    switches,
    system,
    targets,
    tariff,
    timed,
)
from givbridge.commands.spec import Command
from givbridge.plant.snapshot import Snapshot

#: What each family module contributes to a device's remembered state, from every snapshot.
Observer = Callable[[Snapshot], Mapping[str, int]]


class Registry:
    """Commands by name; aliases resolve to the same definition."""

    def __init__(self, commands: Iterable[Command], observers: Iterable[Observer] = ()) -> None:
        self._commands: tuple[Command, ...] = tuple(commands)
        self._by_name: dict[str, Command] = {}
        for command in self._commands:
            for name in command.names:
                if name in self._by_name:
                    raise ValueError(f"command name {name!r} is defined twice")
                self._by_name[name] = command
        self.observers: tuple[Observer, ...] = tuple(observers)

    def get(self, name: str) -> Command | None:
        """The command called ``name`` (or aliased so); names are case-sensitive, as in GivTCP."""
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> frozenset[str]:
        """Every name a command answers to, aliases included."""
        return frozenset(self._by_name)

    def groups(self) -> dict[str, list[Command]]:
        """Commands by documentation group, in definition order."""
        grouped: dict[str, list[Command]] = {}
        for command in self._commands:
            grouped.setdefault(command.group, []).append(command)
        return grouped


REGISTRY = Registry(
    (
        *switches.COMMANDS,
        *modes.COMMANDS,
        *targets.COMMANDS,
        *rates.COMMANDS,
        *slots.COMMANDS,
        *inverter_time.COMMANDS,
        *system.COMMANDS,
        *timed.COMMANDS,
        *tariff.COMMANDS,
        *evc.COMMANDS,
        *pending.COMMANDS,
    ),
    observers=(modes.observe,),
)
