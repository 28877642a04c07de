"""Fuzzing the whole control plane, MQTT and HTTP, and counting register writes at the simulator.

One real bridge (MQTT to a real broker, the HTTP shim on with a token and a trusted network)
drives one simulated inverter. Each case is a control message (topic, payload, retained flag)
or an HTTP request (method, path on the main or the inverter's own port, Origin,
Sec-Fetch-Site, Content-Type, Authorization, client address, body). The oracle waits for the
case's one answer and then reads the simulator's :attr:`~givbridge.sim.SimulatedPlant.write_log`:

* an error answer: no register was written (none accepted; for refusals before the inverter
  is addressed, none even sent);
* an ``ok`` answer: only registers the command's own plan names (the registry's planner,
  run on the same payload and state), each with the planned value, which reads back; and
  only for input the issue calls acceptable: plain ASCII numbers (item 5), a POST with the
  right token or from a trusted address, no foreign browser origin and no simple-request
  content type (item 3), never ``reboot`` over MQTT (item 2).

Cases that get no answer by design say why where they are decided (:func:`mqtt_answer`).
Timed actions (forceCharge...) are left out: they write again when they end, which their
reliability family checks; so are the bridge's own ``restart``, ``settings`` and
``setLogLevel``, which would reconfigure the rig under test. Case counts follow the
Hypothesis profile: ``ci`` (300 per property) or ``HYPOTHESIS_PROFILE=nightly`` (10,000).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from givbridge.commands import timed
from givbridge.commands.decoding import decode
from givbridge.commands.executor import parse_payload
from givbridge.commands.registry import REGISTRY
from givbridge.commands.results import CommandFailed
from givbridge.commands.spec import Command, PlanInput
from givbridge.mqtt.client import Message
from givbridge.plant import registers
from givbridge.sim import SimulatedPlant
from givbridge.sim.writes import WriteRecord
from tests.brokers import Broker, MqttProbe
from tests.fuzz.test_command_payloads import payloads
from tests.integration.http_helpers import OTHER_CLIENT, TOKEN, HttpRig, client, http_rig
from tests.reliability.invariants import CrashWatch

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(90 + settings().max_examples // 10),  # the nightly profile takes minutes
]

#: Left out: timed actions write again when they end (their reliability family checks that), and
#: the bridge's restart, settings and setLogLevel would reconfigure the rig under test.
LEFT_OUT = frozenset(
    name
    for command in REGISTRY
    if command in timed.COMMANDS or (command.target == "bridge" and command.name != "switchRate")
    for name in command.names
)
FUZZED = sorted(REGISTRY.names - LEFT_OUT)
#: What ``reboot`` (an action, not a plan) writes: the inverter's reboot command register.
REBOOT_WRITES = {registers.REBOOT: registers.REBOOT_VALUE}
#: Longest MQTT topic (a two-byte length prefix).
MAX_TOPIC_BYTES = 65_535
ANSWER_WITHIN = 20.0


@dataclass
class Rig:
    http: HttpRig
    probe: MqttProbe
    crashes: CrashWatch
    clients: dict[str, httpx.AsyncClient]  # by local address
    barriers: int = 0

    @property
    def sim(self) -> SimulatedPlant:
        return self.http.sims[0]

    @property
    def serial(self) -> str:
        return self.sim.serial

    @property
    def root(self) -> str:
        return self.http.app.settings.mqtt.root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    data_dir: Path = tmp_path_factory.mktemp("bridge")
    http = {"per_inverter_ports": True, "token": TOKEN, "trusted_networks": [f"{OTHER_CLIENT}/32"]}
    with CrashWatch() as crashes:
        async with http_rig(data_dir, ["hybrid-gen3"], broker=module_broker, http=http) as running:
            running.sims[0].reboot_seconds = 2.0  # an allowed reboot comes back within a couple of polls
            probe = MqttProbe.for_broker(module_broker, topics=(f"{running.app.settings.mqtt.root}/+/response/#",))
            await probe.start()
            clients = {address: client(local_address=address, timeout=ANSWER_WITHIN) for address in _ADDRESSES}
            try:
                yield Rig(running, probe, crashes, clients)
            finally:
                for http_client in clients.values():
                    await http_client.aclose()
                await probe.stop()
    crashes.assert_clean()


# --- the oracle ------------------------------------------------------------------------------------


@dataclass
class Expected:
    """What a case may write, worked out before it is sent from the registry and the device's state."""

    command: Command | None
    payload: bytes | None
    #: The planned register values when the payload is valid and plans here; None: no plan.
    plan: dict[int, int] | None = None
    #: Whether the planned values can be compared exactly (not a running clock).
    exact: bool = True
    #: Why an ``ok`` answer would be wrong whatever it wrote (which issue-16 item it breaks).
    must_refuse: list[str] = field(default_factory=list)


