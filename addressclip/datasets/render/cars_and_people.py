"""Per-capture objects: cars parked along the kerbs and pedestrians on the sidewalks near the camera, from
(scene seed, capture seed, camera position)."""
from __future__ import annotations

import math

import numpy as np

from .camera import Camera
from .constants import KERB_WIDTH, SIDEWALK_WIDTH
from .ground_rasters import _grid_bilinear, _grid_lookup
from .noise import _hash01
from .scene import Scene

_CAR_COLOURS = np.array([(232, 232, 230), (28, 30, 34), (120, 124, 128), (176, 180, 184), (40, 70, 130),
                         (150, 30, 30), (40, 80, 50), (100, 70, 50), (210, 170, 40)], np.float32) / 255
_CAR_WEIGHTS = np.array([22, 18, 20, 15, 10, 8, 3, 2, 2], float)
_CLOTHES = np.array([(30, 30, 36), (60, 60, 70), (150, 150, 150), (40, 60, 110), (120, 30, 30), (200, 190, 170),
                     (70, 90, 60), (180, 120, 60), (230, 230, 230), (90, 40, 90)], np.float32) / 255
_SKIN = np.array([(240, 200, 170), (220, 170, 130), (170, 120, 80), (110, 75, 50)], np.float32) / 255


def _near_segments(scene: Scene, cx: float, cy: float, radius: float) -> np.ndarray:
    """Drivable road segments within `radius` metres of a point."""
    if len(scene.r_xy) == 0:
        return np.zeros(0, np.int64)
    p = np.array([cx, cy])
    a, b = scene.r_xy[:, :2], scene.r_xy[:, 2:]
    d = b - a
    t = np.clip(((p - a) * d).sum(1) / np.maximum((d * d).sum(1), 1e-9), 0, 1)
    dist = np.hypot(*(a + t[:, None] * d - p).T)
    return np.flatnonzero((dist < radius) & scene.r_drivable)


def _parked_cars(scene: Scene, cam: Camera, rng: np.random.Generator, busy: float) -> dict[str, np.ndarray]:
    """Cars parked along both kerbs of nearby streets (not at crossings, not in buildings)."""
    segs = _near_segments(scene, cam.x, cam.y, 90.0)
    segs = segs[scene.r_half[segs] >= 2.5]
    centres, dirs = [], []
    for i in segs:
        ax, ay, bx, by = scene.r_xy[i]
        length = math.hypot(bx - ax, by - ay)
        if length < 14.0:
            continue
        t = np.array([bx - ax, by - ay]) / length
        n = np.array([-t[1], t[0]])
        slots = np.arange(6.0, length - 6.0, 5.8)
        sides = (-1.0, 1.0)
        if scene.r_half[i] < 4.0:    # narrow street: parking on one side, fixed per segment
            sides = (-1.0,) if _hash01(np.array([int(ax)]), np.array([int(ay)]), scene.seed)[0] < 0.5 else (1.0,)
        for side in sides:
            offset = side * (scene.r_half[i] - 1.15)
            pos = slots + rng.uniform(-0.4, 0.4, len(slots))
            c = np.array([ax, ay]) + pos[:, None] * t + offset * n
            centres.append(c)
            dirs.append(np.repeat((t * -side)[None], len(c), axis=0))   # drive on the right
    if not centres:
        return {"centre": np.zeros((0, 2)), "dir": np.zeros((0, 2))}
    c, d = np.vstack(centres), np.vstack(dirs)
    keep = rng.random(len(c)) < 0.25 + 0.5 * busy
    # on the carriageway, not at crossings, not inside a building
    keep &= _grid_bilinear(scene, scene.road_edge, c[:, 0], c[:, 1]) < -0.3
    keep &= ~_grid_lookup(scene, scene.junction_grid, c[:, 0], c[:, 1], True)
    keep &= ~_grid_lookup(scene, scene.building_grid, c[:, 0], c[:, 1], False)
    keep &= np.hypot(c[:, 0] - cam.x, c[:, 1] - cam.y) > 4.0
    # none in line with the camera along its own street (the camera would stand in that parking lane)
    keep &= np.abs(d[:, 0] * (cam.y - c[:, 1]) - d[:, 1] * (cam.x - c[:, 0])) > 1.7
    c, d = c[keep], d[keep]
    n = len(c)
    return {
        "centre": c, "dir": d, "length": rng.uniform(3.9, 4.8, n), "width": rng.uniform(1.72, 1.86, n),
        "height": np.where(rng.random(n) < 0.15, rng.uniform(1.7, 1.95, n), rng.uniform(1.38, 1.52, n)),
        "rgb": _CAR_COLOURS[rng.choice(len(_CAR_COLOURS), n, p=_CAR_WEIGHTS / _CAR_WEIGHTS.sum())],
    }


def _pedestrians(scene: Scene, cam: Camera, rng: np.random.Generator, busy: float) -> dict[str, np.ndarray]:
    """People on the sidewalks of nearby streets."""
    segs = _near_segments(scene, cam.x, cam.y, 50.0)
    count = int(rng.poisson(6.0 * busy)) if len(segs) else 0
    if count == 0:
        return {"pos": np.zeros((0, 2))}
    ax, ay, bx, by = scene.r_xy[segs].T
    lengths = np.hypot(bx - ax, by - ay)
    pick = segs[rng.choice(len(segs), count, p=lengths / lengths.sum())]
    a, b = scene.r_xy[pick, :2], scene.r_xy[pick, 2:]
    t = (b - a) / np.maximum(np.hypot(*(b - a).T), 1e-9)[:, None]
    side = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    off = scene.r_half[pick] + KERB_WIDTH + rng.uniform(0.4, SIDEWALK_WIDTH - 0.4, count)
    pos = a + (b - a) * rng.random(count)[:, None] + (side * off)[:, None] * np.stack([-t[:, 1], t[:, 0]], 1)
    keep = ~_grid_lookup(scene, scene.building_grid, pos[:, 0], pos[:, 1], False)
    keep &= _grid_bilinear(scene, scene.road_edge, pos[:, 0], pos[:, 1]) > 0.3
    keep &= np.hypot(pos[:, 0] - cam.x, pos[:, 1] - cam.y) > 2.5
    n = count
    clothes = rng.choice(len(_CLOTHES), (n, 2))
    return {"pos": pos[keep], "height": rng.uniform(1.55, 1.92, n)[keep],
            "skin": _SKIN[rng.choice(len(_SKIN), n)][keep], "top": _CLOTHES[clothes[:, 0]][keep],
            "legs": _CLOTHES[clothes[:, 1]][keep]}
