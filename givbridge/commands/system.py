"""Commands that are not one register plan: reboot, restart, data reads and the settings document."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from givbridge.commands import devices as dev
from givbridge.commands.access import Clearance
from givbridge.commands.results import CommandFailed, ErrorCode, json_safe
from givbridge.commands.schemas import LogLevelPayload, NoPayload, SettingsPayload
from givbridge.commands.spec import ActionContext, Command
from givbridge.config import Settings
from givbridge.config_loading import SAVED_SETTINGS
from givbridge.devices.inverter import InverterRunner
from givbridge.devices.outcome import Unreachable, WriteStatus
from givbridge.log import set_log_level
from givbridge.plant import registers as reg
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.writes import WritePlan
from givbridge.store import UnprotectedFile

GROUP = "System"

#: Clock seconds to wait for a rebooted inverter to answer again (they take one to three minutes).
REBOOT_TIMEOUT = 300.0
#: Clock seconds to wait for every device runner to reconnect after a restart.
RESTART_TIMEOUT = 60.0
#: The name the settings document is saved under in the data directory (load_settings reads it).
SETTINGS_DOCUMENT = SAVED_SETTINGS
#: What a settings reader shows instead of a secret; sending it back keeps the stored secret.
SECRET_PLACEHOLDERS = frozenset({"***", "**********"})
#: The secrets a settings document may hold, each with the settings of its section that say where
#: it goes: a placeholder keeps a secret only while those are unchanged, so a settings document can
#: never send an existing password to a host the user did not type it in for. The tokens go nowhere
#: (givbridge only compares what callers send against them).
_SECRETS: dict[tuple[str, str], tuple[str, ...]] = {
    ("mqtt", "password"): ("host", "port", "username", "tls"),
    ("http", "token"): (),
    ("mqtt", "admin_token"): (),
}
_MQTT_ADMIN_RANK = {"off": 0, "token": 1, "on": 2}


def _runner(context: ActionContext) -> InverterRunner:
    assert context.runner is not None, "inverter commands always get their runner"
    return context.runner


def snapshot_tree(snapshot: Snapshot) -> dict[str, Any]:
    """GivTCP's readData JSON: the nested values plus the ``raw`` register section."""
    tree: dict[str, Any] = json_safe(snapshot.as_tree(include_raw=True))
    return tree


async def read_data(payload: NoPayload, context: ActionContext) -> Mapping[str, Any]:
    snapshot = _runner(context).snapshot
    if snapshot is None:
        raise CommandFailed(ErrorCode.UNREACHABLE, "nothing has been read from the inverter yet")
    return snapshot_tree(snapshot)


async def run_all(payload: NoPayload, context: ActionContext) -> Mapping[str, Any]:
    """A real read of every bank first (GivTCP v3 only returned its cache here)."""
    return snapshot_tree(await _runner(context).refresh_all())


async def reboot(payload: NoPayload, context: ActionContext) -> Mapping[str, Any]:
    """HR163 = 100, then ok only once the inverter has been seen to go away and answer again."""
    runner, clock = _runner(context), context.clock
    health = runner.health
    if not health.connected:
        raise CommandFailed(ErrorCode.UNREACHABLE, f"{runner.label} is not connected; the reboot was not sent")
    started = clock.monotonic()
    # A success only counts once it is later than this: a poll that was in flight when the
    # write was queued can finish after it was sent, and says nothing about the restart.
    answered_after = clock.now()
    failed_before, connects_before = health.polls_failed, health.reconnects
    gone = False
    try:
        applied = await runner.apply(WritePlan.of([(reg.REBOOT, reg.REBOOT_VALUE)], "reboot", skip_unchanged=False))
    except Unreachable:
        # The inverter went down as it acknowledged the write (or before): the read-back, or
        # the acknowledgement itself, got no answer. Either way it is gone for now, and only
        # an answer from now on shows it back.
        gone = True
        answered_after = clock.now()
    else:
        # HR163 is a command register and does not read back as 100; only a refusal counts.
        if applied.outcome.status is WriteStatus.REJECTED:
            raise CommandFailed(ErrorCode.REJECTED, "the inverter refused the reboot (HR163 = 100)")

    def went_away() -> bool:
        return gone or health.polls_failed > failed_before or health.reconnects > connects_before

    def answers_again() -> bool:
        # The latest poll succeeded, after the write, and something failed in between: that
        # success is the inverter answering again after its restart.
        return (
            went_away()
            and health.connected
            and health.consecutive_failures == 0
            and health.last_success is not None
            and health.last_success > answered_after
        )

    if not await context.until(answers_again, REBOOT_TIMEOUT):
        what = "did not answer again" if went_away() else "kept answering without restarting"
        raise CommandFailed(
            ErrorCode.UNREACHABLE, f"after the reboot the inverter {what} within {REBOOT_TIMEOUT:.0f} s"
        )
    return {"offline_seconds": round(clock.monotonic() - started, 1)}


