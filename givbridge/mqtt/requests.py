"""The bridge device's controls: ``<root>/bridge/request/<name>`` in, ``<root>/bridge/response/<command>`` out.

Home Assistant's "givbridge" device has a restart button and a log-level select, defined in
``discovery_templates/bridge/bridge.yaml``. Their topics name a request (the entity's key),
which is carried out as the registry command the definition names (``restart``,
``setLogLevel``), through the same executor as every other command, so validation and
answers are the same as on ``<root>/control/...``.

An empty message runs neither (both change givbridge): it is answered ``invalid_payload``, as on
the control topics (:func:`givbridge.mqtt.control.refuse_empty`). Both are admin commands, so
unless ``mqtt.admin`` is ``on`` they answer ``forbidden`` and discovery leaves the two entities
out (Home Assistant cannot send the admin token).

After a log-level change ``<root>/bridge/info`` (the select's state) is republished.
"""

from __future__ import annotations

from collections.abc import Callable

from givbridge.commands.access import MQTT
from givbridge.commands.executor import CommandExecutor
from givbridge.commands.results import CommandFailed, CommandResult, ErrorCode
from givbridge.entities import load_bridge_catalogue
from givbridge.log import get_logger
from givbridge.mqtt.client import Message, MqttClient
from givbridge.mqtt.control import BRIDGE_DEVICE, publish_result, refuse_empty
from givbridge.mqtt.topics import Topics

log = get_logger(__name__)

#: Request name (the last topic level) -> the command that carries it out: the bridge device's controls.
REQUESTS = {key: entity.command for key, entity in load_bridge_catalogue().definitions.items() if entity.command}


class BridgeRequests:
    """Answers the bridge device's requests; ``changed`` runs after each successful one."""

    def __init__(
        self, mqtt: MqttClient, topics: Topics, executor: CommandExecutor, changed: Callable[[], None]
    ) -> None:
        self._mqtt = mqtt
        self._topics = topics
        self._executor = executor
        self._changed = changed

    def attach(self) -> None:
        self._mqtt.subscribe(self._topics.bridge_request, self.handle, qos=1)

    async def handle(self, message: Message) -> None:
        name = message.topic.rsplit("/", 1)[-1]
        if message.retain:
            log.warning(
                "ignoring a retained bridge request: it would run again on every reconnect", topic=message.topic
            )
            return
        command = REQUESTS.get(name)
        if command is None:
            known = ", ".join(REQUESTS)
            result = CommandResult.failure(
                name,
                None,
                BRIDGE_DEVICE,
                CommandFailed(ErrorCode.UNKNOWN_COMMAND, f"no bridge request {name!r} ({known})"),
            )
        else:
            result = refuse_empty(
                self._executor.registry, command, message.payload, None
            ) or await self._executor.execute(command, message.payload, caller=MQTT)
            if result.ok:
                self._changed()
        publish_result(self._mqtt, self._topics, result, BRIDGE_DEVICE)
