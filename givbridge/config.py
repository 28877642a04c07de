"""givbridge configuration: one pydantic-settings model, several sources.

Priority, highest first: command-line flags > environment (``GIVBRIDGE_*``, nested with
``__``, e.g. ``GIVBRIDGE_MQTT__HOST``) > the YAML/JSON file given with ``--config`` > the
Home Assistant add-on's ``/data/options.json`` when it exists > the MQTT broker the
Supervisor offers the add-on > defaults. Every source has the same shape as the YAML file
(see ``deploy/config.example.yaml``).

A config that does not validate raises :class:`~givbridge.config_checks.ConfigError` whose
message names each bad field and what it accepts; the CLI prints it and exits with status 2.

This module is the settings model; the config files are read in :mod:`givbridge.config_sources`,
every source is put together in :mod:`givbridge.config_loading` (``load_settings``), and the
shapes values must have are in :mod:`givbridge.config_checks`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from givbridge.config_checks import (
    CURRENCY_PATTERN,
    FOLLOW_MAX_PREFIX,
    PREFIX_PATTERN,
    SERIAL_PATTERN,
    TOPIC_ROOT_PATTERN,
    default_prefix,
)
from givbridge.config_sources import ADDON_OPTIONS, FileSource
from givbridge.log import LogFormat, LogLevel


class _Section(BaseModel):
    # A misspelt key is a mistake worth reporting, not something to ignore silently.
    model_config = ConfigDict(extra="forbid")


class TlsSettings(_Section):
    enabled: bool = False
    ca_file: Path | None = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="client certificate, for brokers that require one")
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip the broker hostname check (testing only)")

    @model_validator(mode="after")
    def _files_exist(self) -> TlsSettings:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if self.enabled and path is not None and not path.is_file():
                raise ValueError(f"{name} {path} does not exist")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both or neither")
        return self


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = Field(default_factory=lambda: f"givbridge-{socket.gethostname()}"[:64])
    root: str = Field("GivEnergy", description="root topic, GivTCP's MQTT_Topic")
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    retain: bool = True
    qos: Literal[0, 1] = 0
    keepalive: int = Field(60, ge=5, le=3600)
    full_refresh_interval: float = Field(300.0, ge=10, description="seconds between full state republishes")
    publish_raw: bool = Field(False, description="also publish GivTCP's raw/ register dump")
    slot_entities: Literal["select", "time"] = Field(
        "select",
        description="time-slot controls as selects of 1,440 times, or as time entities (Home Assistant 2026.5 "
        "or later; each is announced on its own so an older HA loses only those)",
    )
    legacy_object_id: bool = Field(
        False,
        description="also send object_id beside default_entity_id, so Home Assistant before 2025.10 gives "
        "entities GivTCP's ids; turn off after upgrading HA (2025.10 warns about it, 2026.4 drops it)",
    )
    migrate_givtcp_discovery: bool = Field(
        False,
        description="take over GivTCP's Home Assistant entities (HA's migrate_discovery procedure), keeping "
        "their entity ids, names, areas and history; turn on when replacing GivTCP, with GivTCP stopped",
    )
    tls: TlsSettings = Field(default_factory=TlsSettings)

    # --- who may change givbridge itself over MQTT (settings, restart, setLogLevel, reboot)
    admin: Literal["off", "token", "on"] = Field(
        "off",
        description="admin commands over MQTT: off (refused), token (the payload's 'token' must equal "
        "admin_token) or on (anyone the broker lets publish on <root>/control/#)",
    )
    admin_token: SecretStr | None = Field(None, description="the secret admin commands carry when admin is token")

    @field_validator("admin", mode="before")
    @classmethod
    def _admin_from_yaml(cls, value: Any) -> Any:
        # YAML reads a bare off/on as a boolean.
        return {False: "off", True: "on"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _admin_token_given(self) -> MqttSettings:
        secret = self.admin_token.get_secret_value() if self.admin_token is not None else ""
        if self.admin == "token" and not secret.strip():
            raise ValueError("admin: token needs admin_token (the secret admin commands must carry)")
        return self

    @field_validator("root", "discovery_prefix")
    @classmethod
    def _valid_topic_root(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not TOPIC_ROOT_PATTERN.match(value):
            raise ValueError("must be a non-empty MQTT topic without wildcards (+, #) or spaces")
        return value


class InverterSettings(_Section):
    host: str = Field(description="IP address or host name of the inverter's dongle")
    port: int = Field(8899, ge=1, le=65535)
    serial: str | None = Field(None, description="expected serial; a different device at this address is refused")
    prefix: str | None = Field(None, description="entity-id prefix, GivTCP's device prefix (givtcp, givtcp2, ...)")
    name: str | None = Field(None, description="friendly name shown in Home Assistant")
    enabled: bool = True
    follow_serial: bool = Field(
        False,
        description="when the inverter has stopped answering for a while, look for its serial on the network "
        "and follow it to its new address (needs serial)",
    )
    search_network: ipaddress.IPv4Network | None = Field(
        None, description="where follow_serial looks; default: the /24 around host"
    )

    @field_validator("serial")
    @classmethod
    def _valid_serial(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().upper()
        if not SERIAL_PATTERN.match(value):
            raise ValueError("must look like a GivEnergy serial, e.g. SA2114G047")
        return value

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not PREFIX_PATTERN.match(value):
            raise ValueError("must be lower-case letters, digits and underscores, starting with a letter")
        return value

    @model_validator(mode="after")
    def _follow_needs_identity(self) -> InverterSettings:
        if self.search_network is not None and self.search_network.prefixlen < FOLLOW_MAX_PREFIX:
            # Searching is repeated while the inverter stays lost; keep each search short.
            raise ValueError(f"search_network may be at most a /{FOLLOW_MAX_PREFIX}")
        if not self.follow_serial:
            return self
        if self.serial is None:
            raise ValueError("follow_serial needs serial: the inverter is recognised by it at its new address")
        if self.search_network is None:
            try:
                ipaddress.IPv4Address(self.host)
            except ValueError:
                raise ValueError(
                    "follow_serial with a host name needs search_network (there is no /24 around a name)"
                ) from None
        return self


class PollingSettings(_Section):
    poll_interval: float = Field(15.0, ge=2, le=3600, description="seconds between measurement reads")
    settings_interval: float = Field(300.0, ge=10, le=86400, description="seconds between settings reads")
    timeout: float = Field(
        2.0,
        gt=0,
        le=30,
        description="seconds to wait for one response (a later one is set aside, never taken for another request's)",
    )
    retries: int = Field(1, ge=0, le=5)
    offline_after: int = Field(3, ge=1, le=100, description="failed polls before a device is offline")
    request_gap: float = Field(
        0.25, ge=0.0, le=5.0, description="minimum seconds between two requests on the wire (the library's pacing)"
    )
    probe_timeout: float = Field(
        0.5,
        gt=0,
        le=10,
        description="seconds to wait for a battery/meter that may not exist while detecting (at least: "
        "a remembered one is waited for two round trips of the link, up to timeout)",
    )
    backoff_min: float = Field(2.0, gt=0, le=600, description="first reconnect delay in seconds")
    backoff_max: float = Field(60.0, gt=0, le=3600, description="longest reconnect delay in seconds")

    @model_validator(mode="after")
    def _ordered(self) -> PollingSettings:
        if self.backoff_max < self.backoff_min:
            raise ValueError("backoff_max must not be below backoff_min")
        if self.settings_interval < self.poll_interval:
            raise ValueError("settings_interval must not be below poll_interval")
        return self


class PlantSettings(_Section):
    """The plant summary: totals across inverters (see givbridge/plant/summary.py)."""

    summary: bool = Field(
        True, description="publish the plant summary device when more than one inverter is configured"
    )
    grid: Literal["shared", "separate"] = Field(
        "shared",
        description="shared: every inverter's grid CT is on the one supply, so the plant's grid power is their "
        "mean and the load is corrected for it; separate: each inverter has its own supply, so both add up",
    )


class LogSettings(_Section):
    level: LogLevel = "info"
    format: LogFormat = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class HttpSettings(_Section):
    enabled: bool = False
    host: str = Field("127.0.0.1", description="address to listen on; 0.0.0.0 exposes it to the LAN")
    port: int = Field(8099, ge=0, le=65535, description="main port (/REST<N>/<command>); 0 picks a free one")
    per_inverter_ports: bool = Field(False, description="also serve inverter N on port 6344+N, like GivTCP")
    first_inverter_port: int = Field(6345, ge=0, le=65535, description="inverter 1's own port; 0: free ports")
    token: SecretStr | None = Field(None, description="bearer token required for writes and /settings")
    trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list, description="clients allowed to write without the token"
    )
    max_body_bytes: int = Field(4096, ge=256, le=1_048_576)
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins (scheme://host[:port]) allowed to call the shim, writes included; none by "
        "default, and a page from any other origin cannot change anything",
    )
    idle_timeout: float = Field(
        5.0,
        gt=0,
        le=300,
        description="seconds a connection may take to send a whole request, and may stay open between requests",
    )
    max_connections_per_client: int = Field(
        8, ge=1, le=1024, description="open connections per client address; a new one closes that client's oldest idle"
    )

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        # An origin is compared with the browser's Origin header as text, so it is kept in the form
        # browsers send (lower case, no path). A wildcard would let any web page change the inverter.
        normalised: list[str] = []
        for origin in origins:
            text = origin.strip().lower().rstrip("/")
            scheme, _, rest = text.partition("://")
            if scheme not in ("http", "https") or not rest or any(c in rest for c in "/?#*@ "):
                raise ValueError(
                    f"{origin!r} is not an origin: write each one as scheme://host[:port], "
                    "e.g. http://homeassistant.local:8123 (no wildcard, no path)"
                )
            normalised.append(text)
        return normalised


class MetricsSettings(_Section):
    """Prometheus metrics at ``/metrics``: on the HTTP shim's main port when it runs, else on a port of their own."""

    enabled: bool = False
    host: str = Field(
        "127.0.0.1",
        description="address of the metrics' own listener (without the HTTP shim); 0.0.0.0 exposes it to the LAN",
    )
    port: int = Field(9469, ge=0, le=65535, description="port of the metrics' own listener; 0 picks a free one")


