"""What must hold whatever goes wrong, checked from the outside while a scenario runs.

:class:`InvariantChecker` subscribes to everything on the broker and checks each message as
it arrives:

* availability (``<root>/bridge/state``, ``<root>/<serial>/availability``) is only ever
  ``online`` or ``offline``; every change is recorded so a scenario can await "offline, then
  online again";
* no published counter (an entity with ``counter: today|total``) ever decreases, except a
  "today" counter falling to a reset value (at most 1 kWh) at the inverter's midnight, or
  falling on a day after the one it last counted up on (the reset reached the bridge late,
  after an outage or a frozen inverter over midnight, and the new day has counted since),
  and a counter reset the bridge accepted: every other decrease must be matched by one more
  in the device's ``Stats/Counter_Resets``, and every reset counted there by a decrease, in
  the same or the next snapshot (they are published in no set order). Judged by the
  ``Invertor_Time`` published with it (a snapshot's counters may come before its time, so a
  decrease waits for the next inverter time before it is judged). A derived counter that the
  hygiene holds (``hold_decreases``: Load, Self_Consumption) may never be reset, so any other
  decrease of one is a violation even when a reset was counted;
* every command result ``ok`` corresponds to register values the simulator really holds,
  checked the moment the result arrives, for commands sent through :meth:`command` with the
  registers they must have set.

:class:`CrashWatch` fails a scenario on anything that escaped: an exception no task retrieved
(the event loop's exception handler) and error-level log events from givbridge (its last
nets: ``device runner error``, ``command failed unexpectedly``, ``listener failed``...).

Both keep bounded state, so a long soak can use them (``keep_messages=False``).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from givbridge.devices.library import is_library_orphan
from givbridge.entities import load_catalogue
from givbridge.mqtt.client import Message
from givbridge.plant.hygiene import midnight_window
from givbridge.sim import SimulatedPlant
from tests.brokers import Arrivals, Broker, MqttProbe

#: The highest value a "today" counter may fall to at midnight (the hygiene's reset rule).
TODAY_RESET_MAX_KWH = 1.0
_ERROR_LEVELS = frozenset({"error", "critical", "exception"})
_KEEP_PROBLEMS = 50  # enough to diagnose; bounded for soaks


#: Loggers other tests (or the bridge's log-level select) may have left at DEBUG: at that level
#: paho and the others log every packet, which slows a timed scenario down to a crawl.
_CHATTY_LOGGERS = ("", "givbridge", "givenergy_modbus", "paho", "amqtt", "transitions", "pymodbus", "asyncio")


def pin_log_levels(caplog: pytest.LogCaptureFixture) -> None:
    """Set the chatty loggers to WARNING for one test (pytest restores them afterwards)."""
    for name in _CHATTY_LOGGERS:
        caplog.set_level(logging.WARNING, logger=name or None)


class CrashWatch:
    """Collects unhandled task exceptions and givbridge's error-level log events while active.

    Use as ``with CrashWatch() as crashes:`` inside the event loop; call :meth:`drain` now and
    then in long runs (the captured log events are dropped once checked).
    """

    def __init__(self) -> None:
        self.problems: deque[str] = deque(maxlen=_KEEP_PROBLEMS)
        self.events_seen = 0
        #: Futures givenergy-modbus failed and never looked at again (see givbridge.devices.library.is_library_orphan).
        self.library_orphans = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_handler: Any = None
        self._logs: list[dict[str, Any]] = []
        self._capture: Any = None
        self._stdlib = _ErrorRecords(self.problems)

    def __enter__(self) -> CrashWatch:
        self._loop = asyncio.get_running_loop()
        self._previous_handler = self._loop.get_exception_handler()
        self._loop.set_exception_handler(self._unhandled)
        self._capture = capture_logs()
        self._logs = self._capture.__enter__()
        logging.getLogger("givbridge").addHandler(self._stdlib)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.collect()  # a task nobody awaited reports its exception when it is collected
        self.drain()
        logging.getLogger("givbridge").removeHandler(self._stdlib)
        self._capture.__exit__(None, None, None)
        assert self._loop is not None
        self._loop.set_exception_handler(self._previous_handler)

    def drain(self) -> None:
        """Check the log events captured so far, then forget them."""
        for event in self._logs:
            if event.get("log_level") in _ERROR_LEVELS:
                details = {k: v for k, v in event.items() if k not in ("event", "log_level")}
                self.problems.append(f"logged {event.get('log_level')}: {event.get('event')} {details}")
        self.events_seen += len(self._logs)
        self._logs.clear()

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The log events called ``event`` captured since the last :meth:`drain`."""
        return [entry for entry in self._logs if entry.get("event") == event]

    def _unhandled(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        if is_library_orphan(context):
            self.library_orphans += 1
            return
        self.problems.append(f"unhandled in the event loop: {context.get('message')} {exception!r}")

    def assert_clean(self) -> None:
        self.drain()
        assert not self.problems, "\n".join(self.problems)


class _ErrorRecords(logging.Handler):
    """Error records from givbridge's stdlib loggers (paho-thread hops log through them)."""

    def __init__(self, problems: deque[str]) -> None:
        super().__init__(level=logging.ERROR)
        self._problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        self._problems.append(f"logged {record.levelname} by {record.name}: {record.getMessage()}")


#: Inverter times (about one per snapshot) a decrease and the reset counted for it may be apart.
_RESET_MATCH_WINDOW = 2


@dataclass(slots=True)
class _Reading:
    value: float
    inverter_day: date | None  # the inverter's date when the value last changed


@dataclass(frozen=True, slots=True)
class _Decrease:
    key: str
    kind: str
    before: _Reading
    value: float
    held: bool = False  # a hold_decreases counter: no reset may excuse the decrease


@dataclass(slots=True)
class _Unmatched:
    """A decrease waiting for its reset to be counted, or a counted reset waiting for its decrease."""

    decrease: _Decrease | None
    age: int = 0  # inverter times seen since


@dataclass(slots=True)
class _Expectation:
    command: str
    registers: Mapping[int, int]
    sim: SimulatedPlant


@dataclass
class Tally:
    """Counts of what the checker has seen, for scenarios' own assertions."""

    messages: int = 0
    counter_readings: int = 0
    ok_results: int = 0
    confirmed_ok_results: int = 0
    error_results: int = 0
    discovery_configs: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    #: Counter resets the bridge accepted, each matched with the decrease it published.
    counter_resets: int = 0


class InvariantChecker:
    """Watches a broker for broken invariants; see the module docstring."""

    def __init__(
        self,
        broker: Broker,
        sims: Mapping[str, SimulatedPlant],
        *,
        root: str = "GivEnergy",
        discovery_prefix: str = "homeassistant",
        keep_messages: bool = True,
    ) -> None:
        self.root = root
        self.sims = dict(sims)
        self.discovery_prefix = discovery_prefix
        self.violations: deque[str] = deque(maxlen=_KEEP_PROBLEMS)
        self.violation_count = 0
        self.tally = Tally()
        #: Availability changes per source ("bridge" or a serial), oldest first (bounded).
        self.availability: dict[str, deque[str]] = {}
        self._changes: dict[str, int] = {}  # source -> number of changes ever (for marks)
        self.latest: dict[str, str] = {}  # topic -> last payload
        self._published: dict[str, int] = {}  # topic -> messages so far
        self.results: dict[str, dict[str, Any]] = {}  # transaction -> result document
        self._awaited: set[str] = set()  # transactions a result() call is waiting for
        self._catalogue = load_catalogue()
        self._readings: dict[str, _Reading] = {}
        self._inverter_time: dict[str, datetime] = {}
        self._decreases: dict[str, list[_Decrease]] = {}  # serial -> awaiting that snapshot's inverter time
        self._reset_counts: dict[str, int] = {}  # serial -> its last Stats/Counter_Resets
        self._unmatched_decreases: dict[str, list[_Unmatched]] = {}
        self._unmatched_resets: dict[str, list[_Unmatched]] = {}
        #: Accepted resets as seen: (serial/path, value before, value after), oldest first (bounded).
        self.resets: deque[tuple[str, float, float]] = deque(maxlen=1000)
        self._expected: dict[str, _Expectation] = {}
        self._arrivals = Arrivals()
        self._transactions = itertools.count(1)
        self.probe = _Tap(broker, self._observe, keep_messages)

    async def start(self) -> InvariantChecker:
        await self.probe.start()
        return self

    async def stop(self) -> None:
        await self.probe.stop()

    # ------------------------------------------------------------------ scenario API

    def mark(self, source: str) -> int:
        """How many availability changes ``source`` has had; pass to :meth:`went` as ``after``."""
        return self._changes.get(source, 0)

    def now_available(self, source: str) -> str | None:
        changes = self.availability.get(source)
        return changes[-1] if changes else None

    async def went(self, source: str, value: str, *, after: int | None = None, within: float = 15.0) -> None:
        """Until ``source`` changed to ``value`` (since mark ``after``; by default: is ``value`` now)."""

        def happened() -> bool:
            if after is None:
                return self.now_available(source) == value
            changes = self.availability.get(source, deque())
            new = self._changes.get(source, 0) - after
            return value in list(changes)[-new:] if new > 0 else False

        await self._wait(happened, within, f"{source} availability {value}")

    def published(self, topic: str) -> int:
        """How many messages ``topic`` has had; pass to :meth:`value` as ``after``."""
        return self._published.get(topic, 0)

    async def value(self, topic: str, predicate: Callable[[str], bool], *, after: int = 0, within: float = 15.0) -> str:
        """The payload of ``topic`` once it satisfies ``predicate`` (in a message later than mark ``after``)."""

        def found() -> bool:
            return self.published(topic) > after and predicate(self.latest[topic])

        await self._wait(found, within, topic)
        return self.latest[topic]

    async def command(
        self,
        command: str,
        payload: Mapping[str, Any],
        *,
        serial: str | None = None,
        expect: Mapping[int, int] | None = None,
        within: float = 20.0,
    ) -> dict[str, Any]:
        """Send a command with a fresh transaction and return its result document.

        ``expect`` (register -> value) is what an ``ok`` means on the simulator; the checker
        verifies it the moment the result arrives.
        """
        serial = serial or next(iter(self.sims))
        transaction = self.send(command, payload, serial=serial, expect=expect)
        return await self.result(transaction, within=within)

    def send(
        self, command: str, payload: Mapping[str, Any], *, serial: str, expect: Mapping[int, int] | None = None
    ) -> str:
        """Publish a command without waiting; returns its transaction for :meth:`result`.

        ``expect`` is checked against the simulator when the result arrives: for that to be
        exact, send the next command to the same device only after this one's result.
        """
        transaction = f"check-{next(self._transactions)}"
        if expect is not None:
            self._expected[transaction] = _Expectation(command, dict(expect), self.sims[serial])
        document = json.dumps({**payload, "transaction": transaction})
        self.probe.publish_nowait(f"{self.root}/control/{serial}/{command}", document)
        return transaction

    async def result(self, transaction: str, *, within: float = 20.0) -> dict[str, Any]:
        self._awaited.add(transaction)
        try:
            await self._wait(lambda: transaction in self.results, within, f"the result of {transaction}")
            return self.results[transaction]
        finally:
            self._awaited.discard(transaction)

    def assert_clean(self) -> None:
        for serial in list(self._decreases):
            self._judge_decreases(serial, final=True)
        for serial in {*self._unmatched_decreases, *self._unmatched_resets}:
            self._match_resets(serial, final=True)
        assert not self.violation_count, f"{self.violation_count} violations:\n" + "\n".join(self.violations)

    def forget_results(self) -> None:
        """Drop the result documents kept so far (long runs), except those a :meth:`result` awaits.

        A result can arrive, wake its waiter and be forgotten before that waiter runs: keeping
        awaited ones is what stops a long run from waiting for a result it already had.
        """
        for transaction in set(self.results) - self._awaited:
            del self.results[transaction]

    # ------------------------------------------------------------------ checking

    def _violation(self, text: str) -> None:
        self.violation_count += 1
        self.violations.append(text)

    def _observe(self, message: Message) -> None:
        self.tally.messages += 1
        topic = message.topic
        self.latest[topic] = message.text
        self._published[topic] = self._published.get(topic, 0) + 1
        if topic.startswith(f"{self.discovery_prefix}/") and topic.endswith("/config") and message.payload:
            self.tally.discovery_configs += 1
        if topic.startswith(f"{self.root}/"):
            self._observe_own(topic[len(self.root) + 1 :], message)
        self._arrivals.notify()

    def _observe_own(self, rest: str, message: Message) -> None:
        text = message.text
        device, _, path = rest.partition("/")
        if path in ("state", "availability") and (device == "bridge") == (path == "state"):
            self._availability("bridge" if device == "bridge" else device, text)
        elif device in self.sims and path.startswith("response/"):
            self._result(text)
        elif device in self.sims:
            self._state(device, path, text)

    def _availability(self, source: str, text: str) -> None:
        if text not in ("online", "offline"):
            self._violation(f"{source} availability published {text!r}")
            return
        changes = self.availability.setdefault(source, deque(maxlen=1000))
        if not changes or changes[-1] != text:
            changes.append(text)
            self._changes[source] = self._changes.get(source, 0) + 1

    def _result(self, text: str) -> None:
        try:
            document = json.loads(text)
        except ValueError:
            self._violation(f"a command result that is not JSON: {text[:200]!r}")
            return
        transaction = document.get("transaction")
        if isinstance(transaction, str):
            self.results[transaction] = document
        if document.get("status") == "ok":
            self.tally.ok_results += 1
            expectation = self._expected.pop(transaction, None) if isinstance(transaction, str) else None
            if expectation is not None:
                held = {r: expectation.sim.holding(r) for r in expectation.registers}
                if held != dict(expectation.registers):
                    self._violation(
                        f"{expectation.command} answered ok ({transaction}) but the inverter holds {held}, "
                        f"not {dict(expectation.registers)}"
                    )
                else:
                    self.tally.confirmed_ok_results += 1
        else:
            self.tally.error_results += 1
            code = str((document.get("error") or {}).get("code"))
            self.tally.error_codes[code] = self.tally.error_codes.get(code, 0) + 1
            if isinstance(transaction, str):
                self._expected.pop(transaction, None)

    def _state(self, serial: str, path: str, text: str) -> None:
        if path == f"{serial}/Invertor_Time":
            try:
                self._inverter_time[serial] = datetime.fromisoformat(text)
            except ValueError:
                self._violation(f"{serial} published an inverter time that is not one: {text!r}")
            self._judge_decreases(serial, final=False)
            self._match_resets(serial, final=False)
            return
        if path == "Stats/Counter_Resets":
            self._count_resets(serial, text)
            return
        definition = self._catalogue.for_path(path)
        if definition is None or definition.counter is None:
            return
        try:
            value = float(text)
        except ValueError:
            self._violation(f"{serial}/{path}: a counter published {text!r}")
            return
        self.tally.counter_readings += 1
        inverter_time = self._inverter_time.get(serial)
        day = inverter_time.date() if inverter_time is not None else None
        key = f"{serial}/{path}"
        last = self._readings.get(key)
        if last is not None and value < last.value:
            decrease = _Decrease(key, definition.counter, last, value, held=definition.hold_decreases)
            if not self._reset(decrease, inverter_time):
                self._decreases.setdefault(serial, []).append(decrease)
        if last is None or value != last.value or last.inverter_day is None:
            self._readings[key] = _Reading(value, day)

    @staticmethod
    def _reset(decrease: _Decrease, inverter_time: datetime | None) -> bool:
        """Whether a decrease is a today counter's reset: at the inverter's midnight, or on a later day."""
        if decrease.kind != "today" or inverter_time is None:
            return False
        if decrease.before.inverter_day is not None and inverter_time.date() != decrease.before.inverter_day:
            return True
        return decrease.value <= TODAY_RESET_MAX_KWH and midnight_window(inverter_time)

    def _judge_decreases(self, serial: str, *, final: bool) -> None:
        """Decide the decreases seen since the last inverter time; a first look may wait for the next one."""
        inverter_time = self._inverter_time.get(serial)
        waiting = self._decreases.pop(serial, [])
        for decrease in waiting:
            if self._reset(decrease, inverter_time):
                continue
            if decrease.held:
                when = inverter_time.isoformat() if inverter_time else "an unknown inverter time"
                self._violation(
                    f"{decrease.key} decreased from {decrease.before.value} to {decrease.value} at {when}: "
                    "a derived counter may only be held, never go back"
                )
            else:
                self._unmatched_decreases.setdefault(serial, []).append(_Unmatched(decrease))

    def _count_resets(self, serial: str, text: str) -> None:
        """Resets the bridge newly counted, each to be matched with a decrease."""
        try:
            count = int(float(text))
        except ValueError:
            self._violation(f"{serial} published a counter reset count that is not one: {text!r}")
            return
        last = self._reset_counts.get(serial, 0)
        new = count - last if count >= last else count  # a restarted bridge counts from zero
        self._reset_counts[serial] = count
        self._unmatched_resets.setdefault(serial, []).extend(_Unmatched(None) for _ in range(new))

    def _match_resets(self, serial: str, *, final: bool) -> None:
        """Pair decreases with counted resets; what stays unpaired too long (or to the end) is a violation."""
        decreases = self._unmatched_decreases.get(serial, [])
        resets = self._unmatched_resets.get(serial, [])
        while decreases and resets:
            decrease = decreases.pop(0).decrease
            resets.pop(0)
            assert decrease is not None
            self.tally.counter_resets += 1
            self.resets.append((decrease.key, decrease.before.value, decrease.value))
        when = self._inverter_time.get(serial)
        at = when.isoformat() if when else "an unknown inverter time"
        for item in [*decreases, *resets]:
            item.age += 1
            if not final and item.age <= _RESET_MATCH_WINDOW:
                continue
            if item.decrease is not None:
                decrease = item.decrease
                self._violation(
                    f"{decrease.key} decreased from {decrease.before.value} to {decrease.value} at {at}, "
                    "and no counter reset was counted for it"
                )
            else:
                self._violation(f"{serial} counted a counter reset at {at}, but no counter went down")
        decreases[:] = [item for item in decreases if not final and item.age <= _RESET_MATCH_WINDOW]
        resets[:] = [item for item in resets if not final and item.age <= _RESET_MATCH_WINDOW]

    async def _wait(self, condition: Callable[[], bool], within: float, what: str) -> None:
        try:
            async with asyncio.timeout(within):
                await self._arrivals.until(condition)
        except TimeoutError:
            raise AssertionError(
                f"waited {within} s for {what}; availability {self.availability}; tasks:\n{task_stacks()}"
            ) from None


def task_stacks() -> str:
    """Where every task of the running loop is waiting (its await chain): what a stall looked like."""
    lines = []
    for task in asyncio.all_tasks():
        where, awaited = [], task.get_coro()
        while awaited is not None and len(where) < 12:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                break
            where.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        lines.append(f"  {task.get_name()}: {' -> '.join(where)}")
    return "\n".join(sorted(lines))


class _Tap(MqttProbe):
    """An :class:`MqttProbe` on ``#`` that hands each message to a callback (and keeps it only if asked)."""

    def __init__(self, broker: Broker, on_message: Callable[[Message], None], keep: bool) -> None:
        host, port = broker.host, broker.port
        super().__init__(host, port)
        self._on_message_cb = on_message
        self._keep = keep
        self._loop_for_publish: asyncio.AbstractEventLoop | None = None

    def _record(self, message: Message) -> None:
        self._on_message_cb(message)
        if self._keep:
            super()._record(message)

    def publish_nowait(self, topic: str, payload: str) -> None:
        """QoS 1 publish without waiting for the broker's acknowledgement."""
        info = self._client.publish(topic, payload, qos=1)
        assert info.rc == 0, f"could not publish to {topic}: {info.rc!r}"
