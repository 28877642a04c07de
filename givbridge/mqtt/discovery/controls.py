"""What a control offers Home Assistant, derived from the command that carries it out.

A control entity's choices are not a second list kept beside the command: a select offers
the words of its definition that its command's payload model accepts, and a number's range is
the payload field's own bounds, narrowed by what the definition knows about this device (a
battery's rated power, a charger's current range, the register's step). Whatever HA can send
is then a value the command takes, so choosing it in HA never answers ``invalid_payload``.

A definition may list more words than can be sent: the states the device reports but nobody
sets (the inverter's ``Unknown`` mode, a ``Running`` calibration or timed action). HA's MQTT
select logs an error for a state that is not among its options and keeps the old one, so the
select's ``value_template`` shows such a state as unknown (HA's ``None`` payload), and a
read-only sensor (:data:`STATE_SUFFIX`) shows every state by its word.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from annotated_types import Ge, Le
from pydantic import ValidationError

from givbridge.commands.spec import Command
from givbridge.entities import EntityDefinition, resolve_limit

#: The unique id (and name) suffix of the sensor that shows a select's every state.
STATE_SUFFIX = "State"


@dataclass(frozen=True, slots=True)
class NumberRange:
    """A number entity's min, max and step for one device."""

    min: float
    max: float
    step: float


def accepts(command: Command, raw: str) -> bool:
    """Whether ``command`` takes ``raw`` as a bare payload (HA sends a select option or number so)."""
    if command.raw_field is None:
        return False
    try:
        command.payload.model_validate({**command.fixed, command.raw_field: raw})
    except ValidationError:
        return False
    return True


def settable_options(definition: EntityDefinition, command: Command) -> tuple[str, ...]:
    """The definition's words its command accepts, in the definition's order."""
    options = definition.option_values() or ()
    # Every discovery build asks this of each slot select's 1,440 times: remember the answer
    # per payload model, fixed fields and words, which are all it depends on.
    key = (command.payload, command.raw_field, tuple(sorted(command.fixed.items())), options)
    settable = _SETTABLE.get(key)
    if settable is None:
        accepted = tuple(option for option in options if accepts(command, option))
        # Where every word is accepted (each slot select's 1,440 times) keep the definition's own
        # tuple rather than a copy per command: twenty-odd copies held a quarter of a megabyte.
        settable = _SETTABLE[key] = options if accepted == options else accepted
    return settable


_SETTABLE: dict[tuple[object, ...], tuple[str, ...]] = {}


def shown_only(definition: EntityDefinition, command: Command) -> tuple[str, ...]:
    """The definition's words the device can report but the command does not take."""
    options = definition.option_values() or ()
    settable = settable_options(definition, command)
    if settable is options:
        return ()  # it takes every word (see settable_options): no set of 1,440 times to build
    taken = set(settable)
    return tuple(option for option in options if option not in taken)


def state_template(options: tuple[str, ...]) -> str:
    """A select's value_template: a settable state as itself, any other as HA's ``None`` (unknown)."""
    return f"{{{{ value if value in {json.dumps(list(options))} else 'None' }}}}"


def payload_bounds(command: Command) -> tuple[float | None, float | None]:
    """The bounds the command's payload model puts on its bare value (``ge``/``le``), where it has any."""
    if command.raw_field is None:
        return None, None
    low = high = None
    for constraint in command.payload.model_fields[command.raw_field].metadata:
        if isinstance(constraint, Ge):
            low = float(constraint.ge)  # type: ignore[arg-type]
        elif isinstance(constraint, Le):
            high = float(constraint.le)  # type: ignore[arg-type]
    return low, high


def number_range(
    definition: EntityDefinition, command: Command | None, limits: Mapping[str, float | None]
) -> NumberRange | None:
    """The range a number offers on one device: its command's bounds narrowed by the definition's.

    None when a bound the definition names is not known for this device yet, or when neither
    the command nor the definition bounds a side (HA's default 1..100 would then apply).
    """
    low, high = payload_bounds(command) if command is not None else (None, None)
    own_low, own_high = (resolve_limit(given, limits) for given in (definition.min, definition.max))
    if (definition.min is not None and own_low is None) or (definition.max is not None and own_high is None):
        return None  # the device has not reported the figure yet
    low = _narrowest(max, low, own_low)
    high = _narrowest(min, high, own_high)
    step = resolve_limit(definition.step, limits)
    if low is None or high is None or step is None or low > high:
        return None
    return NumberRange(low, high, step)


def _narrowest(pick: Callable[[float, float], float], *bounds: float | None) -> float | None:
    known = [bound for bound in bounds if bound is not None]
    return functools.reduce(pick, known) if known else None
