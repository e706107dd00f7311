"""The view: `render_view` runs the stages for one image (conditions, canvas, surfaces, visibility, shading,
fog and exposure, pitch warp, supersampling, camera effects) and returns it with its description."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .camera import Camera, _Canvas, _canvas
from .conditions import _Conditions, _conditions, _light, _wall_lambert
from .describe import _describe
from .noise import _rng
from .scene import Scene
from .shade_ground import _shade_ground
from .shade_objects import _shade_billboards, _shade_cars
from .shade_sky import _shade_sky
from .shade_walls import _shade_walls
from .surfaces import E_TREE, K_CABIN, K_CAR, K_CROWN, K_PERSON, K_TRUNK, K_WALL, _Capture, _capture_objects
from .visibility import _Hits, _visible


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
    capture_seed = int(capture_seed)  # a hashable key for the caches, however it is given
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
    fog = 1 - np.exp(-px.dist[solid] / cond.visibility)
    clear, lit = 1 - fog, px.rgb[solid] + px.emit[solid]
    for k in range(3):  # a column at a time (as in `_light`)
        lit[:, k] = lit[:, k] * clear + cond.fog_rgb[k] * fog
    px.rgb[solid] = lit
    rgb = np.clip(px.rgb * (255 * cond.exposure) + 0.5, 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb.reshape(canvas.height, canvas.width, 3))
    level = labels = px.label.reshape(canvas.height, canvas.width)
    if canvas.warp is not None:
        image = image.transform((n, n), Image.Transform.PERSPECTIVE, canvas.warp, Image.Resampling.BILINEAR)
        labels = np.asarray(Image.fromarray(labels).transform(
            (n, n), Image.Transform.PERSPECTIVE, canvas.warp, Image.Resampling.NEAREST, fillcolor=-1), np.int32)
    if ss > 1:
        image = image.reduce(ss)
    image = _finish(image, cond, (scene.seed, capture_seed, 0xF1A, round(camera.x * 10), round(camera.y * 10)))
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


def _finish(image: Image.Image, cond: _Conditions, keys: tuple[int, ...]) -> Image.Image:
    """Per-capture camera effects: rain streaks and a little sensor noise, drawn from `keys` (`_rng`)."""
    w, h = image.size
    streaks, noise = _camera_effects(keys, w, h, cond.weather == "rainy")
    if streaks is not None:
        image = Image.composite(Image.new("RGB", (w, h), (205, 208, 212)), image, streaks)
    arr = np.asarray(image, np.float32) + noise
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=4)
def _camera_effects(keys: tuple[int, ...], w: int, h: int, rainy: bool) -> tuple[Image.Image | None, np.ndarray]:
    """The streak mask (rain) and the sensor noise of a capture: keyed by place, not heading, so a place's views
    share them, and the draws (0.7 ms an image at 128 px) are made once for its views (read-only)."""
    rng = _rng(*keys)
    streaks = None
    if rainy:
        streaks = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(streaks)
        slant = rng.uniform(-0.15, 0.15)
        for _ in range(int(w * h / 250)):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            length = rng.uniform(0.03, 0.08) * h
            draw.line([(x, y), (x + slant * length, y + length)], fill=int(rng.integers(40, 90)))
    noise = rng.normal(0.0, 1.6, (h, w, 3)).astype(np.float32)
    noise.flags.writeable = False
    return streaks, noise
