"""Logging: structlog for givbridge, with every library's stdlib logging routed through it.

One pipeline formats everything (givbridge, givenergy-modbus, paho, pymodbus, amqtt): a
readable console renderer by default (coloured on a terminal; the Home Assistant add-on log
page and ``journalctl`` are read by people) and one JSON object per line with
``--log-format json`` for log shippers. Context bound with
``structlog.contextvars.bind_contextvars`` (a device runner binds ``serial``) appears on
every line logged from that task, including the libraries' lines.
"""

from __future__ import annotations

import logging
import sys
import typing
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

#: The levels givbridge logs at: the ``log.level`` setting, ``--log-level`` and the bridge
#: device's log-level select all offer these.
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = typing.get_args(LogLevel)
#: How log lines are written: ``auto`` picks the console renderer on a terminal and JSON elsewhere.
LogFormat = Literal["auto", "console", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = typing.get_args(LogFormat)

_SECRET_WORDS = ("password", "token", "secret", "authorization")

# Libraries that are chatty at INFO about things a user does not need (amqtt logs every
# client session; paho every packet at DEBUG). They follow the chosen level only when it is
# debug.
_QUIET_AT_INFO = ("amqtt", "transitions", "paho", "pymodbus", "asyncio", "uvicorn")


def _redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a secret reach a log line, whatever a caller passed."""
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS) and event[key]:
            event[key] = "***"
    return event


def configure_logging(
    level: str = "info",
    fmt: LogFormat = "auto",
    stream: Any = None,
) -> None:
    """Set up structlog and the stdlib root logger. Safe to call more than once."""
    stream = stream if stream is not None else sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=False),
        _redact_secrets,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        colours = hasattr(stream, "isatty") and stream.isatty()
        renderer = structlog.dev.ConsoleRenderer(colors=colours, exception_formatter=structlog.dev.plain_traceback)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    logging.getLogger().handlers[:] = [handler]
    set_log_level(level)
    logging.captureWarnings(True)


def set_log_level(level: str) -> None:
    """Change the level of every logger givbridge set up, while running (the bridge device's select)."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    logging.getLogger().setLevel(numeric)
    for name in _QUIET_AT_INFO:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    # The library warns about every write echo outside its own allowlist, including the
    # registers givbridge deliberately extends it with (plant/writes.py); that module logs
    # nothing else.
    logging.getLogger("givenergy_modbus.pdu.write_registers").setLevel(max(numeric, logging.ERROR))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
