"""The library alone: givenergy-modbus polling simulators as givbridge does, and nothing else.

``python -m benchmarks.library_alone --poll-interval 5 --settings-interval 300 --gap 0.25
--jitter 0.1 127.0.0.1:PORT ...`` detects each inverter, then polls it: ``refresh()`` every
poll interval and, every settings interval, ``load_config()`` and the HR300 bank too (which
givbridge reads on hybrids). It prints ``ready`` once every inverter has been polled, then
``polled <n>`` (polls so far, all inverters) after each poll, until stdin closes. It imports
nothing from givbridge: its memory and CPU are the baseline the bridge is measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from givenergy_modbus.client.client import Client
from givenergy_modbus.pdu import ReadHoldingRegistersRequest


class Poller:
    def __init__(self, clients: list[Client], poll_interval: float, settings_interval: float) -> None:
        self.clients = clients
        self.poll_interval = poll_interval
        self.settings_interval = settings_interval
        self.polls = 0
        self.first = asyncio.Event()
        self._done = 0

    async def run(self, client: Client, response_timeout: float) -> None:
        await client.connect()
        await client.detect(timeout=response_timeout, retries=3)
        inverter = client.plant.capabilities.inverter_address
        next_full = 0.0
        first = True
        while True:
            started = time.monotonic()
            if started >= next_full:
                next_full = started + self.settings_interval
                await client.load_config(timeout=response_timeout, retries=1)
                hr300 = ReadHoldingRegistersRequest(base_register=300, register_count=60, device_address=inverter)
                await client.send_request_and_await_response(hr300, timeout=response_timeout, retries=1)
            await client.refresh(timeout=response_timeout, retries=1)
            self.polls += 1
            print(f"polled {self.polls}", flush=True)
            if first:
                first = False
                self._done += 1
                if self._done == len(self.clients):
                    self.first.set()
            await asyncio.sleep(max(0.0, started + self.poll_interval - time.monotonic()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("addresses", nargs="+")
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--settings-interval", type=float, default=300.0)
    parser.add_argument("--gap", type=float, default=0.25)
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    clients = []
    for address in args.addresses:
        host, port = address.rsplit(":", 1)
        clients.append(Client(host, int(port), connect_timeout=5.0, tx_message_wait=args.gap, tx_jitter=args.jitter))
    poller = Poller(clients, args.poll_interval, args.settings_interval)
    tasks = [asyncio.create_task(poller.run(client, args.timeout)) for client in clients]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)
    await poller.first.wait()
    print("ready", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
