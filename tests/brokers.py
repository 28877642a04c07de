"""Real MQTT brokers and a test-side subscriber for integration tests.

Everything listens on 127.0.0.1 only, on a free port picked per broker.

* :class:`MosquittoBroker` runs the ``mosquitto`` binary with a generated config (optionally a
  password file and/or TLS), waits until its port accepts connections, and can be stopped and
  started again on the same port (broker-restart tests).
* :class:`AmqttBroker` runs an amqtt 0.12 broker inside the test's event loop; also restartable.
  A restarted broker of either kind starts empty (no retained messages): no persistence.
* :class:`MqttProbe` is a plain paho client owned by the test (independent of the code under
  test) that records everything it receives and lets a test ``await`` a message instead of
  sleeping.
* :func:`make_tls_files` makes a throwaway CA, server and client certificate with the
  ``openssl`` command-line tool.

The pytest fixtures wrapping these live in ``tests/conftest.py``.
"""

# Test helpers take explicit timeouts (each wait names its own bound), and starting a
# short-lived process with Popen from a coroutine is fine in tests.
# ruff: noqa: ASYNC109, ASYNC220

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage, topic_matches_sub
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from givbridge.config import MqttSettings, TlsSettings
from givbridge.mqtt.broker import EmbeddedBroker
from givbridge.mqtt.client import Message

HOST = "127.0.0.1"


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary; Debian puts it in /usr/sbin, which is not always on PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


