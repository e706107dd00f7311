"""Shading the sky: gradient from the horizon up, a flat cloud layer, and the sun's glow."""
from __future__ import annotations

import numpy as np

from .conditions import _Conditions
from .noise import _value_noise


def _shade_sky(cond: _Conditions, dx: np.ndarray, dy: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Sky colour along world directions (dx, dy horizontal, up vertical; not normalised)."""
    norm = np.sqrt(dx * dx + dy * dy + up * up)
    el = np.clip(up / norm, 0, 1)
    grad = np.sqrt(el)[:, None]
    out = cond.sky_horizon[None] * (1 - grad) + cond.sky_top[None] * grad
    # clouds on a flat layer, so they shrink and crowd towards the horizon
    k = 1.0 / np.maximum(el, 0.03)
    hx, hy = dx / norm * k, dy / norm * k
    n = (_value_noise(hx * 1.3, hy * 1.3, cond.cloud_seed) * 0.65
         + _value_noise(hx * 4.1, hy * 4.1, cond.cloud_seed + 1) * 0.35)
    cover = np.clip((n - (1 - cond.cloud_cover)) * 3.0, 0, 1) * np.clip(el * 8, 0, 1)
    cloud = np.array([0.93, 0.93, 0.94], np.float32) if cond.weather == "clear" else cond.sky_horizon * 0.92
    out = out * (1 - cover[:, None]) + cloud[None] * cover[:, None]
    if cond.weather in ("clear", "hazy"):
        cos_sun = (dx * cond.sun[0] + dy * cond.sun[1] + up * cond.sun[2]) / norm
        glow = np.exp((cos_sun - 1) * 40.0) * 0.5 + np.exp((cos_sun - 1) * 2000.0)
        out = out + glow[:, None] * cond.sun_rgb[None]
    return out.astype(np.float32)
