"""Fuzzing every command's MQTT payload through the real executor, against a simulated inverter.

Each case is a command name (every name and alias in the registry, and now and then one that
does not exist) with payload bytes as MQTT would deliver them: raw values GivTCP-style, JSON
objects with the command's keys and others, JSON of other shapes, invalid UTF-8, deep nesting,
oversized bodies. Whatever arrives:

* the command ends with exactly one result that can be published (JSON), and that result is
  never ``internal`` (a bug);
* input refused as invalid (or not applicable, unknown...) sends no register write at all:
  the simulator's request counter sees no write during the case.

Valid payloads are carried out for real (the simulator takes the writes and the read-backs
confirm them), so the fuzzer also walks through real command sequences. Case counts follow
the Hypothesis profile: ``ci`` (300, the default) or ``HYPOTHESIS_PROFILE=nightly`` (10,000).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import event, given, settings
from hypothesis import strategies as st

from givbridge.app import Application
from givbridge.commands.decoding import MAX_PAYLOAD_BYTES
from givbridge.commands.registry import REGISTRY
from givbridge.commands.results import CommandResult, ErrorCode
from givbridge.commands.spec import Command
from givbridge.mqtt.topics import InvalidTopic, Topics
from givbridge.sim import SimulatedPlant, SimulatorServer
from tests.brokers import Broker
from tests.integration.bridge_helpers import bridge_settings, fast_clock, first_snapshot
from tests.reliability.invariants import CrashWatch
from tests.reliability.rig import ZONE

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(60 + settings().max_examples // 40),  # the nightly profile takes minutes
]

#: Results that mean the input was not carried out: nothing may have been written for them.
NOTHING_WRITTEN = {
    ErrorCode.INVALID_PAYLOAD,
    ErrorCode.UNKNOWN_COMMAND,
    ErrorCode.UNKNOWN_INVERTER,
    ErrorCode.UNSUPPORTED,
    ErrorCode.READ_ONLY,
}
NAMES = sorted(REGISTRY.names)


@dataclass
class Target:
    app: Application
    sim: SimulatedPlant
    server: SimulatorServer
    crashes: CrashWatch

    @property
    def serial(self) -> str:
        return self.sim.serial

    def writes(self) -> int:
        return sum(n for (kind, *_), n in self.server.requests.items() if kind == "W")

    async def execute(self, name: str, payload: bytes, serial: str | None = None) -> CommandResult:
        """One command as the control subscriber runs it, with the checks every case must pass."""
        writes = self.writes()
        result = await self.app.commands.execute(name, payload, serial=self.serial if serial is None else serial)
        assert result.code is not ErrorCode.INTERNAL, (name, payload[:200], result.document())
        json.loads(result.to_json())  # what would be published is JSON
        if result.code in NOTHING_WRITTEN:
            assert self.writes() == writes, (name, payload[:200], result.document())
        return result


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    clock = fast_clock()
    sim = SimulatedPlant.create("hybrid-gen3", batteries=1, clock=clock, seed=23, tz=ZONE, start_soc=50)
    sim.reboot_seconds = 2.0  # a fuzzed reboot comes back within a couple of polls
    with CrashWatch() as crashes:
        async with SimulatorServer(sim) as server:
            data_dir: Path = tmp_path_factory.mktemp("bridge")
            settings = bridge_settings(data_dir, [server.port], mqtt=module_broker.settings().model_dump())
            app = Application(settings, clock=clock)
            await app.start()
            try:
                await first_snapshot(app.bridge.runners[0], within=15)
                yield Target(app, sim, server, crashes)
            finally:
                await app.stop()
    crashes.assert_clean()


# --- what MQTT can carry ------------------------------------------------------------------------

#: Words and numbers GivTCP users send, and their near misses.
WORDS = st.sampled_from(
    [
        *("", " ", "enable", "disable", "Enable", "DISABLE", "on", "off", "true", "false", "True", "null", "None"),
        *("0", "1", "-1", "4", "50", "100", "101", "255", "65535", "65536", "99999999999999999999", "2.5", "-0"),
        *("nan", "NaN", "inf", "-inf", "1e309", "0x10", "1_000", "٣٠", "½", "Cancel", "cancel", "Normal", "Running"),
        *("00:00", "23:59", "24:00", "12:60", "7:5", "12:30:45", "1230", "-1:00", "12.30", "noon"),
        *("2026-06-20 12:00:00", "20/06/2026 12:00:00", "2026-13-01T00:00:00", "2026-06-20T25:00:00"),
        *("Eco", "Eco (Paused)", "Timed Demand", "Timed Export", "Grid", "Solar", "Hybrid", "PauseCharge"),
        *("Disable", "PauseDischarge", "PauseBoth", "Day", "Night", "Start", "Stop", "Ready", "\x00", "🙂", "\u202e"),
    ]
)
TIMES = st.builds(lambda h, m: f"{h}:{m:02d}", st.integers(-2, 26), st.integers(-1, 61))
NUMBERS = st.one_of(st.integers(-(10**6), 10**6), st.integers(), st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, WORDS, TIMES, st.text(max_size=30))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


def raw_payloads() -> st.SearchStrategy[bytes]:
    """A bare value, as GivTCP's MQTT commands take it (``80``, ``enable``, ``16:30``)."""
    texts = st.one_of(WORDS, TIMES, st.integers(0, 100).map(str), NUMBERS.map(str), st.text(max_size=60))
    return texts.map(lambda text: text.encode())


