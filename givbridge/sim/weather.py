"""The world around the simulated plant: sun, house load, grid and weather, as pure functions of time.

PV, house load, grid voltage/frequency and appliance spikes are pure functions of (seed, time),
built from hashed value noise rather than a random stream, so they do not depend on how often
the plant is read. The plant's own physics (:mod:`givbridge.sim.physics`) integrates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

# --------------------------------------------------------------------------------------
# Deterministic noise
# --------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def hash_unit(seed: int, channel: int, index: int) -> float:
    """A uniform value in [0, 1) fixed by (seed, channel, index) (splitmix64)."""
    x = (seed * 0x9E3779B97F4A7C15 + channel * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def smooth_noise(seed: int, channel: int, seconds: float, period: float) -> float:
    """Value noise in [0, 1) that varies smoothly over ``period`` seconds."""
    position = seconds / period
    index = math.floor(position)
    blend = (1 - math.cos((position - index) * math.pi)) / 2
    start, end = hash_unit(seed, channel, index), hash_unit(seed, channel, index + 1)
    return start + (end - start) * blend


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


# --------------------------------------------------------------------------------------
# Environment: sun, house, grid, weather
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Site:
    """Where the plant is and what PV it has; the seed makes its weather and household its own."""

    seed: int
    pv_kwp: float
    latitude: float = 52.5  # the English Midlands
    longitude: float = -1.5
    #: String 1's share of the array; the rest is string 2 (two MPPTs).
    string_1_share: float = 0.55


def solar_elevation_sine(moment: datetime, latitude: float, longitude: float) -> float:
    """Sine of the sun's elevation (negative below the horizon) at a UTC moment."""
    day = moment.timetuple().tm_yday
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + day) / 365)
    b = 2 * math.pi * (day - 81) / 364
    equation_of_time = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)  # minutes
    utc_hours = moment.hour + moment.minute / 60 + moment.second / 3600
    solar_hours = utc_hours + longitude / 15 + equation_of_time / 60
    hour_angle = math.radians(15 * (solar_hours - 12))
    phi = math.radians(latitude)
    return math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(declination) * math.cos(hour_angle)


def pv_power(moment: datetime, site: Site) -> tuple[float, float]:
    """DC power (W) the two strings can deliver: clear-sky sun by time and season, times cloud."""
    elevation = solar_elevation_sine(moment, site.latitude, site.longitude)
    if elevation <= 0:
        return 0.0, 0.0
    clear_sky = min(1.0, 1.1 * elevation**1.1)  # panels tilted towards the sun gain in winter
    seconds = moment.timestamp()
    clearness = 0.35 + 0.65 * hash_unit(site.seed, 1, math.floor(seconds / 86400))  # this day's weather
    cloud = 1 - (1 - clearness) * (0.4 + 0.6 * smooth_noise(site.seed, 2, seconds, 900))
    total = site.pv_kwp * 1000 * 0.88 * clear_sky * cloud  # 0.88: wiring, soiling, temperature
    return total * site.string_1_share, total * (1 - site.string_1_share)


def house_load(local: datetime, seed: int) -> float:
    """House consumption (W): base load, morning and evening peaks, noise and appliance spikes."""
    hour = local.hour + local.minute / 60 + local.second / 3600
    seconds = local.timestamp()
    base = 220 + 80 * smooth_noise(seed, 10, seconds, 3600)
    routine = (
        600 * _bump(hour, 7.3, 0.8)
        + 250 * _bump(hour, 12.5, 1.5)
        + 1300 * _bump(hour, 18.3, 1.4)
        + 300 * _bump(hour, 21.5, 1.2)
    )
    wobble = 1 + 0.6 * (smooth_noise(seed, 11, seconds, 120) - 0.5)
    # One chance per 10 minutes of a kettle/oven/washer run of 2-8 minutes, likelier by day.
    bucket = math.floor(seconds / 600)
    awake = 0.25 if 7 <= hour < 22 else 0.03
    appliance = 0.0
    if hash_unit(seed, 12, bucket) < awake and seconds - bucket * 600 < 120 + 360 * hash_unit(seed, 13, bucket):
        appliance = 1800 + 1200 * hash_unit(seed, 14, bucket)
    return base + routine * wobble + appliance


def grid_voltage(moment: datetime, seed: int) -> float:
    seconds = moment.timestamp()
    return 240.5 + 6 * (smooth_noise(seed, 20, seconds, 300) - 0.5) + 1.0 * (smooth_noise(seed, 21, seconds, 7) - 0.5)


def grid_frequency(moment: datetime, seed: int) -> float:
    return 50.0 + 0.12 * (smooth_noise(seed, 22, moment.timestamp(), 45) - 0.5)


def ambient_temperature(local: datetime) -> float:
    """Air temperature (°C) where the inverter and batteries hang: a garage wall."""
    season = math.cos(2 * math.pi * (local.timetuple().tm_yday - 200) / 365)
    hour = local.hour + local.minute / 60
    return 14 + 5 * season + 2.5 * _bump(hour, 15, 4)


# --------------------------------------------------------------------------------------
# Controls, decoded from holding registers
# --------------------------------------------------------------------------------------