class EvcSettings(_Section):
    """A GivEnergy EV charger (Modbus TCP, firmware 1.13+ with local control enabled)."""

    host: str = Field(description="IP address or host name of the charger")
    port: int = Field(502, ge=1, le=65535)
    serial: str | None = Field(None, description="expected serial; a different charger at this address is refused")
    poll_interval: float = Field(10.0, ge=2, le=3600, description="seconds between reads of the charger")
    name: str | None = Field(None, description="friendly name shown in Home Assistant")
    inverter: str | None = Field(
        None,
        description="serial of the inverter whose grid and solar readings drive the Solar/Hybrid modes and the "
        "import cap; default: the first inverter",
    )


class TariffSettings(_Section):
    """Electricity prices, per kWh in ``currency`` units (GivTCP's day/night/export rates).

    The day rate applies from ``day_start`` and the night rate from ``night_start``; without
    a night rate the day rate applies all day. With ``dynamic`` the current rate is switched
    by command (GivTCP's ``switchRate``, e.g. from an Octopus automation) instead of by the clock.
    """

    currency: str = Field("GBP", description="ISO 4217 code of the prices, e.g. GBP or EUR")
    import_day_rate: float = Field(allow_inf_nan=False, description="price of a kWh imported at the day rate")
    import_night_rate: float | None = Field(
        None, allow_inf_nan=False, description="price of a kWh imported at the night rate; omit for a single rate"
    )
    export_rate: float = Field(0.0, allow_inf_nan=False, description="price paid for a kWh exported")
    day_start: time | None = Field(None, description="local time the day rate starts, e.g. '05:30'")
    night_start: time | None = Field(None, description="local time the night rate starts, e.g. '23:30'")
    dynamic: bool = Field(False, description="rates are switched by command rather than by the clock")

    @field_validator("currency", mode="before")
    @classmethod
    def _currency_code(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if not CURRENCY_PATTERN.match(value):
                raise ValueError("must be a three-letter ISO 4217 code such as GBP or EUR")
        return value

    @field_validator("day_start", "night_start", mode="before")
    @classmethod
    def _quoted_time(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted 23:30 as the base-60 integer 1410; refuse it rather than
        # guess, so a time is never silently taken as seconds.
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError("write the time in quotes, e.g. '23:30' (unquoted, YAML reads it as a number)")
        return value

    @model_validator(mode="after")
    def _two_rates_need_times(self) -> TariffSettings:
        if self.import_night_rate is not None and not self.dynamic:
            if self.day_start is None or self.night_start is None:
                raise ValueError("a night rate needs day_start and night_start (or dynamic: true)")
            if self.day_start == self.night_start:
                raise ValueError("day_start and night_start must differ")
        return self


class ClockSettings(_Section):
    """Keeping the inverter clocks right: timed slots run on the inverter's clock, not ours."""

    auto_sync: bool = Field(
        False,
        description="set an inverter's clock to this host's (in the configured timezone, DST included) "
        "when it is off by more than sync_threshold, like the syncDateTime command",
    )
    sync_threshold: float = Field(120.0, ge=10, le=86400, description="seconds of clock skew that trigger a sync")
    sync_interval: float = Field(
        6.0, ge=0.25, le=720, description="hours: at most one automatic sync per inverter this often"
    )


class ControlSettings(_Section):
    """How commands wait for their device: a bounded queue and an expiry (see commands/queue.py)."""

    # Predbat sends a plan as a burst of about ten writes (slots, rates, target, mode) and Home
    # Assistant automations add a few; 16 waiting admits that with room to spare, while a flood
    # is refused at once instead of piling up for minutes.
    queue_limit: int = Field(
        16, ge=1, le=1000, description="commands that may wait for one device; one more answers busy at once"
    )
    # A confirmed write takes 1-3 s on a real dongle, so a full queue of 16 starts within about
    # 50 s; a command that waited longer than a minute was overtaken by events (Predbat plans
    # again every few minutes) and writing it late would do what nobody asks for any more.
    command_expiry: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="seconds a command may wait for its device; one that could not start by then answers expired "
        "and is never written",
    )


def _default_data_dir() -> Path:
    if ADDON_OPTIONS.parent.is_dir() and os.access(ADDON_OPTIONS.parent, os.W_OK):
        return ADDON_OPTIONS.parent
    state = os.environ.get("STATE_DIRECTORY")  # systemd StateDirectory=
    if state:
        return Path(state.split(":")[0])
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "givbridge"


class Settings(BaseSettings):
    """Everything givbridge can be told."""

    model_config = SettingsConfigDict(
        env_prefix="GIVBRIDGE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    inverters: list[InverterSettings] = Field(default_factory=list)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    polling: PollingSettings = Field(default_factory=PollingSettings)
    plant: PlantSettings = Field(default_factory=PlantSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    evc: EvcSettings | None = None
    tariffs: TariffSettings | None = None
    clock: ClockSettings = Field(default_factory=ClockSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    data_dir: Path = Field(default_factory=_default_data_dir)
    read_only: bool = Field(False, description="refuse every write to the inverters")
    timezone: str | None = Field(None, description="IANA zone of the inverter clocks; default: this host's")

    @model_validator(mode="after")
    def _unique_devices(self) -> Settings:
        seen_hosts: set[tuple[str, int]] = set()
        seen_prefixes: set[str] = set()
        seen_serials: set[str] = set()
        for index, inverter in enumerate(self.inverters):
            where = f"inverters[{index}]"
            if (inverter.host, inverter.port) in seen_hosts:
                raise ValueError(f"{where}: {inverter.host}:{inverter.port} is listed twice")
            seen_hosts.add((inverter.host, inverter.port))
            if inverter.prefix and inverter.prefix in seen_prefixes:
                raise ValueError(f"{where}: prefix {inverter.prefix!r} is used twice")
            if inverter.prefix:
                seen_prefixes.add(inverter.prefix)
            if inverter.serial and inverter.serial in seen_serials:
                raise ValueError(f"{where}: serial {inverter.serial} is listed twice")
            if inverter.serial:
                seen_serials.add(inverter.serial)
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("must be an IANA time zone such as Europe/London") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier wins: command-line flags (init), environment, then the files.
        return (init_settings, env_settings, FileSource(settings_cls))

    def prefix_for(self, index: int) -> str:
        """GivTCP's entity-id prefix for the inverter at ``index``: givtcp, givtcp2, ..."""
        return self.inverters[index].prefix or default_prefix(index)

    def summary(self) -> dict[str, Any]:
        """The configuration without secrets, for ``bridge/info`` and the logs."""
        redacted: dict[str, Any] = _redact(self.model_dump(mode="json"))
        return redacted


_SECRET_KEYS = {"password", "token", "admin_token"}


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("***" if k in _SECRET_KEYS and v else _redact(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact(v) for v in node]
    return node
