"""Running as a Home Assistant add-on: where the MQTT broker comes from.

Inside the add-on the Supervisor sets ``SUPERVISOR_TOKEN`` and writes the user's options to
``/data/options.json``, which :func:`givbridge.config_loading.load_settings` reads like any config
file. The broker is usually the Mosquitto add-on, whose address and credentials the
Supervisor hands to every add-on that declares ``services: [mqtt:want]``, at
``GET http://supervisor/services/mqtt``. How that combines with the options:

* the options name a broker (``mqtt.host``): the user chose it, the Supervisor is not asked;
* otherwise the Supervisor's broker is used, beneath the options: a ``username``,
  ``password`` or ``port`` in the options replaces the Supervisor's;
* the Supervisor answers "Service not enabled" (no MQTT add-on installed), refuses the token
  or cannot be reached: the options (or defaults) alone apply, and the log says why.

The lookup is blocking (``urllib``): the CLI runs it in a worker thread before anything else
starts. The password is passed on as a setting and never appears in a log message.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from givbridge.config_sources import ADDON_OPTIONS

SUPERVISOR_MQTT_URL = "http://supervisor/services/mqtt"
TOKEN_VARIABLE = "SUPERVISOR_TOKEN"


class SupervisorError(Exception):
    """The Supervisor could not tell us about the MQTT service; ``str()`` says why, for the log."""


@dataclass(frozen=True)
class SupervisorMqtt:
    """The outcome of the lookup: a settings layer for ``load_settings`` and a line for the log."""

    defaults: dict[str, Any] = field(repr=False)  # holds the password: kept out of repr()
    message: str
    level: Literal["info", "warning"] = "info"


def in_addon(environ: Mapping[str, str] = os.environ) -> bool:
    """True inside the Home Assistant add-on (the Supervisor gives every add-on a token)."""
    return bool(environ.get(TOKEN_VARIABLE))


def fetch_mqtt_service(token: str, url: str = SUPERVISOR_MQTT_URL, timeout: float = 5.0) -> dict[str, Any] | None:
    """The Supervisor's MQTT service (``host``, ``port``, ``username``, ...), or None if none is enabled."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    # No proxy: the token is for the Supervisor only, never for a proxy named in the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise SupervisorError(f"the Supervisor refused the add-on's token (HTTP {exc.code})") from None
        body = exc.read()
        message = _error_message(body) or f"HTTP {exc.code}"
        if "not enabled" in message.lower():
            return None
        raise SupervisorError(f"the Supervisor answered {message}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SupervisorError(f"cannot reach the Supervisor at {url}: {reason}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise SupervisorError("the Supervisor's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise SupervisorError("the Supervisor's answer is not a JSON object")
    if answer.get("result") != "ok":
        message = str(answer.get("message") or "an error")
        if "not enabled" in message.lower():
            return None
        raise SupervisorError(f"the Supervisor answered {message}")
    data = answer.get("data")
    if not isinstance(data, dict):
        raise SupervisorError("the Supervisor's answer has no data")
    return data


def _error_message(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return str(answer.get("message")) if isinstance(answer, dict) and answer.get("message") else None


def mqtt_settings(service: Mapping[str, Any]) -> dict[str, Any]:
    """The ``mqtt`` settings section for the Supervisor's answer (its ``port`` may be a string)."""
    host = service.get("host")
    if not isinstance(host, str) or not host:
        raise SupervisorError("the Supervisor's MQTT service has no host")
    try:
        port = int(service.get("port", 1883))
    except (TypeError, ValueError):
        raise SupervisorError(f"the Supervisor's MQTT port {service.get('port')!r} is not a number") from None
    section: dict[str, Any] = {"host": host, "port": port}
    for key in ("username", "password"):
        if service.get(key):
            section[key] = str(service[key])
    if service.get("ssl") is True:
        section["tls"] = {"enabled": True}
    return section


def _options_mqtt(options_path: Path) -> Mapping[str, Any]:
    # A broken options file is reported by load_settings, with the others; here it just
    # means "no broker chosen in the options".
    try:
        options = json.loads(options_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    mqtt = options.get("mqtt") if isinstance(options, dict) else None
    return mqtt if isinstance(mqtt, dict) else {}


def mqtt_from_supervisor(
    environ: Mapping[str, str] = os.environ,
    *,
    url: str | None = None,
    options_path: Path = ADDON_OPTIONS,
    timeout: float = 5.0,
) -> SupervisorMqtt:
    """Ask the Supervisor for the MQTT broker unless the add-on options already name one. Blocking."""
    if _options_mqtt(options_path).get("host"):
        return SupervisorMqtt({}, "using the MQTT broker named in the add-on options")
    token = environ.get(TOKEN_VARIABLE, "")
    try:
        service = fetch_mqtt_service(token, url or SUPERVISOR_MQTT_URL, timeout)
        if service is None:
            return SupervisorMqtt(
                {},
                "Home Assistant has no MQTT service (Service not enabled): install the Mosquitto broker "
                "add-on or set mqtt.host in the add-on options",
                "warning",
            )
        section = mqtt_settings(service)
    except SupervisorError as exc:
        return SupervisorMqtt({}, f"{exc}; using the MQTT settings in the add-on options", "warning")
    who = f" as {section['username']}" if section.get("username") else ""
    return SupervisorMqtt(
        {"mqtt": section}, f"using the MQTT broker {section['host']}:{section['port']}{who} from the Supervisor"
    )
