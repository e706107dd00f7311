"""Procedural filler buildings on street stretches with no real building nearby: lots fixed by their
position, appearance by (scene seed, lot id); never on a road or near a real building."""
from __future__ import annotations

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry import LineString, MultiPolygon, Polygon

from .constants import FILLER_CLEARANCE, FILLER_GAP, SIDEWALK_WIDTH
from .facades import _Facade, _facade, _weighted_choice
from .geodata import _polygons, _Street
from .noise import _rng, _stable_hash


def _road_zones(streets: list[_Street]) -> list[Polygon]:
    """Carriageway plus sidewalk (paths: just the path) around each street: where nothing may be built."""
    return [LineString(s.coords).buffer(s.half + (SIDEWALK_WIDTH if s.drivable else 0.5)) for s in streets]


def _filler_lots(streets: list[_Street], real: list[Polygon | MultiPolygon], seed: int) -> list[Polygon]:
    """Procedural lots along street stretches with no real building within FILLER_GAP metres.

    Lots are rectangles on the chord of the street, set back by half the road width plus the sidewalk,
    with road zones cut out, so fillers never overlap a road. Sizes come from an RNG seeded by the lot's
    position, so the same data gives the same lots.
    """
    if not streets:
        return []
    real_tree = STRtree(real) if real else None
    zones = _road_zones(streets)
    zone_tree = STRtree(zones)
    placed: list[Polygon] = []
    grid: dict[tuple[int, int], list[int]] = {}
    for street in streets:
        if not street.drivable or street.half < 2.5:     # no lots along service roads and paths
            continue
        line = LineString(street.coords)
        setback = street.half + SIDEWALK_WIDTH + 0.5
        for side in (1.0, -1.0):
            pos = 0.0
            while pos < line.length - 8.0:
                p0 = line.interpolate(pos)
                rng = _rng(seed, 0xF111, int(round(p0.x * 2)), int(round(p0.y * 2)), int(side > 0))
                width, gap, depth = rng.uniform(11.0, 22.0), rng.uniform(0.0, 3.0), rng.uniform(10.0, 16.0)
                end = min(pos + width, line.length)
                lot = _lot(line, pos, end, side, setback, depth)
                pos = end + gap
                if lot is None:
                    continue
                if real_tree is not None and len(real_tree.query(lot, predicate="dwithin", distance=FILLER_CLEARANCE)):
                    continue
                frontage = LineString(list(lot.exterior.coords)[:2])
                if real_tree is not None and len(real_tree.query(frontage, predicate="dwithin", distance=FILLER_GAP)):
                    continue
                lot = _cut_roads(lot, zones, zone_tree)
                if lot is None or _overlaps_placed(lot, placed, grid):
                    continue
                key = (int(lot.centroid.x // 50), int(lot.centroid.y // 50))
                grid.setdefault(key, []).append(len(placed))
                placed.append(lot)
    return placed


def _lot(line: LineString, a: float, b: float, side: float, setback: float, depth: float) -> Polygon | None:
    """Rectangle beside the street between arc lengths a and b, or None where the street bends under it."""
    if b - a < 8.0:
        return None
    p0, p1 = np.array(line.interpolate(a).coords[0]), np.array(line.interpolate(b).coords[0])
    mid = np.array(line.interpolate((a + b) / 2).coords[0])
    chord = p1 - p0
    length = float(np.hypot(*chord))
    if length < 8.0:
        return None
    t = chord / length
    n = np.array([-t[1], t[0]]) * side       # towards the lot's side of the street
    if abs(float(np.dot(mid - p0, n))) > 1.5:  # street bends too much under this lot
        return None
    near0, near1 = p0 + n * setback, p1 + n * setback
    return Polygon([near0, near1, near1 + n * depth, near0 + n * depth])


def _cut_roads(lot: Polygon, zones: list[Polygon], zone_tree: STRtree) -> Polygon | None:
    """The lot minus every road zone it touches (largest piece), or None if too little is left."""
    hits = zone_tree.query(lot, predicate="intersects")
    if len(hits):
        cut = lot.difference(shapely.union_all([zones[i] for i in hits]).buffer(0.05))
        parts = _polygons(cut)
        if not parts:
            return None
        best = max(parts, key=lambda g: g.area)
        if best.area < 0.55 * lot.area:
            return None
        lot = shapely.simplify(best, 0.05)
    return lot if isinstance(lot, Polygon) and lot.is_valid and lot.area > 40 else None


def _overlaps_placed(lot: Polygon, placed: list[Polygon], grid: dict[tuple[int, int], list[int]]) -> bool:
    """Whether the lot overlaps a filler lot already placed (grid of 50 m cells)."""
    cx, cy = int(lot.centroid.x // 50), int(lot.centroid.y // 50)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for j in grid.get((cx + dx, cy + dy), ()):
                if placed[j].intersects(lot) and placed[j].intersection(lot).area > 0.5:
                    return True
    return False


def _filler_buildings(lots: list[Polygon], seed: int) -> list[tuple[str, Polygon, _Facade]]:
    """Filler buildings on the lots: id from the lot's position, appearance from (seed, id)."""
    out, seen = [], set()
    for lot in lots:
        c = lot.centroid
        bid = f"fill-{int(round(c.x))}_{int(round(c.y))}"
        while bid in seen:
            bid += "'"
        seen.add(bid)
        rng = _rng(seed, _stable_hash(bid))
        kind = _weighted_choice(rng, {"apartment building": 6, "building": 2.5, "office building": 1.5})
        levels = int(rng.integers(3, 8))
        out.append((bid, lot, _facade(rng, kind, levels, None, None, None)))
    return out
