"""givbridge: a one-process local bridge between GivEnergy inverters and MQTT / Home Assistant."""

import sys

__version__ = "0.1.0"


def _import_structlog_without_rich() -> None:
    """Import structlog without letting it load ``rich``, which givbridge never uses.

    structlog imports ``rich`` (and through it ``pygments``) whenever it is installed, only to
    offer rich tracebacks; givbridge's log renderers format tracebacks plainly
    (:mod:`givbridge.log`). Where rich is installed beside givbridge, that import alone is about
    4 MB of the process's memory. A ``None`` in :data:`sys.modules` makes that one import fail
    as if rich were absent; the entry is removed again at once, so other code can still import
    rich.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return  # too late, or loaded by someone else already: nothing to save
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()