async def expect(rig: Rig, name: str, payload: bytes | None) -> Expected:
    command = REGISTRY.get(name)
    expected = Expected(command, payload)
    if command is None:
        return expected
    if command.action is not None:
        expected.plan = dict(REBOOT_WRITES) if command.name == "reboot" else {}
    else:
        assert command.plan is not None
        runner = rig.http.app.bridge.runners[0]
        assert runner.context is not None and runner.snapshot is not None
        try:
            model = parse_payload(command, decode(payload))
            memory = await rig.http.app.commands.memory(runner.context.serial)
            now = rig.http.app.clock.now().astimezone(runner.tz)
            planned = command.plan(model, PlanInput(runner.context, runner.snapshot, memory, now))
        except CommandFailed:
            return expected  # answered with an error: then nothing may be written
        final = {write.register: write.value for write in planned.plan.writes}
        final.update({write.register: write.value for write in planned.plan.expected})
        expected.plan, expected.exact = final, planned.check is None
    loose = loose_numbers(command, payload)
    if loose:
        expected.must_refuse.append(f"item 5: loose numbers {loose} must be invalid_payload")
    return expected


_STRICT_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*", re.ASCII)


def loose_numbers(command: Command, payload: bytes | None) -> list[str]:
    """The payload's text values that Python reads as a number but are not plain ASCII decimals."""
    try:
        message = decode(payload)
    except CommandFailed:
        return []
    # A raw value is read only by a command that takes one; a command without a payload
    # (readData, getCache, a button's word) ignores the text, so it cannot read it loosely.
    values: list[Any] = [message.raw] if message.raw is not None and command.raw_field is not None else []
    if message.object is not None:
        values += [value for key, value in message.object.items() if key in command.payload.model_fields]
    return [value for value in values if isinstance(value, str) and _reads_as_number(value)]


def _reads_as_number(text: str) -> bool:
    if _STRICT_NUMBER.fullmatch(text):
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def judge(rig: Rig, case: object, expected: Expected, answer: Mapping[str, Any] | None, mark: int) -> None:
    """The writes since ``mark`` against the answer (None: no answer, by design)."""
    writes = rig.sim.writes_since(mark)
    accepted = [record for record in writes if record.accepted]
    shown = [_shown(record) for record in writes]
    if answer is None or answer.get("status") != "ok":
        assert not accepted, f"written without an ok answer: {shown}; answer {answer}; case {case!r}"
        # Only a write the inverter itself refused may have been sent; anything else is refused first.
        code = answer.get("error", {}).get("code") if answer is not None else None
        assert code == "rejected" or not writes, f"sent though refused: {shown}; answer {answer}; case {case!r}"
        return
    assert not expected.must_refuse, f"answered ok: {expected.must_refuse}; writes {shown}; case {case!r}"
    plan = expected.plan
    assert plan is not None, f"answered ok, but the payload does not plan here; writes {shown}; case {case!r}"
    for record in writes:
        assert record.register in plan, f"HR{record.register} is not in the plan {plan}: {shown}; case {case!r}"
        if expected.exact:
            assert record.new == plan[record.register], f"not the planned value {plan}: {shown}; case {case!r}"
        assert record.accepted, f"a write of an ok command was rejected: {shown}; case {case!r}"
    if expected.exact and expected.command is not None and expected.command.plan is not None:
        held = {register: rig.sim.holding(register) for register in plan}
        assert held == plan, f"the inverter holds {held}, not the planned {plan}; case {case!r}"


