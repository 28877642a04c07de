"""``givbridge watch``: print what a broker carries under givbridge's topics, one line per message.

For machines without mosquitto's clients (the demo on a fresh install), and handy anywhere:
``givbridge watch --mqtt-port 1883 'GivEnergy/+/Power/#'``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from givbridge.config import MqttSettings
from givbridge.config_checks import ConfigError
from givbridge.log import configure_logging
from givbridge.mqtt.client import Message, MqttClient


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topics", nargs="*", default=["GivEnergy/#"], help="topic filters (default GivEnergy/#)")
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (default: never)")


async def main(args: argparse.Namespace) -> int:
    configure_logging("warning")  # the messages are the output; only problems are logged
    fields: dict[str, Any] = {"host": args.mqtt_host, "port": args.mqtt_port, "client_id": "givbridge-watch"}
    if args.username:
        fields.update(username=args.username, password=args.password)
    try:
        settings = MqttSettings(**fields)
    except ValueError as exc:
        raise ConfigError(f"invalid broker settings: {exc}") from exc
    client = MqttClient(settings)
    done = asyncio.Event()
    seen = 0

    def show(message: Message) -> None:
        nonlocal seen
        if args.count and seen >= args.count:
            return  # messages already on their way when the count was reached
        flag = " (retained)" if message.retain else ""
        print(f"{message.topic} {message.text}{flag}", flush=True)
        seen += 1
        if args.count and seen >= args.count:
            done.set()

    for topic_filter in args.topics:
        client.subscribe(topic_filter, show, qos=0)
    await client.start()
    if not await client.wait_connected(timeout=10):
        where = f"{args.mqtt_host}:{args.mqtt_port}"
        print(f"givbridge watch: no broker answering at {where} yet; waiting", file=sys.stderr)
    try:
        await done.wait()
    finally:
        await client.stop()
    return 0
