"""What a valid setting looks like, and the error a configuration that is not valid raises.

The shapes serials, entity-id prefixes, topic roots and currency codes must have, and GivTCP's
default prefix: shared by the settings model (:mod:`givbridge.config`), the scanner and the
GivTCP migration.
"""

from __future__ import annotations

import re

SERIAL_PATTERN = re.compile(r"^[A-Z]{2}\d{4}[A-Z]\d{3}$|^[A-Z]{3}\d{7}$")
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
TOPIC_ROOT_PATTERN = re.compile(r"^[^#+\s/][^#+\s]*$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
FOLLOW_MAX_PREFIX = 20  # follow_serial searches at most a /20 (4094 addresses)


def default_prefix(index: int) -> str:
    """GivTCP's entity-id prefix for its inverter slot ``index`` (from 0): givtcp, givtcp2, ..."""
    return "givtcp" if index == 0 else f"givtcp{index + 1}"


def is_serial(value: str) -> bool:
    """Whether ``value`` is a GivEnergy inverter serial as the settings accept it."""
    return bool(SERIAL_PATTERN.match(value))


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` is a message for a person."""
