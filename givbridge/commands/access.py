"""Who may run which command, whatever transport it came from. Pure: tested on its own.

Commands fall into four kinds (:func:`kind_of`):

* **reads** (``readData``, ``getCache``, ``getEVCCache``...): open to everyone, as GivTCP's were;
* **full reads** (``runAll``): open, but only an authorised caller makes the inverter read
  every bank; anyone else is served the last poll, as ``readData`` would be;
* **device writes** (everything else that changes a device or the bridge's tariff state):
  over MQTT allowed, since the broker's ACL decides who may publish on ``<root>/control/#``
  (and Home Assistant and Predbat need it); over HTTP they need the token or a trusted network;
* **admin** (changing givbridge itself: ``settings``, ``restart``, ``setLogLevel``, and the
  inverter's ``reboot``): over HTTP as device writes; over MQTT off unless ``mqtt.admin`` says
  who may: ``token`` (the JSON payload carries ``"token": <mqtt.admin_token>``) or ``on``.

HTTP credentials are ``Authorization: Bearer <http.token>``, compared in constant time, or a
client address inside ``http.trusted_networks`` (Predbat on the Home Assistant host, which has
no way to send a token). The client address is the TCP peer: forwarding headers
(``X-Forwarded-For``) are not believed, so a proxy in front of the shim makes every client look
like the proxy.

The policy also says how strongly a caller is known (:class:`Clearance`): changes that widen
access (a new listening address, more trusted networks, no token, MQTT admin on) need a caller
that proved it holds a secret, not one merely trusted for where it connects from.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import SecretStr

if TYPE_CHECKING:
    from givbridge.config import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MqttAdmin = Literal["off", "token", "on"]

#: Commands that change givbridge itself, or restart the inverter.
ADMIN_COMMANDS = frozenset({"settings", "restart", "setLogLevel", "reboot"})
#: Reads that make the inverter read every bank (a minute of dongle time each).
FULL_READS = frozenset({"runAll"})
#: The read that serves the last poll instead, for a caller not authorised to make a full read.
CACHED_READ = "readData"
#: The JSON payload key that carries the MQTT admin token; taken out before the payload is validated.
TOKEN_KEY = "token"


class Transport(Enum):
    HTTP = "http"
    MQTT = "mqtt"
    LOCAL = "local"  # the bridge itself: its timers (clock sync), the command line, tests


class Kind(Enum):
    READ = "read"
    FULL_READ = "full_read"
    WRITE = "write"
    ADMIN = "admin"


class Clearance(IntEnum):
    """How far a caller is trusted, weakest first."""

    NONE = 0  # showed nothing (open reads only)
    NETWORK = 1  # trusted for where it comes from: a trusted network, the broker's ACL
    TOKEN = 2  # proved it holds a configured secret
    LOCAL = 3  # the bridge itself


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the transport and what it showed. ``token`` is an MQTT payload's ``token``."""

    transport: Transport
    peer: str | None = None  # the HTTP client's address
    authorization: str | None = None  # the HTTP Authorization header
    token: str | None = None

    def __repr__(self) -> str:  # never show a credential in a log line or traceback
        return f"Caller({self.transport.value}, peer={self.peer!r})"


LOCAL = Caller(Transport.LOCAL)
MQTT = Caller(Transport.MQTT)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not go ahead: ``status`` 401 (no or wrong token) or 403 (not allowed)."""

    status: int
    code: Literal["unauthorized", "forbidden"]
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: refused, or allowed with this clearance (``cached``: serve the last poll)."""

    clearance: Clearance
    refusal: Refusal | None = None
    cached: bool = False


class Command(Protocol):
    """What the policy looks at in a command's definition (a :class:`~givbridge.commands.spec.Command`)."""

    @property
    def name(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def writes(self) -> bool: ...


def is_data_read(command: Command) -> bool:
    """A GET that only reads a device's data: open to anyone, and answered with the data itself."""
    return command.method == "GET" and not command.writes and command.target != "bridge"


def needs_permission(command: Command) -> bool:
    """Whether a command needs credentials over HTTP (everything but the data reads)."""
    return not is_data_read(command)


def kind_of(command: Command) -> Kind:
    if command.name in ADMIN_COMMANDS:
        return Kind.ADMIN
    if command.name in FULL_READS:
        return Kind.FULL_READ
    return Kind.READ if is_data_read(command) else Kind.WRITE


def reads_only(command: Command) -> bool:
    """Whether ``command`` only reads (a read or a full read): nothing it does changes a device or givbridge."""
    return kind_of(command) in (Kind.READ, Kind.FULL_READ)


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


def _secret(value: SecretStr | None) -> bytes | None:
    text = value.get_secret_value() if value is not None else ""
    return text.encode("utf-8") if text else None


def _matches(given: str, secret: bytes) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret)


