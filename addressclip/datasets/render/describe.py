"""What a view shows, for captions (`info`): visible buildings nearest first with their appearance, counts of
cars, trees and people, whether the road and filler buildings are in view."""
from __future__ import annotations

from typing import Any

import numpy as np

from .conditions import _Conditions
from .constants import MAX_INFO_BUILDINGS, MIN_BUILDING_COVERAGE, MIN_OBJECT_COVERAGE
from .scene import Scene
from .shade_ground import G_ROAD
from .surfaces import E_BUILDING, E_CAR, E_PERSON, E_TREE, _Capture


def _describe(scene: Scene, cap: _Capture, cond: _Conditions, labels: np.ndarray, level: np.ndarray,
              depth: np.ndarray) -> dict[str, Any]:
    """What is visible, for captions: buildings (nearest first), counts of objects, road, filler."""
    total = labels.size
    flat = labels.ravel()
    counts = np.bincount(flat[flat >= 0], minlength=len(cap.ent_kind)) if len(cap.ent_kind) else np.zeros(0, int)
    cover = counts / total
    b_ent = np.flatnonzero((cap.ent_kind == E_BUILDING) & (cover >= MIN_BUILDING_COVERAGE))
    # nearest first, by the nearest visible pixel (on the level canvas, before any pitch warp)
    lv, dv = level.ravel(), depth.ravel()
    obj = lv >= 0
    # float32 like the depths: ufunc.at then takes numpy's fast path (30x faster than casting to float64)
    nearest = np.full(len(cap.ent_kind), np.inf, np.float32)
    np.minimum.at(nearest, lv[obj], dv[obj])
    nearest = nearest[b_ent]
    buildings = []
    for e in b_ent[np.argsort(nearest, kind="stable")][:MAX_INFO_BUILDINGS]:
        b = int(cap.ent_ref[e])
        f = scene.facades[b]
        buildings.append({"id": scene.building_ids[b], "kind": f.kind, "levels": int(f.levels),
                          "colour": f.colour, "material": f.material, "shopfront": bool(f.shopfront),
                          "coverage": round(float(cover[e]), 4)})
    seen = cover >= MIN_OBJECT_COVERAGE
    filler = (cap.ent_kind == E_BUILDING) & (counts > 0)
    filler[filler] = scene.is_filler[cap.ent_ref[filler]]
    return {
        "weather": cond.weather,
        "time_of_day": cond.time_of_day,
        "buildings": buildings,
        "cars": int((seen & (cap.ent_kind == E_CAR)).sum()),
        "trees": int((seen & (cap.ent_kind == E_TREE)).sum()),
        "pedestrians": int((seen & (cap.ent_kind == E_PERSON)).sum()),
        "road_visible": bool((flat == G_ROAD).sum() / total >= 0.01),
        "synthetic_fill": bool((cover[filler] >= MIN_OBJECT_COVERAGE).any()),
    }
