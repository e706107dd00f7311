"""Reading the input GeoDataFrames: building footprints and tags (each building's appearance drawn from
(scene seed, building id)), and street centrelines with their carriageway width and class."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from shapely.geometry import MultiPolygon, Polygon

from .facades import _KIND, _MATERIAL_ALIASES, _SHOP_AMENITIES, _Facade, _facade
from .noise import _rng, _stable_hash
from .osm_tags import _MAIN_ROADS, _first_number, _tag, is_drivable, road_width


def _polygons(geom: Any) -> list[Polygon]:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        parts = [geom]
    elif isinstance(geom, MultiPolygon):
        parts = list(geom.geoms)
    else:
        parts = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]
    out = []
    for part in parts:
        if not part.is_valid:
            part = part.buffer(0)
            if isinstance(part, MultiPolygon):
                out.extend(p for p in part.geoms if p.area >= 4.0)
                continue
        if part.area >= 4.0:
            out.append(part)
    return out


def _column(frame: Any, name: str) -> list[Any]:
    return list(frame[name]) if name in getattr(frame, "columns", ()) else [None] * len(frame)


def _real_buildings(buildings: Any, seed: int) -> list[tuple[str, Polygon | MultiPolygon, _Facade]]:
    """Read footprints and tags; draw each building's appearance from (seed, id)."""
    if buildings is None or len(buildings) == 0:
        return []
    tags, levels_col = _column(buildings, "building"), _column(buildings, "building:levels")
    height_col = _column(buildings, "height")
    ids, mat_col = _column(buildings, "id"), _column(buildings, "building:material")
    shop_col, amenity_col = _column(buildings, "shop"), _column(buildings, "amenity")
    out, seen = [], set()
    for i, geom in enumerate(buildings.geometry):
        parts = _polygons(geom)
        if not parts:
            continue
        bid = _tag(ids[i])
        bid = str(int(float(bid))) if bid and re.fullmatch(r"\d+(\.0+)?", bid) else (bid or f"b{i}")
        while bid in seen:
            bid += "'"
        seen.add(bid)
        tag = (_tag(tags[i]) or "yes").lower()
        kind = _KIND.get(tag, "building")
        levels = _first_number(levels_col[i])
        height = _first_number(height_col[i])
        material = _MATERIAL_ALIASES.get((_tag(mat_col[i]) or "").lower())
        shop_hint = True if (_tag(shop_col[i]) or _tag(amenity_col[i]) in _SHOP_AMENITIES) else None
        facade = _facade(_rng(seed, _stable_hash(bid)), kind, int(round(levels)) if levels else None,
                         height if height and height > 0 else None, material, shop_hint)
        geom_out = parts[0] if len(parts) == 1 else MultiPolygon(parts)
        out.append((bid, geom_out, facade))
    return out


@dataclass
class _Street:
    coords: np.ndarray     # (n, 2)
    half: float            # half the carriageway width
    drivable: bool
    main: bool
    name: str | None


def _streets(streets: Any) -> list[_Street]:
    if streets is None or len(streets) == 0:
        return []
    names, highways = _column(streets, "name"), _column(streets, "highway")
    out = []
    for i, geom in enumerate(streets.geometry):
        if geom is None or geom.is_empty:
            continue
        lines = list(geom.geoms) if hasattr(geom, "geoms") else [geom]
        highway = (_tag(highways[i]) or "road").lower()
        for line in lines:
            coords = np.asarray(line.coords, dtype=float)[:, :2]
            if len(coords) >= 2 and line.length > 0.5:
                out.append(_Street(coords, road_width(highway) / 2, is_drivable(highway),
                                   highway in _MAIN_ROADS, _tag(names[i])))
    return out
