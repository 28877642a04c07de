"""Commands that are not one register plan: reboot, restart, data reads and the settings document."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from givbridge.bridge import InverterRunner, Unreachable, WriteStatus
from givbridge.commands import devices as dev
from givbridge.commands.results import CommandFailed, ErrorCode, json_safe
from givbridge.commands.schemas import LogLevelPayload, NoPayload, SettingsPayload
from givbridge.commands.spec import ActionContext, Command
from givbridge.config import SAVED_SETTINGS, Settings
from givbridge.log import set_log_level
from givbridge.plant.snapshot import Snapshot
from givbridge.plant.writes import WritePlan

GROUP = "System"

#: Clock seconds to wait for a rebooted inverter to answer again (they take one to three minutes).
REBOOT_TIMEOUT = 300.0
#: Clock seconds to wait for every device runner to reconnect after a restart.
RESTART_TIMEOUT = 60.0
REBOOT_VALUE = 100
#: The name the settings document is saved under in the data directory (load_settings reads it).
SETTINGS_DOCUMENT = SAVED_SETTINGS
#: What a settings reader shows instead of a secret; sending it back keeps the stored secret.
SECRET_PLACEHOLDERS = frozenset({"***", "**********"})
_SECRETS = (("mqtt", "password"), ("http", "token"))


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
        outcome = await runner.write(WritePlan.of([(dev.REBOOT, REBOOT_VALUE)], "reboot", skip_unchanged=False))
    except Unreachable:
        # The inverter went down as it acknowledged the write (or before): the read-back, or
        # the acknowledgement itself, got no answer. Either way it is gone for now, and only
        # an answer from now on shows it back.
        gone = True
        answered_after = clock.now()
    else:
        # HR163 is a command register and does not read back as 100; only a refusal counts.
        if outcome.status is WriteStatus.REJECTED:
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


def check_settings(
    document: Mapping[str, Any], current: Settings, previous: Mapping[str, Any]
) -> tuple[dict[str, Any], Settings]:
    """The document to store and what it validates to.

    A masked secret keeps the one already stored (``previous``, the saved document), or else
    the running one: whoever reads the settings back sees only the mask and sends it again.
    """
    stored: dict[str, Any] = dict(document)
    for section, key in _SECRETS:
        part = stored.get(section)
        if isinstance(part, dict) and part.get(key) in SECRET_PLACEHOLDERS:
            before = previous.get(section)
            kept = before.get(key) if isinstance(before, dict) and key in before else _secret(current, section, key)
            stored[section] = {**part, key: kept}
    try:
        checked = _DocumentSettings(**stored)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise CommandFailed(ErrorCode.INVALID_PAYLOAD, f"invalid settings: {problems}") from None
    return stored, checked


def changed_sections(new: Settings, current: Settings) -> list[str]:
    """Top-level settings that differ, secrets compared by value (their dumps are masked)."""
    before, after = current.model_dump(mode="json"), new.model_dump(mode="json")
    changed = {name for name in Settings.model_fields if before.get(name) != after.get(name)}
    changed |= {section for section, key in _SECRETS if _secret(new, section, key) != _secret(current, section, key)}
    return sorted(changed)


async def save_settings(payload: SettingsPayload, context: ActionContext) -> Mapping[str, Any]:
    """Validate a whole configuration document and store it atomically in the data directory.

    Secrets are write-only: the answer never contains them, and a masked value sent back
    (``***``) keeps the stored one. Nothing is applied to the running bridge: every changed
    section takes effect at the next start, and the answer says which those are.
    """
    previous = await asyncio.to_thread(context.store.load, SETTINGS_DOCUMENT)
    stored, checked = check_settings(payload.model_extra or {}, context.settings, previous)
    changed = changed_sections(checked, context.settings)
    await asyncio.to_thread(context.store.save, SETTINGS_DOCUMENT, stored)
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
        method="GET",
        applies=dev.applies("inverters", registers=dev.fixed_registers(dev.REBOOT)),
        notes="Broken in GivTCP (REST: HTTP 500; MQTT rebootInverter: no such function). Bounded by "
        f"{REBOOT_TIMEOUT:.0f} s, after which it answers unreachable.",
    ),
    _system(
        name="restart",
        summary="Restart givbridge's device connections in-process; answers once every device is back.",
        action=restart,
        aliases=("rebootAddon",),
        method="GET",
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
        "makes it a real read.",
    ),
    _system(
        name="settings",
        summary="Validate a whole givbridge configuration document and save it for the next start.",
        payload=SettingsPayload,
        action=save_settings,
        target="bridge",
        notes="GivTCP stored the body unvalidated and served the secrets back. givbridge validates it against "
        "its configuration model, stores it atomically as settings.json in the data directory (readable by "
        "the owner only), never echoes secrets and answers which sections changed (all need a restart). At the "
        "next start it overrides the config file; environment variables and flags still win.",
    ),
)
