"""The scene as arrays for vectorised rendering: per-building appearance, wall segments (outward normals,
facade runs), road centreline segments, and the buildings' spatial index."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from shapely import STRtree
from shapely.geometry.polygon import orient

from .facades import _MAT, _Facade
from .geodata import _polygons, _Street
from .noise import _stable_hash
from .scene import Scene


def _index_buildings(scene: Scene, items: list[tuple[str, Any, _Facade]], n_real: int) -> None:
    """Per-building arrays, wall segments and the spatial index."""
    scene.building_ids = [bid for bid, _, _ in items]
    scene.footprints = [geom for _, geom, _ in items]
    scene.facades = [f for _, _, f in items]
    n = len(items)
    scene.is_filler = np.arange(n) >= n_real
    fac = scene.facades
    scene.b_rgb = np.array([f.rgb for f in fac], np.float32).reshape(n, 3)
    scene.b_trim = np.array([f.trim for f in fac], np.float32).reshape(n, 3)
    scene.b_sign = np.array([f.sign for f in fac], np.float32).reshape(n, 3)
    scene.b_height = np.array([f.height for f in fac], np.float32)
    scene.b_floor_h = np.array([f.height / f.levels for f in fac], np.float32)
    scene.b_ground_h = np.array([f.ground_h for f in fac], np.float32)
    scene.b_style = np.array([f.style for f in fac], np.int8)
    scene.b_material = np.array([_MAT[f.material] for f in fac], np.int8)
    scene.b_shop = np.array([f.shopfront for f in fac], bool)
    scene.b_win = np.array([(f.win_pitch, f.win_w, f.win_h, f.sill, f.shop_pitch) for f in fac],
                           np.float32).reshape(n, 5)
    scene.b_seed = np.array([_stable_hash(b) & 0x7FFFFFFF for b in scene.building_ids], np.int64)
    walls, owners, u0s, runs, starts, ends = [], [], [], [], [], []
    count = 0
    for i, geom in enumerate(scene.footprints):
        starts.append(count)
        for poly in _polygons(geom):
            poly = orient(poly, sign=1.0)      # exterior counter-clockwise, holes clockwise
            for ring in [poly.exterior, *poly.interiors]:
                c = np.asarray(ring.coords, dtype=float)[:, :2]
                seg = np.hstack([c[:-1], c[1:]])
                seg = seg[np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]) > 0.05]
                if len(seg) < 3:
                    continue
                u0, run = _facade_runs(seg)
                walls.append(seg)
                owners.append(np.full(len(seg), i))
                u0s.append(u0)
                runs.append(run)
                count += len(seg)
        ends.append(count)
    scene.w_xy = np.vstack(walls) if walls else np.zeros((0, 4))
    scene.w_building = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    scene.w_u0 = np.concatenate(u0s) if u0s else np.zeros(0)
    scene.w_run = np.concatenate(runs) if runs else np.zeros(0)
    d = scene.w_xy[:, 2:] - scene.w_xy[:, :2]
    length = np.hypot(d[:, 0], d[:, 1])
    # counter-clockwise exterior: the outside is on the right of the direction of travel
    scene.w_normal = np.stack([d[:, 1], -d[:, 0]], axis=1) / np.maximum(length, 1e-9)[:, None]
    scene.b_wall_start, scene.b_wall_end = np.array(starts, np.int64), np.array(ends, np.int64)
    scene.tree = STRtree(scene.footprints) if n else None


def _facade_runs(seg: np.ndarray, max_turn: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """Where each wall starts within its run of nearly collinear walls, and the run's length.

    OSM rings split straight facades at shared nodes and draw curved ones as many short walls; laying
    windows out per run keeps them aligned across such splits instead of restarting at every node.
    """
    d = seg[:, 2:] - seg[:, :2]
    length = np.hypot(d[:, 0], d[:, 1])
    angle = np.arctan2(d[:, 1], d[:, 0])
    turn = np.abs((angle - np.roll(angle, 1) + np.pi) % (2 * np.pi) - np.pi)
    breaks = turn > math.radians(max_turn)
    n = len(seg)
    if not breaks.any():                                   # a smooth ring: one run all round
        return np.cumsum(length) - length, np.full(n, length.sum())
    order = (np.arange(n) + int(np.argmax(breaks))) % n    # start at a break
    run_id = np.cumsum(breaks[order]) - 1
    lo = length[order]
    before = np.cumsum(lo) - lo
    run_start = before[np.flatnonzero(breaks[order])]
    u0, run = np.empty(n), np.empty(n)
    u0[order] = before - run_start[run_id]
    run[order] = np.bincount(run_id, weights=lo)[run_id]
    return u0, run


def _index_roads(scene: Scene, streets: list[_Street]) -> None:
    segs, half, drivable, main, arc, line_ids = [], [], [], [], [], []
    for li, s in enumerate(streets):
        c = s.coords
        seg = np.hstack([c[:-1], c[1:]])
        lengths = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
        keep = lengths > 0.01
        segs.append(seg[keep])
        arc.append((np.cumsum(lengths) - lengths)[keep])
        k = int(keep.sum())
        half.append(np.full(k, s.half))
        drivable.append(np.full(k, s.drivable))
        main.append(np.full(k, s.main))
        line_ids.append(np.full(k, li))
    scene.street_names = [s.name for s in streets]
    if segs:
        scene.r_xy, scene.r_half = np.vstack(segs), np.concatenate(half)
        scene.r_drivable, scene.r_main = np.concatenate(drivable), np.concatenate(main)
        scene.r_arc, scene.r_line = np.concatenate(arc), np.concatenate(line_ids)
