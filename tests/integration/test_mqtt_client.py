"""MqttClient against real brokers: mosquitto (a process) and amqtt (in-process).

Synchronisation is always on a real condition: a probe message, an on_connect event, a
counter or a process state. The only fixed windows are the short ones proving that something
does *not* arrive.
"""

# Test helpers take explicit timeouts (each wait names its own bound), and starting a
# short-lived process with Popen from a coroutine is fine in tests.
# ruff: noqa: ASYNC109, ASYNC220

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from givbridge.config import TlsSettings
from givbridge.mqtt.client import Message, MqttClient
from givbridge.mqtt.publications import Publication
from tests.brokers import AmqttBroker, Broker, MosquittoBroker, TlsFiles, free_port, make_tls_files, wait_until
from tests.conftest import MakeClient, MakeMosquitto, MakeProbe

pytestmark = pytest.mark.broker

REPO_ROOT = Path(__file__).resolve().parents[2]


class Inbox:
    """A message handler that queues what it receives, for awaiting in a test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()

    def __call__(self, message: Message) -> None:
        self.queue.put_nowait(message)

    async def next(self, timeout: float = 5.0) -> Message:
        async with asyncio.timeout(timeout):
            return await self.queue.get()


class ConnectCounter:
    """An on_connect callback that counts calls and lets a test await the n-th."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


async def test_round_trip_with_wildcards(broker: Broker, make_probe: MakeProbe, make_client: MakeClient) -> None:
    probe = await make_probe(broker)
    client = await make_client(broker.settings(), start=False)
    plus, hash_ = Inbox(), Inbox()
    client.subscribe("gb/+/state", plus)
    client.subscribe("gb/control/#", hash_)
    await client.start()
    assert await client.wait_connected(5)
    assert client.connected

    await probe.publish("gb/other/ignored", "x")
    await probe.publish("gb/SA1234G567/state", "42")
    await probe.publish("gb/control/SA1234G567/setChargeTarget", '{"value": 80}')
    got = await plus.next()
    assert (got.topic, got.payload, got.retain) == ("gb/SA1234G567/state", b"42", False)
    got = await hash_.next()
    assert got.topic == "gb/control/SA1234G567/setChargeTarget"
    assert json.loads(got.text) == {"value": 80}
    assert plus.queue.empty() and hash_.queue.empty()

    assert client.publish("gb/out/text", "héllo")
    assert client.publish("gb/out/bytes", b"\x00\x01", qos=1)
    assert await client.publish_confirmed("gb/out/confirmed", "yes")
    assert (await probe.wait_for("gb/out/text")).payload == "héllo".encode()
    assert (await probe.wait_for("gb/out/bytes")).payload == b"\x00\x01"
    assert (await probe.wait_for("gb/out/confirmed")).payload == b"yes"
    stats = client.stats
    assert stats.published == 3 and stats.dropped == 0 and stats.received == 2
    assert stats.connected_since is not None and stats.reconnects == 0


async def test_unsubscribe_stops_delivery(broker: Broker, make_probe: MakeProbe, make_client: MakeClient) -> None:
    probe = await make_probe(broker)
    client = await make_client(broker.settings(), start=False)
    kept, dropped = Inbox(), Inbox()
    client.subscribe("u/kept", kept)
    client.subscribe("u/dropped", dropped)
    await client.start()
    assert await client.wait_connected(5)
    client.unsubscribe("u/dropped")
    await probe.publish("u/dropped", "1")
    await probe.publish("u/kept", "2")
    assert (await kept.next()).payload == b"2"
    # Whether or not the broker had processed the UNSUBSCRIBE yet, the handler is gone.
    await probe.publish("u/kept", "3")
    assert (await kept.next()).payload == b"3"
    assert dropped.queue.empty()


async def test_retained_flag_and_clearing(broker: Broker, make_probe: MakeProbe, make_client: MakeClient) -> None:
    client = await make_client(broker.settings())
    assert await client.wait_connected(5)
    assert await client.publish_confirmed("ret/kept", "keep", retain=True)
    assert await client.publish_confirmed("ret/live", "live", retain=False)

    late = await make_probe(broker, topics=("ret/#",))
    kept = await late.wait_for("ret/kept")
    assert kept.payload == b"keep" and kept.retain is True
    await late.assert_nothing("ret/live", within=0.3, after=0)

    # A client subscribing later gets the retained message flagged as retained, too.
    second = await make_client(broker.settings(), start=False)
    inbox = Inbox()
    second.subscribe("ret/+", inbox)
    await second.start()
    got = await inbox.next()
    assert (got.topic, got.payload, got.retain) == ("ret/kept", b"keep", True)

    # An empty retained payload clears it: nobody subscribing afterwards gets anything.
    assert await client.publish_confirmed("ret/kept", None, retain=True)
    after_clear = await make_probe(broker, topics=("ret/#",))
    await after_clear.assert_nothing("ret/#", within=0.3, after=0)


