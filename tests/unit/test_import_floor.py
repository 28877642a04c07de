"""What a running bridge imports: nothing it does not use (issue 19's memory budget).

Each check runs a fresh interpreter, as ``givbridge run`` starts, and reads ``sys.modules``:
memory spent on imported code stays spent for the life of the process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RUN_PATH = """
import json, sys
from givbridge.cli import build_parser
args = build_parser().parse_args(["run", "--inverter", "127.0.0.1"])
import givbridge.app
print(json.dumps(sorted(sys.modules)))
"""


def _modules(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(result.stdout))


@pytest.fixture(scope="module")
def run_path_modules() -> set[str]:
    return _modules(RUN_PATH)


@pytest.mark.parametrize(
    "unused",
    [
        "givbridge.sim",  # the simulator: `simulate` and `demo` only
        "givbridge.demo",
        "givbridge.watch",
        "givbridge.migrate",
        "pymodbus",  # the EV charger's client: only with a charger configured
        "rich",  # structlog's optional tracebacks: givbridge renders them plainly
        "pygments",
    ],
)
def test_the_run_path_does_not_import(run_path_modules: set[str], unused: str) -> None:
    assert "givbridge.app" in run_path_modules
    assert not {name for name in run_path_modules if name == unused or name.startswith(unused + ".")}


def test_rich_stays_importable_after_givbridge_kept_structlog_from_it() -> None:
    pytest.importorskip("rich")  # a test dependency's; a plain install has none
    modules = _modules("import json, sys, givbridge.log, rich.console; print(json.dumps(sorted(sys.modules)))")
    assert "rich.console" in modules
