"""The GivEnergy EV charger: plain Modbus TCP on port 502, polled and controlled beside the inverters.

``registers.py`` is what the charger's registers mean (GivTCP's names), ``runner.py`` the
connection, polling, writes with read-back and availability, ``modes.py`` the emulated
Grid/Hybrid/Solar modes, import cap and session energy limit, and ``charger.py`` ties the runner
and the modes together for the application. The simulator is :mod:`givbridge.sim.evc`.
"""