async def test_broker_down_at_start(broker: Broker, make_probe: MakeProbe, make_client: MakeClient) -> None:
    await broker.stop()
    client = await make_client(broker.settings(), start=False)
    inbox, connects = Inbox(), ConnectCounter()
    client.subscribe("down/in", inbox)
    client.on_connect(connects)
    await client.start()  # must not raise although nothing listens

    await wait_until(lambda: client.stats.connect_failures >= 1, 5, "a failed connection attempt")
    assert not client.connected
    assert not await client.wait_connected(0.05)
    assert client.publish("down/out", "x") is False
    assert await client.publish_confirmed("down/out", "x") is False
    assert client.stats.dropped == 2

    await broker.start()
    assert await client.wait_connected(10)  # next retry is at most 2 s after the first failure
    await connects.wait_for(1)
    probe = await make_probe(broker)
    await probe.publish("down/in", "hello")
    assert (await inbox.next()).payload == b"hello"
    assert client.publish("down/out", "after")
    assert (await probe.wait_for("down/out")).payload == b"after"
    assert client.stats.reconnects == 0


async def test_broker_restart_mid_run(broker: Broker, make_probe: MakeProbe, make_client: MakeClient) -> None:
    client = await make_client(broker.settings(), start=False)
    inbox, connects = Inbox(), ConnectCounter()
    client.subscribe("restart/in/#", inbox)
    client.on_connect(connects)
    await client.start()
    await connects.wait_for(1)
    probe = await make_probe(broker)

    await broker.stop()
    await wait_until(lambda: not client.connected, 5, "the client to notice the broker went away")
    dropped = client.stats.dropped
    assert client.publish("restart/out", "while down") is False
    assert client.stats.dropped == dropped + 1

    await broker.start()
    await connects.wait_for(2)  # on_connect runs again, after the resubscription
    assert client.connected and client.stats.reconnects == 1
    await probe.wait_subscribed(10)
    mark = probe.mark()
    assert client.publish("restart/out", "resumed")
    assert (await probe.wait_for("restart/out", after=mark)).payload == b"resumed"
    await probe.publish("restart/in/x", "resubscribed")
    assert (await inbox.next()).payload == b"resubscribed"


WILL_CHILD = """
import asyncio, json, sys
from givbridge.config import MqttSettings
from givbridge.mqtt.client import MqttClient
from givbridge.mqtt.publications import Publication

async def main() -> None:
    cfg = json.loads(sys.argv[1])
    topic = cfg["topic"]
    client = MqttClient(MqttSettings(**cfg["settings"]), will=Publication(topic, "offline", retain=True, qos=1))
    await client.start()
    if not await client.wait_connected(10):
        sys.exit(3)
    await client.publish_confirmed(topic, "online", retain=True)
    await asyncio.Event().wait()  # until killed

asyncio.run(main())
"""


async def test_last_will_when_process_killed(broker: Broker, make_probe: MakeProbe, tmp_path: Path) -> None:
    topic = "will/bridge/state"
    probe = await make_probe(broker, topics=("will/#",))
    settings = broker.settings().model_dump(mode="json", exclude={"password", "tls"})
    child = subprocess.Popen(
        [sys.executable, "-c", WILL_CHILD, json.dumps({"settings": settings, "topic": topic})],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            await probe.wait_for_payload(topic, "online", timeout=15)
        except AssertionError:
            child.kill()
            raise AssertionError(child.communicate(timeout=5)[1].decode(errors="replace")) from None
        mark = probe.mark()
        child.kill()  # SIGKILL: no DISCONNECT, the broker sees the socket close
        await wait_until(lambda: child.poll() is not None, 5, "the child to die")
        will = await probe.wait_for(topic, after=mark)
        assert will.payload == b"offline"
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=5)
        if child.stderr is not None:
            child.stderr.close()
    # The will was retained: a newcomer sees the bridge offline.
    late = await make_probe(broker, topics=(topic,))
    retained = await late.wait_for(topic)
    assert retained.payload == b"offline" and retained.retain


