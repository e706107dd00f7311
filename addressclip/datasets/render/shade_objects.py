"""Shading cars (body, wheels, lights, number plate, windows) and billboards (tree trunks and crowns, people)."""
from __future__ import annotations

import numpy as np

from .conditions import _Conditions
from .noise import _fade, _value_noise
from .scene import Scene
from .surfaces import K_CABIN, K_CAR, K_CROWN, K_PERSON, K_TRUNK, _Capture


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
