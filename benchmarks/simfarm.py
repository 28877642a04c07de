"""Run many simulated inverters in one process, for benchmarks of the bridge's own cost.

``python -m benchmarks.simfarm --count 50 --model hybrid-gen3 --latency 0.2`` prints one line
per simulator (``<host>:<port> <serial>``), then ``ready``, and serves until stdin closes or
it is signalled. Keeping the simulators out of the bridge's process means the bridge's CPU
time and memory are measured alone.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from givbridge.clock import SystemClock
from givbridge.sim import SimulatedPlant, SimulatorServer


async def serve(count: int, model: str, batteries: int, latency: float, service_time: float) -> None:
    clock = SystemClock()
    servers = []
    for index in range(count):
        # Serials from the seed alone collide in a farm of fifty (three random digits): number them.
        serial = f"SD2314G{index:03d}"
        plant = SimulatedPlant.create(
            model, batteries=batteries, clock=clock, seed=index, tz="Europe/London", serial=serial
        )
        server = SimulatorServer(plant, host="127.0.0.1", port=0, latency=latency, service_time=service_time)
        await server.start()
        servers.append(server)
        print(f"127.0.0.1:{server.port} {plant.serial}", flush=True)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # the parent closing stdin ends us too
    try:
        await stop.wait()
    finally:
        for server in servers:
            await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--model", default="hybrid-gen3")
    parser.add_argument("--batteries", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--service-time", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(serve(args.count, args.model, args.batteries, args.latency, args.service_time))


if __name__ == "__main__":
    main()
