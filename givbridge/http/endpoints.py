"""What the shim serves, as data: the route table both the ASGI app and the OpenAPI document are built from.

Two faces, as GivTCP had:

* the **main** port (``http.port``, 8099): ``/REST<N>/<command>`` for inverter N (from 1, in the
  configured order), the bridge's own commands (``restart``, ``setLogLevel``, ``settings``) also
  at ``/<command>``;
* with ``http.per_inverter_ports``, one **inverter** port per inverter (6345, 6346, ...) serving
  ``/<command>`` directly, so Predbat's ``givtcp_rest`` URLs work unchanged.

Both serve ``/health``, ``/api``, ``/settings`` (GET) and ``/openapi.json``. Every command name
and alias in the registry is a route; a command added to the registry is served at once.

Only reads of device data are served by GET. Every other command changes something (a register,
the bridge's connections, its log level, its settings) and is served by POST alone, even where
GivTCP also took GET (``reboot``, ``restart``): a GET is what a link, an image tag or a
prefetching browser sends without anyone asking for a change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from givbridge.commands.access import is_data_read
from givbridge.commands.registry import REGISTRY
from givbridge.commands.spec import Command

Kind = Literal["command", "settings", "health", "api", "openapi"]

#: The path segment before an inverter's number on the main port (GivTCP's ``/REST1/``).
REST_PREFIX = "/REST"
#: The Starlette path parameter of the inverter number.
INVERTER_PARAM = "inverter"
HEALTH_PATH = "/health"
API_PATH = "/api"
SETTINGS_PATH = "/settings"
OPENAPI_PATH = "/openapi.json"


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str  # as Starlette matches it: "/REST{inverter:int}/setChargeTarget"
    method: Literal["GET", "POST"]
    kind: Kind
    command: Command | None = None
    name: str = ""  # the command name (or alias) in the path
    per_inverter: bool = False  # the path carries the inverter number

    @property
    def template(self) -> str:
        """The path as OpenAPI writes it: ``/REST{inverter}/setChargeTarget``."""
        return self.path.replace(f"{{{INVERTER_PARAM}:int}}", f"{{{INVERTER_PARAM}}}")


def http_method(command: Command) -> Literal["GET", "POST"]:
    """The one HTTP method a command is served by: GET for a read of device data, POST for the rest."""
    return "GET" if is_data_read(command) else "POST"


def _common() -> list[Endpoint]:
    return [
        Endpoint(HEALTH_PATH, "GET", "health"),
        Endpoint(API_PATH, "GET", "api"),
        Endpoint(SETTINGS_PATH, "GET", "settings"),
        Endpoint(OPENAPI_PATH, "GET", "openapi"),
    ]


def _commands(commands: Iterable[Command], prefix: str, per_inverter: bool) -> list[Endpoint]:
    return [
        Endpoint(f"{prefix}/{name}", http_method(command), "command", command, name, per_inverter)
        for command in commands
        for name in command.names
    ]


def main_endpoints(commands: Iterable[Command] = REGISTRY) -> list[Endpoint]:
    """The main port: every command under ``/REST{inverter}``, the bridge's also at the root."""
    commands = list(commands)
    return [
        *_commands(commands, f"{REST_PREFIX}{{{INVERTER_PARAM}:int}}", per_inverter=True),
        *_commands((c for c in commands if c.target == "bridge"), "", per_inverter=False),
        *_common(),
    ]


def inverter_endpoints(commands: Iterable[Command] = REGISTRY) -> list[Endpoint]:
    """One inverter's own port: every command at the root, for that inverter."""
    return [*_commands(commands, "", per_inverter=False), *_common()]
