"""The one place the benchmarks name the inverter runner's module (it is being split up).

After a move, change these imports and nothing else: every benchmark takes the runner and the
client factory it paces its requests with from here.
"""

from givbridge.devices.inverter import InverterRunner
from givbridge.devices.library import default_client as runner_client

__all__ = ["InverterRunner", "runner_client"]
