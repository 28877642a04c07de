"""Small generic primitives the device runners are built from.

Nothing here knows a GivEnergy fact, a register, MQTT or HTTP: a :class:`~givbridge.runtime.signal.Signal`
fans values out to async listeners, :class:`~givbridge.runtime.backoff.Backoff` spaces reconnect
attempts, :class:`~givbridge.runtime.health.Health` counts a device's polls and availability, and
:func:`~givbridge.runtime.tasks.honour_cancellation` keeps a stop request from getting lost.
"""
