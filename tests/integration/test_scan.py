"""``givbridge scan`` on a little LAN made of loopback addresses.

Network rule: every scan here stays inside 127.0.0.0/8. The LAN is 127.0.0.8/29 (hosts .9 to
.14, clear of 127.0.0.1 where other tests and tools listen):

====  ======================================  ==========================================
host  inverter port (8899 if free)            charger port (502 if free)
====  ======================================  ==========================================
.9    GivEnergy simulator, Hybrid Gen3
.10   GivEnergy simulator, Hybrid Gen1
.11   a camera: accepts, says nothing
.12   another maker's inverter (Modbus TCP)   the same device, answering Modbus with numbers
.13                                           a GivEnergy EV charger (Modbus TCP)
.14   nothing
====  ======================================  ==========================================
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from givbridge import cli
from givbridge.config_loading import load_settings
from givbridge.scan import (
    EVC_PORT,
    INVERTER_PORT,
    FoundCharger,
    FoundInverter,
    ScanError,
    ScanReport,
    decode_charger_clock,
    decode_charger_serial,
    default_networks,
    find_serial,
    host_interfaces,
    parse_network,
    render_config,
    scan,
)
from givbridge.sim import SimulatedPlant, SimulatorServer

LAN = ipaddress.IPv4Network("127.0.0.8/29")
GEN3, GEN1, CAMERA, FOREIGN, CHARGER, EMPTY = (f"127.0.0.{n}" for n in range(9, 15))
CHARGER_SERIAL = "GE2239EVC01"


def charger_registers(serial: str = CHARGER_SERIAL) -> list[int]:
    registers = [0] * 120
    for offset, character in enumerate(serial):
        registers[38 + offset] = ord(character)
    registers[97:103] = [2026, 5, 17, 9, 30, 0]  # its clock
    return registers


def modbus_device(registers: list[int], host: str, port: int) -> ModbusTcpServer:
    device = SimDevice(0, simdata=[SimData(0, values=registers, datatype=DataType.REGISTERS)])
    return ModbusTcpServer(device, address=(host, port))


class SilentListener:
    """Accepts connections and never says a word (a camera on 8899); counts them."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self._writers.add(writer)
        try:
            await reader.read()  # until the prober gives up and closes
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def __aenter__(self) -> SilentListener:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()


def bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_on(hosts: list[str]) -> int:
    """A port free on every one of ``hosts``."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((hosts[0], 0))
            port: int = sock.getsockname()[1]
        if all(bindable(host, port) for host in hosts):
            return port
    raise RuntimeError("no common free port")


class Lan:
    """The devices of the table above, on the default ports when this machine lets us bind them."""

    def __init__(self) -> None:
        inverter_hosts, charger_hosts = [GEN3, GEN1, CAMERA, FOREIGN], [FOREIGN, CHARGER]
        self.default_ports = all(bindable(h, INVERTER_PORT) for h in inverter_hosts) and all(
            bindable(h, EVC_PORT) for h in charger_hosts
        )
        self.inverter_port = INVERTER_PORT if self.default_ports else free_port_on(inverter_hosts)
        self.evc_port = EVC_PORT if self.default_ports else free_port_on(charger_hosts)
        self.gen3 = SimulatedPlant.create("hybrid-gen3", batteries=1, seed=11)
        self.gen1 = SimulatedPlant.create("hybrid-gen1", batteries=1, seed=12)
        self.camera = SilentListener(CAMERA, self.inverter_port)

    def port_arguments(self) -> dict[str, int]:
        return {} if self.default_ports else {"inverter_port": self.inverter_port, "evc_port": self.evc_port}

    def port_flags(self) -> list[str]:
        flags = []
        for name, value in self.port_arguments().items():
            flags += [f"--{name.replace('_', '-')}", str(value)]
        return flags


@pytest.fixture
async def lan() -> AsyncIterator[Lan]:
    network = Lan()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(SimulatorServer(network.gen3, host=GEN3, port=network.inverter_port))
        await stack.enter_async_context(SimulatorServer(network.gen1, host=GEN1, port=network.inverter_port))
        await stack.enter_async_context(network.camera)
        junk = [4000 + n for n in range(120)]
        for server in (
            modbus_device(junk, FOREIGN, network.inverter_port),
            modbus_device(junk, FOREIGN, network.evc_port),
            modbus_device(charger_registers(), CHARGER, network.evc_port),
        ):
            await server.serve_forever(background=True)
            stack.push_async_callback(server.shutdown)
        yield network


# ---------------------------------------------------------------------------- scanning


async def test_finds_the_givenergy_devices_and_rejects_the_rest(lan: Lan) -> None:
    report = await scan([LAN], wait=0.5, **lan.port_arguments())
    assert report.complete and report.addresses == 6
    assert [(i.host, i.port, i.serial, i.family.key) for i in report.inverters] == [
        (GEN3, lan.inverter_port, lan.gen3.serial, "hybrid-gen3"),
        (GEN1, lan.inverter_port, lan.gen1.serial, "hybrid-gen1"),
    ]
    assert all(i.dongle_serial for i in report.inverters)
    assert report.chargers == [FoundCharger(CHARGER, lan.evc_port, CHARGER_SERIAL, datetime(2026, 5, 17, 9, 30))]
    rejected = {(r.host, r.port): r.reason for r in report.rejected}
    assert set(rejected) == {(CAMERA, lan.inverter_port), (FOREIGN, lan.inverter_port), (FOREIGN, lan.evc_port)}
    assert "does not answer GivEnergy's protocol" in rejected[CAMERA, lan.inverter_port]
    assert "does not answer GivEnergy's protocol" in rejected[FOREIGN, lan.inverter_port]
    assert "without a GivEnergy charger's serial" in rejected[FOREIGN, lan.evc_port]
    assert report.elapsed < 5


async def test_the_command_prints_a_config_that_givbridge_accepts(lan: Lan, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "givbridge.cli", "scan", "--network", str(LAN), "--timeout", "0.5"]
    process = await asyncio.create_subprocess_exec(
        *command, *lan.port_flags(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    config = tmp_path / "found.yaml"
    config.write_bytes(out)
    settings = load_settings(config, addon_options=tmp_path / "absent.json")
    assert [(i.host, i.serial, i.prefix) for i in settings.inverters] == [
        (GEN3, lan.gen3.serial, "givtcp"),
        (GEN1, lan.gen1.serial, "givtcp2"),
    ]
    assert all(i.port == lan.inverter_port for i in settings.inverters)
    assert settings.evc is not None and (settings.evc.host, settings.evc.serial) == (CHARGER, CHARGER_SERIAL)
    messages = err.decode()
    assert f"not added: {CAMERA}:{lan.inverter_port}" in messages
    assert f"not added: {FOREIGN}:{lan.evc_port}" in messages
    assert "found 2 inverter(s) and 1 EV charger(s)" in messages


async def test_find_serial_skips_excluded_addresses(lan: Lan) -> None:
    found = await find_serial(lan.gen1.serial, [LAN], port=lan.inverter_port, wait=0.5)
    assert found is not None and found.host == GEN1
    assert await find_serial(lan.gen1.serial, [LAN], port=lan.inverter_port, wait=0.5, exclude=[GEN1]) is None


async def test_the_total_time_is_bounded() -> None:
    hosts = [str(h) for h in LAN.hosts()]
    port = free_port_on(hosts)
    async with AsyncExitStack() as stack:
        for host in hosts:
            await stack.enter_async_context(SilentListener(host, port))
        started = asyncio.get_running_loop().time()
        report = await scan([LAN], inverter_port=port, evc_port=None, wait=5.0, max_time=0.5)
        took = asyncio.get_running_loop().time() - started
    assert not report.complete
    assert took < 1.5


async def test_concurrency_is_bounded() -> None:
    hosts = [str(h) for h in LAN.hosts()]
    port = free_port_on(hosts)
    async with AsyncExitStack() as stack:
        listeners = [await stack.enter_async_context(SilentListener(host, port)) for host in hosts]
        opened: list[int] = []

        async def count_open() -> None:
            while True:
                opened.append(sum(listener.open for listener in listeners))
                await asyncio.sleep(0.01)

        counter = asyncio.create_task(count_open())
        try:
            report = await scan([LAN], inverter_port=port, evc_port=None, wait=0.2, concurrency=2)
        finally:
            counter.cancel()
            with suppress(asyncio.CancelledError):
                await counter
    assert report.complete and len(report.rejected) == len(hosts)
    assert all(listener.accepted == 1 for listener in listeners)
    assert max(opened) <= 2


# ---------------------------------------------------------------------------- which networks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.1.0/24", "127.0.1.0/24"),
        ("127.0.1.77/24", "127.0.1.0/24"),  # host bits ignored
        ("127.0.0.0/16", "127.0.0.0/16"),
        ("192.0.2.7", "192.0.2.7/32"),
    ],
)
def test_network_arguments(text: str, expected: str) -> None:
    assert str(parse_network(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("127.0.0.0/15", "more than a /16"), ("::1/128", "IPv4"), ("127.0.1/24x", "not a network")],
)
def test_refused_network_arguments(text: str, message: str) -> None:
    with pytest.raises(ScanError, match=message):
        parse_network(text)


def test_a_large_network_needs_allow_large() -> None:
    assert parse_network("127.0.0.0/15", allow_large=True).prefixlen == 15


def test_the_command_refuses_a_large_network_before_probing(capsys: pytest.CaptureFixture[str]) -> None:
    # Loopback even so: were the check ever to fail, the probes would stay on this machine.
    assert cli.main(["scan", "--network", "127.0.0.0/15"]) == 2
    assert "--allow-large" in capsys.readouterr().err


def interface(name: str, text: str) -> tuple[str, ipaddress.IPv4Interface]:
    return name, ipaddress.IPv4Interface(text)


def test_default_networks_are_private_and_at_most_a_slash_22() -> None:
    # Interfaces as data: choosing the private ones is what is tested; nothing is probed.
    chosen = default_networks(
        [
            interface("lo", "127.0.0.1/8"),
            interface("eth0", "192.168.1.23/24"),
            interface("wlan0", "10.1.2.3/8"),
            interface("docker0", "172.17.0.1/16"),
            interface("wan", "203.0.113.5/24"),
            interface("ll", "169.254.10.10/16"),
            interface("cgnat", "100.64.1.1/10"),
            interface("eth1", "192.168.1.99/24"),  # the same network again
        ]
    )
    assert [str(network) for network, _note in chosen] == ["192.168.1.0/24", "10.1.0.0/22", "172.17.0.0/22"]
    assert chosen[1][1] == "10.1.0.0/22 on wlan0 (the /22 around 10.1.2.3 of 10.0.0.0/8)"


def test_this_hosts_interfaces_are_read_without_traffic() -> None:
    found = host_interfaces()
    if not found:
        pytest.skip("no interfaces readable here (not Linux?)")
    assert ("lo", ipaddress.IPv4Interface("127.0.0.1/8")) in found


# ---------------------------------------------------------------------------- reading answers


def test_charger_serial_and_clock() -> None:
    registers = charger_registers()
    assert decode_charger_serial(registers[38:69]) == CHARGER_SERIAL
    assert decode_charger_clock(registers[97:103]) == datetime(2026, 5, 17, 9, 30)
    assert decode_charger_serial([0] * 31) is None
    assert decode_charger_serial([4000] * 31) is None
    assert decode_charger_clock([1999, 1, 1, 0, 0, 0]) is None
    assert decode_charger_clock([2026, 13, 1, 0, 0, 0]) is None


def test_the_config_lists_one_charger_and_comments_the_others() -> None:
    from givbridge.plant.families import FAMILIES

    inverter = FoundInverter("192.0.2.5", 18899, "SA2314G123", FAMILIES["hybrid-gen2"], 0x2001, 449, "WF2314G001")
    chargers: list[Any] = [
        FoundCharger("192.0.2.6", 502, "EVC-ONE", datetime(2026, 1, 1)),
        FoundCharger("192.0.2.7", 502, "EVC-TWO", datetime(2026, 1, 1)),
    ]
    report = ScanReport([ipaddress.IPv4Network("192.0.2.0/24")], 254, [inverter], chargers)
    text = render_config(report)
    assert "    port: 18899\n" in text
    assert "    serial: SA2314G123  # Hybrid Gen2, firmware 449\n" in text
    assert '\nevc:\n  host: 192.0.2.6\n  serial: "EVC-ONE"\n' in text
    assert '# evc:\n#   host: 192.0.2.7\n#   serial: "EVC-TWO"\n' in text
