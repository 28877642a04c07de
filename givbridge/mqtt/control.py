"""Commands over MQTT: ``<root>/control/<serial>/<command>`` in, ``<root>/<serial>/response/<command>`` out.

One subscription, ``<root>/control/#``, carries every command: which ones exist is the
registry's business, so a command added there works here with no change. With exactly one
inverter configured, ``<root>/control/<command>`` addresses it too (GivTCP users' automations
often leave the serial out).

Each message runs in its own task (the MQTT client starts one per handler call), so a slow
command (a reboot waits minutes) never holds up another; the executor serialises commands to
the same device. Every command gets exactly one answer, published without retain.

A malformed control topic (an extra or empty level, a serial or command level that is too long
or has other characters, ``<root>/control/`` alone; see :mod:`givbridge.mqtt.topics`) is logged
and answered with ``invalid_topic``, on ``<root>/bridge/response/<command>`` when its last level
is a well-formed command name and on ``<root>/bridge/response/invalid_topic`` otherwise; its
payload is never looked at beyond its ``transaction``. Response topics are only ever built from
checked levels (:meth:`Topics.answer`), so publishing an answer cannot fail on its topic.

An empty message runs only reads (``readData``, ``getCache``, ``runAll``, ``getEVCCache``): a
command that changes anything answers ``invalid_payload`` and is not run (:func:`refuse_empty`).
Clearing a retained command, which the warning below tells users to do, publishes an empty
retained message, and the broker delivers it to a connected givbridge as an ordinary one; an
empty message is nobody asking for a change. A command that takes no value is sent with any
payload instead (``{}``, or Home Assistant's button payload ``restart``). Over HTTP a POST
without a body is a deliberate request and runs as before.

A retained control message is refused with a warning and no answer. Under MQTT 3.1.1 the broker
marks a message retained only when it replays it to a new subscription: a retained command
published while givbridge was connected has already run and been answered, and answering each
replay (one per reconnect, echoing the old transaction) would give that one command more answers
that contradict its first.
"""

from __future__ import annotations

from givbridge.commands.access import MQTT, reads_only
from givbridge.commands.decoding import decode
from givbridge.commands.docs import accepted_forms
from givbridge.commands.executor import CommandExecutor
from givbridge.commands.registry import Registry
from givbridge.commands.results import CommandFailed, CommandResult, ErrorCode
from givbridge.log import get_logger
from givbridge.mqtt.client import Message, MqttClient
from givbridge.mqtt.topics import BRIDGE_DEVICE, INVALID_TOPIC, InvalidTopic, Topics, quoted

log = get_logger(__name__)

__all__ = ["BRIDGE_DEVICE", "ControlSubscriber", "publish_result", "refuse_empty"]


def refuse_empty(registry: Registry, name: str, payload: bytes, serial: str | None) -> CommandResult | None:
    """``invalid_payload`` for an empty message to a command that changes something; None to run it.

    Empty is what the executor would read as no value at all: no bytes, only spaces, or ``""``.
    The refusal is for ``serial`` as the topic gave it: without one (``<root>/control/<command>``)
    it is answered on the bridge's response topic, as nothing resolved the device.
    A name that is no command, and a payload that does not decode, are left to the executor,
    which answers them as it answers every other message.
    """
    command = registry.get(name)
    if command is None or reads_only(command):
        return None
    try:
        message = decode(payload)
    except CommandFailed:
        return None
    if message.object is not None or message.raw:
        return None
    log.warning("refusing an empty message to a command that changes something", command=name, serial=serial)
    failure = CommandFailed(
        ErrorCode.INVALID_PAYLOAD,
        f"an empty message runs no command that changes something over MQTT (clearing a retained message "
        f"delivers one, and runs nothing); to run {command.name} send {accepted_forms(command)}",
    )
    return CommandResult.failure(name, None, serial, failure)


def publish_result(mqtt: MqttClient, topics: Topics, result: CommandResult, device: str | None = None) -> bool:
    """A command's one answer on ``<root>/<device>/response/<command>``, QoS 1, never retained.

    ``device`` defaults to the serial the result is for, else the bridge. False (logged) when
    the broker connection is down and the answer could not be sent.
    """
    topic = topics.answer(device or result.serial or BRIDGE_DEVICE, result.command)
    try:
        if mqtt.publish(topic, result.to_json(), retain=False, qos=1):
            return True
    except ValueError:  # the client refuses a topic it cannot send; answer() builds none, this is the last net
        log.exception("a command's answer has a topic the client refuses", topic=quoted(topic))
        return False
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
        try:
            serial, command = self._topics.parse_control(message.topic)
        except InvalidTopic as invalid:
            self._answer_invalid_topic(message, invalid)
            return
        if message.retain:
            log.warning(
                "ignoring a retained command: it would run again on every reconnect; publish it without retain "
                "(and clear it with an empty retained message)",
                topic=message.topic,
            )
            return
        try:
            result = refuse_empty(
                self._executor.registry, command, message.payload, serial
            ) or await self._executor.execute(command, message.payload, serial=serial, caller=MQTT)
        except Exception as exc:  # execute() answers everything itself; this is the last net
            log.exception("control handler failed", topic=message.topic)
            result = CommandResult.failure(command, None, serial, CommandFailed(ErrorCode.INTERNAL, repr(exc)))
        publish_result(self._mqtt, self._topics, result, result.serial or serial)

    def _answer_invalid_topic(self, message: Message, invalid: InvalidTopic) -> None:
        log.warning(
            "refusing a control message on a malformed topic",
            topic=quoted(message.topic),
            topic_bytes=len(message.topic.encode("utf-8")),
            reason=invalid.reason,
            retained=message.retain,
        )
        if message.retain:
            return  # a replay, like any retained command (see the module docstring)
        try:
            transaction = decode(message.payload).transaction
        except CommandFailed:
            transaction = None
        failure = CommandFailed(ErrorCode.INVALID_TOPIC, f"{invalid.reason}; nothing was run")
        result = CommandResult.failure(invalid.command or INVALID_TOPIC, transaction, None, failure)
        publish_result(self._mqtt, self._topics, result, BRIDGE_DEVICE)
