"""``switchRate``: which import rate applies now, for dynamic tariffs (see :mod:`givbridge.tariffs`).

Nothing is written to the inverter: the rate is the bridge's tariff accounting. Addressed to
one inverter (``control/<serial>/switchRate``, as Home Assistant's Current Rate Type select
sends it) it switches that inverter's tracker; without a serial, every inverter's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from givbridge.commands.results import CommandFailed, ErrorCode
from givbridge.commands.schemas import RatePayload
from givbridge.commands.spec import ActionContext, Command, invalid, unsupported
from givbridge.tariffs import DAY, NIGHT, import_rate

GROUP = "Tariff"


async def switch_rate(payload: RatePayload, context: ActionContext) -> Mapping[str, Any]:
    tariffs = context.bridge.tariffs
    if tariffs is None:
        raise unsupported("no tariffs are configured; add a tariffs: section (see deploy/config.example.yaml)")
    settings = tariffs.settings
    if not settings.dynamic:
        raise unsupported(
            "tariffs.dynamic is false, so the rate follows day_start and night_start; "
            "set dynamic: true to switch it by command"
        )
    rate = NIGHT if payload.rate == "night" else DAY
    if rate == NIGHT and settings.import_night_rate is None:
        raise invalid("no import_night_rate is configured, so there is no night rate to switch to")
    trackers = [tariffs.for_runner(context.runner)] if context.runner is not None else list(tariffs)
    unknown = [tracker for tracker in trackers if tracker.serial is None]
    if unknown:  # checked first, so a refusal switches none of them
        raise CommandFailed(ErrorCode.UNREACHABLE, "an inverter has not been read yet; the rate was not switched")
    for tracker in trackers:
        await tracker.switch(rate)
    return {"Current_Rate_Type": rate, "Current_Rate": import_rate(settings, rate)}


COMMANDS: tuple[Command, ...] = (
    Command(
        name="switchRate",
        summary="Tell the tariff tracker the day or night rate applies now (dynamic tariffs).",
        group=GROUP,
        payload=RatePayload,
        raw_field="rate",
        target="bridge",
        writes=False,
        action=switch_rate,
        notes="Needs tariffs.dynamic: true (otherwise the clock decides, and the command says so). GivTCP "
        "took anything but 'day' as night; givbridge takes day or night in any case. The rate is kept "
        "across restarts.",
    ),
)