async def restart(payload: NoPayload, context: ActionContext) -> Mapping[str, Any]:
    """Reconnect every device runner (GivTCP restarted its whole add-on); answer once all are back."""
    clock, runners = context.clock, list(context.bridge.runners)
    requested_at = clock.now()
    connects = {id(runner): runner.health.reconnects for runner in runners}
    for runner in runners:
        runner.request_restart()

    def back(runner: InverterRunner) -> bool:
        health = runner.health
        return (
            health.reconnects > connects[id(runner)]
            and health.connected
            and health.last_success is not None
            and health.last_success >= requested_at
        )

    if not await context.until(lambda: all(back(runner) for runner in runners), RESTART_TIMEOUT):
        missing = [runner.serial or runner.label for runner in runners if not back(runner)]
        raise CommandFailed(ErrorCode.UNREACHABLE, f"not back within {RESTART_TIMEOUT:.0f} s: {', '.join(missing)}")
    return {"restarted": [runner.serial or runner.label for runner in runners]}


async def set_level(payload: LogLevelPayload, context: ActionContext) -> Mapping[str, Any]:
    """Change the log level of the running bridge (not saved: the configuration's level applies at the next start)."""
    set_log_level(payload.level)
    context.settings.log.level = payload.level  # type: ignore[assignment]  # validated by the payload model
    return {"log_level": payload.level}


class _DocumentSettings(Settings):
    """The settings model reading nothing but the document given (no environment, no files)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _secret(settings: Settings, section: str, key: str) -> str | None:
    value = getattr(getattr(settings, section), key)
    return value.get_secret_value() if value is not None else None


def _validated(document: Mapping[str, Any]) -> Settings:
    try:
        return _DocumentSettings(**document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, f"invalid settings: {problems}") from None


def _destination(settings: Settings, section: str, fields: tuple[str, ...]) -> dict[str, Any]:
    part = getattr(settings, section)
    return {name: part.model_dump(mode="json")[name] for name in fields}


def _kept_secret(checked: Settings, sources: list[Settings], section: str, key: str) -> str | None:
    """The secret a placeholder stands for: the first source whose destination is the document's."""
    fields = _SECRETS[section, key]
    wanted = _destination(checked, section, fields)
    for source in sources:
        if _destination(source, section, fields) == wanted:
            return _secret(source, section, key)
    running = _destination(sources[-1], section, fields)
    changed = ", ".join(f"{section}.{name}" for name in fields if running[name] != wanted[name])
    raise CommandFailed(
        ErrorCode.INVALID_PAYLOAD,
        f"{section}.{key}: a placeholder keeps the stored {key} only while {section}.{', '.join(fields)} stay "
        f"the same, and {changed} changed: send the {key} itself for the new destination",
    )


def check_settings(
    document: Mapping[str, Any], current: Settings, previous: Mapping[str, Any]
) -> tuple[dict[str, Any], Settings]:
    """The document to store and what it validates to.

    A masked secret keeps the one already stored (``previous``, the saved document), or else
    the running one: whoever reads the settings back sees only the mask and sends it again. It
    does so only while the secret's destination is the same as where that secret was meant for;
    otherwise the document is refused (``invalid_payload``, naming the field).
    """
    stored: dict[str, Any] = dict(document)
    masked = [
        (section, key)
        for section, key in _SECRETS
        if isinstance(stored.get(section), dict) and stored[section].get(key) in SECRET_PLACEHOLDERS
    ]
    if not masked:
        return stored, _validated(stored)
    checked = _validated(stored)
    sources = [current]
    if previous:
        with contextlib.suppress(CommandFailed):  # a saved document that no longer validates keeps nothing
            sources.insert(0, _validated(previous))
    for section, key in masked:
        stored[section] = {**stored[section], key: _kept_secret(checked, sources, section, key)}
    return stored, _validated(stored)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def widened_access(new: Settings, current: Settings) -> list[str]:
    """The settings in ``new`` that would let more callers in than ``current`` does."""
    widened: list[str] = []
    if new.http.host != current.http.host and not _is_loopback(new.http.host):
        widened.append("http.host")
    if new.http.enabled and not current.http.enabled and not _is_loopback(new.http.host):
        widened.append("http.enabled")
    if any(
        not any(network.version == old.version and network.subnet_of(old) for old in current.http.trusted_networks)  # type: ignore[arg-type]
        for network in new.http.trusted_networks
    ):
        widened.append("http.trusted_networks")
    if current.http.token is not None and not _secret(new, "http", "token"):
        widened.append("http.token")
    if set(new.http.cors_origins) - set(current.http.cors_origins):
        widened.append("http.cors_origins")
    if _MQTT_ADMIN_RANK[new.mqtt.admin] > _MQTT_ADMIN_RANK[current.mqtt.admin]:
        widened.append("mqtt.admin")
    if current.read_only and not new.read_only:
        widened.append("read_only")
    metrics_host = _metrics_host(new)
    if metrics_host is not None and metrics_host != _metrics_host(current) and not _is_loopback(metrics_host):
        widened.append("metrics")
    return widened


def _metrics_host(settings: Settings) -> str | None:
    """Where ``/metrics`` listens (the shim's address when it runs), or None when it is off."""
    if not settings.metrics.enabled:
        return None
    return settings.http.host if settings.http.enabled else settings.metrics.host


