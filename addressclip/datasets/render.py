"""Deterministic street-view renderer (numpy + Pillow only, no OpenGL).

Renders synthetic street-level views of a real city: building footprints extruded to their heights,
roads with kerbs, sidewalks and markings, sky, parked cars, trees and pedestrians. It is the image
source of the embedded (rendered, not photographed) datasets.

How it draws. With the camera level (pitch 0) every image column is a vertical plane through the eye,
so every scene object, all of which stand on vertical faces (building walls, car body sides, camera-
facing billboards for trees and people), cuts that column in one interval of rows. Per column we cast
one horizontal ray against all nearby faces (vectorised over columns x faces), keep the nearest few hits,
and for every pixel take the nearest hit whose interval covers it: exact occlusion, a per-pixel depth,
and the hit's position on its face (u along the wall, z up), which lets facades (windows, shop fronts,
cornices) be shaded per pixel in perspective. Pixels with no hit are ground (below the horizon) or sky.
A pitched view is a homography of a level one (pure rotation about the eye), so it is rendered level on a
larger canvas and warped.

Ground (road, kerb, sidewalk, centre lines) comes from distance fields rasterised once per scene: the
signed distance to the nearest carriageway edge at 1 m cells, interpolated per pixel.

Determinism: building appearance comes from (scene seed, building id), filler lots and street trees from
(scene seed, position): they are the city's and do not change between views. Parked cars and pedestrians
come from (scene seed, capture seed, camera position) (not the heading, so views of one place with one
capture seed agree); weather, time of day, light, fog, exposure and foliage tone from (scene seed, capture
seed). There is no global random state.

Use::

    scene = build_scene(buildings_gdf, streets_gdf, seed=0)          # metric CRS (UTM)
    image, info = render_view(scene, Camera(x, y, heading=90.0), size=128, capture_seed=7)
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import shapely
from PIL import Image, ImageDraw
from shapely import STRtree
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.geometry.polygon import orient

__version__ = "1.0"   # recorded in dataset cards; bump when the look of renders changes

__all__ = [
    "Camera", "Scene", "build_scene", "render_view", "road_width", "is_drivable",
    "MATERIALS", "WEATHERS", "TIMES_OF_DAY",
    "SIDEWALK_WIDTH", "FLOOR_HEIGHT", "QUERY_RADIUS", "FILLER_GAP", "FILLER_CLEARANCE",
]

FLOOR_HEIGHT = 3.2        # metres per storey, used when only building:levels is known
SIDEWALK_WIDTH = 3.0      # between the kerb and the building line
KERB_WIDTH = 0.25
QUERY_RADIUS = 150.0      # only buildings this close are drawn; fog hides the rest
NEAR = 0.3                # near-plane distance (m): nearer hits are clipped
MIN_HEIGHT = 3.0          # keeps roofs above the default eye height, so roofs never need drawing
MAX_LAYERS = 16           # nearest hits kept per image column
FILLER_GAP = 25.0         # a street stretch with no real building this close gets filler lots ...
FILLER_CLEARANCE = 8.0    # ... that keep this far from any real building
MAX_INFO_BUILDINGS = 6
MIN_BUILDING_COVERAGE = 0.003   # fraction of the image for a building to be listed in `info`
MIN_OBJECT_COVERAGE = 0.0005    # ... for a car, tree or person to be counted

# Full carriageway width (m) by OSM highway class.
_ROAD_WIDTH = {
    "motorway": 14.0, "trunk": 12.0, "primary": 12.0, "secondary": 10.0, "tertiary": 8.5,
    "unclassified": 7.0, "residential": 6.5, "living_street": 5.0, "service": 4.5, "road": 6.0,
    "busway": 7.0, "motorway_link": 6.0, "trunk_link": 6.0, "primary_link": 6.0, "secondary_link": 6.0,
    "tertiary_link": 6.0, "pedestrian": 6.0, "footway": 2.5, "path": 2.0, "cycleway": 2.5, "steps": 2.0,
    "track": 3.0, "bridleway": 2.0, "corridor": 2.0,
}
_DRIVABLE = {
    "motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential", "living_street",
    "service", "road", "busway", "motorway_link", "trunk_link", "primary_link", "secondary_link", "tertiary_link",
}
_MAIN_ROADS = {"motorway", "trunk", "primary", "secondary", "tertiary"}


def _tag(value: Any) -> str | None:
    """A clean string tag, or None for missing values (None, NaN, pandas NA, empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType":
        return None
    text = str(value).strip()
    return text or None


def road_width(highway: Any) -> float:
    """Carriageway width (m) for an OSM highway class; 6 m for unknown roads, 2.5 m for other ways."""
    tag = (_tag(highway) or "road").lower()
    return _ROAD_WIDTH.get(tag, 6.0 if tag in _DRIVABLE else 2.5)


def is_drivable(highway: Any) -> bool:
    return (_tag(highway) or "road").lower() in _DRIVABLE


def _first_number(value: Any) -> float | None:
    """First number in an OSM value such as '5', '3.5', '12 m', '5;6'."""
    text = _tag(value)
    if text is None:
        return None
    match = re.search(r"\d+(?:\.\d+)?", text.replace(",", "."))
    return float(match.group()) if match else None


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _rng(*keys: int) -> np.random.Generator:
    """A generator seeded by integer keys (any size or sign: mapped one-to-one to non-negative ints)."""
    return np.random.default_rng([2 * int(k) if k >= 0 else -2 * int(k) - 1 for k in keys])


# --------------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Building appearance
# --------------------------------------------------------------------------------------------------

MATERIALS = ("plaster", "brick", "stone", "glass", "wood", "concrete", "metal")
_MAT = {name: i for i, name in enumerate(MATERIALS)}
_MATERIAL_ALIASES = {
    "plaster": "plaster", "stucco": "plaster", "render": "plaster", "brick": "brick", "stone": "stone",
    "granite": "stone", "sandstone": "stone", "limestone": "stone", "marble": "stone", "glass": "glass",
    "wood": "wood", "timber": "wood", "timber_framing": "wood", "concrete": "concrete",
    "reinforced_concrete": "concrete", "cement_block": "concrete", "metal": "metal", "steel": "metal",
    "aluminium": "metal",
}

# Plain colour words with typical facade colours (0-255) per material: Nordic city palette.
_PALETTE: dict[str, list[tuple[str, tuple[int, int, int], float]]] = {
    "plaster": [("yellow", (226, 196, 112), 3), ("beige", (220, 204, 170), 3), ("white", (232, 230, 220), 2),
                ("pink", (222, 168, 156), 1.5), ("orange", (214, 150, 92), 1), ("grey", (176, 176, 170), 1.5),
                ("green", (168, 190, 150), 1), ("blue", (160, 184, 204), 1), ("red", (176, 84, 66), 0.7)],
    "brick": [("red", (150, 68, 48), 4), ("brown", (116, 74, 54), 2), ("yellow", (204, 170, 112), 1.5),
              ("grey", (132, 126, 120), 0.7)],
    "stone": [("grey", (150, 148, 142), 4), ("beige", (196, 182, 152), 2), ("brown", (132, 108, 88), 1),
              ("pink", (182, 146, 134), 0.7)],
    "glass": [("blue", (86, 116, 138), 3), ("green", (88, 124, 114), 1.5), ("grey", (106, 112, 118), 2),
              ("black", (52, 56, 62), 1)],
    "wood": [("red", (140, 48, 36), 3), ("yellow", (214, 180, 92), 2), ("white", (228, 226, 218), 2),
             ("green", (112, 140, 100), 1), ("brown", (120, 86, 60), 1), ("blue", (120, 150, 176), 0.7)],
    "concrete": [("grey", (160, 158, 152), 4), ("beige", (192, 182, 162), 2), ("white", (214, 212, 204), 1.5)],
    "metal": [("grey", (140, 144, 148), 3), ("blue", (96, 120, 150), 1), ("red", (150, 60, 50), 0.5)],
}

# Normalised kind for OSM building tags; the captioner words views with these.
_KIND = {
    "apartments": "apartment building", "residential": "apartment building", "dormitory": "apartment building",
    "house": "house", "detached": "house", "semidetached_house": "house", "terrace": "house",
    "bungalow": "house", "cabin": "house", "farm": "house",
    "retail": "shop", "supermarket": "shop", "shop": "shop", "commercial": "commercial building",
    "kiosk": "kiosk", "office": "office building", "church": "church", "cathedral": "church",
    "chapel": "church", "mosque": "church", "synagogue": "church", "temple": "church", "religious": "church",
    "school": "school", "university": "university building", "college": "university building",
    "hospital": "hospital", "hotel": "hotel", "public": "public building", "civic": "public building",
    "government": "public building", "townhall": "public building", "train_station": "station",
    "transportation": "station", "museum": "museum", "industrial": "warehouse", "warehouse": "warehouse",
    "factory": "warehouse", "garage": "garage", "garages": "garage", "carport": "garage", "shed": "shed",
    "hut": "shed", "roof": "shelter", "canopy": "shelter", "pavilion": "pavilion", "glasshouse": "greenhouse",
    "greenhouse": "greenhouse",
}

# kind -> (default levels range, material weights, probability of shop fronts)
_KIND_PROFILE: dict[str, tuple[tuple[int, int], dict[str, float], float]] = {
    "apartment building": ((4, 7), {"plaster": 6, "brick": 2.5, "stone": 1, "concrete": 1}, 0.45),
    "house": ((1, 2), {"wood": 6, "plaster": 3, "brick": 1}, 0.0),
    "shop": ((2, 5), {"plaster": 4, "glass": 3, "brick": 2, "concrete": 1}, 1.0),
    "commercial building": ((3, 6), {"plaster": 3, "glass": 3, "stone": 2, "concrete": 2}, 0.8),
    "kiosk": ((1, 1), {"wood": 3, "metal": 2, "glass": 1}, 1.0),
    "office building": ((4, 8), {"glass": 3.5, "stone": 2.5, "plaster": 2, "concrete": 2}, 0.35),
    "church": ((2, 2), {"brick": 5, "stone": 5}, 0.0),
    "school": ((2, 4), {"brick": 4, "plaster": 3, "concrete": 2}, 0.0),
    "university building": ((3, 6), {"stone": 4, "plaster": 4, "brick": 2}, 0.1),
    "hospital": ((3, 7), {"plaster": 3, "concrete": 3, "brick": 2}, 0.0),
    "hotel": ((4, 8), {"plaster": 4, "stone": 3, "glass": 2}, 0.4),
    "public building": ((3, 5), {"stone": 4, "plaster": 4, "brick": 2}, 0.1),
    "station": ((2, 3), {"stone": 4, "brick": 2, "glass": 1}, 0.3),
    "museum": ((2, 4), {"stone": 5, "plaster": 3, "brick": 2}, 0.0),
    "warehouse": ((1, 3), {"metal": 3, "concrete": 3, "brick": 2}, 0.0),
    "garage": ((1, 1), {"concrete": 3, "metal": 2, "wood": 1}, 0.0),
    "shed": ((1, 1), {"wood": 4, "metal": 2}, 0.0),
    "shelter": ((1, 1), {"metal": 3, "glass": 1}, 0.0),
    "pavilion": ((1, 1), {"wood": 2, "glass": 2, "plaster": 1}, 0.3),
    "greenhouse": ((1, 1), {"glass": 1}, 0.0),
    "building": ((3, 7), {"plaster": 5, "brick": 2, "stone": 1.5, "concrete": 1.5, "glass": 0.5}, 0.5),
}
_SHOP_AMENITIES = {"restaurant", "cafe", "bank", "pharmacy", "bar", "pub", "fast_food", "ice_cream", "bureau_de_change"}
_SIGN_COLOURS = np.array([(200, 40, 40), (30, 60, 140), (20, 110, 60), (230, 190, 40), (40, 40, 40),
                          (240, 240, 235), (150, 30, 90), (230, 120, 30)], dtype=np.float32) / 255.0

# Facade styles: how windows are laid out.
STYLE_CLASSIC, STYLE_RIBBON, STYLE_CURTAIN, STYLE_HOUSE, STYLE_TALL = range(5)


@dataclass
class _Facade:
    """Appearance of one building, fixed for the scene."""

    kind: str
    levels: int
    height: float
    material: str
    colour: str
    rgb: np.ndarray            # facade albedo (0-1)
    trim: np.ndarray           # cornice / string courses / window frames
    sign: np.ndarray           # shop sign band
    shopfront: bool
    style: int
    win_pitch: float           # horizontal window spacing (m)
    win_w: float
    win_h: float
    sill: float                # window bottom above its floor (m)
    ground_h: float            # height of the ground storey (taller with shop fronts)
    shop_pitch: float


def _weighted_choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _facade(rng: np.random.Generator, kind: str, levels: int | None, height: float | None,
            material: str | None, shop_hint: bool | None) -> _Facade:
    """Draw a building's appearance; the data's own values win over the defaults of its kind."""
    (lo, hi), mat_weights, p_shop = _KIND_PROFILE.get(kind, _KIND_PROFILE["building"])
    if height is None:
        if levels is None:
            levels = int(rng.integers(lo, hi + 1))
        height = levels * FLOOR_HEIGHT
        if kind == "church":
            height = float(rng.uniform(16.0, 26.0))
    if levels is None:
        levels = max(1, int(round(height / FLOOR_HEIGHT)))
    height = max(MIN_HEIGHT, float(height))
    material = material or _weighted_choice(rng, mat_weights)
    options = _PALETTE[material]
    pick = int(rng.choice(len(options), p=np.array([o[2] for o in options]) / sum(o[2] for o in options)))
    colour, base, _ = options[pick]
    rgb = np.clip((np.array(base, dtype=np.float32) + rng.normal(0, 6, 3)) / 255.0, 0, 1).astype(np.float32)
    lighter = bool(rng.random() < 0.7)
    trim = (0.55 * rgb + 0.45 * (0.93 if lighter else 0.35)).astype(np.float32)
    shopfront = bool(shop_hint) if shop_hint is not None else bool(rng.random() < p_shop)
    if levels < 2 and kind not in ("shop", "kiosk"):
        shopfront = False
    style = {"glass": STYLE_CURTAIN, "wood": STYLE_HOUSE}.get(material, STYLE_CLASSIC)
    if material in ("concrete", "metal") and rng.random() < 0.6:
        style = STYLE_RIBBON
    if kind == "church":
        style = STYLE_TALL
    win_pitch = float(rng.uniform(2.4, 3.4))
    win_w = float(min(rng.uniform(1.0, 1.45), win_pitch - 0.7))
    if style == STYLE_RIBBON:
        win_w = win_pitch - 0.2
    if style == STYLE_TALL:
        win_pitch, win_w = float(rng.uniform(3.5, 5.0)), float(rng.uniform(1.0, 1.5))
    floor_h = height / levels
    ground_h = min(4.2, 0.8 * height) if shopfront else floor_h
    win_h = float(np.clip(rng.uniform(0.42, 0.56) * floor_h, 1.0, 2.2))
    return _Facade(
        kind=kind, levels=int(levels), height=height, material=material, colour=colour, rgb=rgb, trim=trim,
        sign=_SIGN_COLOURS[int(rng.integers(len(_SIGN_COLOURS)))], shopfront=shopfront, style=style,
        win_pitch=win_pitch, win_w=win_w, win_h=win_h, sill=float(0.28 * floor_h), ground_h=float(ground_h),
        shop_pitch=float(rng.uniform(3.5, 6.0)),
    )


# --------------------------------------------------------------------------------------------------
# Scene
# --------------------------------------------------------------------------------------------------


class Scene:
    """One city, ready to render: buildings with fixed appearance, walls, roads, trees and indexes.

    Built by :func:`build_scene`. Building ``i`` has footprint ``footprints[i]`` and id ``building_ids[i]``;
    ``is_filler[i]`` marks procedural filler (ids starting with ``"fill-"``).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.building_ids: list[str] = []
        self.footprints: list[Polygon | MultiPolygon] = []
        self.facades: list[_Facade] = []
        self.is_filler = np.zeros(0, bool)
        self.tree: STRtree | None = None
        # per-building arrays, for vectorised shading (filled by _index_buildings)
        self.b_rgb = self.b_trim = self.b_sign = np.zeros((0, 3), np.float32)
        self.b_height = self.b_floor_h = self.b_ground_h = np.zeros(0, np.float32)
        self.b_style = self.b_material = np.zeros(0, np.int8)
        self.b_shop = np.zeros(0, bool)
        self.b_win = np.zeros((0, 5), np.float32)   # pitch, width, height, sill, shop pitch
        self.b_seed = np.zeros(0, np.int64)
        # walls: segment endpoints, outward unit normal, owning building
        self.w_xy = np.zeros((0, 4))
        self.w_normal = np.zeros((0, 2))
        self.w_building = np.zeros(0, np.int64)
        self.w_u0 = self.w_run = np.zeros(0)     # facade runs: see _facade_runs
        self.b_wall_start = self.b_wall_end = np.zeros(0, np.int64)
        # road centreline segments
        self.r_xy = np.zeros((0, 4))
        self.r_half = np.zeros(0)
        self.r_drivable = np.zeros(0, bool)
        self.r_main = np.zeros(0, bool)
        self.r_arc = np.zeros(0)        # arc length of the segment start along its street (dash phase)
        self.r_line = np.zeros(0, np.int64)
        self.street_names: list[str | None] = []
        # rasters over the scene (cell `grid_cell` m, lower-left corner `grid_origin`)
        self.grid_origin = (0.0, 0.0)
        self.grid_cell = 1.0
        self.road_grid = np.full((2, 2), -1, np.int32)          # nearest carriageway segment
        self.road_edge = np.full((2, 2), 50.0, np.float16)      # signed distance to its edge (< 0: on it)
        self.path_edge = np.full((2, 2), 50.0, np.float16)      # same for footways and paths
        self.junction_grid = np.zeros((2, 2), bool)             # where two streets' carriageways overlap
        self.building_grid = np.zeros((2, 2), bool)
        # street trees (fixed features of a street, like the buildings)
        self.trees = np.zeros((0, 5))   # x, y, crown base, crown radius, tint seed

    @property
    def n_buildings(self) -> int:
        return len(self.building_ids)

    def __repr__(self) -> str:
        return (f"Scene(buildings={self.n_buildings}, filler={int(self.is_filler.sum())}, "
                f"walls={len(self.w_xy)}, road_segments={len(self.r_xy)}, trees={len(self.trees)}, seed={self.seed})")


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
    ix, iy = np.where(inside, ix, 0), np.where(inside, iy, 0)
    v00, v01 = grid[iy, ix].astype(np.float32), grid[iy, ix + 1].astype(np.float32)
    v10, v11 = grid[iy + 1, ix].astype(np.float32), grid[iy + 1, ix + 1].astype(np.float32)
    out = (v00 + (v01 - v00) * wx) * (1 - wy) + (v10 + (v11 - v10) * wx) * wy
    return np.where(inside, out, np.float32(_FAR))


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


def build_scene(buildings: Any, streets: Any, seed: int = 0, *, add_filler: bool = True) -> Scene:
    """Build a renderable scene from building footprints and street centrelines (same metric CRS).

    buildings: GeoDataFrame of polygons with optional columns 'building', 'building:levels', 'height',
    'id' (also used when present: 'building:material', 'shop', 'amenity').
    streets: GeoDataFrame of LineStrings with optional 'name' and 'highway' (road width from the class).
    Streets without a real building within 25 m get procedural filler buildings (``add_filler``).
    """
    scene = Scene(seed)
    street_list = _streets(streets)
    real = _real_buildings(buildings, scene.seed)
    lots = _filler_lots(street_list, [g for _, g, _ in real], scene.seed) if add_filler else []
    _index_buildings(scene, real + _filler_buildings(lots, scene.seed), n_real=len(real))
    _index_roads(scene, street_list)
    _rasterise(scene)
    _place_trees(scene, street_list)
    return scene


# --------------------------------------------------------------------------------------------------
# Capture conditions: weather, light, sky
# --------------------------------------------------------------------------------------------------

WEATHERS = ("clear", "overcast", "hazy", "rainy")
TIMES_OF_DAY = ("morning", "midday", "afternoon", "evening")


@dataclass
class _Conditions:
    weather: str
    time_of_day: str
    sun: np.ndarray            # unit vector towards the sun (east, north, up)
    sun_rgb: np.ndarray
    ambient: float             # light from the sky, on every surface
    direct: float              # sunlight, on surfaces facing the sun
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    fog_rgb: np.ndarray
    visibility: float          # metres over which fog reaches 63%
    exposure: float
    wet: bool
    cloud_cover: float
    cloud_seed: int
    foliage: np.ndarray        # tree crown colour this capture (season)
    busy: float                # 0..1: how many people and parked cars


def _conditions(scene_seed: int, capture_seed: int) -> _Conditions:
    """Weather, time of day, sun and sky for one capture."""
    rng = _rng(scene_seed, capture_seed, 0xC0DE)
    weather = WEATHERS[int(rng.choice(4, p=[0.4, 0.3, 0.15, 0.15]))]
    tod = TIMES_OF_DAY[int(rng.integers(4))]
    elev = {"morning": (8, 22), "midday": (35, 50), "afternoon": (20, 35), "evening": (3, 10)}[tod]
    azim = {"morning": (80, 130), "midday": (160, 200), "afternoon": (210, 250), "evening": (260, 300)}[tod]
    el, az = math.radians(rng.uniform(*elev)), math.radians(rng.uniform(*azim))
    sun = np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)], np.float32)
    sun_rgb = {"morning": (1.0, 0.93, 0.84), "midday": (1.0, 0.99, 0.96), "afternoon": (1.0, 0.96, 0.9),
               "evening": (1.0, 0.74, 0.52)}[tod]
    ambient, direct, vis = {"clear": (0.55, 0.62, 1200.0), "overcast": (0.86, 0.08, 500.0),
                            "hazy": (0.72, 0.3, 160.0), "rainy": (0.66, 0.0, 190.0)}[weather]
    top, horizon = {
        "clear": ((62, 118, 196), (172, 198, 224)), "overcast": ((150, 154, 160), (196, 198, 200)),
        "hazy": ((168, 184, 200), (214, 214, 208)), "rainy": ((100, 106, 114), (148, 150, 154)),
    }[weather]
    top, horizon = np.array(top, np.float32) / 255, np.array(horizon, np.float32) / 255
    if tod == "evening" and weather in ("clear", "hazy"):
        top, horizon = top * np.array([0.8, 0.8, 0.9]), np.array([0.95, 0.72, 0.55], np.float32)
    greens = [(58, 98, 44), (72, 110, 50), (90, 112, 48), (120, 118, 52)]      # summer to early autumn
    foliage = np.array(greens[int(rng.choice(4, p=[.4, .3, .2, .1]))], np.float32) / 255
    return _Conditions(
        weather=weather, time_of_day=tod, sun=sun, sun_rgb=np.array(sun_rgb, np.float32), ambient=ambient,
        direct=direct, sky_top=top.astype(np.float32), sky_horizon=horizon.astype(np.float32),
        fog_rgb=horizon.astype(np.float32), visibility=vis * rng.uniform(0.8, 1.25),
        exposure=float(rng.uniform(0.88, 1.12)) * (0.88 if weather == "rainy" else 1.0), wet=weather == "rainy",
        cloud_cover={"clear": 0.35, "overcast": 0.9, "hazy": 0.5, "rainy": 1.0}[weather] * rng.uniform(0.6, 1.0),
        cloud_seed=int(rng.integers(1 << 30)), foliage=foliage, busy=float(rng.uniform(0.2, 1.0)),
    )


# --------------------------------------------------------------------------------------------------
# Hash noise (stable textures without stored images)
# --------------------------------------------------------------------------------------------------


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: Any = 0) -> np.ndarray:
    """Uniform [0, 1) per integer lattice point; seed may be per point."""
    h = (np.asarray(ix, np.int64) * 374761393 + np.asarray(iy, np.int64) * 668265263
         + np.asarray(seed, np.int64) * 1442695041) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h ^= h >> 16
    return (h & 0xFFFFFF).astype(np.float32) / np.float32(1 << 24)


def _value_noise(x: np.ndarray, y: np.ndarray, seed: Any = 0) -> np.ndarray:
    """Smooth noise in [0, 1) with unit feature size."""
    fx, fy = np.floor(x), np.floor(y)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    sx, sy = x - fx, y - fy
    sx, sy = (sx * sx * (3 - 2 * sx)).astype(np.float32), (sy * sy * (3 - 2 * sy)).astype(np.float32)
    a, b = _hash01(ix, iy, seed), _hash01(ix + 1, iy, seed)
    c, d = _hash01(ix, iy + 1, seed), _hash01(ix + 1, iy + 1, seed)
    return (a + (b - a) * sx) * (1 - sy) + (c + (d - c) * sx) * sy


def _fade(period: float | np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """1 where a pattern of this period (m) is resolved at this pixel footprint (m), 0 where it would alias."""
    return np.clip((period / np.maximum(pixel, 1e-6) - 2.0) / 2.0, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Per-capture objects: parked cars, pedestrians (and the scene's trees near the camera)
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Surfaces: every vertical face that can be hit by a column ray
# --------------------------------------------------------------------------------------------------

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
    keep = _in_frustum(surf, fwd, right, tan_half)
    surf = _Surfaces(*(getattr(surf, f)[keep] for f in _Surfaces.__dataclass_fields__))
    ent_kind = np.concatenate(kinds) if kinds else np.zeros(0, int)
    ent_ref = np.concatenate(refs) if refs else np.zeros(0, int)
    shape = np.zeros(len(surf.kind))
    crown = surf.kind == K_CROWN
    shape[crown] = scene.trees[ent_ref[surf.entity[crown]], 3]
    person = surf.kind == K_PERSON
    shape[person] = surf.zt[person]
    return _Capture(surf, ent_kind, ent_ref, cars, people, shape)


# --------------------------------------------------------------------------------------------------
# Visibility: column rays against surfaces, nearest covering hit per pixel
# --------------------------------------------------------------------------------------------------


@dataclass
class _Hits:
    """Per-pixel visible surface, for the pixels that show one (flat indices into the canvas)."""

    pix: np.ndarray        # flat pixel index
    sid: np.ndarray        # surface index
    t: np.ndarray          # forward depth (m)
    u: np.ndarray          # metres along the surface from its start
    z: np.ndarray          # height above ground (m)


def _cast(xs: np.ndarray, focal: float, fwd: np.ndarray, right: np.ndarray, s: _Surfaces
          ) -> tuple[np.ndarray, np.ndarray]:
    """Depth t (forward distance; inf if missed) and position s in [0,1] along each surface, per column."""
    d = (fwd[None] + (xs / focal)[:, None] * right[None]).astype(np.float32)       # (C, 2), forward part 1
    ax, ay = s.a[:, 0].astype(np.float32), s.a[:, 1].astype(np.float32)
    ex, ey = s.e[:, 0].astype(np.float32), s.e[:, 1].astype(np.float32)
    dx, dy = d[:, :1], d[:, 1:]
    denom = dx * ey - dy * ex
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / denom
        t = (ax * ey - ay * ex) * inv
        sp = (ax * dy - ay * dx) * inv
    hit = (sp >= 0) & (sp <= 1) & (t > NEAR)
    return np.where(hit, t, np.float32(np.inf)), sp


def _alpha(kind: np.ndarray, shape: np.ndarray, zb: np.ndarray, seed: np.ndarray, u: np.ndarray,
           z: np.ndarray) -> np.ndarray:
    """Cut-out masks of billboards; u (n,), z (R, n): tree crowns (ragged ellipses) and people."""
    out = np.zeros(z.shape, bool)
    crown = kind == K_CROWN
    if crown.any():
        r, zc = shape[crown], zb[crown] + 1.15 * shape[crown]
        du = (u[crown] - r) / r
        dz = (z[:, crown] - zc) / (1.15 * r)
        rag = _value_noise(u[crown] * 1.6 + np.zeros_like(dz), z[:, crown] * 1.6, seed[crown])
        out[:, crown] = du * du + dz * dz < 0.72 + 0.4 * rag
    person = kind == K_PERSON
    if person.any():
        h = shape[person]
        uc = u[person] - 0.31
        zz = z[:, person]
        head = uc * uc + (zz - (h - 0.12)) ** 2 < 0.11 ** 2
        body = (zz >= 0.82) & (zz <= h - 0.2) & (np.abs(uc) < 0.2 - 0.06 * (zz < h * 0.6))
        legs = (zz < 0.84) & (np.abs(uc) < 0.15) & (np.abs(uc) > 0.025)
        out[:, person] = head | body | legs
    return out


def _visible(s: _Surfaces, shape: np.ndarray, entity_seed: np.ndarray, xs: np.ndarray, ys: np.ndarray,
             focal: float, fwd: np.ndarray, right: np.ndarray, eye: float) -> _Hits:
    """Nearest surface covering each pixel (exact for vertical faces seen by a level camera)."""
    n_cols = len(xs)
    empty = _Hits(*(np.zeros(0, t) for t in (np.int64, np.int64, np.float32, np.float32, np.float32)))
    if len(s.kind) == 0:
        return empty
    T, SP = _cast(xs, focal, fwd, right, s)
    m = min(MAX_LAYERS, int(np.isfinite(T).sum(1).max()))
    if m == 0:
        return empty
    part = np.argpartition(T, m - 1, axis=1)[:, :m] if m < T.shape[1] else np.argsort(T, axis=1)
    tm = np.take_along_axis(T, part, 1)
    order = np.argsort(tm, axis=1)
    part, tm = np.take_along_axis(part, order, 1), np.take_along_axis(tm, order, 1)
    sm = np.take_along_axis(SP, part, 1)
    finite = np.isfinite(tm)
    safe_t = np.where(finite, tm, np.float32(1.0))
    ylo = np.where(finite, focal * (eye - s.zt[part]) / safe_t, np.inf).astype(np.float32)
    yhi = np.where(finite, focal * (eye - s.zb[part]) / safe_t, -np.inf).astype(np.float32)
    Y = ys.astype(np.float32)[:, None, None]
    cover = (Y >= ylo[None]) & (Y <= yhi[None])                                  # (R, C, M)
    kinds = s.kind[part]
    ac, ak = np.nonzero(finite & np.isin(kinds, _ALPHA_KINDS))
    if len(ac):
        sid = part[ac, ak]
        u = sm[ac, ak] * np.hypot(s.e[sid, 0], s.e[sid, 1])
        z = eye - ys[:, None] * (tm[ac, ak] / focal)[None]
        cover[:, ac, ak] &= _alpha(s.kind[sid], shape[sid], s.zb[sid], entity_seed[s.entity[sid]], u, z)
    first = cover.argmax(axis=2)
    rows, cols = np.nonzero(np.take_along_axis(cover, first[..., None], 2)[..., 0])
    k = first[rows, cols]
    sid = part[cols, k]
    t = tm[cols, k]
    u = (sm[cols, k] * np.hypot(s.e[sid, 0], s.e[sid, 1])).astype(np.float32)
    z = (eye - ys[rows] * t / focal).astype(np.float32)
    return _Hits(rows * n_cols + cols, sid, t.astype(np.float32), u, z)


# --------------------------------------------------------------------------------------------------
# Shading
# --------------------------------------------------------------------------------------------------


def _light(cond: _Conditions, lambert: np.ndarray) -> np.ndarray:
    """RGB light on a surface: sky light plus sunlight times its cosine factor."""
    sky = np.array([0.94, 0.97, 1.04], np.float32) if cond.weather == "clear" else np.ones(3, np.float32)
    return (cond.ambient * sky)[None] + (cond.direct * lambert)[:, None] * cond.sun_rgb[None]


def _wall_lambert(cond: _Conditions, normal: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, normal @ cond.sun[:2]).astype(np.float32)


def _material_tone(mat: np.ndarray, u: np.ndarray, z: np.ndarray, fh: np.ndarray, pix: np.ndarray,
                   seed: np.ndarray) -> np.ndarray:
    """Brightness multiplier for the facade material's texture, faded out where it would alias."""
    tone = np.ones(len(u), np.float32)

    def group(name: str) -> np.ndarray:
        return np.flatnonzero(mat == _MAT[name])

    i = group("plaster")
    if len(i):
        tone[i] = 1 + 0.09 * (_value_noise(u[i] / 2.5, z[i] / 2.5, seed[i]) - 0.5)
    i = group("brick")
    if len(i):
        row = np.floor(z[i] / 0.077)
        uu = u[i] + (row % 2) * 0.11
        pat = 0.88 + 0.24 * _hash01(row, np.floor(uu / 0.22), seed[i])
        mortar = (z[i] % 0.077 < 0.013) | (uu % 0.22 < 0.016)
        pat = np.where(mortar, 1.25, pat)
        tone[i] = 1 + _fade(0.077, pix[i]) * (pat - 1) + 0.06 * (_value_noise(u[i] / 3, z[i] / 3, seed[i]) - 0.5)
    i = group("stone")
    if len(i):
        row = np.floor(z[i] / 0.55)
        uu = u[i] + (row % 2) * 0.5
        pat = 0.92 + 0.16 * _hash01(row, np.floor(uu / 1.1), seed[i])
        pat = np.where((z[i] % 0.55 < 0.03) | (uu % 1.1 < 0.03), 0.72, pat)
        tone[i] = 1 + _fade(0.55, pix[i]) * (pat - 1)
    i = group("wood")
    if len(i):
        pat = 0.86 + 0.2 * ((z[i] % 0.19) / 0.19)          # each board shades the one below
        tone[i] = 1 + _fade(0.19, pix[i]) * (pat - 1)
    i = group("concrete")
    if len(i):
        pat = 0.94 + 0.1 * _hash01(np.floor(z[i] / fh[i]), np.floor(u[i] / 3.0), seed[i])
        pat = np.where((z[i] % fh[i] < 0.05) | (u[i] % 3.0 < 0.05), 0.72, pat)
        tone[i] = 1 + _fade(0.6, pix[i]) * (pat - 1)
    i = group("metal")
    if len(i):
        tone[i] = 1 + _fade(0.35, pix[i]) * 0.1 * np.cos(u[i] * (2 * np.pi / 0.35))
    return tone


def _shade_walls(scene: Scene, cond: _Conditions, b: np.ndarray, u: np.ndarray, z: np.ndarray, length: np.ndarray,
                 pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Facade albedo and emitted light (lit windows) per pixel of building walls."""
    height, fh, gh = scene.b_height[b], scene.b_floor_h[b], scene.b_ground_h[b]
    pitch, ww, wh, sill, shop_pitch = (scene.b_win[b, k] for k in range(5))
    style, seed = scene.b_style[b], scene.b_seed[b]
    base, trim = scene.b_rgb[b], scene.b_trim[b]
    col = base * _material_tone(scene.b_material[b], u, z, fh, pix, seed)[:, None]
    glass_base = np.array([0.15, 0.18, 0.22], np.float32) + 0.35 * cond.sky_horizon

    # window grid: floors above the ground storey, columns centred on the wall
    zu = z - gh
    floor = np.floor(zu / fh)
    zf = zu - floor * fh
    ncol = np.maximum(np.floor((length - 0.8) / pitch), 0)
    ci = np.floor((u - (length - ncol * pitch) / 2) / pitch)
    uf = u - (length - ncol * pitch) / 2 - (ci + 0.5) * pitch
    grid = (ci >= 0) & (ci < ncol) & (zu >= 0) & (z < height - 1.0)
    wx, wz = np.abs(uf) - ww / 2, np.abs(zf - sill - wh / 2) - wh / 2
    tall = style == STYLE_TALL
    if tall.any():   # churches: tall arched windows through the whole wall
        top = np.maximum(3.6, height * 0.62)
        cz = top - ww / 2
        wz = np.where(tall, np.where(z > cz, np.hypot(uf, z - cz) - ww / 2, 3.0 - z), wz)
        wx = np.where(tall & (z > cz), -1.0, wx)
        grid = np.where(tall, (ci >= 0) & (ci < ncol) & (z < height - 1.0), grid)
    curtain = style == STYLE_CURTAIN
    window = grid & (wx < 0) & (wz < 0)
    frame = grid & (wx < 0.09) & (wz < 0.09) & ~window
    window = np.where(curtain, grid & (zf > 0.85) & (pitch / 2 - np.abs(uf) > 0.05), window)
    frame = np.where(curtain, grid & ~window, frame)

    # ground storey: shop windows under a sign band, or plain windows and a door
    ground = (z < gh) & (z >= 0)
    shop = scene.b_shop[b] & ground
    n_shop = np.maximum(np.floor((length - 0.6) / shop_pitch), 1)
    su = u - (length - n_shop * shop_pitch) / 2
    sk = np.floor(su / shop_pitch)
    sf = su - (sk + 0.5) * shop_pitch
    shop_glass = shop & (sk >= 0) & (sk < n_shop) & (np.abs(sf) < shop_pitch / 2 - 0.35) & (z > 0.45) & (z < gh - 1.0)
    sign = shop & (z > gh - 0.9) & (z < gh - 0.25) & (u > 0.3) & (u < length - 0.3)
    plain = ground & ~scene.b_shop[b] & (style != STYLE_TALL)
    gwx = np.abs(uf) - ww / 2
    gwz = np.abs(z - np.maximum(sill, 1.0) - wh / 2) - wh / 2
    g_ci_ok = (ci >= 0) & (ci < ncol)
    window |= plain & g_ci_ok & (gwx < 0) & (gwz < 0)
    frame |= plain & g_ci_ok & (gwx < 0.09) & (gwz < 0.09) & ~window
    door = plain & (length > 5.0) & (np.abs(u - length / 2) < 0.65) & (z < 2.3)

    # glass colour varies per window; some windows are lit in the evening
    wkey = (floor * 131 + ci).astype(np.int64)
    h1 = _hash01(wkey, np.where(shop_glass, sk + 7777, 0), seed)
    glass = glass_base[None] * (0.65 + 0.7 * h1)[:, None]
    curtain_in = (h1 > 0.82)[:, None] & ~curtain[:, None]
    glass = np.where(curtain_in, np.array([0.62, 0.6, 0.55], np.float32), glass)
    shop_rgb = np.array([0.22, 0.2, 0.17], np.float32) + 0.3 * cond.sky_horizon

    patterned = col.copy()
    frame_rgb = np.where(curtain[:, None], np.array([0.3, 0.32, 0.34], np.float32), trim)
    patterned[frame] = frame_rgb[frame]
    patterned[window] = glass[window]
    patterned[shop_glass] = shop_rgb[None] * (0.8 + 0.4 * h1[shop_glass])[:, None]
    patterned[sign] = scene.b_sign[b][sign]
    patterned[door] = np.array([0.24, 0.17, 0.12], np.float32)
    # far away, windows blur into the wall: mix by their area share instead of aliasing
    share = np.clip(np.where(curtain, 0.8, ww * wh / (pitch * fh)), 0, 0.9)[:, None]
    mean = col * (1 - share) + glass_base[None] * share
    mean = np.where((grid | (ground & ~shop))[:, None], mean, col)
    mean[shop_glass | sign] = patterned[shop_glass | sign]
    f = _fade(np.minimum(ww, wh), pix)[:, None]
    out = mean + (patterned - mean) * f

    # cornice with its shadow, roof edge, plinth, string courses (classic style)
    cornice = (z > height - 0.75) & (z < height - 0.3) & ~curtain
    out[cornice] = trim[cornice]
    shadow = (z > height - 0.95) & (z <= height - 0.75) & ~curtain
    out[shadow] *= 0.6
    out[z >= height - 0.3] = np.array([0.26, 0.27, 0.28], np.float32)
    plinth = (z < 0.45) & ~shop_glass & ~door
    out[plinth] = out[plinth] * 0.55 + 0.12
    course = (style == STYLE_CLASSIC) & (zu > 0.1) & (zf < 0.16) & (z < height - 1.0)
    out[course] = out[course] + (trim[course] - out[course]) * _fade(0.16, pix[course])[:, None]

    emit = np.zeros_like(out)
    if cond.time_of_day == "evening":
        lit = (window & (_hash01(wkey, 99, seed) < 0.3)) | shop_glass
        emit[lit] = np.array([0.55, 0.42, 0.22], np.float32) * f[lit]
    return out, emit


def _shade_cars(cap: _Capture, sid: np.ndarray, u: np.ndarray, z: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Car albedo: body colour, wheels, lights, number plate, windows; top faces (hood, roof) from behind."""
    s = cap.surfaces
    car = cap.ent_ref[s.entity[sid]]
    role, kind = s.role[sid], s.kind[sid]
    width = np.hypot(s.e[sid, 0], s.e[sid, 1])
    body = cap.cars["rgb"][car] * (0.85 + 0.2 * np.clip(z / 1.5, 0, 1))[:, None]
    out = body.copy()
    lower, cabin = kind == K_CAR, kind == K_CABIN
    side, front, rear, top = role == 0, role == 1, role == 2, role == 3
    glass = np.array([0.1, 0.12, 0.15], np.float32) + 0.3 * sky
    for wu in (0.78, width - 0.78):
        d = np.hypot(u - wu, z - 0.33)
        out[lower & side & (d < 0.33)] = (0.06, 0.06, 0.07)
        out[lower & side & (d < 0.16)] = (0.45, 0.45, 0.47)
    out[lower & side & (z < 0.2) & (u > 0.2) & (u < width - 0.2)] = (0.05, 0.05, 0.05)
    lamp = (z > 0.55) & (z < 0.8) & ((u < 0.38) | (u > width - 0.38))
    out[lower & front & lamp] = (0.92, 0.92, 0.86)
    out[lower & rear & lamp] = (0.62, 0.06, 0.05)
    out[lower & (front | rear) & (z < 0.32)] = (0.16, 0.16, 0.17)
    out[lower & rear & (np.abs(u - width / 2) < 0.26) & (z > 0.4) & (z < 0.52)] = (0.9, 0.9, 0.85)
    zt = s.zt[sid]
    win = cabin & ~top & (z > 1.0) & (z < zt - 0.06) & (u > 0.12) & (u < width - 0.12)
    win &= ~(side & (np.abs(u - width / 2) < 0.07))
    out[win] = glass
    out[top] = cap.cars["rgb"][car[top]] * 1.05
    return out


def _shade_billboards(scene: Scene, cap: _Capture, cond: _Conditions, sid: np.ndarray, u: np.ndarray,
                      z: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """Albedo of tree trunks and crowns (leafy noise, lighter on top) and people (skin, clothes)."""
    s = cap.surfaces
    out = np.zeros((len(sid), 3), np.float32)
    kind, ref = s.kind[sid], cap.ent_ref[s.entity[sid]]
    trunk = kind == K_TRUNK
    out[trunk] = (0.26, 0.21, 0.16)
    crown = np.flatnonzero(kind == K_CROWN)
    if len(crown):
        seed = scene.trees[ref[crown], 4].astype(np.int64)
        leaf = _value_noise(u[crown] * 2.2, z[crown] * 2.2, seed)
        rel = (z[crown] - s.zb[sid[crown]]) / (s.zt[sid[crown]] - s.zb[sid[crown]])
        shade = (0.72 + 0.45 * rel) * (1 + _fade(0.45, pix[crown]) * 0.5 * (leaf - 0.5))
        out[crown] = cond.foliage[None] * shade[:, None]
    person = np.flatnonzero(kind == K_PERSON)
    if len(person):
        p, h, zz = ref[person], s.zt[sid[person]], z[person]
        rgb = np.where((zz > h - 0.23)[:, None], cap.people["skin"][p],
                       np.where((zz > 0.83)[:, None], cap.people["top"][p], cap.people["legs"][p]))
        rgb[zz > h - 0.07] = (0.15, 0.11, 0.08)
        rgb[zz < 0.07] = (0.08, 0.08, 0.08)
        out[person] = rgb
    return out


_ROAD_RGB = np.array([0.31, 0.31, 0.32], np.float32)
_KERB_RGB = np.array([0.62, 0.62, 0.6], np.float32)
_WALK_RGB = np.array([0.55, 0.54, 0.52], np.float32)
_PAVE_RGB = np.array([0.6, 0.57, 0.52], np.float32)
_GRASS_RGB = np.array([0.32, 0.44, 0.22], np.float32)
G_ROAD, G_WALK, G_OTHER = -2, -3, -4


def _shade_ground(scene: Scene, cond: _Conditions, wx: np.ndarray, wy: np.ndarray, pix: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Ground albedo and class (road / sidewalk / other) at world points."""
    edge = _grid_bilinear(scene, scene.road_edge, wx, wy)          # < 0 on a carriageway
    path = _grid_bilinear(scene, scene.path_edge, wx, wy)
    lx, ly = wx % 10000.0, wy % 10000.0                              # small numbers keep float32 precision
    # other ground: paving with patches of grass (fixed per scene)
    grass = _value_noise(lx / 18.0, ly / 18.0, scene.seed + 11) > 0.62
    out = np.where(grass[:, None], _GRASS_RGB[None], _PAVE_RGB[None]).astype(np.float32)
    label = np.full(len(wx), G_OTHER, np.int32)
    walk = (edge < SIDEWALK_WIDTH + KERB_WIDTH) | (path < 0)
    out[walk] = _WALK_RGB
    label[walk] = G_WALK
    tile = _fade(0.6, pix[walk]) * 0.1 * ((lx[walk] % 0.6 < 0.04) | (ly[walk] % 0.6 < 0.04))
    out[walk] *= (1 - tile)[:, None]
    out[(edge >= 0) & (edge < KERB_WIDTH)] = _KERB_RGB
    road = np.flatnonzero(edge < 0)
    grain = 1 + _fade(0.25, pix[road]) * 0.1 * (_hash01(np.floor(lx[road] * 4), np.floor(ly[road] * 4), 3) - 0.5)
    out[road] = _ROAD_RGB[None] * grain[:, None]
    label[road] = G_ROAD
    _centre_lines(scene, out, road, wx[road], wy[road], pix[road])
    if cond.wet:   # wet surfaces: darker, with a sheen of the sky
        out = out * 0.62 + 0.18 * cond.sky_horizon[None]
    return out, label


def _centre_lines(scene: Scene, out: np.ndarray, idx: np.ndarray, x: np.ndarray, y: np.ndarray,
                  pix: np.ndarray) -> None:
    """Dashed centre lines on two-lane roads (yellow on main roads), not across crossings."""
    seg = _grid_lookup(scene, scene.road_grid, x, y, -1)
    junction = _grid_lookup(scene, scene.junction_grid, x, y, False)
    sel = np.flatnonzero((seg >= 0) & ~junction)
    if len(sel) == 0:
        return
    seg = seg[sel]
    dist, along = _segment_distance(scene, seg, x[sel], y[sel])
    mark = (scene.r_half[seg] >= 3.0) & (dist < 0.07 + 0.5 * np.maximum(pix[sel] - 0.14, 0)) & (along % 9.0 < 3.0)
    main = scene.r_main[seg[mark]][:, None]
    yellow, white = np.array([0.8, 0.66, 0.22], np.float32), np.array([0.85, 0.85, 0.82], np.float32)
    out[idx[sel[mark]]] = np.where(main, yellow, white)


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


# --------------------------------------------------------------------------------------------------
# The view
# --------------------------------------------------------------------------------------------------


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


def _entity_seeds(scene: Scene, cap: _Capture) -> np.ndarray:
    """A texture seed per entity (trees use their own, so a crown looks the same in every view)."""
    seeds = cap.ent_ref.astype(np.int64) * 7919 + 13
    tree = cap.ent_kind == E_TREE
    seeds[tree] = scene.trees[cap.ent_ref[tree], 4].astype(np.int64)
    return seeds


def render_view(scene: Scene, camera: Camera, size: int = 128, capture_seed: int = 0, *,
                supersample: int = 1) -> tuple[Image.Image, dict[str, Any]]:
    """Render a size x size RGB street view and describe what is visible.

    `capture_seed` varies weather, light, fog, parked cars and pedestrians; the buildings, their
    appearance and the street trees are the scene's. `supersample` renders at that factor and box-filters
    down (anti-aliasing, at about its square in time). Raises ValueError for a pitch too steep for the fov.
    """
    if size < 8:
        raise ValueError("size must be at least 8 pixels")
    if not 10.0 <= camera.fov <= 150.0:
        raise ValueError(f"fov must be within [10, 150] degrees, got {camera.fov}")
    ss = max(1, int(supersample))
    n = size * ss
    cond = _conditions(scene.seed, capture_seed)
    canvas = _canvas(n, camera.fov, camera.pitch)
    fwd, right = camera.axes()
    xs = np.arange(canvas.width, dtype=np.float32) + 0.5 - canvas.cx
    ys = np.arange(canvas.height, dtype=np.float32) + 0.5 - canvas.cy
    cap = _capture_objects(scene, camera, capture_seed, cond, fwd, right, (canvas.width / 2 + 1) / canvas.focal)
    hits = _visible(cap.surfaces, cap.shape, _entity_seeds(scene, cap), xs, ys, canvas.focal, fwd, right,
                    float(camera.height))

    npx = canvas.width * canvas.height
    px = _Pixels(rows=np.arange(npx) // canvas.width, cols=np.arange(npx) % canvas.width,
                 rgb=np.zeros((npx, 3), np.float32), emit=np.zeros((npx, 3), np.float32),
                 label=np.full(npx, -1, np.int32), dist=np.full(npx, np.inf, np.float32),
                 slope=np.sqrt(1 + (xs / canvas.focal) ** 2))
    _shade_objects(scene, cap, cond, hits, canvas, px)
    free = np.ones(npx, bool)
    free[hits.pix] = False
    below = free & (ys[px.rows] > 0)
    _shade_ground_pixels(scene, cond, camera, canvas, xs, ys, np.flatnonzero(below), px)
    sky = np.flatnonzero(free & ~below)
    px.rgb[sky] = _shade_sky(cond, fwd[0] * canvas.focal + xs[px.cols[sky]] * right[0],
                             fwd[1] * canvas.focal + xs[px.cols[sky]] * right[1], -ys[px.rows[sky]])

    # fog towards the horizon colour, exposure; the sky is already its own haze
    solid = np.isfinite(px.dist)
    fog = (1 - np.exp(-px.dist[solid] / cond.visibility))[:, None]
    px.rgb[solid] = (px.rgb[solid] + px.emit[solid]) * (1 - fog) + cond.fog_rgb[None] * fog
    rgb = np.clip(px.rgb * (255 * cond.exposure) + 0.5, 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb.reshape(canvas.height, canvas.width, 3))
    level = labels = px.label.reshape(canvas.height, canvas.width)
    if canvas.warp is not None:
        image = image.transform((n, n), Image.Transform.PERSPECTIVE, canvas.warp, Image.Resampling.BILINEAR)
        labels = np.asarray(Image.fromarray(labels).transform(
            (n, n), Image.Transform.PERSPECTIVE, canvas.warp, Image.Resampling.NEAREST, fillcolor=-1), np.int32)
    if ss > 1:
        image = image.reduce(ss)
    image = _finish(image, cond, _rng(scene.seed, capture_seed, 0xF1A, round(camera.x * 10), round(camera.y * 10)))
    info = _describe(scene, cap, cond, labels, level, px.dist.reshape(canvas.height, canvas.width))
    return image, info


@dataclass
class _Pixels:
    """Flat per-pixel buffers of the level canvas."""

    rows: np.ndarray
    cols: np.ndarray
    rgb: np.ndarray        # lit colour
    emit: np.ndarray       # emitted light (lit windows), added before fog
    label: np.ndarray      # entity index, or -1 sky, G_* ground classes
    dist: np.ndarray       # horizontal distance (m); inf for sky
    slope: np.ndarray      # per column: ray length per metre of forward depth


def _shade_ground_pixels(scene: Scene, cond: _Conditions, camera: Camera, canvas: _Canvas, xs: np.ndarray,
                         ys: np.ndarray, g: np.ndarray, px: _Pixels) -> None:
    """Ground seen below the horizon where no object is in the way."""
    if len(g) == 0:
        return
    fwd, right = camera.axes()
    eye = float(camera.height)
    t = canvas.focal * eye / ys[px.rows[g]]                      # forward depth of the ground point
    side = xs[px.cols[g]] / canvas.focal
    # ground footprint of a pixel: t/f across the ray, stretched by t/eye along it (geometric mean)
    footprint = t / canvas.focal * np.sqrt(np.maximum(t / eye, 1.0))
    albedo, label = _shade_ground(scene, cond, camera.x + t * (fwd[0] + side * right[0]),
                                  camera.y + t * (fwd[1] + side * right[1]), footprint)
    px.rgb[g] = albedo * _light(cond, np.full(len(g), max(cond.sun[2], 0.0), np.float32))
    px.label[g] = label
    px.dist[g] = t * px.slope[px.cols[g]]


def _shade_objects(scene: Scene, cap: _Capture, cond: _Conditions, hits: _Hits, canvas: _Canvas,
                   px: _Pixels) -> None:
    """Fill colour, emitted light, entity label and distance for pixels that show a surface."""
    if len(hits.pix) == 0:
        return
    s = cap.surfaces
    kind = s.kind[hits.sid]
    pix = hits.t / canvas.focal
    px.label[hits.pix] = s.entity[hits.sid]
    px.dist[hits.pix] = hits.t * px.slope[px.cols[hits.pix]]
    top = s.role[hits.sid] == 3
    lam = np.where(top, max(cond.sun[2], 0.0), _wall_lambert(cond, s.normal[hits.sid]))
    lam = np.where((kind == K_CROWN) | (kind == K_PERSON) | (kind == K_TRUNK), 0.6 * max(cond.sun[2], 0.3), lam)
    light = _light(cond, lam.astype(np.float32))
    # contact shadow at the foot of every surface
    light *= (0.78 + 0.22 * np.clip(hits.z / 1.2, 0, 1))[:, None]
    out = np.zeros((len(kind), 3), np.float32)
    i = np.flatnonzero(kind == K_WALL)
    if len(i):
        sid = hits.sid[i]
        b = cap.ent_ref[s.entity[sid]]
        u = (hits.u[i] + s.u0[sid]).astype(np.float32)
        albedo, glow = _shade_walls(scene, cond, b, u, hits.z[i], s.run[sid].astype(np.float32), pix[i])
        out[i] = albedo
        px.emit[hits.pix[i]] = glow
        # roofs of buildings lower than the eye (seen over their back walls)
        roof = top[i]
        out[i[roof]] = np.array([0.3, 0.3, 0.31], np.float32)
    i = np.flatnonzero((kind == K_CAR) | (kind == K_CABIN))
    if len(i):
        out[i] = _shade_cars(cap, hits.sid[i], hits.u[i], hits.z[i], cond.sky_horizon)
    i = np.flatnonzero((kind == K_TRUNK) | (kind == K_CROWN) | (kind == K_PERSON))
    if len(i):
        out[i] = _shade_billboards(scene, cap, cond, hits.sid[i], hits.u[i], hits.z[i], pix[i])
    px.rgb[hits.pix] = out * light


def _finish(image: Image.Image, cond: _Conditions, rng: np.random.Generator) -> Image.Image:
    """Per-capture camera effects: rain streaks and a little sensor noise."""
    if cond.weather == "rainy":
        w, h = image.size
        streaks = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(streaks)
        slant = rng.uniform(-0.15, 0.15)
        for _ in range(int(w * h / 250)):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            length = rng.uniform(0.03, 0.08) * h
            draw.line([(x, y), (x + slant * length, y + length)], fill=int(rng.integers(40, 90)))
        image = Image.composite(Image.new("RGB", (w, h), (205, 208, 212)), image, streaks)
    arr = np.asarray(image, np.float32)
    arr = arr + rng.normal(0.0, 1.6, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


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
    nearest = np.full(len(cap.ent_kind), np.inf)
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
