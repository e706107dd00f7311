"""Rows of street trees along some streets: fixed features of the scene, like its buildings."""
from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString

from .constants import KERB_WIDTH
from .geodata import _Street
from .ground_rasters import _grid_bilinear, _grid_lookup
from .noise import _rng
from .scene import Scene


def _place_trees(scene: Scene, streets: list[_Street]) -> None:
    """Rows of street trees on some streets, fixed by (seed, position)."""
    rows = []
    for street in streets:
        if not street.drivable or street.half < 2.5:
            continue
        start = street.coords[0]
        rng = _rng(scene.seed, 0x7EE, int(round(start[0])), int(round(start[1])))
        if rng.random() > 0.4:
            continue
        line = LineString(street.coords)
        spacing = rng.uniform(8.0, 12.0)
        offset = street.half + KERB_WIDTH + rng.uniform(1.0, 1.6)
        for pos in np.arange(rng.uniform(2, spacing), line.length, spacing):
            a, b = line.interpolate(max(pos - 0.5, 0)), line.interpolate(min(pos + 0.5, line.length))
            t = np.array([b.x - a.x, b.y - a.y])
            t /= max(np.hypot(*t), 1e-9)
            p = np.array(line.interpolate(pos).coords[0])
            for side in (1.0, -1.0):
                q = p + side * offset * np.array([-t[1], t[0]])
                r = _rng(scene.seed, 0x7EF, int(round(q[0] * 4)), int(round(q[1] * 4)))
                rows.append((q[0], q[1], r.uniform(2.0, 3.0), r.uniform(1.8, 3.2), r.integers(1 << 30)))
    if not rows:
        return
    trees = np.array(rows, dtype=float)
    # on the sidewalk: not in buildings, not on any carriageway (other streets' crossings)
    occupied = _grid_lookup(scene, scene.building_grid, trees[:, 0], trees[:, 1], False)
    edge = _grid_bilinear(scene, scene.road_edge, trees[:, 0], trees[:, 1])
    keep = ~occupied & (edge > KERB_WIDTH + 0.6)
    if scene.tree is not None:
        pts = shapely.points(trees[:, :2])
        near = scene.tree.query(pts, predicate="dwithin", distance=1.0)
        keep[np.unique(near[0])] = False
    scene.trees = trees[keep]
