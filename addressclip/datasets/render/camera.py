"""The camera (position, heading, pitch, eye height, field of view) and the level pinhole canvas a view is
rendered on; a pitched view is warped from that canvas (a homography)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    x: float                  # metres in the scene's metric CRS (UTM)
    y: float
    heading: float            # degrees clockwise from north (+y)
    pitch: float = 0.0        # degrees, + looks up
    height: float = 2.5       # eye height, metres
    fov: float = 90.0         # horizontal field of view, degrees

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit forward and right vectors in the ground plane."""
        h = math.radians(self.heading)
        return np.array([math.sin(h), math.cos(h)]), np.array([math.cos(h), -math.sin(h)])


@dataclass
class _Canvas:
    """A level (pitch 0) pinhole canvas; a pitched view is warped from it."""

    width: int
    height: int
    cx: float
    cy: float
    focal: float
    warp: tuple[float, ...] | None      # PIL perspective coefficients output -> canvas, or None


def _canvas(n: int, fov: float, pitch: float) -> _Canvas:
    """Level canvas covering an n x n view; for a pitched view also the warp back to it (a homography)."""
    focal = (n / 2) / math.tan(math.radians(fov) / 2)
    if abs(pitch) < 1e-6:
        return _Canvas(n, n, n / 2, n / 2, focal, None)
    th = math.radians(pitch)
    s, c = math.sin(th), math.cos(th)
    d_top, d_bot = -n / 2 * s + focal * c, n / 2 * s + focal * c      # forward part of the edge rows' rays
    if min(d_top, d_bot) < 0.1 * focal:
        raise ValueError(f"pitch {pitch} is too steep for a {fov} degree field of view")
    y_top = focal * (-n / 2 * c - focal * s) / d_top
    y_bot = focal * (n / 2 * c - focal * s) / d_bot
    half_w = focal * (n / 2) / min(d_top, d_bot)
    width, height = 2 * int(math.ceil(half_w)) + 2, int(math.ceil(y_bot - y_top)) + 2
    cx, cy = width / 2, -y_top + 1
    k = focal * c - n / 2 * s
    warp = (focal / k, cx * s / k, (cx * k - focal * n / 2) / k,
            0.0, (cy * s + focal * c) / k, (cy * k - focal * (n / 2 * c + focal * s)) / k,
            0.0, s / k)
    return _Canvas(width, height, cx, cy, focal, warp)
