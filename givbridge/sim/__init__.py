"""A protocol-true simulated GivEnergy inverter, battery bank and Wi-Fi dongle.

It powers ``givbridge demo``, ``givbridge simulate`` and every integration test: the real
GivEnergy transparent Modbus protocol over TCP (framing, CRCs and PDUs from the
givenergy-modbus library), per-model register banks, write rules and quirks, and a plant
whose PV, house load, battery and counters evolve with the clock it is given.

In-process use::

    from givbridge.clock import ScaledClock
    from givbridge.sim import SimulatedPlant, SimulatorServer

    clock = ScaledClock(speed=60)  # a simulated minute every real second
    sim = SimulatedPlant.create("hybrid-gen3", batteries=2, serial=None, clock=clock, seed=1,
                                tz="Europe/London", start_soc=50, meters=None)
    server = SimulatorServer(sim, host="127.0.0.1", port=0, latency=0.0, heartbeat_interval=180.0)
    await server.start()            # server.port is the ephemeral port
    server.faults.silence(5)        # see givbridge.sim.faults for every fault
    server.connections[0].faults.extra_latency = 2  # one connection's own faults
    await FaultScript.parse("drop/120,crc=0.05").run(server.faults)  # givbridge.sim.fault_script
    await server.stop()

    async with SimulatorServer(sim) as server:
        ...

    sim.holding(116) -> int         # any register, as a read would return it now
    sim.input(59) -> int            # input registers; pass address=0x32 for battery pack 1
    sim.read(0x01, "MR", 60, 9)     # any bank at any address, or why it is not answered
    sim.set_holding(116, 80)        # set directly, bypassing the write rules
    mark = sim.writes_answered      # every write the inverter answered is in sim.write_log:
    sim.writes_since(mark)          # WriteRecord(sequence, moment, address, register, old, new, outcome)
    sim.serial, sim.dongle_serial, sim.battery_serials, sim.unit_serials, sim.meter_addresses

Families: every key of ``givbridge.plant.families.FAMILIES`` except ``aio-hybrid``,
``aio-commercial`` and ``ems-commercial``, for which no capture or other fact exists: the
single-phase hybrids (Gen1-Gen4, Gen3+, Polar), ``pv``, ``ac``, ``aio`` and
``hybrid-hv-gen3`` (HV stack), ``hybrid-3ph`` and ``ac-3ph``, ``ems`` (a controller reporting
on the inverters it manages) and ``gateway`` (parallel All-in-Ones). ``batteries`` counts LV
packs, HV modules or managed units; ``meters`` the energy meters at 0x01 upwards. See
:mod:`givbridge.sim.profiles` for where each model's values come from and how to add one.
``SimulatorServer`` also takes
``jitter`` (extra random latency), ``heartbeat_timeout`` (5 s on real dongles), ``fan_out``
(send every response to every client) and ``seed`` (for the jitter).

A GivEnergy EV charger (plain Modbus TCP, a pymodbus server with session physics) is
:mod:`givbridge.sim.evc`; ``sim.extra_load = lambda: charger.power_w`` puts its draw in the
plant's house load, as a real charger on the house circuit is.

Time: the plant only moves when something reads or writes it, integrating from its last
update to ``clock.now()`` in steps of at most 5 simulated seconds, so a ``ScaledClock`` (and
its ``advance()``) speeds up everything. Latency, heartbeats and link faults run on real
time. The library's battery splice guard rejects a pack bank whose SOC moves more than 10
points between two reads, so keep (simulated time between battery reads) x (battery power)
below that when polling a fast clock with the library.
"""

from givbridge.sim.faults import Faults
from givbridge.sim.plant import SimulatedPlant, Unanswered
from givbridge.sim.profiles import PROFILES
from givbridge.sim.server import SimulatorServer
from givbridge.sim.writes import WriteOutcome

__all__ = ["PROFILES", "Faults", "SimulatedPlant", "SimulatorServer", "Unanswered", "WriteOutcome"]
