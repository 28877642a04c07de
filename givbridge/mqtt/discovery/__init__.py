"""Home Assistant MQTT discovery: device-based, with GivTCP's entity ids, kept tidy.

What Home Assistant is told
---------------------------
One retained *device discovery* document per HA device at
``<discovery_prefix>/device/<object_id>/config`` (HA 2024.12+), each with ``origin``, a
``device`` block (``identifiers`` as a list) and its entities under ``components``:

========================  =================================  ===========================================
HA device                 object id                          entities
========================  =================================  ===========================================
the bridge                ``givbridge_bridge_<root>``        bridge state (connectivity), version;
                                                             restart button and log-level select
                                                             with ``mqtt.admin: on``
each inverter             ``givbridge_<serial>``             every inverter-level value, including the
                                                             stack-level BMS readings
                                                             (``Battery_Details/Battery_Stack_1/BMS_*``)
each battery pack         ``givbridge_<pack serial>``        the pack's values; ``via_device`` inverter
each meter                ``givbridge_<serial>_Meter_ID<n>`` the meter's values; ``via_device`` inverter
the EV charger            ``givbridge_<charger serial>``     its ``Charger/*`` values and modes (GivTCP's
                                                             "GivEVC" device; model "EV charger")
the plant (2+ inverters)  ``givbridge_plant_<root>``         the plant summary's totals (read-only,
                                                             see ``givbridge/plant/summary.py``)
========================  =================================  ===========================================

Time entities (``mqtt.slot_entities: time``) are the exception: the MQTT ``time`` platform is
new (HA 2026.5), and an HA that does not know a platform rejects the whole device document
naming it, so each time entity is announced on its own topic,
``<discovery_prefix>/time/givbridge/<unique_id>/config``, joined to its device by the
identifiers (:meth:`~givbridge.mqtt.discovery.documents.DiscoveryBuilder.split_entities`).
With ``mqtt.legacy_object_id`` every entity also carries ``object_id`` (its entity id without
the domain), which HA before 2025.10 reads instead of ``default_entity_id``.

An inverter controlled by a Gateway or EMS that the bridge also polls (see
``givbridge/plant/topology.py``) has its controls published read-only: each number, select,
switch and time entity becomes a diagnostic sensor with the same unique id (its entity id
changes domain, e.g. ``sensor.givtcp_<serial>_target_soc``), its buttons are left out, and its
device hangs off the controller's (``via_device``). Changing those settings is the
controller's job; the command topics answer ``unsupported`` naming it.

A control's options and range are its command's (:mod:`~givbridge.mqtt.discovery.controls`);
one whose command does not apply to the model is published read-only, like a managed
inverter's. Home Assistant is offered no control that could only answer ``forbidden``: HA sends as a plain
MQTT caller, without the admin token, so the admin controls (the bridge's restart button and
log-level select, each inverter's ``Reboot_Invertor`` button) are published only while the
access policy lets any MQTT caller run them (``mqtt.admin: on``; see
:mod:`givbridge.commands.access`). Turning it off removes them like any other stale entity
(below), so existing installs lose the dead buttons.

The stack-level BMS values get no device of their own (GivTCP made a "Battery Stack 1"
device for two sensors): the inverter measures them, so they sit with the inverter, and
they keep GivTCP's unique ids.

Entity ids are GivTCP's, so Predbat's GivTCP template and users' dashboards keep working:
``unique_id`` is GivTCP's string exactly (``<prefix>_<serial>_<Leaf>``, per pack or HV module
``<prefix>_<pack serial>_<Leaf>``, stack-level ``<prefix>_Battery_Stack_1_<Leaf>``, per meter
``<prefix>_Meter_ID<n>_<Leaf>``) and ``default_entity_id`` is ``<platform>.<unique_id>`` in
lower case, as HA would spell it. A stack's and a meter's unique id names no serial, so
their entity ids would collide between inverters and one (``..._stack_soc_kwh``) would match
Predbat's serial detection ``sensor.givtcp_(.+)_soc_kwh``: theirs is
``<prefix>_<serial>_<Leaf>_<holder>`` (``sensor.givtcp_<serial>_stack_soc_kwh_battery_stack_1``,
:meth:`~givbridge.mqtt.discovery.addresses.EntityAddress.object_id`). HA uses
``default_entity_id`` only when it first creates an entity: one it already has keeps its
entity id (and, as the unique id is unchanged, its history and settings). State topics are the
GivTCP leaf topics (no templates but the selects' noted under controls); command topics are
``<root>/control/<serial>/<command>``.
Every device's entities share ``availability`` = bridge state and the inverter's own
availability, with ``availability_mode: all``.

Only values a device actually publishes are discovered. A value can be missing from one
poll (an undecodable register, a completion time while idle), and removing an HA entity
deletes the user's customisations, so the discovered set is the *union* of the paths a
device has published since its model last changed; it is kept in the data directory, so a
restart does not shrink it either.

Lifecycle
---------
* Published retained (QoS 1) on every broker connection, after each device's first
  snapshot, and whenever a device's layout or identity changes (a new value or battery, a
  firmware update, a different battery power limit). Unchanged documents are not resent.
* Re-published after HA's birth message (``<discovery_prefix>/status`` = ``online``, not
  retained) after a random 1-5 s delay, followed by a full state republish.
* What was published is recorded in the JSON document ``discovery`` in the data directory.
  An entity that is no longer produced (model changed, prefix changed, platform changed)
  is removed the way HA documents it: the device document is sent once with that component
  reduced to ``{"platform": ...}``, then without it. A device that is gone (battery
  removed) gets an empty retained payload, as does every device of an inverter that is no
  longer configured, once every configured inverter has been identified (an inverter that
  is merely unreachable keeps its entities).
* ``mqtt.discovery: false`` publishes and subscribes to nothing here.

The bridge device's restart button and log-level select send to
``<root>/bridge/request/<name>``; :mod:`givbridge.mqtt.requests` carries the requests out.

Migrating from GivTCP (``mqtt.migrate_givtcp_discovery: true``)
---------------------------------------------------------------
HA's migration procedure moves each inverter's entities from GivTCP's per-entity configs
before its first discovery, keeping their registry entries; see
:mod:`~givbridge.mqtt.discovery.migration`.

Modules
-------
``addresses``  which device a value belongs to and its GivTCP unique id
``documents``  the device documents, built from snapshots and entity definitions (pure)
``controls``   what a control offers (options, min, max, step), derived from its command
``publisher``  when documents go out, unchanged ones not; removal of stale entities and devices
``migration``  moving GivTCP's discovery over
``record``     what was published and learned, kept in the data directory
"""
