"""Who may do what over HTTP. Pure: no web framework here, so it is tested on its own.

Reading device data (``readData``, ``getCache``, ``runAll``, ``getEVCCache``), ``/health``,
``/api`` and the OpenAPI document are open, as GivTCP's were. Everything else changes
something (a register, the bridge's connections, its log level, its saved settings) or shows
the configuration, and needs either

* ``Authorization: Bearer <http.token>``, compared in constant time, or
* a client address inside one of ``http.trusted_networks`` (Predbat on the Home Assistant
  host, which has no way to send a token).

The client address is the TCP peer: forwarding headers (``X-Forwarded-For``) are not
believed, so a proxy in front of the shim makes every client look like the proxy.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from givbridge.commands.spec import Command

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_data_read(command: Command) -> bool:
    """A GET that only reads a device's data: open to anyone, and answered with the data itself."""
    return command.method == "GET" and not command.writes and command.target != "bridge"


def needs_permission(command: Command) -> bool:
    return not is_data_read(command)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not go ahead: ``status`` 401 (no or wrong token) or 403 (writes are off)."""

    status: int
    code: str
    message: str


def client_address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's address; an IPv4 client on a dual-stack socket (``::ffff:a.b.c.d``) as IPv4."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AccessPolicy:
    """Decides whether a request that needs permission may go ahead."""

    def __init__(self, token: SecretStr | None, trusted_networks: Sequence[Network]) -> None:
        secret = token.get_secret_value() if token is not None else ""
        self._token = secret.encode("utf-8") if secret else None
        self._trusted = tuple(trusted_networks)

    def trusts(self, host: str | None) -> bool:
        address = client_address(host)
        return address is not None and any(
            address.version == network.version and address in network for network in self._trusted
        )

    def check(self, host: str | None, authorization: str | None) -> Refusal | None:
        """None when the client at ``host`` sending ``authorization`` may go ahead, else why not."""
        if self.trusts(host):
            return None
        if self._token is None:
            return Refusal(
                403,
                "forbidden",
                f"changes over HTTP are off for {host or 'this client'}: set http.token and send "
                "'Authorization: Bearer <token>', or add the client's network to http.trusted_networks",
            )
        if not authorization:
            return Refusal(401, "unauthorized", "this needs the token: send 'Authorization: Bearer <http.token>'")
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return Refusal(401, "unauthorized", "the Authorization header must be 'Bearer <http.token>'")
        if not hmac.compare_digest(given.strip().encode("utf-8"), self._token):
            return Refusal(401, "unauthorized", "the bearer token is wrong")
        return None