def object_payloads(command: Command) -> st.SearchStrategy[bytes]:
    """A JSON object with the command's keys (right and wrong values), ``transaction`` and strangers."""
    keys = st.one_of(
        st.sampled_from([*command.payload.model_fields, "transaction", "serial", "value"]), st.text(max_size=10)
    )
    objects = st.dictionaries(keys, JSON_VALUES, max_size=5)
    return objects.map(lambda document: json.dumps(document, allow_nan=True).encode())


def other_payloads() -> st.SearchStrategy[bytes]:
    """Everything else MQTT can carry: other JSON, broken JSON, bytes, deep nesting, oversized bodies."""
    return st.one_of(
        JSON_VALUES.map(lambda value: json.dumps(value, allow_nan=True).encode()),
        st.binary(max_size=80),
        st.sampled_from([b"{", b'{"a":', b"[", b'"', b"{}", b"[]", b'""', b"\xff\xfe", b"\xc3\x28", b"{}{}"]),
        st.integers(1, MAX_PAYLOAD_BYTES // 2).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(1, MAX_PAYLOAD_BYTES // 6).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
        st.integers(MAX_PAYLOAD_BYTES - 2, MAX_PAYLOAD_BYTES * 3).map(lambda size: b"9" * size),
    )


def payloads(command: Command) -> st.SearchStrategy[bytes]:
    return st.one_of(raw_payloads(), object_payloads(command), other_payloads())


def cases() -> st.SearchStrategy[tuple[str, bytes]]:
    """(command name, payload): every registered name (aliases too), now and then an unknown one."""
    known = st.sampled_from(NAMES).flatmap(lambda name: st.tuples(st.just(name), payloads(_command(name))))
    unknown = st.tuples(st.text(max_size=20).filter(lambda name: name not in REGISTRY), raw_payloads())
    return st.integers(0, 19).flatmap(lambda n: unknown if n == 7 else known)  # 1 in 20 (not 0: a favourite)


def _command(name: str) -> Command:
    command = REGISTRY.get(name)
    assert command is not None
    return command


# --- the properties ------------------------------------------------------------------------------


@given(case=cases())
async def test_any_payload_for_any_command_is_answered_and_invalid_ones_write_nothing(
    target: Target, case: tuple[str, bytes]
) -> None:
    name, payload = case
    result = await target.execute(name, payload)
    event(f"answered {result.code or 'ok'}")  # shown by --hypothesis-show-statistics


async def test_every_command_refuses_malformed_payloads_without_writing(target: Target) -> None:
    """The same checks, deterministically, for each command (the fuzzer samples them)."""
    malformed = [b"\xff\xfe", b"{", b"[1, 2]", b"9" * (MAX_PAYLOAD_BYTES + 1), b"[" * 2000 + b"]" * 2000]
    malformed += [b'{"transaction": {"a": 1}}', b'{"transaction": NaN}']
    for name in NAMES:
        for payload in malformed:
            result = await target.execute(name, payload)
            assert result.code is ErrorCode.INVALID_PAYLOAD, (name, payload[:40], result.document())
        await target.execute(name, b'{"no such key": 1}')


@given(serial=st.one_of(st.text(max_size=12), st.sampled_from(["", "SA0000G000", "sa1234g567"])))
async def test_commands_for_another_serial_write_nothing(target: Target, serial: str) -> None:
    if serial.upper() == target.serial.upper():
        return
    result = await target.execute("setChargeTarget", b"80", serial=serial)
    assert result.code is ErrorCode.UNKNOWN_INVERTER, result.document()


@given(topic=st.one_of(st.text(max_size=60), st.text(max_size=60).map(lambda tail: f"GivEnergy/control/{tail}")))
async def test_any_control_topic_parses_to_a_command_or_says_why(topic: str) -> None:
    try:
        serial, command = Topics("GivEnergy").parse_control(topic)
    except InvalidTopic as invalid:
        assert invalid.reason and (invalid.command is None or "/" not in invalid.command)
    else:
        assert command and "/" not in command and (serial is None or (serial and "/" not in serial))
