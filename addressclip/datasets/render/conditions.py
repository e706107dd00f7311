"""Capture conditions: weather, time of day, sun, sky colours, fog, exposure, foliage tone and how busy the
street is, drawn from (scene seed, capture seed); and the light they cast on a surface."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .noise import _rng

WEATHERS = ("clear", "overcast", "hazy", "rainy")
TIMES_OF_DAY = ("morning", "midday", "afternoon", "evening")


@dataclass(frozen=True)
class _Conditions:
    weather: str
    time_of_day: str
    sun: np.ndarray            # unit vector towards the sun (east, north, up)
    sun_rgb: np.ndarray
    ambient: float             # light from the sky, on every surface
    direct: float              # sunlight, on surfaces facing the sun
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    fog_rgb: np.ndarray
    visibility: float          # metres over which fog reaches 63%
    exposure: float
    wet: bool
    cloud_cover: float
    cloud_seed: int
    foliage: np.ndarray        # tree crown colour this capture (season)
    busy: float                # 0..1: how many people and parked cars


@functools.lru_cache(maxsize=8)
def _conditions(scene_seed: int, capture_seed: int) -> _Conditions:
    """Weather, time of day, sun and sky for one capture (kept for the capture's other views; read-only)."""
    rng = _rng(scene_seed, capture_seed, 0xC0DE)
    weather = WEATHERS[int(rng.choice(4, p=[0.4, 0.3, 0.15, 0.15]))]
    tod = TIMES_OF_DAY[int(rng.integers(4))]
    elev = {"morning": (8, 22), "midday": (35, 50), "afternoon": (20, 35), "evening": (3, 10)}[tod]
    azim = {"morning": (80, 130), "midday": (160, 200), "afternoon": (210, 250), "evening": (260, 300)}[tod]
    el, az = math.radians(rng.uniform(*elev)), math.radians(rng.uniform(*azim))
    sun = np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)], np.float32)
    sun_rgb = {"morning": (1.0, 0.93, 0.84), "midday": (1.0, 0.99, 0.96), "afternoon": (1.0, 0.96, 0.9),
               "evening": (1.0, 0.74, 0.52)}[tod]
    ambient, direct, vis = {"clear": (0.55, 0.62, 1200.0), "overcast": (0.86, 0.08, 500.0),
                            "hazy": (0.72, 0.3, 160.0), "rainy": (0.66, 0.0, 190.0)}[weather]
    top, horizon = {
        "clear": ((62, 118, 196), (172, 198, 224)), "overcast": ((150, 154, 160), (196, 198, 200)),
        "hazy": ((168, 184, 200), (214, 214, 208)), "rainy": ((100, 106, 114), (148, 150, 154)),
    }[weather]
    top, horizon = np.array(top, np.float32) / 255, np.array(horizon, np.float32) / 255
    if tod == "evening" and weather in ("clear", "hazy"):
        top, horizon = top * np.array([0.8, 0.8, 0.9]), np.array([0.95, 0.72, 0.55], np.float32)
    greens = [(58, 98, 44), (72, 110, 50), (90, 112, 48), (120, 118, 52)]      # summer to early autumn
    foliage = np.array(greens[int(rng.choice(4, p=[.4, .3, .2, .1]))], np.float32) / 255
    cond = _Conditions(
        weather=weather, time_of_day=tod, sun=sun, sun_rgb=np.array(sun_rgb, np.float32), ambient=ambient,
        direct=direct, sky_top=top.astype(np.float32), sky_horizon=horizon.astype(np.float32),
        fog_rgb=horizon.astype(np.float32), visibility=vis * rng.uniform(0.8, 1.25),
        exposure=float(rng.uniform(0.88, 1.12)) * (0.88 if weather == "rainy" else 1.0), wet=weather == "rainy",
        cloud_cover={"clear": 0.35, "overcast": 0.9, "hazy": 0.5, "rainy": 1.0}[weather] * rng.uniform(0.6, 1.0),
        cloud_seed=int(rng.integers(1 << 30)), foliage=foliage, busy=float(rng.uniform(0.2, 1.0)),
    )
    for value in vars(cond).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return cond


def _light(cond: _Conditions, lambert: np.ndarray) -> np.ndarray:
    """RGB light on a surface: sky light plus sunlight times its cosine factor."""
    sky = np.array([0.94, 0.97, 1.04], np.float32) if cond.weather == "clear" else np.ones(3, np.float32)
    base, direct = cond.ambient * sky, cond.direct * lambert
    # a column at a time: numpy broadcasts an (n, 1) by (1, 3) product ~5x slower than three (n,) products
    light = np.empty((len(direct), 3), np.result_type(base, direct, cond.sun_rgb))
    for k in range(3):
        light[:, k] = base[k] + direct * cond.sun_rgb[k]
    return light


def _wall_lambert(cond: _Conditions, normal: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, normal @ cond.sun[:2]).astype(np.float32)