async def test_clean_stop_sends_final_messages_not_the_will(
    broker: Broker, make_probe: MakeProbe, make_client: MakeClient
) -> None:
    topic = "stop/bridge/state"
    probe = await make_probe(broker, topics=("stop/#",))
    client = await make_client(broker.settings(), will=Publication(topic, "will-fired", retain=True))
    assert await client.wait_connected(5)
    assert await client.publish_confirmed(topic, "online", retain=True)
    await probe.wait_for_payload(topic, "online")
    mark = probe.mark()

    started = time.monotonic()
    await client.stop(
        final=[
            Publication(topic, "offline", retain=True),
            Publication("stop/SA1234G567/availability", "offline", retain=True),
        ]
    )
    assert time.monotonic() - started < 2.0
    assert not client.connected
    assert (await probe.wait_for(topic, after=mark)).payload == b"offline"
    assert (await probe.wait_for("stop/SA1234G567/availability", after=mark)).payload == b"offline"
    await probe.assert_nothing(topic, within=0.5, after=mark, predicate=lambda m: m.payload == b"will-fired")

    late = await make_probe(broker, topics=("stop/#",))
    retained = await late.wait_for(topic)
    assert retained.payload == b"offline" and retained.retain
    assert client.publish("stop/after", "x") is False
    await client.stop()  # idempotent


async def test_stop_is_bounded_when_the_broker_is_gone(broker: Broker, make_client: MakeClient) -> None:
    client = await make_client(broker.settings())
    assert await client.wait_connected(5)
    await broker.stop()
    await wait_until(lambda: not client.connected, 5, "the client to notice the broker went away")
    started = time.monotonic()
    await client.stop(final=[Publication("gone/state", "offline", retain=True)])
    assert time.monotonic() - started < 2.5


async def test_stop_without_start_and_without_broker(make_client: MakeClient, amqtt: AmqttBroker) -> None:
    never_started = await make_client(amqtt.settings(), start=False)
    await never_started.stop()
    await amqtt.stop()
    unreachable = await make_client(amqtt.settings())
    await wait_until(lambda: unreachable.stats.connect_failures >= 1, 5, "a failed connection attempt")
    started = time.monotonic()
    await unreachable.stop(final=[Publication("x/state", "offline", retain=True)])
    assert time.monotonic() - started < 2.5


async def test_handler_exceptions_do_not_stop_dispatch(
    broker: Broker, make_probe: MakeProbe, make_client: MakeClient
) -> None:
    client = await make_client(broker.settings(), start=False)
    inbox = Inbox()
    calls: list[str] = []

    def broken(message: Message) -> None:
        calls.append("sync")
        raise RuntimeError("handler bug")

    async def broken_async(message: Message) -> None:
        calls.append("async")
        raise ValueError("async handler bug")

    # One filter shared by three handlers. (Overlapping filters such as exc/# and exc/+ would
    # make amqtt deliver each message once per subscription, and every copy reaches every
    # matching handler; mosquitto sends one copy.)
    client.subscribe("exc/+", broken)
    client.subscribe("exc/+", broken_async)
    client.subscribe("exc/+", inbox)
    await client.start()
    assert await client.wait_connected(5)
    probe = await make_probe(broker)

    with capture_logs() as logs:
        await probe.publish("exc/1", "first")
        await probe.publish("exc/2", "second")
        # amqtt broadcasts each message in its own task: no order across topics.
        assert {(await inbox.next()).payload, (await inbox.next()).payload} == {b"first", b"second"}
        # An async handler's failure is logged when its task ends, a moment after dispatch.
        await wait_until(lambda: len(_handler_failures(logs)) == 4, 5, "all four failures to be logged")
    failures = _handler_failures(logs)
    assert sorted(calls) == ["async", "async", "sync", "sync"]
    assert {entry["handler"].rsplit(".", 1)[-1] for entry in failures} == {"broken", "broken_async"}
    assert client.connected
    assert client.publish("exc/out", "still alive")
    assert (await probe.wait_for("exc/out")).payload == b"still alive"


def _handler_failures(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "mqtt message handler failed"]


async def test_on_connect_callback_failure_is_contained(broker: Broker, make_client: MakeClient) -> None:
    client = await make_client(broker.settings(), start=False)
    connects = ConnectCounter()

    async def broken() -> None:
        raise RuntimeError("callback bug")

    client.on_connect(broken)
    client.on_connect(connects)
    with capture_logs() as logs:
        await client.start()
        await connects.wait_for(1)
    assert any(entry["event"] == "mqtt on_connect callback failed" for entry in logs)
    assert client.connected


# --------------------------------------------------------------------------- mosquitto only


