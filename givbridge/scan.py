"""Finding GivEnergy inverters and EV chargers on the LAN (``givbridge scan``, ``follow_serial``).

GivTCP's scanner (givtcp.md §7) showed what goes wrong: a bare TCP connect to 8899 or 502
also "finds" CCTV cameras and other vendors' inverters; a /16 takes hours; and scanning at
every start makes addresses flip. Here:

* an open port counts only after a protocol read. An inverter's dongle must answer a read of
  HR(0..59) at device 0x11 in GivEnergy's transparent framing, and the library must decode
  from it a device type it knows and a valid serial. A charger must answer a plain Modbus TCP
  read of its serial (HR38-68, one ASCII character per register) and its clock (HR97-102),
  the registers GivTCP identifies it by, with plausible values. Anything else is reported as
  rejected and never added;
* concurrency and total time are bounded; networks larger than a /16 are refused unless asked
  for; without ``--network`` only this host's own private networks are scanned, at most the
  /22 around the address on each interface;
* scanning is something a person runs once, or ``follow_serial`` does for one known serial
  when its inverter has gone missing; never a side effect of starting up.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from givenergy_modbus.client.client import Client
from givenergy_modbus.exceptions import CommunicationError
from givenergy_modbus.model.plant import Plant
from givenergy_modbus.pdu import ReadHoldingRegistersRequest

from givbridge.config_checks import default_prefix, is_serial
from givbridge.log import get_logger
from givbridge.plant import registers as reg
from givbridge.plant.families import Family, UnknownModel, family_for

log = get_logger(__name__)

INVERTER_PORT = 8899
EVC_PORT = 502
INVERTER_ADDRESS = 0x11  # where every GivEnergy model answers its identity block HR(0..59)
EVC_SERIAL = (38, 31)  # (first register, count): the charger's serial, one ASCII character each
EVC_CLOCK = (97, 6)  # year, month, day, hour, minute, second
# GivTCP reads the charger with pymodbus 2's default unit id, 0; chargers answer on it.
EVC_DEVICE_ID = 0
LARGEST_NETWORK = 16  # prefix length: bigger networks need --allow-large
DEFAULT_INTERFACE_LIMIT = 22  # prefix length: the most scanned per interface without --network

_PRIVATE = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


class ScanError(Exception):
    """The scan cannot run as asked; ``str()`` is a message for a person."""


@dataclass(frozen=True, slots=True)
class FoundInverter:
    host: str
    port: int
    serial: str
    family: Family
    device_type_code: int
    firmware: int | None
    dongle_serial: str | None


@dataclass(frozen=True, slots=True)
class FoundCharger:
    host: str
    port: int
    serial: str
    clock: datetime


@dataclass(frozen=True, slots=True)
class Rejected:
    """Something listens on the port but is not a GivEnergy device."""

    host: str
    port: int
    reason: str


Finding = FoundInverter | FoundCharger | Rejected


@dataclass
class ScanReport:
    networks: list[ipaddress.IPv4Network]
    addresses: int
    inverters: list[FoundInverter] = field(default_factory=list)
    chargers: list[FoundCharger] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    complete: bool = True  # False when max_time ran out first
    elapsed: float = 0.0

    def add(self, finding: Finding) -> None:
        if isinstance(finding, FoundInverter):
            self.inverters.append(finding)
        elif isinstance(finding, FoundCharger):
            self.chargers.append(finding)
        else:
            self.rejected.append(finding)

    def sort(self) -> None:
        def key(item: FoundInverter | FoundCharger | Rejected) -> tuple[int, int]:
            return int(ipaddress.IPv4Address(item.host)), item.port

        self.inverters.sort(key=key)
        self.chargers.sort(key=key)
        self.rejected.sort(key=key)


# ---------------------------------------------------------------------------- probes


async def probe_inverter(host: str, port: int = INVERTER_PORT, wait: float = 1.0) -> FoundInverter | Rejected | None:
    """The GivEnergy inverter answering at ``host:port``; None when nothing listens there."""
    plant = Plant()
    client = Client(host, port, connect_timeout=wait, plant=plant, tx_message_wait=0.0, tx_jitter=0.0)
    try:
        await client.connect()
    except (CommunicationError, TimeoutError, OSError):
        return None
    try:
        request = ReadHoldingRegistersRequest(base_register=0, register_count=60, device_address=INVERTER_ADDRESS)
        # One retry: a dongle sometimes drops the first request after a connect.
        response = await client.send_request_and_await_response(
            request, timeout=wait, retries=1, retry_delay=0.0, warn_timeout=False
        )
    except (TimeoutError, CommunicationError):
        return Rejected(host, port, "accepts connections but does not answer GivEnergy's protocol")
    finally:
        with suppress(Exception):  # closing a half-dead connection must not hide the verdict
            await client.close()
    registers: dict[int, int] = response.to_dict()
    device_type = int(registers.get(reg.DEVICE_TYPE_CODE) or 0)
    firmware = registers.get(reg.ARM_FIRMWARE)
    try:
        family = family_for(device_type, int(firmware or 0))
    except UnknownModel as exc:
        return Rejected(host, port, f"answers GivEnergy's protocol, but {exc}")
    serial = plant.inverter_serial  # the library's decoding of HR13-17 (or the frame envelope)
    if not serial or not is_serial(serial):
        return Rejected(host, port, f"answers GivEnergy's protocol, but without a valid serial ({serial!r})")
    dongle = getattr(response, "data_adapter_serial_number", None)
    return FoundInverter(host, port, serial, family, device_type, firmware, dongle or None)


def decode_charger_serial(registers: Sequence[int]) -> str | None:
    """The charger serial in HR38-68 (a character per register, zero-padded), or None if it is not one."""
    if any(r != 0 and not 0x21 <= r <= 0x7E for r in registers):
        return None
    serial = "".join(chr(r) for r in registers if r)
    return serial if len(serial) >= 4 and serial.replace("-", "").isalnum() else None


def decode_charger_clock(registers: Sequence[int]) -> datetime | None:
    """The charger clock in HR97-102, or None if the registers do not hold a plausible date."""
    if len(registers) != 6 or not 2000 <= registers[0] <= 2099:
        return None
    try:
        year, month, day, hour, minute, second = registers
        return datetime(year, month, day, hour, minute, second)  # its wall clock, in a zone it does not say
    except ValueError:
        return None


async def probe_charger(host: str, port: int = EVC_PORT, wait: float = 1.0) -> FoundCharger | Rejected | None:
    """The GivEnergy EV charger answering plain Modbus TCP at ``host:port``; None when nothing listens."""
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.exceptions import ModbusException

    client = AsyncModbusTcpClient(host, port=port, timeout=wait, retries=0, reconnect_delay=0)
    try:
        if not await client.connect():
            return None
        serial_block = await client.read_holding_registers(EVC_SERIAL[0], count=EVC_SERIAL[1], device_id=EVC_DEVICE_ID)
        clock_block = await client.read_holding_registers(EVC_CLOCK[0], count=EVC_CLOCK[1], device_id=EVC_DEVICE_ID)
    except (ModbusException, OSError, TimeoutError):
        return Rejected(host, port, "accepts connections but does not answer Modbus TCP")
    finally:
        client.close()
    if serial_block.isError() or clock_block.isError():
        return Rejected(host, port, "answers Modbus TCP, but refuses a GivEnergy charger's registers")
    serial = decode_charger_serial(serial_block.registers)
    clock = decode_charger_clock(clock_block.registers)
    if serial is None or clock is None:
        return Rejected(host, port, "answers Modbus TCP, but without a GivEnergy charger's serial and clock")
    return FoundCharger(host, port, serial, clock)


# ---------------------------------------------------------------------------- running probes

Probe = Callable[[], Awaitable[Finding | None]]


async def _run_probes(
    probes: Iterator[Probe],
    *,
    concurrency: int,
    budget: float,
    on_finding: Callable[[Finding], bool],
) -> None:
    """Run ``probes`` on ``concurrency`` workers, each probe within ``budget`` seconds.

    ``on_finding`` returns True to stop early. Workers share one iterator, so a /16 never
    becomes 65 000 tasks at once.
    """
    stop = asyncio.Event()

    async def worker() -> None:
        for probe in probes:
            if stop.is_set():
                return
            try:
                async with asyncio.timeout(budget):
                    finding = await probe()
            except TimeoutError:
                continue  # a silent address; the probe's own timeouts normally come first
            except Exception:  # one odd device must not end the whole scan
                log.warning("probe failed", probe=repr(probe), exc_info=True)
                continue
            if finding is not None and on_finding(finding):
                stop.set()
                return

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def host_count(network: ipaddress.IPv4Network) -> int:
    """How many addresses of ``network`` are probed (not its network and broadcast addresses)."""
    return network.num_addresses - 2 if network.prefixlen < 31 else network.num_addresses


def _addresses(networks: Iterable[ipaddress.IPv4Network], exclude: Iterable[str] = ()) -> Iterator[str]:
    skip = set(exclude)
    for network in networks:
        for address in network.hosts():
            if str(address) not in skip:
                yield str(address)


async def scan(
    networks: Sequence[ipaddress.IPv4Network],
    *,
    inverter_port: int = INVERTER_PORT,
    evc_port: int | None = EVC_PORT,
    wait: float = 1.0,
    concurrency: int = 64,
    max_time: float = 300.0,
) -> ScanReport:
    """Every GivEnergy inverter (and charger, unless ``evc_port`` is None) on ``networks``."""
    report = ScanReport(list(networks), sum(host_count(n) for n in networks))
    started = time.monotonic()

    def probes() -> Iterator[Probe]:
        for host in _addresses(networks):
            yield partial(probe_inverter, host, inverter_port, wait)
            if evc_port is not None:
                yield partial(probe_charger, host, evc_port, wait)

    def collect(finding: Finding) -> bool:
        report.add(finding)
        return False

    try:
        async with asyncio.timeout(max_time):
            await _run_probes(probes(), concurrency=concurrency, budget=4 * wait + 1, on_finding=collect)
    except TimeoutError:
        report.complete = False
    report.elapsed = time.monotonic() - started
    report.sort()
    return report


async def find_serial(
    serial: str,
    networks: Sequence[ipaddress.IPv4Network],
    *,
    port: int = INVERTER_PORT,
    wait: float = 1.0,
    concurrency: int = 64,
    exclude: Iterable[str] = (),
    max_time: float = 300.0,
) -> FoundInverter | None:
    """The inverter with ``serial`` on ``networks`` (skipping ``exclude``), or None."""
    found: list[FoundInverter] = []

    def match(finding: Finding) -> bool:
        if isinstance(finding, FoundInverter) and finding.serial == serial:
            found.append(finding)
            return True
        return False

    def probes() -> Iterator[Probe]:
        for host in _addresses(networks, exclude):
            yield partial(probe_inverter, host, port, wait)

    with suppress(TimeoutError):
        async with asyncio.timeout(max_time):
            await _run_probes(probes(), concurrency=concurrency, budget=4 * wait + 1, on_finding=match)
    return found[0] if found else None


# ---------------------------------------------------------------------------- which networks


def host_interfaces() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """This host's interfaces with their IPv4 address and netmask (Linux; empty elsewhere).

    Asks the kernel with the SIOCGIFADDR/SIOCGIFNETMASK ioctls, which sends nothing on the
    network and needs no extra package. An interface without IPv4 is skipped.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no ioctl; --network it is
        return []
    siocgifaddr, siocgifnetmask = 0x8915, 0x891B
    found: list[tuple[str, ipaddress.IPv4Interface]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                address = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), siocgifaddr, request)[20:24])
                netmask = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), siocgifnetmask, request)[20:24])
            except OSError:
                continue
            found.append((name, ipaddress.IPv4Interface(f"{address}/{netmask}")))
    return found