class AccessPolicy:
    """Decides whether a caller may run a command; the one policy of every transport."""

    def __init__(
        self,
        token: SecretStr | None,
        trusted_networks: Sequence[Network],
        *,
        mqtt_admin: MqttAdmin = "off",
        mqtt_admin_token: SecretStr | None = None,
    ) -> None:
        self._token = _secret(token)
        self._trusted = tuple(trusted_networks)
        self._mqtt_admin = mqtt_admin
        self._mqtt_admin_token = _secret(mqtt_admin_token)

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            settings.http.token,
            settings.http.trusted_networks,
            mqtt_admin=settings.mqtt.admin,
            mqtt_admin_token=settings.mqtt.admin_token,
        )

    def trusts(self, host: str | None) -> bool:
        address = client_address(host)
        return address is not None and any(
            address.version == network.version and address in network for network in self._trusted
        )

    def check(self, host: str | None, authorization: str | None) -> Refusal | None:
        """None when the HTTP client at ``host`` sending ``authorization`` may change things, else why not."""
        return self._http(host, authorization)[1]

    def decide(self, command: Command, caller: Caller) -> Decision:
        """Whether ``caller`` may run ``command``, and how far it is trusted."""
        kind = kind_of(command)
        if caller.transport is Transport.LOCAL:
            return Decision(Clearance.LOCAL)
        if caller.transport is Transport.HTTP:
            clearance, refusal = self._http(caller.peer, caller.authorization)
        else:
            clearance, refusal = self._mqtt(command, kind, caller.token)
        if kind is Kind.READ:
            return Decision(clearance)
        if kind is Kind.FULL_READ:
            return Decision(clearance, cached=refusal is not None)
        return Decision(clearance, refusal)

    def _http(self, host: str | None, authorization: str | None) -> tuple[Clearance, Refusal | None]:
        if authorization and self._token is not None:
            scheme, _, given = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and given.strip() and _matches(given.strip(), self._token):
                return Clearance.TOKEN, None
        if self.trusts(host):
            return Clearance.NETWORK, None
        if self._token is None:
            return Clearance.NONE, Refusal(
                403,
                "forbidden",
                f"changes over HTTP are off for {host or 'this client'}: set http.token and send "
                "'Authorization: Bearer <token>', or add the client's network to http.trusted_networks",
            )
        if not authorization:
            return Clearance.NONE, Refusal(
                401, "unauthorized", "this needs the token: send 'Authorization: Bearer <http.token>'"
            )
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return Clearance.NONE, Refusal(
                401, "unauthorized", "the Authorization header must be 'Bearer <http.token>'"
            )
        return Clearance.NONE, Refusal(401, "unauthorized", "the bearer token is wrong")

    def _mqtt(self, command: Command, kind: Kind, token: str | None) -> tuple[Clearance, Refusal | None]:
        if kind is not Kind.ADMIN or self._mqtt_admin == "on":
            # Whoever the broker lets publish on the control topics.
            return Clearance.NETWORK, None
        if self._mqtt_admin == "off":
            return Clearance.NONE, Refusal(
                403,
                "forbidden",
                f"{command.name} changes givbridge itself and is off over MQTT (mqtt.admin: off). To allow it set "
                'mqtt.admin: token with mqtt.admin_token and send a JSON payload with "token", or mqtt.admin: on '
                "(anyone the broker lets publish on the control topics); over HTTP it needs http.token",
            )
        assert self._mqtt_admin_token is not None, "mqtt.admin: token is validated to have admin_token"
        if not token:
            return Clearance.NONE, Refusal(
                403,
                "forbidden",
                f"{command.name} over MQTT needs the admin token (mqtt.admin: token): send a JSON object "
                'payload with "token": <mqtt.admin_token>',
            )
        if not _matches(token, self._mqtt_admin_token):
            return Clearance.NONE, Refusal(403, "forbidden", "the admin token is wrong (mqtt.admin: token)")
        return Clearance.TOKEN, None
