"""Visibility: column rays against surfaces, nearest covering hit per pixel (exact occlusion, depth and the
position on the face), with cut-out masks for billboards."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import MAX_LAYERS, NEAR
from .noise import _value_noise
from .surfaces import _ALPHA_KINDS, K_CROWN, K_PERSON, _Surfaces


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
