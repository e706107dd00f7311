"""Building appearance, fixed per building for the scene: OSM building tag -> kind, material, facade colour
(a Nordic city palette), window layout style, shop fronts and their sign colour, storey and window sizes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import FLOOR_HEIGHT, MIN_HEIGHT

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