def changed_sections(new: Settings, current: Settings) -> list[str]:
    """Top-level settings that differ, secrets compared by value (their dumps are masked)."""
    before, after = current.model_dump(mode="json"), new.model_dump(mode="json")
    changed = {name for name in Settings.model_fields if before.get(name) != after.get(name)}
    changed |= {section for section, key in _SECRETS if _secret(new, section, key) != _secret(current, section, key)}
    return sorted(changed)


async def save_settings(payload: SettingsPayload, context: ActionContext) -> Mapping[str, Any]:
    """Validate a whole configuration document and store it atomically in the data directory.

    Secrets are write-only: the answer never contains them, and a masked value sent back
    (``***``) keeps the stored one while its destination is unchanged; the file is written
    readable by the owner only, or not at all. Widening access needs a caller with a token.
    Nothing is applied to the running bridge: every changed section takes effect at the next
    start, and the answer says which those are.
    """
    previous = await asyncio.to_thread(context.store.load, SETTINGS_DOCUMENT)
    stored, checked = check_settings(payload.model_extra or {}, context.settings, previous)
    widened = widened_access(checked, context.settings)
    if widened and context.clearance < Clearance.TOKEN:
        raise CommandFailed(
            ErrorCode.FORBIDDEN,
            f"{', '.join(widened)}: these widen who may reach or change givbridge, which needs a caller with a "
            "token (HTTP: Authorization: Bearer <http.token>; MQTT: mqtt.admin: token and its token), or an "
            "edit of the configuration file by hand; nothing was saved",
        )
    changed = changed_sections(checked, context.settings)
    secrets = [f"{section}.{key}" for section, key in _SECRETS if _secret(checked, section, key)]
    try:
        await asyncio.to_thread(context.store.save, SETTINGS_DOCUMENT, stored, private=bool(secrets))
    except UnprotectedFile as exc:
        raise CommandFailed(
            ErrorCode.UNSUPPORTED,
            f"not saved: {exc}. A settings document holding {', '.join(secrets)} is only saved where it can be "
            "kept private; give those in the configuration file or the environment instead",
        ) from None
    return {
        "saved": str(context.store.path(SETTINGS_DOCUMENT)),
        "changed": changed,
        "restart_required": changed,
    }


_system = functools.partial(Command, group=GROUP, payload=NoPayload)

COMMANDS: tuple[Command, ...] = (
    _system(
        name="reboot",
        summary="Reboot the inverter (HR163 = 100); answers once it has gone away and answers again.",
        action=reboot,
        aliases=("rebootInverter",),
        applies=dev.applies("inverters", registers=dev.fixed_registers(reg.REBOOT)),
        notes="Broken in GivTCP (REST: HTTP 500; MQTT rebootInverter: no such function). Bounded by "
        f"{REBOOT_TIMEOUT:.0f} s, after which it answers unreachable.",
    ),
    _system(
        name="restart",
        summary="Restart givbridge's device connections in-process; answers once every device is back.",
        action=restart,
        aliases=("rebootAddon",),
        target="bridge",
        writes=False,
        notes="GivTCP restarted its add-on through the Supervisor (and its MQTT form raised a TypeError). "
        "givbridge reconnects every device runner instead, which is what that restart was for.",
    ),
    _system(
        name="setLogLevel",
        summary="Change givbridge's log level while it runs (until the next start).",
        payload=LogLevelPayload,
        raw_field="level",
        action=set_level,
        target="bridge",
        writes=False,
        notes="givbridge only; also the bridge device's log-level select in Home Assistant.",
    ),
    _system(
        name="readData",
        summary="The latest values as GivTCP's JSON tree, including the raw register section.",
        action=read_data,
        method="GET",
        writes=False,
    ),
    _system(
        name="getCache",
        summary="Same as readData (GivTCP's name for it).",
        action=read_data,
        method="GET",
        writes=False,
    ),
    _system(
        name="runAll",
        summary="Read every register bank from the inverter now, then answer like readData.",
        action=run_all,
        method="GET",
        writes=False,
        notes="GivTCP v3 returned its cache without reading; Predbat uses this to verify writes, so givbridge "
        "makes it a real read for an authorised caller (MQTT, or HTTP with the token or from a trusted network); "
        "anyone else gets the last poll, like readData. Requests arriving while a full read is under way share it.",
    ),
    _system(
        name="settings",
        summary="Validate a whole givbridge configuration document and save it for the next start.",
        payload=SettingsPayload,
        action=save_settings,
        target="bridge",
        notes="GivTCP stored the body unvalidated and served the secrets back. givbridge validates it against "
        "its configuration model, stores it atomically as settings.json in the data directory (mode 0600, or "
        "not at all where that cannot be kept), never echoes secrets and answers which sections changed (all "
        "need a restart). A masked secret (`***`) keeps the stored one only while its destination (for "
        "mqtt.password: mqtt host, port, username, tls) is unchanged. Widening access (http.host, "
        "http.trusted_networks, removing http.token, http.cors_origins, mqtt.admin, read_only off) needs a caller "
        "with a token. At the next start it overrides the config file; environment variables and flags still win.",
    ),
)
