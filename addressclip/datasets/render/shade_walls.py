"""Shading building walls: material textures, windows, shop fronts under sign bands, doors, cornices and
string courses, and lit windows in the evening."""
from __future__ import annotations

import numpy as np

from .conditions import _Conditions
from .facades import _MAT, STYLE_CLASSIC, STYLE_CURTAIN, STYLE_TALL
from .noise import _fade, _hash01, _value_noise
from .scene import Scene


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
