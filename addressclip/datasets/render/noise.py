"""Determinism without global random state: generators seeded by integer keys, a stable string hash, and
hash noise (stable textures without stored images), with a fade that keeps fine patterns from aliasing."""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _rng(*keys: int) -> np.random.Generator:
    """A generator seeded by integer keys (any size or sign: mapped one-to-one to non-negative ints)."""
    return np.random.default_rng([2 * int(k) if k >= 0 else -2 * int(k) - 1 for k in keys])


_KX, _KY, _KSEED = 374761393, 668265263, 1442695041   # lattice hash multipliers


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: Any = 0) -> np.ndarray:
    """Uniform [0, 1) per integer lattice point; seed may be per point."""
    return _scramble(_key(ix, iy, seed))


def _key(ix: Any, iy: Any, seed: Any) -> np.ndarray:
    """The int64 lattice key of a point (wrapping is harmless: the hash uses it modulo 2**32)."""
    return np.asarray(ix, np.int64) * _KX + np.asarray(iy, np.int64) * _KY + np.asarray(seed, np.int64) * _KSEED


def _scramble(h: np.ndarray) -> np.ndarray:
    """The hash's mixing of an int64 lattice key, modulo 2**32 (so sums of keys may wrap): in uint32, whose
    products wrap as the hash needs, at half the memory traffic of int64."""
    with np.errstate(over="ignore"):  # the wrap is the hash (numpy warns of it for scalars, not for arrays)
        h = h.astype(np.uint32)
        h ^= h >> np.uint32(13)
        h *= np.uint32(1274126177)
        h ^= h >> np.uint32(16)
        h &= np.uint32(0xFFFFFF)
    return h.astype(np.float32) / np.float32(1 << 24)


def _value_noise(x: np.ndarray, y: np.ndarray, seed: Any = 0) -> np.ndarray:
    """Smooth noise in [0, 1) with unit feature size."""
    fx, fy = np.floor(x), np.floor(y)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    sx, sy = x - fx, y - fy
    sx, sy = (sx * sx * (3 - 2 * sx)).astype(np.float32), (sy * sy * (3 - 2 * sy)).astype(np.float32)
    # the four corners' keys from one: (ix + 1) * _KX = ix * _KX + _KX, exactly (modular arithmetic)
    key = _key(ix, iy, seed)
    a, b = _scramble(key), _scramble(key + _KX)
    c, d = _scramble(key + _KY), _scramble(key + (_KX + _KY))
    return (a + (b - a) * sx) * (1 - sy) + (c + (d - c) * sx) * sy


def _fade(period: float | np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """1 where a pattern of this period (m) is resolved at this pixel footprint (m), 0 where it would alias."""
    return np.clip((period / np.maximum(pixel, 1e-6) - 2.0) / 2.0, 0.0, 1.0).astype(np.float32)
