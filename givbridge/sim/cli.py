"""``givbridge simulate``: serve a simulated inverter until interrupted.

``givbridge/cli.py`` owns the command line; it calls :func:`add_arguments` on the
``simulate`` sub-parser and runs :func:`main` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from givbridge.clock import Clock, ScaledClock, SystemClock
from givbridge.sim.evc import Car, EvcSimulator, EvcSimulatorServer
from givbridge.sim.fault_script import SYNTAX, FaultScript, FaultSpecError
from givbridge.sim.plant import SimulatedPlant
from givbridge.sim.profile_spec import MAX_PACKS, METER_ADDRESSES
from givbridge.sim.profiles import PROFILES
from givbridge.sim.server import SimulatorServer


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than zero, not {text}")
    return value


def _fault_script(text: str) -> FaultScript:
    try:
        return FaultScript.parse(text)
    except FaultSpecError as exc:  # argparse shows this message, then exits with status 2
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=sorted(PROFILES), default="hybrid-gen3", help="model family to simulate")
    parser.add_argument(
        "--batteries",
        type=int,
        choices=range(MAX_PACKS + 1),
        default=None,
        metavar=f"0-{MAX_PACKS}",
        help="LV packs, HV modules, or the inverters an EMS manages / All-in-Ones a Gateway parallels "
        "(default: the model's usual)",
    )
    parser.add_argument(
        "--meters",
        type=int,
        choices=range(len(METER_ADDRESSES) + 1),
        default=None,
        metavar=f"0-{len(METER_ADDRESSES)}",
        help="energy meters at 0x01 upwards (default: the model's usual)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8899, help="TCP port (default: 8899, the dongle's; 0 = any)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds before each answer (default: 0.2)")
    parser.add_argument("--jitter", type=float, default=0.0, help="extra random latency, up to this many seconds")
    parser.add_argument(
        "--service-time",
        type=float,
        default=0.1,
        help="seconds the inverter spends on each request, one at a time (default: 0.1)",
    )
    parser.add_argument("--speed", type=_positive, default=1.0, help="simulated seconds per real second (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for serials, weather and household (default: 0)")
    parser.add_argument("--heartbeat", type=_positive, default=180.0, help="seconds between dongle heartbeats")
    parser.add_argument("--serial", default=None, help="inverter serial (default: derived from the seed)")
    parser.add_argument("--tz", default="Europe/London", help="the inverter's time zone (default: Europe/London)")
    parser.add_argument("--start-soc", type=float, default=50.0, help="battery state of charge at start, %%")
    parser.add_argument("--fan-out", action="store_true", help="send every response to every connected client")
    parser.add_argument("--faults", type=_fault_script, metavar="SPEC", help=f"misbehave on a schedule: {SYNTAX}")
    parser.add_argument(
        "--evc",
        type=int,
        metavar="PORT",
        help="also serve a simulated EV charger (Modbus TCP) with a car plugged in on this port (0 = any free port)",
    )


async def main(args: argparse.Namespace) -> int:
    """Serve until cancelled, SIGINT or SIGTERM; returns the process exit code."""
    clock: Clock = ScaledClock(speed=args.speed) if args.speed != 1 else SystemClock()
    try:
        plant = SimulatedPlant.create(
            args.model,
            batteries=args.batteries,
            serial=args.serial,
            clock=clock,
            seed=args.seed,
            tz=args.tz,
            start_soc=args.start_soc,
            meters=args.meters,
        )
    except ValueError as exc:  # a battery or meter count the model cannot have
        print(f"givbridge simulate: {exc}", file=sys.stderr)
        return 2
    server = SimulatorServer(
        plant,
        host=args.host,
        port=args.port,
        latency=args.latency,
        jitter=args.jitter,
        service_time=args.service_time,
        heartbeat_interval=args.heartbeat,
        fan_out=args.fan_out,
        seed=args.seed,
    )
    charger: EvcSimulatorServer | None = None
    if args.evc is not None:
        # Same seed: the charger sees the inverter's grid voltage; its draw is in the inverter's house load.
        car_charger = EvcSimulator(clock=clock, tz=args.tz, seed=args.seed)
        car_charger.plug_in(Car())
        plant.extra_load = lambda: car_charger.power_w
        charger = EvcSimulatorServer(car_charger, host=args.host, port=args.evc)
    stop = asyncio.Event()
    script: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        batteries = ", ".join(plant.battery_serials or plant.unit_serials) or "none"
        meters = ", ".join(f"0x{address:02x}" for address in plant.meter_addresses) or "none"
        print(
            f"simulating {args.model} {plant.serial} (dongle {plant.dongle_serial}, batteries: {batteries}, "
            f"meters: {meters}) on {args.host}:{server.port}",
            flush=True,
        )
        if charger is not None:
            await charger.start()
            print(f"simulating EV charger {charger.sim.serial} on {args.host}:{charger.port}", flush=True)
        if args.faults is not None:
            # Real seconds from now: link faults are measured against real client timeouts.
            script = asyncio.create_task(args.faults.run(server.faults), name="sim-faults")
            print(f"faults: {args.faults}", flush=True)
        await stop.wait()
    finally:
        if script is not None:
            script.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await script
        for signum in signals:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        if charger is not None:
            await charger.stop()
        await server.stop()
    return 0
