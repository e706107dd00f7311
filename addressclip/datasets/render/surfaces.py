"""Surfaces: every vertical face that can be hit by a column ray (building walls, car boxes, camera-facing
billboards for trees and people), gathered for one view and culled to its frustum."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from shapely.geometry import Point

from .camera import Camera
from .cars_and_people import _parked_cars, _pedestrians
from .conditions import _Conditions
from .constants import NEAR, QUERY_RADIUS
from .noise import _rng
from .scene import Scene

K_WALL, K_CAR, K_CABIN, K_TRUNK, K_CROWN, K_PERSON = range(6)
E_BUILDING, E_CAR, E_TREE, E_PERSON = range(4)
_ALPHA_KINDS = (K_CROWN, K_PERSON)       # billboards with a cut-out shape


@dataclass
class _Surfaces:
    a: np.ndarray          # (S, 2) start, relative to the camera
    e: np.ndarray          # (S, 2) end - start
    zb: np.ndarray         # bottom and top heights (m)
    zt: np.ndarray
    kind: np.ndarray       # K_*
    entity: np.ndarray     # index into the capture's entity table
    normal: np.ndarray     # (S, 2) outward normal (billboards: towards the camera)
    role: np.ndarray       # cars: 0 side, 1 front, 2 rear, 3 top (back face)
    u0: np.ndarray         # offset of the surface within its facade run (m)
    run: np.ndarray        # length of that run (m)

    @staticmethod
    def concat(parts: Sequence["_Surfaces"]) -> "_Surfaces":
        return _Surfaces(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Surfaces.__dataclass_fields__))


def _wall_surfaces(scene: Scene, cam: Camera, b_idx: np.ndarray, entity0: int, eye: float) -> _Surfaces:
    """Walls of the given buildings (sorted indices), relative to the camera, front faces only."""
    starts, ends = scene.b_wall_start[b_idx], scene.b_wall_end[b_idx]
    counts = ends - starts
    w = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    xy = scene.w_xy[w] - [cam.x, cam.y, cam.x, cam.y]
    a, e, normal = xy[:, :2], xy[:, 2:] - xy[:, :2], scene.w_normal[w]
    owner = scene.w_building[w]
    # back faces are hidden by the front ones unless the building is lower than the eye (its roof shows)
    front = (normal * (a + e / 2)).sum(1) < 0
    keep = front | (scene.b_height[owner] < eye + 0.2)
    local = np.searchsorted(b_idx, owner)          # b_idx is sorted
    n = int(keep.sum())
    return _Surfaces(a[keep], e[keep], np.zeros(n), scene.b_height[owner][keep].astype(float),
                     np.full(n, K_WALL), entity0 + local[keep], normal[keep], np.where(front[keep], 0, 3),
                     scene.w_u0[w][keep], scene.w_run[w][keep])


def _box_surfaces(centre: np.ndarray, axis: np.ndarray, length: np.ndarray, width: np.ndarray,
                  zb: np.ndarray, zt: np.ndarray, kind: int, entity: np.ndarray) -> _Surfaces:
    """Four walls per oriented box, counter-clockwise: front, left side, rear, right side."""
    side = np.stack([-axis[:, 1], axis[:, 0]], 1)
    fl, sw = (axis * (length / 2)[:, None]), (side * (width / 2)[:, None])
    corners = np.stack([centre + fl - sw, centre + fl + sw, centre - fl + sw, centre - fl - sw], 1)   # (n,4,2)
    a = corners.reshape(-1, 2)
    e = (np.roll(corners, -1, axis=1) - corners).reshape(-1, 2)
    normal = np.stack([e[:, 1], -e[:, 0]], 1) / np.maximum(np.hypot(*e.T), 1e-9)[:, None]
    role = np.tile([1, 0, 2, 0], len(centre))
    front = (normal * (a + e / 2)).sum(1) < 0
    rep = lambda v: np.repeat(v, 4)
    return _Surfaces(a, e, rep(zb), rep(zt), np.full(len(a), kind), rep(entity), normal, np.where(front, role, 3),
                     np.zeros(len(a)), np.hypot(*e.T))


def _billboards(pos: np.ndarray, width: np.ndarray, zb: np.ndarray, zt: np.ndarray, kind: int,
                entity: np.ndarray) -> _Surfaces:
    """Camera-facing vertical quads (trees, people): u runs left to right in the image."""
    dist = np.maximum(np.hypot(*pos.T), 1e-6)
    right = np.stack([pos[:, 1], -pos[:, 0]], 1) / dist[:, None]
    a = pos - right * (width / 2)[:, None]
    return _Surfaces(a, right * width[:, None], zb, zt, np.full(len(pos), kind), entity, -pos / dist[:, None],
                     np.zeros(len(pos), int), np.zeros(len(pos)), width)


@dataclass
class _Capture:
    """Everything drawn in one view besides ground and sky."""

    surfaces: _Surfaces
    ent_kind: np.ndarray       # E_* per entity
    ent_ref: np.ndarray        # index into scene buildings / cars / scene.trees / people
    cars: dict[str, np.ndarray]
    people: dict[str, np.ndarray]
    # per-surface shape parameters for billboards (crown radius / person height)
    shape: np.ndarray


def _in_frustum(s: _Surfaces, fwd: np.ndarray, right: np.ndarray, tan_half: float) -> np.ndarray:
    """Surfaces not wholly behind the near plane or outside a side plane of the view."""
    p0, p1 = s.a, s.a + s.e
    z0, z1, x0, x1 = p0 @ fwd, p1 @ fwd, p0 @ right, p1 @ right
    behind = (z0 < NEAR) & (z1 < NEAR)
    out_r = (x0 > z0 * tan_half) & (x1 > z1 * tan_half)
    out_l = (x0 < -z0 * tan_half) & (x1 < -z1 * tan_half)
    return ~(behind | out_r | out_l)


def _capture_objects(scene: Scene, cam: Camera, capture_seed: int, cond: _Conditions, fwd: np.ndarray,
                     right: np.ndarray, tan_half: float) -> _Capture:
    """Every surface this view can see: nearby buildings' walls, parked cars, street trees, people."""
    surf, ent_kind, ent_ref, cars, people = _nearby_objects(scene, cam, capture_seed, cond)
    keep = _in_frustum(surf, fwd, right, tan_half)
    surf = _Surfaces(*(getattr(surf, f)[keep] for f in _Surfaces.__dataclass_fields__))
    shape = np.zeros(len(surf.kind))
    crown = surf.kind == K_CROWN
    shape[crown] = scene.trees[ent_ref[surf.entity[crown]], 3]
    person = surf.kind == K_PERSON
    shape[person] = surf.zt[person]
    return _Capture(surf, ent_kind, ent_ref, cars, people, shape)


