"""``givbridge demo``: an embedded MQTT broker, a simulated inverter and the bridge, in one process.

It is the whole product on a machine with no inverter and no broker: the bridge connects to
the simulator over TCP with the real protocol and publishes to the embedded broker exactly as
it would in a house. Its state lives in a temporary directory removed at exit. With ``--evc`` a
simulated EV charger (plain Modbus TCP, a car plugged in) joins them, drawing from the same house.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from givbridge.app import Application, run_until_signalled
from givbridge.clock import ScaledClock, SystemClock, local_zone
from givbridge.config_checks import ConfigError
from givbridge.config_loading import load_settings
from givbridge.log import LOG_FORMATS, LOG_LEVELS, configure_logging, get_logger
from givbridge.mqtt.broker import EmbeddedBroker, PortInUse
from givbridge.plant.families import FAMILIES
from givbridge.sim import PROFILES, SimulatedPlant, SimulatorServer
from givbridge.sim.evc import Car, EvcSimulator, EvcSimulatorServer
from givbridge.sim.profile_spec import MAX_PACKS

log = get_logger(__name__)

HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=1883, help="port of the embedded MQTT broker (default 1883)")
    parser.add_argument(
        "--model", choices=sorted(PROFILES), default="hybrid-gen3", help="simulated model (default hybrid-gen3)"
    )
    parser.add_argument(
        "--batteries",
        type=int,
        default=None,
        choices=range(MAX_PACKS + 1),
        metavar=f"0-{MAX_PACKS}",
        help="battery packs (default: 2 on a hybrid, the model's usual otherwise)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="run the simulated day this many times faster")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the simulated dongle takes per request")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds between measurement polls")
    parser.add_argument("--config", type=Path, help="extra settings (YAML), e.g. for the HTTP shim")
    parser.add_argument(
        "--evc", action="store_true", help="also simulate a GivEnergy EV charger (Modbus TCP) with a car plugged in"
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS)
    parser.add_argument("--log-format", choices=LOG_FORMATS)


def _banner(
    port: int, model: str, serial: str, batteries: int, sim_port: int, root: str, charger: EvcSimulatorServer | None
) -> str:
    control = f"{root}/control/{serial}"
    evc = ""
    if charger is not None:
        evc = (
            f"  EV charger       simulated {charger.sim.serial}, a car plugged in, at {HOST}:{charger.port}\n"
            f"                   try: mosquitto_pub -h {HOST} -p {port} "
            f"-t {root}/control/{charger.sim.serial}/setChargingMode -m Solar\n"
        )
    return f"""
givbridge demo is running
  MQTT broker      mqtt://{HOST}:{port} (embedded)
  Inverter         simulated {model} {serial}, {batteries} battery pack(s), at {HOST}:{sim_port}
{evc}
Watch the data (first values within a few seconds):
  givbridge watch --mqtt-port {port} '{root}/#'
  (or with mosquitto's clients: mosquitto_sub -h {HOST} -p {port} -t '{root}/#' -v)

Send a command, then read its result:
  mosquitto_pub -h {HOST} -p {port} -t {control}/setChargeTarget -m 80
  mosquitto_sub -h {HOST} -p {port} -t '{root}/{serial}/response/#' -v

Stop with Ctrl-C.
"""


async def main(args: argparse.Namespace) -> int:
    configure_logging(args.log_level or "info", args.log_format or "auto")
    clock = ScaledClock(speed=args.speed) if args.speed != 1 else SystemClock()
    # The simulated inverter keeps the same local time the bridge will assume for it.
    zone = str(local_zone(None))
    batteries = args.batteries
    if batteries is None and args.model.startswith("hybrid"):
        batteries = 2
    try:
        sim = SimulatedPlant.create(
            args.model, batteries=batteries, serial=None, clock=clock, seed=1, tz=zone, start_soc=60
        )
    except ValueError as exc:  # e.g. batteries on a model that has none
        print(f"givbridge demo: {exc}", file=sys.stderr)
        return 2
    broker = EmbeddedBroker(HOST, args.port)
    try:
        await broker.start()
    except PortInUse as exc:
        print(f"givbridge demo: {exc.strerror}", file=sys.stderr)
        return 2
    server = SimulatorServer(sim, host=HOST, latency=args.latency)
    charger: EvcSimulatorServer | None = None
    if args.evc:
        # The charger shares the inverter's grid voltage (same seed) and shows up in its house load.
        car_charger = EvcSimulator(clock=clock, tz=zone, seed=1)
        car_charger.plug_in(Car(capacity_kwh=60, soc=40))
        sim.extra_load = lambda: car_charger.power_w
        charger = EvcSimulatorServer(car_charger, host=HOST)
    try:
        await server.start()
        if charger is not None:
            await charger.start()
        with tempfile.TemporaryDirectory(prefix="givbridge-demo-") as data_dir:
            overrides: dict[str, Any] = {
                "inverters": [{"host": HOST, "port": server.port}],
                "mqtt": {"host": HOST, "port": args.port},
                "polling": {
                    "poll_interval": args.poll_interval,
                    "settings_interval": max(60.0, args.poll_interval),
                    # A local simulator needs neither the pacing nor the patience a Wi-Fi
                    # dongle does.
                    "request_gap": 0.02,
                    "probe_timeout": 0.2,
                },
                "data_dir": data_dir,
            }
            if charger is not None:
                overrides["evc"] = {"host": HOST, "port": charger.port, "poll_interval": max(2.0, args.poll_interval)}
            if args.log_level:
                overrides["log"] = {"level": args.log_level}
            try:
                settings = load_settings(args.config, overrides)
            except ConfigError as exc:
                print(f"givbridge demo: {exc}", file=sys.stderr)
                return 2
            app = Application(settings)
            banner = _banner(
                args.port,
                FAMILIES[args.model].display,
                sim.serial,
                len(sim.battery_serials or sim.unit_serials),
                server.port,
                settings.mqtt.root,
                charger,
            )
            await run_until_signalled(app.start, app.stop, ready=lambda: print(banner, flush=True))
    finally:
        if charger is not None:
            await charger.stop()
        await server.stop()
        await broker.stop(timeout=2.0)
    return 0