async def test_username_and_password(
    mosquitto_auth: MosquittoBroker, make_probe: MakeProbe, make_client: MakeClient
) -> None:
    probe = await make_probe(mosquitto_auth)  # the probe logs in with the broker's user
    good = await make_client(mosquitto_auth.settings(username="givbridge", password="correct-horse"))
    assert await good.wait_connected(5)
    assert good.publish("auth/ok", "yes")
    assert (await probe.wait_for("auth/ok")).payload == b"yes"

    with capture_logs() as logs:
        wrong = await make_client(mosquitto_auth.settings(username="givbridge", password="wrong"))
        anonymous = await make_client(mosquitto_auth.settings())
        # Refused, retried with backoff (1 s then 2 s), never connected, never raising.
        await wait_until(lambda: wrong.stats.connect_failures >= 2, 5, "a retry after the refusal")
        await wait_until(lambda: anonymous.stats.connect_failures >= 1, 5, "the anonymous refusal")
    assert not wrong.connected and not anonymous.connected
    refusals = [entry for entry in logs if entry["event"].startswith("mqtt broker refused the connection")]
    assert refusals and all("wrong" not in repr(entry) for entry in logs)  # the password is never logged


async def test_tls_with_generated_ca(
    mosquitto_tls: MosquittoBroker, make_probe: MakeProbe, make_client: MakeClient
) -> None:
    probe = await make_probe(mosquitto_tls)
    client = await make_client(mosquitto_tls.settings())  # tls enabled, ca_file = the test CA
    assert await client.wait_connected(5)
    assert client.publish("tls/out", "secret")
    assert (await probe.wait_for("tls/out")).payload == b"secret"


async def test_tls_hostname_check_and_insecure(
    mosquitto_tls: MosquittoBroker, make_client: MakeClient, tmp_path: Path
) -> None:
    assert mosquitto_tls.tls is not None
    ca = mosquitto_tls.tls.ca_cert
    # The certificate names IP 127.0.0.1 only, so "localhost" fails the hostname check...
    checked = await make_client(mosquitto_tls.settings(host="localhost", tls=TlsSettings(enabled=True, ca_file=ca)))
    # ...unless insecure skips it (the chain is still verified).
    insecure = await make_client(
        mosquitto_tls.settings(host="localhost", tls=TlsSettings(enabled=True, ca_file=ca, insecure=True))
    )
    assert await insecure.wait_connected(5)
    await wait_until(lambda: checked.stats.connect_failures >= 1, 5, "the failed TLS handshake")
    assert not checked.connected


async def test_tls_wrong_ca_keeps_retrying(
    mosquitto_tls: MosquittoBroker, make_client: MakeClient, tmp_path: Path
) -> None:
    other = make_tls_files(tmp_path / "other-pki")
    client = await make_client(mosquitto_tls.settings(tls=TlsSettings(enabled=True, ca_file=other.ca_cert)))
    await wait_until(lambda: client.stats.connect_failures >= 1, 5, "the failed TLS handshake")
    assert not client.connected


async def test_tls_client_certificate(
    make_mosquitto: MakeMosquitto, tls_files: TlsFiles, make_probe: MakeProbe, make_client: MakeClient
) -> None:
    broker = await make_mosquitto(tls=tls_files, require_client_cert=True)
    probe = await make_probe(broker)  # presents the test client certificate too
    files = broker.tls
    assert files is not None
    with_cert = await make_client(
        broker.settings(
            tls=TlsSettings(enabled=True, ca_file=files.ca_cert, cert_file=files.client_cert, key_file=files.client_key)
        )
    )
    without_cert = await make_client(broker.settings())
    assert await with_cert.wait_connected(5)
    assert with_cert.publish("mtls/out", "hi")
    assert (await probe.wait_for("mtls/out")).payload == b"hi"
    # With TLS 1.3 the refusal arrives after the client's side of the handshake: paho sees a
    # connection closed before CONNACK, which still counts as a failed attempt.
    await wait_until(lambda: without_cert.stats.connect_failures >= 1, 5, "the refused handshake")
    assert not without_cert.connected


# --------------------------------------------------------------------------- no broker at all


async def test_publish_while_never_connected() -> None:
    settings = AmqttBroker(port=free_port()).settings()
    client = MqttClient(settings)
    assert client.publish("x", "y") is False  # before start
    await client.start()
    assert client.publish("x", "y") is False
    assert await client.publish_confirmed("x", "y", timeout=0.1) is False
    assert not await client.wait_connected(0.1)
    assert client.stats.dropped == 3 and client.stats.published == 0
    await client.stop()
