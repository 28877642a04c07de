"""The MQTT connection: the only module in givbridge that imports paho.

:class:`MqttClient` wraps one paho-mqtt 2.x client (callback API version 2, MQTT 3.1.1,
clean session) so the rest of the bridge sees an asyncio object:

* paho's network thread (``loop_start``) owns the socket; every paho callback does nothing
  but hop into the event loop with ``loop.call_soon_threadsafe``. All state below lives in
  the loop and is touched only there, so it needs no locks. There are no other threads.
* ``connect_async`` + paho's own reconnect mean a broker that is down at start, restarts or
  refuses the credentials is retried in the background for ever; nothing here raises because
  the broker cannot be reached. How often is :mod:`givbridge.mqtt.reconnect`'s policy.
* Subscriptions are remembered and sent again after every (re)connect (a clean session
  forgets them). Once the broker has acknowledged them the ``on_connect`` callbacks run; the
  bridge republishes its state, availability and discovery there.
* :meth:`MqttClient.publish` never blocks and never queues while disconnected: it returns
  ``False`` and counts a drop, because the bridge republishes everything after a reconnect
  (stale queued state would only be overwritten).
* :meth:`MqttClient.stop` publishes the final messages (retained ``offline`` states) with
  QoS 1 and waits for their PUBACKs, then sends a clean DISCONNECT. A clean DISCONNECT does
  not fire the Last Will, which is why ``offline`` is published explicitly.

paho logs through the stdlib logger ``paho.mqtt.client`` (``enable_logger``), which the
application's logging setup formats like every other line. Credentials are never logged.

The parts that need no paho live beside this module: what is sent (:mod:`~givbridge.mqtt.publications`),
the acknowledgements awaited (:mod:`~givbridge.mqtt.acks`), the subscriptions and handler tasks
(:mod:`~givbridge.mqtt.subscriptions`), the connection state and ``on_connect`` callbacks
(:mod:`~givbridge.mqtt.session`), the reconnect policy and stats (:mod:`~givbridge.mqtt.reconnect`)
and the filter for paho's log (:mod:`~givbridge.mqtt.paho_log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from paho.mqtt.client import (
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTMessage,
    topic_matches_sub,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from givbridge.clock import Clock, SystemClock
from givbridge.config import MqttSettings
from givbridge.config_checks import ConfigError
from givbridge.mqtt.acks import PendingAcks
from givbridge.mqtt.paho_log import BENIGN_PAHO_ERRORS
from givbridge.mqtt.publications import Payload, Publication, encode_payload
from givbridge.mqtt.reconnect import (
    MqttStats,
    reconnect_delays,
)
from givbridge.mqtt.session import BrokerSession, ConnectCallback
from givbridge.mqtt.subscriptions import HandlerTasks, SubscriptionRegistry

__all__ = [
    "Message",
    "MessageHandler",
    "MqttClient",
]

log = structlog.stdlib.get_logger(__name__)

SUBACK_TIMEOUT = 10.0
"""Seconds to wait for the broker to acknowledge the resubscription before sending it again.
The ``on_connect`` callbacks (``bridge/state`` = ``online``) never run before an acknowledgement:
a command published once the bridge says ``online`` must reach it. A broker that never answers
is dropped by keepalive."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message received from the broker."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (undecodable bytes replaced, never an exception)."""
        return self.payload.decode("utf-8", errors="replace")


MessageHandler = Callable[[Message], Awaitable[None] | None]
"""Called in the event loop for each matching message. A coroutine function's coroutine is
run as a task; exceptions (sync or async) are logged and never reach the client."""


class MqttClient:
    """An asyncio-facing MQTT 3.1.1 client for the bridge; see the module docstring.

    Typical use::

        client = MqttClient(settings.mqtt, will=Publication(f"{root}/bridge/state", "offline", retain=True))
        client.subscribe(f"{root}/control/#", on_control)
        client.on_connect(republish_everything)
        await client.start()
        ...
        await client.stop(final=[Publication(f"{root}/bridge/state", "offline", retain=True)])
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        will: Publication | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._will = will
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._paho = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._network_thread: threading.Thread | None = None
        self._started = False
        self._stopped = False

        self._subscriptions: SubscriptionRegistry[MessageHandler] = SubscriptionRegistry()
        self._session = BrokerSession(settings, self._clock, self._resubscribe)
        self._handler_tasks = HandlerTasks()
        self._acks = PendingAcks()

        self._published = 0
        self._dropped = 0
        self._received = 0
        self._refused = False  # paho's thread only: the last attempt got a CONNACK refusal

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """True while the broker connection is up (as last seen by the event loop)."""
        return self._session.connected

    @property
    def client_id(self) -> str:
        return self._settings.client_id

    @property
    def stats(self) -> MqttStats:
        return MqttStats(
            connected=self._session.connected,
            connected_since=self._session.record.connected_since,
            published=self._published,
            dropped=self._dropped,
            received=self._received,
            reconnects=self._session.record.reconnects,
            connect_failures=self._session.record.connect_failures,
        )

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Deliver messages matching ``topic_filter`` (MQTT wildcards allowed) to ``handler``.

        Remembered and re-subscribed after every reconnect. Several handlers may share a
        filter; each message is dispatched to every handler of every matching filter. Avoid
        overlapping filters (``a/#`` and ``a/+``): MQTT 3.1.1 lets a broker deliver one copy
        per matching subscription (amqtt does, mosquitto does not), and the copies cannot be
        told apart, so every matching handler would see the message twice.
        """
        send_qos = self._subscriptions.add(topic_filter, handler, qos)
        if send_qos is not None and self._session.connected:
            self._paho.subscribe(topic_filter, send_qos)

    def unsubscribe(self, topic_filter: str, handler: MessageHandler | None = None) -> None:
        """Forget ``handler`` (or every handler) for ``topic_filter``; unsubscribe when none is left."""
        if self._subscriptions.remove(topic_filter, handler) and self._session.connected:
            self._paho.unsubscribe(topic_filter)

    def on_connect(self, callback: ConnectCallback) -> ConnectCallback:
        """Register an async callback run after every successful (re)connect; usable as a decorator.

        Callbacks run one after another, after the broker has acknowledged the subscriptions.
        If the connection drops while they run, they are cancelled (they run again after the
        next connect). Exceptions are logged.
        """
        self._session.add_callback(callback)
        return callback

    async def start(self) -> None:
        """Configure paho and start connecting in the background. Returns at once.

        Raises :class:`~givbridge.config_checks.ConfigError` only for a TLS setup that cannot work
        (unreadable certificate files); an unreachable broker is never an error.
        """
        if self._started:
            raise RuntimeError("MqttClient.start() called twice")
        self._started = True
        self._loop = asyncio.get_running_loop()
        settings = self._settings
        paho = self._paho
        paho_logger = logging.getLogger("paho.mqtt.client")
        if BENIGN_PAHO_ERRORS not in paho_logger.filters:
            paho_logger.addFilter(BENIGN_PAHO_ERRORS)
        paho.enable_logger(paho_logger)
        # Our callbacks catch everything themselves; this is a second net so that no exception
        # can ever end paho's network thread (it would silently stop reconnecting).
        paho.suppress_exceptions = True
        paho.reconnect_delay_set(*reconnect_delays(refused=False))
        paho.on_pre_connect = self._paho_on_pre_connect
        paho.on_connect = self._paho_on_connect
        paho.on_connect_fail = self._paho_on_connect_fail
        paho.on_disconnect = self._paho_on_disconnect
        paho.on_message = self._paho_on_message
        paho.on_publish = self._paho_on_publish
        paho.on_subscribe = self._paho_on_subscribe
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password is not None else None
            paho.username_pw_set(settings.username, password)
        if settings.tls.enabled:
            self._configure_tls()
        if self._will is not None:
            will = self._will
            paho.will_set(will.topic, encode_payload(will.payload), qos=will.qos, retain=will.retain)
        log.info(
            "mqtt connecting",
            host=settings.host,
            port=settings.port,
            client_id=settings.client_id,
            tls=settings.tls.enabled,
            username=settings.username,
        )
        paho.connect_async(settings.host, settings.port, keepalive=settings.keepalive)
        paho.loop_start()
        # paho keeps its network thread in a private attribute (and clears it when the thread
        # ends). Holding it lets stop() wait for the thread without joining, which would block
        # the event loop.
        thread: Any = getattr(paho, "_thread", None)
        self._network_thread = thread if isinstance(thread, threading.Thread) else None

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (a bounded wait is the point)
        """Wait until connected and subscribed (the moment ``on_connect`` callbacks start).

        Returns False if that did not happen within ``timeout`` seconds.
        """
        return await self._session.wait_ready(timeout)

    def publish(
        self,
        topic: str,
        payload: Payload = None,
        *,
        retain: bool = False,
        qos: int | None = None,
    ) -> bool:
        """Hand a message to the connection; never blocks.

        ``qos`` defaults to the configured ``mqtt.qos``. Returns False, counting a drop, when not
        connected: nothing is queued for later. Raises ValueError for an invalid topic (a
        wildcard in it, or empty): that is a programming error, not a network condition.
        """
        qos = self._settings.qos if qos is None else qos
        if not self._session.connected:
            self._dropped += 1
            return False
        info = self._paho.publish(topic, encode_payload(payload), qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # The connection dropped and the loop has not heard yet. A QoS>0 message stays in
            # paho's queue and may still go out after the reconnect; harmless, since the
            # bridge republishes everything then anyway.
            self._dropped += 1
            return False
        self._published += 1
        return True

    async def publish_confirmed(
        self,
        topic: str,
        payload: Payload = None,
        *,
        retain: bool = False,
        qos: Literal[1, 2] = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 (the PUBACK wait is bounded by contract)
    ) -> bool:
        """Publish with QoS 1 (or 2) and wait until the broker acknowledges it.

        Returns True on PUBACK (PUBCOMP for QoS 2), False when not connected or when no
        acknowledgement came within ``timeout`` seconds.
        """
        future = self._publish_tracked(topic, payload, retain=retain, qos=qos)
        if future is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            log.debug("mqtt publish not acknowledged in time", topic=topic, timeout=timeout)
            return False

    async def stop(self, final: Iterable[Publication] = (), timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Publish ``final`` (confirmed), disconnect cleanly and stop paho's thread.

        Bounded by ``timeout`` seconds whatever the broker does. If the broker is unreachable
        the final messages cannot be delivered; the broker then already published the Last
        Will when it lost the connection. Safe to call more than once, or without start().
        """
        if self._session.stopping:
            return
        self._session.stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        final = list(final)
        if final and self._session.connected:
            # Leave a quarter of the budget for the DISCONNECT and the thread to end.
            budget = max(0.0, timeout * 0.75)
            futures = [self._publish_tracked(p.topic, p.payload, retain=p.retain, qos=max(p.qos, 1)) for p in final]
            waiting = [f for f in futures if f is not None]
            if waiting:
                done, _ = await asyncio.wait(waiting, timeout=budget)
                confirmed = sum(1 for f in done if not f.cancelled() and f.result())
                if confirmed < len(final):
                    log.warning("mqtt final messages not all confirmed", confirmed=confirmed, total=len(final))

        was_connected = self._session.connected
        self._session.cancel()
        self._handler_tasks.cancel_all()
        if self._started:
            self._paho.disconnect()
            # paho's thread ends once the DISCONNECT is written (or, when disconnected, within
            # a second, when its reconnect wait next looks at the state). A thread ending has no
            # event to await: poll that condition, bounded.
            thread = self._network_thread
            while thread is not None and thread.is_alive() and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            if thread is not None and not thread.is_alive():
                self._paho.loop_stop()  # joins a finished thread: returns at once
            else:
                # Stuck in a blocking connect or TLS handshake (paho's connect timeout is 5 s).
                # It is a daemon thread and ends by itself; joining it would block the loop.
                log.warning("mqtt network thread still busy at shutdown; leaving it to finish")
        self._stopped = True
        self._session.set_down()
        self._acks.fail_all()
        if self._started:
            log.info("mqtt stopped", was_connected=was_connected, published=self._published, dropped=self._dropped)

    # ------------------------------------------------------------------ internals (event loop)

    def _configure_tls(self) -> None:
        tls = self._settings.tls
        try:
            self._paho.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file is not None else None,
                certfile=str(tls.cert_file) if tls.cert_file is not None else None,
                keyfile=str(tls.key_file) if tls.key_file is not None else None,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"mqtt.tls: cannot load the certificates: {exc}") from exc
        if tls.insecure:
            self._paho.tls_insecure_set(True)

    def _publish_tracked(self, topic: str, payload: Payload, *, retain: bool, qos: int) -> asyncio.Future[bool] | None:
        """Publish with QoS>=1 and return a future resolved by the PUBACK, or None if not sent."""
        if not self._session.connected or self._loop is None:
            self._dropped += 1
            return None
        info = self._paho.publish(topic, encode_payload(payload), qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._dropped += 1
            return None
        # NO_CONN here means the connection just dropped; paho keeps the message and sends it
        # after reconnecting, so its PUBACK may still arrive in time. The PUBACK callback hops
        # through call_soon_threadsafe, so it cannot run before this future is registered.
        self._published += 1
        future: asyncio.Future[bool] = self._loop.create_future()
        self._acks.expect_puback(info.mid, future)
        return future

    async def _resubscribe(self) -> bool:
        """Subscribe to every filter again; True once the broker has acknowledged it (or there is none)."""
        if not self._subscriptions:
            return True
        assert self._loop is not None
        filters = self._subscriptions.filters()
        while True:
            rc, mid = self._paho.subscribe(filters)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                return False  # the connection already dropped; the disconnect hop follows
            future: asyncio.Future[list[bool]] = self._loop.create_future()
            self._acks.expect_suback(mid, future)
            try:
                async with asyncio.timeout(SUBACK_TIMEOUT):
                    failures = await future
                if not self._session.connected:
                    return False  # resolved by stop() or a lost connection, not by a SUBACK
                break
            except TimeoutError:
                log.warning("mqtt subscriptions not acknowledged in time; subscribing again", filters=len(filters))
            finally:
                self._acks.forget_suback(mid)
        for (topic_filter, _qos), failed in zip(filters, failures, strict=False):
            if failed:
                log.warning("mqtt broker refused a subscription", topic_filter=topic_filter)
        return True

    def _dispatch(self, message: Message) -> None:
        if self._stopped:
            return
        self._received += 1
        assert self._loop is not None
        for topic_filter, handler in self._subscriptions.matching(message.topic, topic_matches_sub):
            self._handler_tasks.deliver(self._loop, handler, message, topic=message.topic, topic_filter=topic_filter)

    # ------------------------------------------------------------------ paho's thread
    # Everything below runs on paho's network thread. It only copies plain values out of
    # paho's objects and hops into the event loop; it must never raise.

    def _hop(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None:
            return
        # RuntimeError: the event loop is closed; the process is exiting and nobody is listening.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    def _paho_on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            self._set_backoff(refused=reason_code.is_failure)
            if reason_code.is_failure:
                self._hop(self._session.refused, str(reason_code))
            else:
                if self._session.stopping:
                    client.disconnect()  # connected while stop() was waiting: leave at once
                self._hop(self._session.up, bool(flags.session_present))
        except Exception:
            logging.getLogger(__name__).exception("mqtt on_connect hop failed")

    def _set_backoff(self, *, refused: bool) -> None:
        """Switch paho's reconnect cap between an absent broker's and a refusing one's.

        Only on a change: paho restarts its doubling from the minimum whenever the delays are set.
        """
        if refused != self._refused:
            self._refused = refused
            self._paho.reconnect_delay_set(*reconnect_delays(refused=refused))

    def _paho_on_pre_connect(self, client: Client, userdata: object) -> None:
        self._hop(self._session.attempt_began)

    def _paho_on_connect_fail(self, client: Client, userdata: object) -> None:
        self._set_backoff(refused=False)  # unreachable now, refusing or not before: look for it often
        self._hop(self._session.unreachable)

    def _paho_on_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            self._hop(self._session.lost, str(reason_code), bool(flags.is_disconnect_packet_from_server))
        except Exception:
            logging.getLogger(__name__).exception("mqtt on_disconnect hop failed")

    def _paho_on_message(self, client: Client, userdata: object, msg: MQTTMessage) -> None:
        try:
            message = Message(topic=msg.topic, payload=bytes(msg.payload), retain=bool(msg.retain), qos=int(msg.qos))
        except Exception:
            logging.getLogger(__name__).exception("mqtt received an undecodable message")
            return
        self._hop(self._dispatch, message)

    def _paho_on_publish(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self._hop(self._acks.puback, mid)

    def _paho_on_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        try:
            self._hop(self._acks.suback, mid, [rc.is_failure for rc in reason_codes])
        except Exception:
            logging.getLogger(__name__).exception("mqtt on_subscribe hop failed")