def sent_transaction(payload: bytes | None) -> str | int | None:
    """The ``transaction`` a JSON-object payload carries (str or int), which its answer must echo."""
    try:
        document = json.loads(payload or b"")
    except (ValueError, RecursionError):
        return None
    transaction = document.get("transaction") if isinstance(document, dict) else None
    return transaction if isinstance(transaction, str | int) and not isinstance(transaction, bool) else None


def tally(what: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (the fixed cases run outside Hypothesis)."""
    if currently_in_test_context():
        event(what)


def _shown(record: WriteRecord) -> str:
    return f"HR{record.register} {record.old}->{record.new} ({record.outcome.value})"


def problems_so_far(rig: Rig) -> int:
    rig.crashes.drain()
    return len(rig.crashes.problems)


def assert_no_crash(rig: Rig, case: object, before: int) -> None:
    """A traceback (an unhandled exception, or an error logged with one) fails the case that caused it."""
    rig.crashes.drain()
    new = list(rig.crashes.problems)[before:]
    crashes = [problem for problem in new if "unhandled" in problem or "exc_info" in problem]
    assert not crashes, f"{crashes}; case {case!r}"


# --- MQTT ------------------------------------------------------------------------------------------


#: Text a broker takes in a topic: brokers close the connection of a client that publishes
#: control characters or non-characters (mosquitto does), so those are not generated.
def topic_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_categories=("Cc", "Cs", "Cn")), max_size=max_size)


#: Command names: every fuzzed one, near misses, anything.
NAMES = st.one_of(
    st.sampled_from(FUZZED),
    st.sampled_from(FUZZED),
    st.sampled_from(FUZZED),
    st.sampled_from(FUZZED),
    st.sampled_from(FUZZED).map(lambda name: name.lower()),
    st.sampled_from(FUZZED).map(lambda name: name + "x"),
    st.sampled_from(["", " ", "setChargeTarget ", "setChargeTarget11", "set", "readdata", "rebootinverter"]),
    topic_text(16),
)

#: Payloads for any name: the command's own forms (see test_command_payloads) and near-valid numbers.
NEAR_NUMBERS = st.sampled_from(
    [
        *(
            "1_0_0",
            "6_0",
            "\uff16\uff10",
            "٣٠",
            "\u0661\u0660\u0660",
            "6e1",
            "1e3",
            "5E1",
            "60.0",
            " 60 ",
            "+60",
            "0x3c",
            "0b1",
            "60%",
        ),
        *("99999999999999999999", "-5", "-0", "1e309", "inf", "nan", "50.5", "\uff14", "٤", "½", "50\u200b"),
    ]
)


def near_valid(command: Command | None) -> st.SearchStrategy[bytes]:
    """A near-valid number raw, quoted, or in the command's fields (with a transaction, duplicated keys)."""
    fields = sorted(command.payload.model_fields) if command is not None and command.payload.model_fields else ["x"]
    in_object = st.builds(
        lambda key, value, transaction: json.dumps({key: value, "transaction": transaction}).encode(),
        st.sampled_from(fields),
        NEAR_NUMBERS,
        st.one_of(st.none(), st.text(max_size=8), st.integers()),
    )
    duplicated = st.builds(
        lambda key, first, second: f'{{"{key}": "{first}", "{key}": {json.dumps(second)}}}'.encode(),
        st.sampled_from(fields),
        st.integers(4, 100),
        NEAR_NUMBERS,
    )
    return st.one_of(
        NEAR_NUMBERS.map(str.encode), NEAR_NUMBERS.map(lambda n: json.dumps(n).encode()), in_object, duplicated
    )


def _field_values(examples: list[Any]) -> st.SearchStrategy[Any]:
    """Values like the field's own examples (the payload model's): numbers near them, any clock time."""
    example = examples[0] if examples else None
    if isinstance(example, int) and not isinstance(example, bool):
        return st.integers(0, max(2 * example, 100))
    if isinstance(example, str) and re.fullmatch(r"\d\d:\d\d", example):
        return st.builds(lambda hour, minute: f"{hour:02d}:{minute:02d}", st.integers(0, 23), st.integers(0, 59))
    if isinstance(example, str) and example.lower() in ("enable", "disable"):
        return st.sampled_from(["enable", "disable"])
    return st.sampled_from(examples) if examples else st.none()


#: Ways of writing a number that are not plain ASCII decimals (item 5 wants them refused).
LOOSE_FORMS = (
    lambda n: "_".join(str(n)),
    lambda n: str(n).translate(
        str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19")
    ),
    lambda n: str(n).translate(
        str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
    ),
    lambda n: f"{n / 10:g}e1",
)


def valid_payloads(command: Command) -> st.SearchStrategy[bytes]:
    """The command's payload as its model describes it: raw, or a JSON object (strings or numbers)."""
    fields = {
        name: _field_values(list(info.examples or []))
        for name, info in command.payload.model_fields.items()
        if name not in command.fixed
    }
    as_text = st.booleans()
    objects = st.fixed_dictionaries(
        {},
        optional={
            name: st.tuples(values, as_text).map(lambda v: str(v[0]) if v[1] else v[0])
            for name, values in fields.items()
        },
    ).map(lambda document: json.dumps({**document, "transaction": "t"}).encode())
    if command.raw_field is None or command.raw_field not in fields:
        return objects
    raw = fields[command.raw_field].map(lambda value: str(value).encode())
    loose = st.tuples(fields[command.raw_field], st.sampled_from(LOOSE_FORMS)).map(
        lambda pair: (pair[1](pair[0]) if isinstance(pair[0], int) else str(pair[0])).encode()
    )
    return st.one_of(raw, raw, objects, loose)


def any_payload(name: str) -> st.SearchStrategy[bytes]:
    command = REGISTRY.get(name)
    if command is None:
        return st.one_of(st.binary(max_size=40), NEAR_NUMBERS.map(str.encode))
    valid = valid_payloads(command)
    return st.one_of(valid, valid, valid, payloads(command), near_valid(command))


_SEGMENT = st.one_of(
    topic_text(12),
    st.sampled_from(["", " ", "+", "#", "a+b", "a#", "\u00e9", "\U0001f642", "..", "$SYS", "\u202e"]),
)


@dataclass(frozen=True)
class MqttCase:
    topic: str
    payload: bytes
    retained: bool

    def __repr__(self) -> str:  # a falsifying example stays readable with a 65,535-character topic
        topic = self.topic if len(self.topic) <= 120 else f"{self.topic[:100]!r}... ({len(self.topic)} characters)"
        return f"MqttCase(topic={topic!r}, payload={self.payload[:200]!r}, retained={self.retained})"


@st.composite
def mqtt_cases(draw: st.DrawFn, serial: str, root: str) -> MqttCase:
    """A control message addressed right or wrongly in every way a topic can be."""
    name = draw(NAMES)
    serials = st.one_of(
        st.just(serial),
        st.just(serial),
        st.just(serial),
        st.sampled_from([serial.lower(), "SA0000G000", "", serial + "X"]),
        topic_text(12),
    )
    shape = draw(st.integers(0, 9))
    if shape <= 4:
        topic = f"{root}/control/{draw(serials)}/{name}"
    elif shape == 5:
        topic = f"{root}/control/{name}"
    elif shape == 6:  # another root, a near miss of the real one
        other = draw(st.sampled_from([root.lower(), root + "x", "GivTCP", "", root + "/x"]) | topic_text(8))
        topic = f"{other}/control/{draw(serials)}/{name}"
    elif shape == 7:  # extra or empty levels, odd characters
        segments = draw(st.lists(_SEGMENT, max_size=4))
        topic = "/".join([root, "control", *segments, name])
    elif shape == 8:  # a command name as long as a topic can be, or nearly
        length = draw(st.integers(MAX_TOPIC_BYTES - 200, MAX_TOPIC_BYTES + 10)) - len(f"{root}/control/{serial}/")
        topic = f"{root}/control/{serial}/{'a' * max(length, 1)}"
    else:
        topic = draw(topic_text(40))
    return MqttCase(topic, draw(any_payload(name)), draw(st.booleans()))


@dataclass(frozen=True)
class MqttAnswer:
    """Where a case's answer must come (one of ``topics``), or why none need come (then ``topics`` is empty)."""

    topics: tuple[str, ...]
    command: str
    why_none: str = ""
    #: Under the control root, but no answer is required: one may come, as an error.
    malformed: bool = False


def mqtt_answer(rig: Rig, topic: str) -> MqttAnswer:
    """The oracle's own reading of a control topic: where its one answer goes, if anywhere."""
    prefix = f"{rig.root}/control/"
    if not topic.startswith(prefix):
        return MqttAnswer((), "", "not a control topic: not addressed to givbridge, which must not act on it")
    levels = topic[len(prefix) :].split("/")
    if len(levels) == 1 and levels[0]:
        # The only inverter, or the bridge itself when the command names no inverter (or none).
        devices_named, command = (rig.serial, "bridge"), levels[0]
    elif len(levels) == 2 and all(levels):
        # As addressed, or as the inverter spells its serial once the command has found it.
        command, devices_named = levels[1], (levels[0], rig.serial)
    else:
        # Item 6 asks for an answer only "where a response topic can be formed", which it leaves
        # to the fix: either way nothing may be written, and any answer must be an error.
        return MqttAnswer((), levels[-1], "a malformed control topic", malformed=True)
    responses = tuple(f"{rig.root}/{device}/response/{command}" for device in devices_named)
    if min(len(response.encode()) for response in responses) > MAX_TOPIC_BYTES:
        return MqttAnswer((), command, "the response topic would be longer than MQTT allows", malformed=True)
    return MqttAnswer(responses, command)


def mqtt_can_carry(topic: str) -> str | None:
    """Why MQTT cannot carry this as a PUBLISH topic (the client refuses it), or None."""
    if not topic:
        return "an empty topic"
    if "+" in topic or "#" in topic:
        return "a wildcard in a PUBLISH topic"
    if "\x00" in topic:
        return "U+0000 in a topic"
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return "a topic longer than 65,535 bytes"
    if any(0xD800 <= ord(character) <= 0xDFFF for character in topic):
        return "a lone surrogate (not UTF-8)"
    return None


async def barrier(rig: Rig) -> None:
    """Until the bridge has dispatched every earlier control message: it answers an unknown command."""
    rig.barriers += 1
    name = f"fuzzBarrier{rig.barriers}"
    after = rig.probe.mark()
    await rig.probe.publish(f"{rig.root}/control/{rig.serial}/{name}", b"{}")
    await rig.probe.wait_for(f"{rig.root}/{rig.serial}/response/{name}", timeout=ANSWER_WITHIN, after=after)


async def run_mqtt_case(rig: Rig, case: MqttCase) -> None:
    topic, payload, retained = case.topic, case.payload, case.retained
    mark, after, problems = rig.sim.writes_answered, rig.probe.mark(), problems_so_far(rig)
    forbidden = mqtt_can_carry(topic)
    if forbidden is not None:
        with pytest.raises(ValueError):  # nothing reaches the broker: no answer, by design
            await rig.probe.publish(topic, payload, retain=retained)
        tally("MQTT cannot carry the topic")
        judge(rig, case, Expected(None, payload), None, mark)
        return
    where = mqtt_answer(rig, topic)
    expected = await expect(rig, where.command, payload)
    if expected.command is not None and expected.command.name == "reboot":
        expected.must_refuse.append("item 2: reboot over MQTT is off by default")
    # Under MQTT 3.1.1 a retained PUBLISH reaches subscribers already connected as a live
    # message (retain 0): the bridge runs it like any other; a reconnect replays it, flagged.
    await rig.probe.publish(topic, payload, retain=retained)
    answer: dict[str, Any] | None = None
    if where.topics:
        transaction = sent_transaction(payload)

        def is_answer(message: Message) -> bool:
            document = json.loads(message.payload)
            # A level the bridge finds malformed (too long, other characters: item 6 leaves which to the
            # fix) may be answered invalid_topic on the bridge's response topic instead.
            refused_topic = message.topic.startswith(f"{rig.root}/bridge/response/") and (
                document.get("error", {}).get("code") == "invalid_topic"
            )
            return (message.topic in where.topics or refused_topic) and (
                transaction is None or document.get("transaction") == transaction
            )

        message = await rig.probe.wait_for(f"{rig.root}/+/response/#", is_answer, timeout=ANSWER_WITHIN, after=after)
        answer = json.loads(message.payload)
        tally(f"MQTT answered {answer.get('status')} {answer.get('error', {}).get('code', '')}")
    else:
        await barrier(rig)
        stray = [m for m in rig.probe.messages(f"{rig.root}/+/response/#", after=after) if "fuzzBarrier" not in m.topic]
        if where.malformed:
            assert all(json.loads(m.payload).get("status") == "error" for m in stray), (stray, case)
        else:
            assert not stray, f"answered though {where.why_none}: {stray}; case {case!r}"
        tally(f"MQTT no answer: {where.why_none}")
    judge(rig, case, expected, answer, mark)
    assert_no_crash(rig, case, problems)


@given(data=st.data())
async def test_mqtt_control_messages_write_only_what_their_answer_says(rig: Rig, data: st.DataObject) -> None:
    await run_mqtt_case(rig, data.draw(mqtt_cases(rig.serial, rig.root), label="case"))


# --- HTTP ------------------------------------------------------------------------------------------

_ADDRESSES = ("127.0.0.1", OTHER_CLIENT)  # untrusted, trusted
_SIMPLE_TYPES = {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
_FOREIGN_SITES = {"cross-site", "same-site"}


@dataclass(frozen=True)
class HttpCase:
    face: str  # "main" (/REST<n>/...), "inverter" (its own port), "root" (main port, no prefix)
    path: str
    name: str
    method: str
    address: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


@st.composite
def http_cases(draw: st.DrawFn) -> HttpCase:
    # Names the URL carries as they are (no path syntax or escapes the client would rewrite).
    names = st.one_of(st.sampled_from(FUZZED), st.sampled_from(FUZZED), NAMES)
    name = draw(names.filter(lambda text: not set(text) & set("/?#%\\") and text.strip(".")))
    face = draw(st.sampled_from(["main", "main", "main", "inverter", "inverter", "root"]))
    number = draw(st.sampled_from([1, 1, 1, 1, 1, 2, 0]))
    path = {"main": f"/REST{number}/{name}", "inverter": f"/{name}", "root": f"/{name}"}[face]
    command = REGISTRY.get(name)
    usual = command.method if command is not None else "POST"
    method = draw(st.sampled_from([usual] * 6 + ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]))
    headers: list[tuple[str, str]] = []
    authorization = draw(
        st.sampled_from(
            [None, None, *[f"Bearer {TOKEN}"] * 3, f"bearer {TOKEN}", "Bearer wrong", f"Basic {TOKEN}", "Bearer"]
        )
    )
    if authorization is not None:
        headers.append(("Authorization", authorization))
    origin = draw(st.sampled_from([None, None, None, None, "https://evil.example", "null", "http://127.0.0.1"]))
    if origin is not None:
        headers.append(("Origin", origin))
    site = draw(st.sampled_from([None, None, None, None, "cross-site", "same-site", "same-origin", "none"]))
    if site is not None:
        headers.append(("Sec-Fetch-Site", site))
    content_type = draw(
        st.sampled_from(
            [
                *(None, "application/json", "application/json", "text/plain", "text/plain;charset=UTF-8"),
                *("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"),
            ]
        )
    )
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    body = draw(any_payload(name)) if method in ("POST", "PUT") else b""
    return HttpCase(face, path, name, method, draw(st.sampled_from(_ADDRESSES)), tuple(headers), body)


def permitted(case: HttpCase) -> bool:
    """The oracle's own access rule (README, REST shim): a trusted address or the right bearer token."""
    if case.address == OTHER_CLIENT:
        return True
    scheme, _, token = (case.header("Authorization") or "").strip().partition(" ")
    return scheme.lower() == "bearer" and token.strip() == TOKEN


def http_refusals(case: HttpCase, command: Command) -> list[str]:
    """Why a state-changing request must not be carried out, whatever its body (issue 16, item 3)."""
    if not command.writes:
        return []
    reasons = []
    if case.method != "POST":
        reasons.append(f"item 3: changes only by POST, not {case.method}")
    if not permitted(case):
        reasons.append("neither the token nor a trusted address")
    if case.header("Origin") is not None or case.header("Sec-Fetch-Site") in _FOREIGN_SITES:
        reasons.append("item 3: a browser origin not in cors_origins")
    content_type = (case.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type in _SIMPLE_TYPES and case.header("Authorization") is None:  # else a browser preflights it
        reasons.append(f"item 3: a simple-request content type ({content_type}) for a write")
    return reasons


async def run_http_case(rig: Rig, case: HttpCase) -> None:
    base = rig.http.inverter_base(1) if case.face == "inverter" else rig.http.base
    mark, problems = rig.sim.writes_answered, problems_so_far(rig)
    expected = await expect(rig, case.name, case.body if case.method == "POST" else None)
    if expected.command is not None:
        expected.must_refuse += http_refusals(case, expected.command)
    response = await rig.clients[case.address].request(
        case.method, base + case.path, headers=list(case.headers), content=case.body or None
    )
    assert response.status_code != 500, (response.text[:500], case)
    answer: dict[str, Any] | None = None
    if response.status_code == 200 and case.method != "HEAD":
        document = response.json()
        answer = document if "status" in document else {"status": "ok", "data": document}  # a data read's tree
        transaction = sent_transaction(case.body)
        if "transaction" in answer and transaction is not None:
            assert answer["transaction"] == transaction, (answer, case)
    elif response.status_code == 200:
        answer = {"status": "ok"}  # HEAD: the route ran, without a body
    else:
        answer = {"status": "error", "http": response.status_code}
    tally(f"HTTP {response.status_code}")
    judge(rig, case, expected, answer, mark)
    assert_no_crash(rig, case, problems)


@given(case=http_cases())
async def test_http_requests_write_only_what_their_answer_says(rig: Rig, case: HttpCase) -> None:
    await run_http_case(rig, case)


# --- the issue's own findings, every run ------------------------------------------------------------

#: What issue 16 saw a hostile user do, as cases for the same oracle (the fuzzer finds them too,
#: but not on every run of 300).
KNOWN_MQTT = {
    "item5-underscores": ("setChargeTarget", b"1_0_0"),
    "item5-full-width-digits": ("setChargeTarget", "\uff16\uff10".encode()),
    "item5-arabic-indic-digits": ("setChargeTarget", "\u0663\u0660".encode()),
    "item5-exponent": ("setChargeTarget", b"6e1"),
    "item5-exponent-in-json-text": ("setChargeTarget", b'{"chargeToPercent": "6e1", "transaction": 7}'),
    "item2-reboot-over-mqtt": ("reboot", b"{}"),
}


@pytest.mark.parametrize("name, payload", KNOWN_MQTT.values(), ids=KNOWN_MQTT.keys())
async def test_known_mqtt_findings(rig: Rig, name: str, payload: bytes) -> None:
    await run_mqtt_case(rig, MqttCase(f"{rig.root}/control/{rig.serial}/{name}", payload, retained=False))


async def test_a_control_topic_as_long_as_mqtt_allows_is_answered(rig: Rig) -> None:
    """Item 6: a 65,535-byte control topic whose answer topic still fits gets an answer, no traceback."""
    prefix = f"{rig.root}/control/{rig.serial}/"
    name = "a" * (MAX_TOPIC_BYTES - len(prefix) - len("/response/") - 20)
    await run_mqtt_case(rig, MqttCase(prefix + name, b"80", retained=False))
    too_long = "a" * (MAX_TOPIC_BYTES - len(prefix))  # its answer topic cannot be formed: none, and no traceback
    await run_mqtt_case(rig, MqttCase(prefix + too_long, b"80", retained=False))


KNOWN_HTTP = {
    "item3-get-reboot": HttpCase("main", "/REST1/reboot", "reboot", "GET", OTHER_CLIENT, (), b""),
    "item3-cross-site-text-plain": HttpCase(
        "main",
        "/REST1/setChargeTarget",
        "setChargeTarget",
        "POST",
        OTHER_CLIENT,
        (("Origin", "https://evil.example"), ("Content-Type", "text/plain")),
        b"80",
    ),
    "item3-form-post-trusted": HttpCase(
        "inverter",
        "/setChargeTarget",
        "setChargeTarget",
        "POST",
        OTHER_CLIENT,
        (("Content-Type", "application/x-www-form-urlencoded"),),
        b"81",
    ),
}


@pytest.mark.parametrize("case", KNOWN_HTTP.values(), ids=KNOWN_HTTP.keys())
async def test_known_http_findings(rig: Rig, case: HttpCase) -> None:
    await run_http_case(rig, case)
