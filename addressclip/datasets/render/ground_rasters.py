"""Ground rasters over the scene, computed once: signed distance to the nearest carriageway and path edge,
nearest road segment, street crossings, building occupancy; and lookups into them."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .constants import SIDEWALK_WIDTH
from .geodata import _polygons
from .scene import Scene


def _rasterise(scene: Scene, max_cells: int = 12_000_000) -> None:
    """Ground rasters: signed distance to the nearest carriageway edge (and path edge), the nearest road
    segment, crossings, and building occupancy. Distances are exact at cell centres and interpolated per
    pixel, so kerbs stay smooth at a 1 m cell."""
    boxes = [g.bounds for g in scene.footprints] + [
        (min(s[0], s[2]), min(s[1], s[3]), max(s[0], s[2]), max(s[1], s[3])) for s in scene.r_xy]
    if not boxes:
        return
    b = np.array(boxes)
    x0, y0 = b[:, 0].min() - 60, b[:, 1].min() - 60
    x1, y1 = b[:, 2].max() + 60, b[:, 3].max() + 60
    cell = max(1.0, math.sqrt((x1 - x0) * (y1 - y0) / max_cells))
    w, h = int(math.ceil((x1 - x0) / cell)) + 1, int(math.ceil((y1 - y0) / cell)) + 1
    scene.grid_origin, scene.grid_cell = (x0, y0), cell
    _road_fields(scene, w, h)
    occ = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(occ)
    for geom in scene.footprints:
        for poly in _polygons(geom):
            draw.polygon([((x - x0) / cell, (y - y0) / cell) for x, y in poly.exterior.coords[:-1]], fill=1)
    scene.building_grid = np.asarray(occ, dtype=bool)


_FAR = 50.0   # distance-field value far from any road


def _road_fields(scene: Scene, w: int, h: int) -> None:
    """Exact per-cell fields, segment by segment over each segment's bounding box of cells."""
    x0, y0 = scene.grid_origin
    cell = scene.grid_cell
    edge = np.full((h, w), _FAR, np.float32)
    path = np.full((h, w), _FAR, np.float32)
    nearest = np.full((h, w), -1, np.int32)
    inside_key = np.full((h, w), -1, np.int32)
    junction = np.zeros((h, w), bool)
    # a street is its name (ways of one street overlap at their joints without forming a crossing)
    names = {n: i for i, n in enumerate(sorted({n for n in scene.street_names if n}))}
    keys = [names[n] if n else len(names) + li for li, n in enumerate(scene.street_names)]
    for i, (ax, ay, bx, by) in enumerate(scene.r_xy):
        half, drive = scene.r_half[i], scene.r_drivable[i]
        reach = half + (SIDEWALK_WIDTH + 3.0 if drive else 1.0)
        c0 = max(int((min(ax, bx) - reach - x0) / cell), 0)
        c1 = min(int((max(ax, bx) + reach - x0) / cell) + 2, w)
        r0 = max(int((min(ay, by) - reach - y0) / cell), 0)
        r1 = min(int((max(ay, by) + reach - y0) / cell) + 2, h)
        if c0 >= c1 or r0 >= r1:
            continue
        px = (x0 + (np.arange(c0, c1) + 0.5) * cell - ax)[None, :]
        py = (y0 + (np.arange(r0, r1) + 0.5) * cell - ay)[:, None]
        dx, dy = bx - ax, by - ay
        t = np.clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
        d = (np.hypot(px - t * dx, py - t * dy) - half).astype(np.float32)
        if not drive:
            np.minimum(path[r0:r1, c0:c1], d, out=path[r0:r1, c0:c1])
            continue
        blk = edge[r0:r1, c0:c1]
        better = d < blk
        blk[better] = d[better]
        nearest[r0:r1, c0:c1][better] = i
        inside = d < 0
        kb = inside_key[r0:r1, c0:c1]
        junction[r0:r1, c0:c1] |= inside & (kb >= 0) & (kb != keys[scene.r_line[i]])
        kb[inside & (kb < 0)] = keys[scene.r_line[i]]
    scene.road_edge, scene.path_edge = edge.astype(np.float16), path.astype(np.float16)
    scene.road_grid, scene.junction_grid = nearest, junction


def _grid_lookup(scene: Scene, grid: np.ndarray, x: np.ndarray, y: np.ndarray, fill: Any) -> np.ndarray:
    col = np.floor((x - scene.grid_origin[0]) / scene.grid_cell).astype(np.int64)
    row = np.floor((y - scene.grid_origin[1]) / scene.grid_cell).astype(np.int64)
    inside = (col >= 0) & (row >= 0) & (col < grid.shape[1]) & (row < grid.shape[0])
    out = np.full(x.shape, fill, dtype=grid.dtype)
    out[inside] = grid[row[inside], col[inside]]
    return out


def _grid_bilinear(scene: Scene, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Field sampled at cell centres, interpolated at points; _FAR outside the raster."""
    fx = (x - scene.grid_origin[0]) / scene.grid_cell - 0.5
    fy = (y - scene.grid_origin[1]) / scene.grid_cell - 0.5
    ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    wx, wy = (fx - ix).astype(np.float32), (fy - iy).astype(np.float32)
    h, w = grid.shape
    inside = (ix >= 0) & (iy >= 0) & (ix < w - 1) & (iy < h - 1)
    corner = np.where(inside, iy * w + ix, 0)  # flat index of the lower-left cell: `take` gathers twice as fast
    flat = grid.reshape(-1)
    v00, v01 = flat.take(corner).astype(np.float32), flat.take(corner + 1).astype(np.float32)
    v10, v11 = flat.take(corner + w).astype(np.float32), flat.take(corner + w + 1).astype(np.float32)
    out = (v00 + (v01 - v00) * wx) * (1 - wy) + (v10 + (v11 - v10) * wx) * wy
    return np.where(inside, out, np.float32(_FAR))


def _segment_distance(scene: Scene, seg: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points to their road segment (seg = -1 gives inf) and the arc length along the street."""
    s = np.maximum(seg, 0)
    if len(scene.r_xy) == 0:
        return np.full(x.shape, np.inf), np.zeros(x.shape)
    ax, ay, bx, by = (scene.r_xy[s, k] for k in range(4))
    dx, dy = bx - ax, by - ay
    l2 = np.maximum(dx * dx + dy * dy, 1e-9)
    tt = np.clip(((x - ax) * dx + (y - ay) * dy) / l2, 0.0, 1.0)
    dist = np.hypot(x - ax - tt * dx, y - ay - tt * dy)
    dist = np.where(seg >= 0, dist, np.inf)
    return dist, scene.r_arc[s] + tt * np.sqrt(l2)