MOSQUITTO = find_mosquitto()
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now.

    (Mosquitto's ``listener 0`` is not an ephemeral port, so tests pick one first.)
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


async def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll a real condition until it holds; TimeoutError naming ``what`` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def unique_client_id(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throwaway PKI: one CA that signed a server and a client certificate."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    if OPENSSL is None:
        raise RuntimeError("the openssl command-line tool is not installed")
    result = subprocess.run(
        [OPENSSL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")


def make_tls_files(directory: Path, *, server_names: tuple[str, ...] = ("IP:127.0.0.1",)) -> TlsFiles:
    """Create a CA and a server/client certificate pair signed by it, with the openssl CLI.

    ``server_names`` are the server certificate's subjectAltNames. The default names only the
    IP address 127.0.0.1, so connecting to "localhost" fails the hostname check (which is how
    the ``insecure`` flag is tested). EC keys keep it fast; extensions satisfy strict X.509
    verification of newer Pythons.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=givbridge test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=directory,
    )  # fmt: skip
    for name, usage, sans in (
        ("server", "serverAuth", ",".join(server_names)),
        ("client", "clientAuth", "DNS:givbridge-test-client"),
    ):
        (directory / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\n"
            f"subjectAltName={sans}\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=givbridge test {name}",
                 cwd=directory)  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=directory,
        )  # fmt: skip
    return TlsFiles(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


# --------------------------------------------------------------------------- brokers


class Broker(Protocol):
    """What every test broker offers."""

    kind: str
    host: str
    port: int

    @property
    def running(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def settings(self, **overrides: Any) -> MqttSettings: ...


def _settings(host: str, port: int, overrides: Mapping[str, Any]) -> MqttSettings:
    values: dict[str, Any] = {"host": host, "port": port, "client_id": unique_client_id("givbridge")}
    values.update(overrides)
    return MqttSettings(**values)


class MosquittoBroker:
    """A real ``mosquitto`` process on 127.0.0.1:<free port>, configured from a temp dir.

    ``users`` ({name: password}) turns on a password file and disables anonymous access.
    ``tls`` makes the listener TLS-only with those files; ``require_client_cert`` also
    demands a client certificate signed by the same CA.
    """

    kind = "mosquitto"
    host = HOST

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        tls: TlsFiles | None = None,
        require_client_cert: bool = False,
        port: int | None = None,
    ) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.users = dict(users or {})
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto would switch to the "mosquitto" user, which cannot read pytest's
            # private tmp dirs. "user root" keeps it as it is (acceptable for a test broker).
            lines.append("user root")
        if self.users:
            password_file = self.workdir / "passwords"
            _write_password_file(password_file, self.users)
            lines.append(f"password_file {password_file}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_client_cert else 'false'}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and return once its port accepts connections."""
        if self.running:
            return
        assert MOSQUITTO is not None
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        proc = self._proc

        def ready() -> bool:
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {proc.returncode}: {stderr}\n{self.log_text()}")
            return port_accepts(self.port)

        await wait_until(ready, timeout, f"mosquitto on port {self.port}")

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait for the process to exit (SIGKILL if it will not)."""
        await self._end(signal.SIGTERM, timeout)

    async def kill(self) -> None:
        """SIGKILL: the broker dies without closing anything cleanly."""
        await self._end(signal.SIGKILL, 5.0)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                await wait_until(lambda: proc.poll() is not None, timeout, "mosquitto to exit")
            except TimeoutError:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
        self._proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def settings(self, **overrides: Any) -> MqttSettings:
        """MqttSettings for this broker: a unique client id and, with TLS, the CA file."""
        if self.tls is not None and "tls" not in overrides:
            overrides["tls"] = TlsSettings(enabled=True, ca_file=self.tls.ca_cert)
        return _settings(self.host, self.port, overrides)

    def __repr__(self) -> str:
        return f"MosquittoBroker(port={self.port}, users={sorted(self.users)}, tls={self.tls is not None})"


def _write_password_file(path: Path, users: Mapping[str, str]) -> None:
    path.write_text("")
    path.chmod(0o600)
    if MOSQUITTO_PASSWD is None:
        raise RuntimeError("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    for name, password in users.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(path), name, password], check=True, capture_output=True, timeout=10)


class AmqttBroker(EmbeddedBroker):
    """The product's embedded amqtt broker on 127.0.0.1:<free port>, as a test broker.

    Each start() builds a fresh broker on the same port, so a restart loses retained
    messages and sessions, like a restarted mosquitto without persistence.
    """

    kind = "amqtt"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(HOST, port if port is not None else free_port())

    def settings(self, **overrides: Any) -> MqttSettings:
        return _settings(self.host, self.port, overrides)

    def __repr__(self) -> str:
        return f"AmqttBroker(port={self.port})"


# --------------------------------------------------------------------------- probe


T = TypeVar("T")


class Arrivals:
    """Lets coroutines wait until a check holds, checking again after every arrival (a message)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        """Something arrived: wake every waiter to check again."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def until(self, check: Callable[[], T]) -> T:
        """The first truthy value of ``check()``, called now and after each :meth:`notify`."""
        loop = asyncio.get_running_loop()
        while not (value := check()):
            arrived = loop.create_future()
            self._waiters.add(arrived)
            try:
                await arrived
            finally:
                self._waiters.discard(arrived)
        return value


class MqttProbe:
    """A plain paho subscriber for assertions: records every message it receives.

    Subscribes to ``topics`` (default ``#``) on every (re)connect. Waiting is done on asyncio
    futures resolved from paho's thread through ``call_soon_threadsafe``; nothing sleeps.
    Message indices let a test look only at what arrived after a point: ``n = probe.mark()``
    then ``await probe.wait_for(topic, after=n)``.
    """

    _ids = itertools.count(1)

    def __init__(
        self,
        host: str,
        port: int,
        *,
        topics: tuple[str, ...] = ("#",),
        username: str | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        client_cert: bool = False,
        client_id: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.topics = topics
        self.received: list[Message] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrivals = Arrivals()
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._pubacks: dict[int, asyncio.Future[None]] = {}
        self._client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or unique_client_id(f"probe{next(self._ids)}"),
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self._client.reconnect_delay_set(1, 2)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            if client_cert:
                self._client.tls_set(str(tls.ca_cert), str(tls.client_cert), str(tls.client_key))
            else:
                self._client.tls_set(ca_certs=str(tls.ca_cert))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish

    @classmethod
    def for_broker(cls, broker: Broker, **kwargs: Any) -> MqttProbe:
        tls = getattr(broker, "tls", None)
        users: dict[str, str] = getattr(broker, "users", {}) or {}
        if users and "username" not in kwargs:
            kwargs["username"], kwargs["password"] = next(iter(users.items()))
        kwargs.setdefault("client_cert", bool(getattr(broker, "require_client_cert", False)))
        return cls(broker.host, broker.port, tls=tls, **kwargs)

    # ---- lifecycle

    async def start(self, timeout: float = 5.0) -> MqttProbe:
        """Connect and return once the subscriptions are acknowledged."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        await self.wait_subscribed(timeout)
        return self

    async def wait_subscribed(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self._subscribed.wait()

    async def stop(self) -> None:
        self._client.disconnect()
        # The network thread ends right after the DISCONNECT is written (or within a second of
        # its reconnect wait when the broker is gone). Wait for that condition, bounded.
        thread = getattr(self._client, "_thread", None)
        if thread is not None:
            await wait_until(lambda: not thread.is_alive(), 3.0, "the probe's paho thread to end")
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ---- reading

    def mark(self) -> int:
        """Index of the next message to arrive; pass as ``after=`` to ignore older messages."""
        return len(self.received)

    def messages(self, topic_filter: str = "#", *, after: int = 0) -> list[Message]:
        return [m for m in self.received[after:] if topic_matches_sub(topic_filter, m.topic)]

    def _find(self, topic_filter: str, predicate: Callable[[Message], bool] | None, after: int) -> Message | None:
        for message in self.received[after:]:
            if topic_matches_sub(topic_filter, message.topic) and (predicate is None or predicate(message)):
                return message
        return None

    async def wait_for(
        self,
        topic_filter: str,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 5.0,
        *,
        after: int = 0,
    ) -> Message:
        """The first message (from index ``after`` on, including ones already received) whose
        topic matches ``topic_filter`` and that satisfies ``predicate``; waits up to ``timeout``."""
        assert self._loop is not None, "start() the probe first"
        try:
            async with asyncio.timeout(timeout):
                found = await self._arrivals.until(lambda: self._find(topic_filter, predicate, after))
        except TimeoutError:
            seen = [(m.topic, m.payload[:60], m.retain) for m in self.received[after:]][-20:]
            raise AssertionError(
                f"no message on {topic_filter!r} matching the predicate within {timeout} s; last seen: {seen}"
            ) from None
        assert found is not None  # until() returns only a match
        return found

    async def wait_for_payload(
        self, topic: str, payload: str | bytes, timeout: float = 5.0, *, after: int = 0, retain: bool | None = None
    ) -> Message:
        expected = payload.encode() if isinstance(payload, str) else payload
        return await self.wait_for(
            topic,
            lambda m: m.payload == expected and (retain is None or m.retain == retain),
            timeout,
            after=after,
        )

    async def assert_nothing(
        self,
        topic_filter: str,
        within: float = 0.5,
        *,
        after: int | None = None,
        predicate: Callable[[Message], bool] | None = None,
    ) -> None:
        """Fail if a matching message arrives (or has arrived since ``after``) within ``within`` s.

        Absence can only be shown by watching for a while; keep ``within`` short.
        """
        start = self.mark() if after is None else after
        try:
            message = await self.wait_for(topic_filter, predicate, within, after=start)
        except AssertionError:
            return
        raise AssertionError(f"unexpected message on {message.topic!r}: {message.payload!r} (retain={message.retain})")

    # ---- writing

    async def publish(
        self, topic: str, payload: str | bytes | None = None, *, retain: bool = False, qos: Literal[0, 1] = 1,
        timeout: float = 5.0,
    ) -> None:  # fmt: skip
        """Publish; with QoS 1 return once the broker acknowledged it."""
        assert self._loop is not None, "start() the probe first"
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise AssertionError(f"probe publish to {topic} failed: {info.rc!r}")
        if qos == 0:
            return
        # The PUBACK hop is queued behind this call, so registering now cannot miss it.
        future = self._pubacks[info.mid] = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await future
        finally:
            self._pubacks.pop(info.mid, None)

    async def clear_retained(self, topic: str) -> None:
        await self.publish(topic, None, retain=True)

    # ---- paho's thread

    def _hop(self, fn: Callable[..., None], *args: object) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self, client: Client, userdata: object, flags: ConnectFlags, rc: ReasonCode, props: Properties | None
    ) -> None:
        if rc.is_failure:
            return
        client.subscribe([(topic, 1) for topic in self.topics])
        self._hop(self._connected.set)

    def _on_disconnect(
        self, client: Client, userdata: object, flags: DisconnectFlags, rc: ReasonCode, props: Properties | None
    ) -> None:
        self._hop(self._connected.clear)
        self._hop(self._subscribed.clear)

    def _on_subscribe(
        self, client: Client, userdata: object, mid: int, rcs: list[ReasonCode], props: Properties | None
    ) -> None:
        self._hop(self._subscribed.set)

    def _on_message(self, client: Client, userdata: object, msg: MQTTMessage) -> None:
        message = Message(topic=msg.topic, payload=bytes(msg.payload), retain=bool(msg.retain), qos=int(msg.qos))
        self._hop(self._record, message)

    def _on_publish(self, client: Client, userdata: object, mid: int, rc: ReasonCode, props: Properties) -> None:
        self._hop(self._puback, mid)

    # ---- event loop

    def _record(self, message: Message) -> None:
        self.received.append(message)
        self._arrivals.notify()

    def _puback(self, mid: int) -> None:
        future = self._pubacks.get(mid)
        if future is not None and not future.done():
            future.set_result(None)