def _nearby_objects(scene: Scene, cam: Camera, capture_seed: int, cond: _Conditions) -> tuple:
    """The surfaces around the camera before the view's frustum culls them, with their entities, cars and people:
    the same for every heading. The dataset builder renders a place's headings one after another, so the last
    place's objects are kept on the scene (read-only) and its other views reuse them (3 of every 4 views)."""
    key = (capture_seed, cam.x, cam.y, cam.height, cond.busy)
    cached = scene.nearby_objects  # read once: another thread rendering this scene may replace it
    if cached is not None and cached[0] == key:
        return cached[1]
    # not seeded by heading, so views of one place with one capture seed agree on cars and people
    rng = _rng(scene.seed, capture_seed, 0x0B7, int(round(cam.x * 10)), int(round(cam.y * 10)))
    parts: list[_Surfaces] = []
    kinds, refs = [], []
    # buildings near the camera
    b_idx = np.zeros(0, np.int64)
    if scene.tree is not None:
        b_idx = np.sort(scene.tree.query(Point(cam.x, cam.y), predicate="dwithin", distance=QUERY_RADIUS))
    if len(b_idx):
        parts.append(_wall_surfaces(scene, cam, b_idx, 0, cam.height))
        kinds.append(np.full(len(b_idx), E_BUILDING))
        refs.append(b_idx)
    e0 = len(b_idx)
    # parked cars: lower body and cabin boxes
    cars = _parked_cars(scene, cam, rng, cond.busy)
    nc = len(cars["centre"])
    if nc:
        ent = e0 + np.arange(nc)
        rel = cars["centre"] - [cam.x, cam.y]
        parts.append(_box_surfaces(rel, cars["dir"], cars["length"], cars["width"], np.zeros(nc),
                                   np.full(nc, 0.95), K_CAR, ent))
        parts.append(_box_surfaces(rel - cars["dir"] * 0.25, cars["dir"], cars["length"] * 0.55,
                                   cars["width"] - 0.16, np.full(nc, 0.95), cars["height"], K_CABIN, ent))
        kinds.append(np.full(nc, E_CAR))
        refs.append(np.arange(nc))
    e0 += nc
    # street trees: trunk and crown billboards
    t_idx = np.zeros(0, np.int64)
    if len(scene.trees):
        d = np.hypot(scene.trees[:, 0] - cam.x, scene.trees[:, 1] - cam.y)
        t_idx = np.flatnonzero((d < 110.0) & (d > 1.0))
    nt = len(t_idx)
    if nt:
        tr = scene.trees[t_idx]
        rel = tr[:, :2] - [cam.x, cam.y]
        ent = e0 + np.arange(nt)
        base, radius = tr[:, 2], tr[:, 3]
        away = rel / np.hypot(*rel.T)[:, None] * 0.05       # trunk just behind its crown
        parts.append(_billboards(rel + away, np.full(nt, 0.32), np.zeros(nt), base + 0.9 * radius, K_TRUNK, ent))
        parts.append(_billboards(rel, 2 * radius, base, base + 2.3 * radius, K_CROWN, ent))
        kinds.append(np.full(nt, E_TREE))
        refs.append(t_idx)
    e0 += nt
    people = _pedestrians(scene, cam, rng, cond.busy)
    npp = len(people["pos"])
    if npp:
        rel = people["pos"] - [cam.x, cam.y]
        parts.append(_billboards(rel, np.full(npp, 0.62), np.zeros(npp), people["height"], K_PERSON,
                                 e0 + np.arange(npp)))
        kinds.append(np.full(npp, E_PERSON))
        refs.append(np.arange(npp))
    if parts:
        surf = _Surfaces.concat(parts)
    else:
        z = np.zeros(0)
        surf = _Surfaces(np.zeros((0, 2)), np.zeros((0, 2)), z, z, z.astype(int), z.astype(int), np.zeros((0, 2)),
                         z.astype(int), z, z)
    ent_kind = np.concatenate(kinds) if kinds else np.zeros(0, int)
    ent_ref = np.concatenate(refs) if refs else np.zeros(0, int)
    shared = [*(getattr(surf, f) for f in _Surfaces.__dataclass_fields__), ent_kind, ent_ref, *cars.values(),
              *people.values()]
    for array in shared:
        array.flags.writeable = False  # shared by the place's views: a stage that wrote into one would fail here
    objects = (surf, ent_kind, ent_ref, cars, people)
    scene.nearby_objects = (key, objects)
    return objects
