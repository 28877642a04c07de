"""``givbridge`` command line: run | demo | simulate | watch | scan | health | migrate-givtcp | commands | version."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from givbridge import __version__
from givbridge.config import Settings
from givbridge.config_checks import ConfigError
from givbridge.config_loading import load_settings
from givbridge.log import LOG_FORMATS, LOG_LEVELS, configure_logging, get_logger

log = get_logger(__name__)


def _host_port(value: str, default_port: int) -> dict[str, Any]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return {"host": value, "port": default_port}
    return {"host": host, "port": int(port)}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML or JSON settings file")
    parser.add_argument("--log-level", choices=LOG_LEVELS)
    parser.add_argument("--log-format", choices=LOG_FORMATS)


def _add_bridge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inverter",
        action="append",
        metavar="HOST[:PORT]",
        help="inverter dongle address (repeat for more); replaces the configured list",
    )
    parser.add_argument("--mqtt-host", help="MQTT broker host")
    parser.add_argument("--mqtt-port", type=int, help="MQTT broker port")
    parser.add_argument("--data-dir", type=Path, help="where givbridge keeps its state")
    parser.add_argument("--read-only", action="store_true", default=None, help="refuse every write")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, in the shape of the config file."""
    overrides: dict[str, Any] = {}
    if getattr(args, "log_level", None):
        overrides.setdefault("log", {})["level"] = args.log_level
    if getattr(args, "log_format", None):
        overrides.setdefault("log", {})["format"] = args.log_format
    if getattr(args, "inverter", None):
        overrides["inverters"] = [_host_port(value, 8899) for value in args.inverter]
    if getattr(args, "mqtt_host", None):
        overrides.setdefault("mqtt", {})["host"] = args.mqtt_host
    if getattr(args, "mqtt_port", None):
        overrides.setdefault("mqtt", {})["port"] = args.mqtt_port
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "read_only", None):
        overrides["read_only"] = True
    return overrides


def _settings(args: argparse.Namespace, addon_defaults: dict[str, Any] | None = None) -> Settings:
    settings = load_settings(getattr(args, "config", None), _overrides(args), addon_defaults=addon_defaults)
    configure_logging(settings.log.level, settings.log.format)
    return settings


async def _bridge_settings(args: argparse.Namespace) -> Settings:
    """Settings for ``run``; in the Home Assistant add-on, the Supervisor's MQTT broker goes beneath the options."""
    from givbridge import addon

    # The Supervisor lookup is blocking HTTP: in a worker thread, never on the event loop.
    supervisor = await asyncio.to_thread(addon.mqtt_from_supervisor) if addon.in_addon() else None
    settings = _settings(args, addon_defaults=supervisor.defaults if supervisor else None)
    if supervisor is not None:
        (log.warning if supervisor.level == "warning" else log.info)(supervisor.message)
    return settings


#: Worker threads of a running bridge. They carry only short blocking calls off the event loop
#: (state documents read and written, host names looked up), and every thread that has run
#: keeps its own stack and allocator arena resident: asyncio's default of up to six threads,
#: all started by the burst of document reads when many inverters connect at once, held
#: about 2 MB more than two do with ten inverters.
WORKER_THREADS = 2


async def _run(args: argparse.Namespace) -> int:
    from givbridge.app import Application, run_until_signalled
    from givbridge.clock import SystemClock, clock_from_environment

    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="givbridge-worker")
    )
    settings = await _bridge_settings(args)
    if not settings.inverters and settings.evc is None:  # an EV charger alone is fine
        raise ConfigError("no inverters configured: add an `inverters:` list to the config file or pass --inverter")
    clock = clock_from_environment()  # the system clock, unless a test sets GIVBRIDGE_DEV_CLOCK
    if not isinstance(clock, SystemClock):
        log.warning("running on an accelerated test clock (GIVBRIDGE_DEV_CLOCK): not for real inverters")
    app = Application(settings, clock=clock)
    log.info("givbridge starting", version=__version__, inverters=len(settings.inverters))
    await run_until_signalled(app.start, app.stop)
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from givbridge.sim import cli as sim_cli

    configure_logging(args.log_level or "info", args.log_format or "auto")
    return await sim_cli.main(args)


class _SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser that defines its options only when that subcommand is parsed.

    The modules behind ``simulate``, ``demo``, ``watch``, ``scan`` ... are imported only to
    define their options and run; a bridge started with ``givbridge run`` never needs them
    (the simulator alone is about 3 MB of a running bridge's memory).
    """

    def __init__(self, *args: Any, define: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._define = define

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads; same behaviour
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        define, self._define = self._define, None
        if define is not None:
            define(self)
        return super().parse_known_args(args, namespace)


def _simulate_options(parser: argparse.ArgumentParser) -> None:
    from givbridge.sim import cli as sim_cli

    parser.add_argument("--log-level", choices=LOG_LEVELS)
    parser.add_argument("--log-format", choices=LOG_FORMATS)
    sim_cli.add_arguments(parser)


def _module_options(module: str) -> Callable[[argparse.ArgumentParser], None]:
    """Define a subcommand from its module: the module's ``add_arguments``, and ``main`` as its handler."""

    def define(parser: argparse.ArgumentParser) -> None:
        loaded = importlib.import_module(module)
        loaded.add_arguments(parser)
        parser.set_defaults(handler=loaded.main)

    return define


def _health_options(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    _module_options("givbridge.health")(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="givbridge",
        description="Local bridge between GivEnergy inverters and MQTT / Home Assistant.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_SubcommandParser)

    run = sub.add_parser("run", help="poll the configured inverters and publish to MQTT")
    _add_common(run)
    _add_bridge_options(run)
    run.set_defaults(handler=_run)

    simulate = sub.add_parser(
        "simulate", help="run a simulated inverter speaking the real protocol", define=_simulate_options
    )
    simulate.set_defaults(handler=_simulate)
    sub.add_parser(
        "demo",
        help="embedded broker + simulated inverter + bridge, on this machine",
        define=_module_options("givbridge.demo"),
    )
    sub.add_parser(
        "watch",
        help="print the messages on a broker (no mosquitto clients needed)",
        define=_module_options("givbridge.watch"),
    )
    sub.add_parser(
        "scan",
        help="find GivEnergy inverters and EV chargers on the LAN; print their config",
        define=_module_options("givbridge.scan"),
    )
    sub.add_parser(
        "health",
        help="exit 0 if the running bridge is healthy (for container health checks)",
        define=_health_options,
    )
    sub.add_parser(
        "migrate-givtcp",
        help="turn GivTCP's allsettings.json into a givbridge config file",
        define=_module_options("givbridge.migrate"),
    )
    sub.add_parser(
        "commands",
        help="list every command with its payload forms and models",
        define=_module_options("givbridge.commands.docs"),
    )
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(handler=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"givbridge {__version__}")
        return 0
    try:
        status: int = asyncio.run(args.handler(args))
    except ConfigError as exc:
        print(f"givbridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
