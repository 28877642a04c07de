"""Commands over MQTT: ``<root>/control/<serial>/<command>`` in, ``<root>/<serial>/response/<command>`` out.

One subscription, ``<root>/control/#``, carries every command: which ones exist is the
registry's business, so a command added there works here with no change. With exactly one
inverter configured, ``<root>/control/<command>`` addresses it too (GivTCP users' automations
often leave the serial out).

Each message runs in its own task (the MQTT client starts one per handler call), so a slow
command (a reboot waits minutes) never holds up another; the executor serialises commands to
the same device. Every command gets exactly one answer, published without retain. A retained
control message is refused with a warning: the broker would replay it on every reconnect and
the inverter would be written again each time.
"""

from __future__ import annotations

from givbridge.commands.access import MQTT
from givbridge.commands.executor import CommandExecutor
from givbridge.commands.results import CommandFailed, CommandResult, ErrorCode
from givbridge.log import get_logger
from givbridge.mqtt.client import Message, MqttClient
from givbridge.mqtt.topics import Topics

log = get_logger(__name__)

#: The device level of the response topic when no inverter could be named (e.g. several are
#: configured and the command left the serial out): ``<root>/bridge/response/<command>``.
BRIDGE_DEVICE = "bridge"


def publish_result(mqtt: MqttClient, topics: Topics, result: CommandResult, device: str | None = None) -> bool:
    """A command's one answer on ``<root>/<device>/response/<command>``, QoS 1, never retained.

    ``device`` defaults to the serial the result is for, else the bridge. False (logged) when
    the broker connection is down and the answer could not be sent.
    """
    topic = topics.response(device or result.serial or BRIDGE_DEVICE, result.command)
    if mqtt.publish(topic, result.to_json(), retain=False, qos=1):
        return True
    log.warning("could not publish a command's answer (not connected)", topic=topic, command=result.command)
    return False


class ControlSubscriber:
    """Subscribes to the control topics and answers every command on its response topic."""

    def __init__(self, mqtt: MqttClient, topics: Topics, executor: CommandExecutor) -> None:
        self._mqtt = mqtt
        self._topics = topics
        self._executor = executor

    def attach(self) -> None:
        """Subscribe (the client renews it after every reconnect)."""
        self._mqtt.subscribe(self._topics.control_filter, self.handle, qos=1)

    async def handle(self, message: Message) -> None:
        """Run one control message to its answer; never raises."""
        parsed = self._topics.parse_control(message.topic)
        if parsed is None:
            log.warning("ignoring a control message on an unrecognised topic", topic=message.topic)
            return
        serial, command = parsed
        if message.retain:
            log.warning(
                "ignoring a retained command: it would run again on every reconnect; publish it without retain "
                "(and clear it with an empty retained message)",
                topic=message.topic,
            )
            return
        try:
            result = await self._executor.execute(command, message.payload, serial=serial, caller=MQTT)
        except Exception as exc:  # execute() answers everything itself; this is the last net
            log.exception("control handler failed", topic=message.topic)
            result = CommandResult.failure(command, None, serial, CommandFailed(ErrorCode.INTERNAL, repr(exc)))
        publish_result(self._mqtt, self._topics, result, result.serial or serial)
