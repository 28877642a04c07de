"""Control topics: which shapes name a command, why the others do not, and where each is answered."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from givbridge.commands.access import reads_only
from givbridge.commands.registry import REGISTRY
from givbridge.commands.results import ErrorCode
from givbridge.mqtt.control import refuse_empty
from givbridge.mqtt.topics import BRIDGE_DEVICE, COMMAND_LEVEL, INVALID_TOPIC, SERIAL_LEVEL, InvalidTopic, Topics

TOPICS = Topics("GivEnergy")
#: MQTT's limit on a topic, in bytes: no response topic may come near it.
MQTT_TOPIC_LIMIT = 65_535
ANSWER_LIMIT = len(TOPICS.response("x" * 32, "x" * 64))


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("GivEnergy/control/SA1234G567/setChargeTarget", ("SA1234G567", "setChargeTarget")),
        ("GivEnergy/control/setChargeTarget", (None, "setChargeTarget")),
        ("GivEnergy/control/GE2239EVC01/setChargeControl", ("GE2239EVC01", "setChargeControl")),
        ("GivEnergy/control/sa1234g567/bogus", ("sa1234g567", "bogus")),  # the executor says unknown_command
    ],
)
def test_well_formed_control_topics(topic: str, expected: tuple[str | None, str]) -> None:
    assert TOPICS.parse_control(topic) == expected


def test_every_registered_command_name_is_a_well_formed_level() -> None:
    assert all(COMMAND_LEVEL.fullmatch(name) for name in REGISTRY.names)


@pytest.mark.parametrize(
    ("topic", "command", "says"),
    [
        ("GivEnergy/control", None, "names no command"),
        ("GivEnergy/control/", None, "names no command"),
        ("GivEnergy/control//", None, "names no command"),
        ("GivEnergy/control/a/b/c", "c", "3 levels"),
        ("GivEnergy/control/SA1234G567/setChargeTarget/extra", "extra", "3 levels"),
        ("GivEnergy/control//setChargeTarget", "setChargeTarget", "an empty level"),
        ("GivEnergy/control/SA1234G567/", None, "an empty level"),
        ("GivEnergy/control/SA1234G567/set Charge", None, "not a command name"),
        ("GivEnergy/control/SA1234G567/1setChargeTarget", None, "not a command name"),
        ("GivEnergy/control/SA1234G567/setChargeTärget", None, "not a command name"),
        ("GivEnergy/control/" + "x" * 65, None, "not a command name"),
        ("GivEnergy/control/SA 1234/setChargeTarget", "setChargeTarget", "not a serial"),
        ("GivEnergy/control/" + "S" * 33 + "/setChargeTarget", "setChargeTarget", "not a serial"),
        ("GivEnergy/control/" + "x" * 65_000, None, "(65000 characters)"),
    ],
)
def test_malformed_control_topics_say_why_and_keep_a_well_formed_command(
    topic: str, command: str | None, says: str
) -> None:
    with pytest.raises(InvalidTopic) as invalid:
        TOPICS.parse_control(topic)
    assert invalid.value.command == command
    assert says in invalid.value.reason
    assert len(invalid.value.reason) < 300  # quotes at most a bit of the topic


def test_answers_go_to_well_formed_topics_only() -> None:
    assert TOPICS.answer("SA1234G567", "setChargeTarget") == "GivEnergy/SA1234G567/response/setChargeTarget"
    assert TOPICS.answer(BRIDGE_DEVICE, "restart") == "GivEnergy/bridge/response/restart"
    assert TOPICS.answer(None, "setChargeTarget") == "GivEnergy/bridge/response/setChargeTarget"
    assert TOPICS.answer("S" * 65_000, "setChargeTarget") == "GivEnergy/bridge/response/setChargeTarget"
    assert TOPICS.answer("SA1234G567", "x" * 65_000) == f"GivEnergy/bridge/response/{INVALID_TOPIC}"
    assert TOPICS.answer("SA1234G567", "a/b") == f"GivEnergy/bridge/response/{INVALID_TOPIC}"
    assert TOPICS.answer("SA1234G567", "#") == f"GivEnergy/bridge/response/{INVALID_TOPIC}"


LEVEL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "SA1234G567", "setChargeTarget", "x" * 70, "+", "#", "a b"]),
    st.text(alphabet="abcXYZ019_-", min_size=1, max_size=70),
)


@given(levels=st.lists(LEVEL, max_size=4), device=st.one_of(st.none(), LEVEL))
def test_any_control_topic_parses_or_says_why_and_its_answer_topic_is_well_formed(
    levels: list[str], device: str | None
) -> None:
    topic = "GivEnergy/control/" + "/".join(levels)
    try:
        serial, command = TOPICS.parse_control(topic)
    except InvalidTopic as invalid:
        assert invalid.reason
        answer = TOPICS.answer(BRIDGE_DEVICE, invalid.command or INVALID_TOPIC)
    else:
        assert COMMAND_LEVEL.fullmatch(command)
        assert serial is None or SERIAL_LEVEL.fullmatch(serial)
        answer = TOPICS.answer(serial or device, command)
    levels_of_answer = answer.split("/")
    assert len(levels_of_answer) == 4 and levels_of_answer[0] == "GivEnergy" and levels_of_answer[2] == "response"
    assert "+" not in answer and "#" not in answer and answer.isascii()
    assert len(answer.encode()) <= ANSWER_LIMIT < MQTT_TOPIC_LIMIT


# --------------------------------------------------------------------------- empty messages


@pytest.mark.parametrize("payload", [b"", b"   ", b"\t\r\n", b'""', b'" "'])
@pytest.mark.parametrize(
    "name", ["rebootInverter", "reboot", "syncDateTime", "restart", "rebootAddon", "setChargeTarget", "settings"]
)
def test_an_empty_message_runs_no_command_that_changes_something(name: str, payload: bytes) -> None:
    refused = refuse_empty(REGISTRY, name, payload, "SA1234G567")
    assert refused is not None and refused.code is ErrorCode.INVALID_PAYLOAD
    assert (refused.command, refused.serial, refused.transaction) == (name, "SA1234G567", None)
    assert refused.error is not None and "empty message" in refused.error.message


def test_the_refusal_says_what_to_send_instead() -> None:
    refused = refuse_empty(REGISTRY, "rebootInverter", b"", None)
    assert refused is not None and refused.error is not None
    assert "`{}` or `restart`" in refused.error.message
    target = refuse_empty(REGISTRY, "setChargeTarget", b"", None)
    assert target is not None and target.error is not None and "raw `80`" in target.error.message


@pytest.mark.parametrize("name", ["readData", "getCache", "runAll", "getEVCCache"])
def test_an_empty_message_still_runs_a_read(name: str) -> None:
    assert refuse_empty(REGISTRY, name, b"", None) is None


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("rebootInverter", b"restart"),  # Home Assistant's button payload
        ("syncDateTime", b"{}"),
        ("syncDateTime", b'{"transaction": 1}'),
        ("setChargeTarget", b"80"),
        ("setChargeTarget", b"\xff"),  # not UTF-8: the executor answers it
        ("noSuchCommand", b""),  # the executor answers unknown_command
    ],
)
def test_everything_else_goes_to_the_executor(name: str, payload: bytes) -> None:
    assert refuse_empty(REGISTRY, name, payload, None) is None


def test_every_command_that_does_not_only_read_refuses_an_empty_message() -> None:
    """One fact: the access policy's kind of each command, not a list kept here."""
    for command in REGISTRY:
        refused = refuse_empty(REGISTRY, command.name, b"", None)
        assert (refused is None) == reads_only(command), command.name
