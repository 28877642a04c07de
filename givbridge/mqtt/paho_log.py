"""What paho logs that is not worth saying: a filter for its stdlib logger ``paho.mqtt.client``.

Kept apart from the client so the filter can be read (and tested) without paho's connection.
"""

from __future__ import annotations

import logging


class DropBenignLoopErrors(logging.Filter):
    """Drop two misleading ERROR lines paho 2.2's network loop logs in normal operation.

    Its loop runs once over a socket that is not there and logs "Client is not connected.
    Socket: None). Last known Connection State: ..." at ERROR:

    * ``MQTT_CS_DISCONNECTED``: after every deliberate ``disconnect()``, i.e. at every clean
      shutdown (that state is only reached through ``disconnect()``);
    * ``MQTT_CS_CONNECTING``: after the first connection attempt failed, which the client
      already reports as "broker unreachable".

    A lost connection (``MQTT_CS_CONNECTION_LOST``) and every other paho error still get through.
    """

    _BENIGN = ("Connection State: MQTT_CS_DISCONNECTED", "Connection State: MQTT_CS_CONNECTING")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("Client is not connected") and message.endswith(self._BENIGN))


BENIGN_PAHO_ERRORS = DropBenignLoopErrors()
"""The one instance, so a second client does not add the filter twice."""
