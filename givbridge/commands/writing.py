"""How a device's answer to a write becomes a command's result.

Every command that writes (a planner's plan, the EV charger's commands, a timed action's start
and revert) goes through its device runner's one write path, ``apply(plan)``, and judges what
came back here: :func:`confirm` turns a write outcome that is not a full read-back into the
result it means, :func:`device_errors` does the same for the runner's exceptions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from givbridge.clock import Clock
from givbridge.commands.results import CommandFailed, ErrorCode
from givbridge.commands.spec import ReadbackCheck
from givbridge.devices.core import DeviceRunner
from givbridge.devices.outcome import Applied, NotWritable, Unreachable, WriteOutcome, WriteStatus
from givbridge.plant.writes import WritePlan


async def carry_out(
    device: DeviceRunner,
    plan: WritePlan,
    *,
    clock: Clock,
    check: ReadbackCheck | None = None,
    name: str = "the inverter",
) -> Applied:
    """Apply ``plan`` to ``device`` and raise unless the read-back confirms it (and passes ``check``).

    ``check`` is given the registers read back and the time now in the device's zone; ``name``
    names the device in the messages. The answer carries the snapshot rebuilt from the read-back.
    """
    applied = await device.apply(plan)
    confirm(applied.outcome, name)
    if check is not None and (problem := check(applied.outcome.readback, clock.now().astimezone(device.tz))):
        raise CommandFailed(ErrorCode.NOT_PERSISTED, problem)
    return applied


@contextlib.contextmanager
def device_errors() -> Iterator[None]:
    """The runner's exceptions as the results they mean."""
    try:
        yield
    except PermissionError as exc:
        raise CommandFailed(ErrorCode.READ_ONLY, str(exc)) from None
    except NotWritable as exc:
        listed = ", ".join(f"HR{r}" for r in exc.registers)
        raise CommandFailed(
            ErrorCode.UNSUPPORTED, f"{listed} not writable on this model (not in its write allowlist); nothing was sent"
        ) from None
    except Unreachable as exc:
        raise CommandFailed(ErrorCode.UNREACHABLE, str(exc) or "the inverter did not answer") from None


def confirm(outcome: WriteOutcome, device: str = "the inverter") -> None:
    """Raise unless every expected value was read back (``device`` names the writer in the message)."""
    if outcome.status is WriteStatus.REJECTED:
        listed = ", ".join(f"HR{r}" for r in outcome.rejected)
        raise CommandFailed(
            ErrorCode.REJECTED,
            f"{device} refused {listed}; later writes of the command were not sent",
            {"registers": list(outcome.rejected)},
        )
    if outcome.status is WriteStatus.NOT_PERSISTED:
        described = ", ".join(f"HR{m.register} wanted {m.wanted}, reads {m.actual}" for m in outcome.mismatches)
        raise CommandFailed(
            ErrorCode.NOT_PERSISTED,
            f"{device} acknowledged the write but kept other values: {described}",
            {
                "registers": [
                    {"register": m.register, "wanted": m.wanted, "actual": m.actual} for m in outcome.mismatches
                ]
            },
        )