def is_private(network: ipaddress.IPv4Network) -> bool:
    """Inside the RFC 1918 ranges, where home LANs live."""
    return any(network.subnet_of(private) for private in _PRIVATE)


def default_networks(
    interfaces: Iterable[tuple[str, ipaddress.IPv4Interface]],
) -> list[tuple[ipaddress.IPv4Network, str]]:
    """The networks to scan without ``--network``, each with a note saying why and how much."""
    chosen: list[tuple[ipaddress.IPv4Network, str]] = []
    seen: set[ipaddress.IPv4Network] = set()
    for name, interface in interfaces:
        network = interface.network
        if not is_private(network):
            continue  # loopback, link-local, public and carrier-grade NAT ranges are not a home LAN
        note = f"{network} on {name}"
        if network.prefixlen < DEFAULT_INTERFACE_LIMIT:
            limited = ipaddress.IPv4Interface(f"{interface.ip}/{DEFAULT_INTERFACE_LIMIT}").network
            note = f"{limited} on {name} (the /{DEFAULT_INTERFACE_LIMIT} around {interface.ip} of {network})"
            network = limited
        if network not in seen:
            seen.add(network)
            chosen.append((network, note))
    return chosen


def parse_network(text: str, *, allow_large: bool = False) -> ipaddress.IPv4Network:
    """A ``--network`` argument, checked: IPv4, host bits ignored, at most a /16 unless allowed."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ScanError(f"{text!r} is not a network; write it like 192.168.1.0/24") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ScanError(f"{text}: GivEnergy dongles are found over IPv4; give an IPv4 network")
    if network.prefixlen < LARGEST_NETWORK and not allow_large:
        raise ScanError(
            f"{network} has {network.num_addresses} addresses, more than a /{LARGEST_NETWORK}: scanning it "
            "takes a long time and knocks on a lot of doors. Give a smaller network (your LAN is most "
            "likely a /24) or add --allow-large."
        )
    return network


# ---------------------------------------------------------------------------- output


def render_config(report: ScanReport, *, when: datetime | None = None) -> str:
    """A YAML block to paste into the settings file: the inverters with serial and prefix, the charger."""
    stamp = (when or datetime.now().astimezone()).isoformat(timespec="seconds")
    networks = ", ".join(str(n) for n in report.networks)
    lines = [f"# givbridge scan of {networks} at {stamp}"]
    if report.inverters:
        lines.append("inverters:")
        for index, inverter in enumerate(report.inverters):
            firmware = f", firmware {inverter.firmware}" if inverter.firmware is not None else ""
            lines.append(f"  - host: {inverter.host}")
            if inverter.port != INVERTER_PORT:
                lines.append(f"    port: {inverter.port}")
            lines.append(f"    serial: {inverter.serial}  # {inverter.family.display}{firmware}")
            lines.append(f"    prefix: {default_prefix(index)}")
            lines.append("    # follow_serial: true  # find it again if its address changes")
    else:
        lines.append("inverters: []  # no GivEnergy inverter answered")
    for index, charger in enumerate(report.chargers):
        # Settings hold one charger; further ones are listed for the person to choose.
        mark = "" if index == 0 else "# "
        lines.append(f"{mark}evc:")
        lines.append(f"{mark}  host: {charger.host}")
        if charger.port != EVC_PORT:
            lines.append(f"{mark}  port: {charger.port}")
        lines.append(f"{mark}  serial: {json.dumps(charger.serial)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--network",
        action="append",
        metavar="CIDR",
        help="network to scan, e.g. 192.168.1.0/24 (repeat for more); default: this host's private "
        f"networks, at most a /{DEFAULT_INTERFACE_LIMIT} each",
    )
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each device (default 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="addresses probed at once (default 64)")
    parser.add_argument("--max-time", type=float, default=300.0, help="give up after this many seconds (default 300)")
    parser.add_argument("--allow-large", action="store_true", help=f"allow networks larger than a /{LARGEST_NETWORK}")
    parser.add_argument("--no-evc", action="store_true", help="look for inverters only")
    parser.add_argument("--inverter-port", type=int, default=INVERTER_PORT, help="dongle port (default 8899)")
    parser.add_argument("--evc-port", type=int, default=EVC_PORT, help="EV charger port (default 502)")


def _say(text: str) -> None:
    print(text, file=sys.stderr)


async def main(args: argparse.Namespace) -> int:
    from givbridge.config_checks import ConfigError

    if not 0.05 <= args.timeout <= 30:
        raise ConfigError("--timeout must be between 0.05 and 30 seconds")
    if not 1 <= args.concurrency <= 1024:
        raise ConfigError("--concurrency must be between 1 and 1024")
    if args.max_time <= 0:
        raise ConfigError("--max-time must be positive")
    if not (1 <= args.inverter_port <= 65535 and 1 <= args.evc_port <= 65535):
        raise ConfigError("--inverter-port and --evc-port must be between 1 and 65535")
    try:
        if args.network:
            networks = [parse_network(text, allow_large=args.allow_large) for text in args.network]
            for network in networks:
                if not is_private(network) and not network.is_loopback:
                    _say(f"note: {network} is not a private network")
        else:
            chosen = default_networks(host_interfaces())
            if not chosen:
                raise ScanError("found no private IPv4 network on this host; give one with --network 192.168.1.0/24")
            _say("no --network given; scanning this host's own private networks:")
            for _network, note in chosen:
                _say(f"  {note}")
            networks = [network for network, _note in chosen]
    except ScanError as exc:
        raise ConfigError(str(exc)) from None
    # Refused and silent addresses are the normal case here, not worth the libraries' warnings.
    for noisy in ("givenergy_modbus", "pymodbus"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    evc_port = None if args.no_evc else args.evc_port
    ports = f"port {args.inverter_port}" if evc_port is None else f"ports {args.inverter_port} and {evc_port}"
    count = sum(host_count(n) for n in networks)
    _say(f"probing up to {count} addresses on {ports} (at most {args.max_time:.0f} s) ...")
    report = await scan(
        networks,
        inverter_port=args.inverter_port,
        evc_port=evc_port,
        wait=args.timeout,
        concurrency=args.concurrency,
        max_time=args.max_time,
    )
    for rejected in report.rejected:
        _say(f"not added: {rejected.host}:{rejected.port} {rejected.reason}")
    if any(r.port == args.inverter_port and "does not answer" in r.reason for r in report.rejected):
        _say("(a dongle busy with another client can be slow: if one of these is yours, try --timeout 3)")
    if not report.complete:
        _say(f"stopped after {args.max_time:.0f} s: the scan is incomplete (raise --max-time or --concurrency)")
    _say(
        f"found {len(report.inverters)} inverter(s) and {len(report.chargers)} EV charger(s) in {report.elapsed:.1f} s"
    )
    if not report.inverters and not report.chargers and not args.network:
        _say(
            "in a container (Docker without host networking, the Home Assistant add-on) this host's networks "
            "are the container's own: give your LAN with --network"
        )
    print(render_config(report), end="")
    return 0 if report.inverters or report.chargers else 1
