"""How a device's answer to a write becomes a command's result.

Every command that writes (a planner's plan, the EV charger's commands, a timed action's start
and revert) goes through its device runner's one write path, ``apply(plan)``, and judges what
came back here: :func:`confirm` turns a write outcome that is not a full read-back into the
result it means, :func:`device_errors` does the same for the runner's exceptions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from givbridge.commands.results import CommandFailed, ErrorCode
from givbridge.devices.outcome import NotWritable, Unreachable, WriteOutcome, WriteStatus


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
