"""givbridge: a one-process local bridge between GivEnergy inverters and MQTT / Home Assistant."""

__version__ = "0.1.0"
