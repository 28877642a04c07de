"""Commands: one declarative definition per GivTCP command, and the transport-independent executor.

``REGISTRY`` (registry.py) holds every command; ``CommandExecutor`` (executor.py) runs one to
its single ``CommandResult`` (results.py). Definitions live per family of commands:
switches.py, modes.py, targets.py, rates.py, slots.py, inverter_time.py, system.py, evc.py (the
EV charger's) and pending.py (defined but not available yet, and GivTCP's dead stubs). spec.py says what a
definition is, schemas.py what payloads look like (made of the value types and the one number
parser in values.py; decoding.py turns a message into a payload's form), devices.py which
registers each kind of device uses, docs.py how they are described to people.
"""

from givbridge.commands.executor import CommandExecutor
from givbridge.commands.registry import REGISTRY, Registry
from givbridge.commands.results import HTTP_STATUS, CommandFailed, CommandResult, ErrorCode
from givbridge.commands.spec import Command

__all__ = [
    "HTTP_STATUS",
    "REGISTRY",
    "Command",
    "CommandExecutor",
    "CommandFailed",
    "CommandResult",
    "ErrorCode",
    "Registry",
]
