"""Shading the ground: road, kerb, sidewalk, paving and grass from the distance fields, dashed centre lines,
wet surfaces; and the ground class of each point."""
from __future__ import annotations

import numpy as np

from .conditions import _Conditions
from .constants import KERB_WIDTH, SIDEWALK_WIDTH
from .ground_rasters import _grid_bilinear, _grid_lookup, _segment_distance
from .noise import _fade, _hash01, _value_noise
from .scene import Scene

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
