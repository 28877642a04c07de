"""The device layer: one runner per device, owning its only connection.

Everything below here reads and writes devices and knows nothing of MQTT or HTTP:

* :mod:`~givbridge.devices.core`: the contract every runner keeps (``DeviceRunner``) and the core
  they share (connection loop, job queue, availability, the write path ``apply(plan)``, the
  ordered snapshot pipeline); the EV charger's runner (:mod:`givbridge.evc.runner`) is built on it too;
* :mod:`~givbridge.devices.outcome`: what became of a write (the exceptions and the judged outcome);
* :mod:`~givbridge.devices.context`: what a command planner may know about a device;
* :mod:`~givbridge.devices.guard`: a device's data hygiene with its memory kept on disk;
* :mod:`~givbridge.devices.library`: what givbridge adds to givenergy-modbus (refusal and
  dropout bookkeeping, answers still owed, the orphaned-future filter, the client it builds);
* :mod:`~givbridge.devices.sending`: how a runner sends its requests (one with its retries, a
  bank until believable, a poll pipelined with room for writes between its requests);
* :mod:`~givbridge.devices.inverter`: the inverter runner; :mod:`~givbridge.devices.follower`
  finds a moved inverter again; :mod:`~givbridge.devices.write_counters` counts its writes as
  GivTCP does; :mod:`~givbridge.devices.supervisor` starts and stops them all.
"""
