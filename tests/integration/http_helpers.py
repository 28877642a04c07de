"""The HTTP shim under test: simulators, the real bridge with ``http.enabled``, and httpx clients.

Everything is real: the simulators speak the inverter protocol over TCP, the bridge runs
its device runners and the shim on uvicorn in the test's event loop, and the clients are
httpx over sockets on 127.0.0.0/8 (a client can be bound to 127.0.0.2 to come from another
address, for the trusted-network tests). Ports are picked by the kernel (``port: 0``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from givbridge.app import Application
from givbridge.http.server import HttpServer
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import Broker, free_port
from tests.integration.bridge_helpers import bridge_settings, fast_clock, first_snapshot

ZONE = "Europe/London"
TOKEN = "test-token-0123456789"
#: A second loopback address: a client bound to it is "another machine" for trusted_networks.
OTHER_CLIENT = "127.0.0.2"


@dataclass
class HttpRig:
    app: Application
    sims: list[SimulatedPlant]
    servers: list[SimulatorServer]

    @property
    def shim(self) -> HttpServer:
        assert self.app.http is not None, "the shim did not start"
        return self.app.http

    @property
    def base(self) -> str:
        """The main port's URL."""
        return f"http://127.0.0.1:{self.shim.port}"

    def inverter_base(self, number: int) -> str:
        """Inverter ``number``'s own port's URL (GivTCP's 6345, 6346, ...)."""
        return f"http://127.0.0.1:{self.shim.inverter_ports[number - 1]}"

    def serial(self, number: int = 1) -> str:
        return self.sims[number - 1].serial

    def holding(self, *registers: int, number: int = 1) -> dict[int, int]:
        return {register: self.sims[number - 1].holding(register) for register in registers}

    def writes(self, number: int = 1) -> int:
        """Register writes that have reached the simulated dongle so far."""
        return sum(n for (kind, *_), n in self.servers[number - 1].requests.items() if kind == "W")

    def reads(self, number: int = 1) -> int:
        """Holding-register reads that have reached the simulated dongle so far."""
        return sum(n for (kind, *_), n in self.servers[number - 1].requests.items() if kind == "HR")


def client(*, token: str | None = None, local_address: str | None = None, timeout: float = 15) -> httpx.AsyncClient:
    """An HTTP client, optionally sending the bearer token and binding to ``local_address``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.AsyncHTTPTransport(local_address=local_address, retries=0)
    return httpx.AsyncClient(transport=transport, headers=headers, timeout=timeout)


@asynccontextmanager
async def http_rig(
    data_dir: Path,
    families: list[str],
    *,
    broker: Broker | None = None,
    mqtt: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[HttpRig]:
    """Simulators of ``families`` behind one bridge with the shim on (``http`` settings in ``overrides``).

    MQTT goes to ``broker``, or without one to a port where no broker listens (the bridge then
    runs on, retrying, and reports itself unhealthy); ``mqtt`` adds settings either way.
    """
    clock = fast_clock()
    async with AsyncExitStack() as stack:
        sims: list[SimulatedPlant] = []
        servers: list[SimulatorServer] = []
        for index, family in enumerate(families):
            sim = SimulatedPlant.create(family, batteries=1, clock=clock, seed=31 + index, tz=ZONE, start_soc=50)
            sims.append(sim)
            servers.append(await stack.enter_async_context(SimulatorServer(sim)))
        if broker is not None:
            mqtt_settings = broker.settings(root=f"Http{data_dir.name}"[:40]).model_dump()
        else:
            mqtt_settings = {"host": "127.0.0.1", "port": free_port(), "client_id": f"givbridge-{data_dir.name}"[:64]}
        http = {"enabled": True, "port": 0, "first_inverter_port": 0, **overrides.pop("http", {})}
        settings = bridge_settings(
            data_dir, [s.port for s in servers], mqtt={**mqtt_settings, **(mqtt or {})}, http=http, **overrides
        )
        app = Application(settings, clock=clock)
        stack.push_async_callback(app.stop)
        await app.start()
        for runner in app.bridge.runners:
            await first_snapshot(runner, within=15)
        if broker is not None:
            assert await app.mqtt.wait_connected(10), "the bridge did not connect to the broker"
        yield HttpRig(app, sims, servers)
