"""Shared pytest fixtures.

Keep this file an index: put the machinery in a helper module (as ``tests/brokers.py`` does
for MQTT) and only wire it up here, with a docstring saying what each fixture gives.

Real MQTT brokers (all on 127.0.0.1, each on its own free port, torn down after the test):

``mosquitto``        a running mosquitto process, anonymous access (:class:`MosquittoBroker`).
``amqtt``            a running in-process amqtt broker (:class:`AmqttBroker`).
``broker``           parametrised over both: a test taking it runs once per broker.
``make_mosquitto``   factory for other mosquitto set-ups:
                     ``await make_mosquitto(users={"u": "p"}, tls=tls_files, require_client_cert=True,
                     start=False)``.
``mosquitto_auth``   mosquitto with a password file (``broker.users``), anonymous refused.
``tls_files``        a throwaway CA + server + client certificate (:class:`TlsFiles`), made with openssl.
``mosquitto_tls``    mosquitto with a TLS-only listener using ``tls_files``.

Every broker object has ``host``, ``port``, ``kind``, ``running``, ``await start()``,
``await stop()`` (start again later on the same port for restart tests) and
``settings(**overrides)`` returning :class:`~givbridge.config.MqttSettings` for it with a unique
client id (and, for TLS brokers, the CA). Mosquitto also has ``kill()`` and ``log_text()``.

Clients:

``make_probe``       ``probe = await make_probe(broker)``: a started :class:`MqttProbe` (plain paho
                     subscriber to ``#``) to await messages: ``await probe.wait_for("a/+", pred)``.
``make_client``      ``client = await make_client(broker.settings(), will=...)``: a started
                     :class:`~givbridge.mqtt.client.MqttClient` (``start=False`` to register
                     subscriptions first); stopped after the test.

List broker fixtures before ``make_probe``/``make_client`` in a test's arguments so that clients
are torn down while their broker still runs (a client stopped after its broker just takes a
little longer: its stop is bounded).

Tests needing mosquitto are skipped, with the reason, only when the binary is not installed
(CI installs it with apt). amqtt is a Python dependency and always available.

Property tests use the Hypothesis profile named by ``HYPOTHESIS_PROFILE``: ``ci`` (default,
300 examples) or ``nightly`` (10,000).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

from givbridge.config import MqttSettings
from givbridge.mqtt.client import MqttClient
from givbridge.mqtt.publications import Publication
from tests.brokers import (
    MOSQUITTO,
    OPENSSL,
    AmqttBroker,
    Broker,
    MosquittoBroker,
    MqttProbe,
    TlsFiles,
    make_tls_files,
)

# Property tests: a quick profile for every run and CI, a thorough one for nightly runs
# (HYPOTHESIS_PROFILE=nightly scripts/test), with no deadline (CI machines stall at times).
settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto binary not installed (apt-get install mosquitto mosquitto-clients)"
)
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl command-line tool not installed")

MakeMosquitto = Callable[..., Awaitable[MosquittoBroker]]
MakeProbe = Callable[..., Awaitable[MqttProbe]]
MakeClient = Callable[..., Awaitable[MqttClient]]


def _require_mosquitto() -> None:
    if MOSQUITTO is None:
        pytest.skip("mosquitto binary not installed (apt-get install mosquitto mosquitto-clients)")


@pytest.fixture
async def make_mosquitto(tmp_path: Path) -> AsyncIterator[MakeMosquitto]:
    """Factory for mosquitto brokers with options; each gets its own directory under tmp_path."""
    _require_mosquitto()
    brokers: list[MosquittoBroker] = []

    async def make(*, start: bool = True, **options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        if start:
            await broker.start()
        return broker

    yield make
    for broker in reversed(brokers):
        await broker.stop()


@pytest.fixture
async def mosquitto(make_mosquitto: MakeMosquitto) -> MosquittoBroker:
    """A running mosquitto, anonymous access allowed."""
    return await make_mosquitto()


@pytest.fixture
async def mosquitto_auth(make_mosquitto: MakeMosquitto) -> MosquittoBroker:
    """A running mosquitto that only accepts user ``givbridge`` with password ``correct-horse``."""
    return await make_mosquitto(users={"givbridge": "correct-horse"})


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A throwaway PKI; the server certificate names only IP 127.0.0.1."""
    if OPENSSL is None:
        pytest.skip("openssl command-line tool not installed")
    return make_tls_files(tmp_path / "pki")


@pytest.fixture
async def mosquitto_tls(make_mosquitto: MakeMosquitto, tls_files: TlsFiles) -> MosquittoBroker:
    """A running mosquitto with a TLS-only listener (no client certificate required)."""
    return await make_mosquitto(tls=tls_files)


@pytest.fixture
async def amqtt() -> AsyncIterator[AmqttBroker]:
    """A running in-process amqtt broker, anonymous access allowed."""
    broker = AmqttBroker()
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture(params=[pytest.param("mosquitto", marks=needs_mosquitto), "amqtt"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    """Each test using this runs against mosquitto and against amqtt."""
    instance: Broker = MosquittoBroker(tmp_path / "mosquitto") if request.param == "mosquitto" else AmqttBroker()
    await instance.start()
    yield instance
    await instance.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Broker]:
    """One broker for a whole module's rig (starting a rig costs more than its tests):
    mosquitto when installed (CI installs it), else the in-process amqtt."""
    broker: Broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto")) if MOSQUITTO else AmqttBroker()
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture
async def make_probe() -> AsyncIterator[MakeProbe]:
    """Factory for started :class:`MqttProbe` subscribers: ``await make_probe(broker, topics=("a/#",))``."""
    probes: list[MqttProbe] = []

    async def make(broker: Broker, **kwargs: Any) -> MqttProbe:
        probe = MqttProbe.for_broker(broker, **kwargs)
        probes.append(probe)
        return await probe.start()

    yield make
    await asyncio.gather(*(probe.stop() for probe in probes))


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Factory for :class:`MqttClient` instances, stopped (without final messages) after the test."""
    clients: list[MqttClient] = []

    async def make(settings: MqttSettings, *, will: Publication | None = None, start: bool = True) -> MqttClient:
        client = MqttClient(settings, will=will)
        clients.append(client)
        if start:
            await client.start()
        return client

    yield make
    # Concurrently: a client whose broker is gone needs up to a second to stop.
    await asyncio.gather(*(client.stop() for client in clients))
