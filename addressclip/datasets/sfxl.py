"""SF-IAL-Base and SF-IAL-Large: SF-XL ``processed`` images with readable addresses.

Raw inputs:

- Images: SF-XL's ``processed`` folder (``raw_dir/processed/`` when that exists, else ``raw_dir`` itself;
  default ``raw_dir`` is ``<data>/raw/sf_xl/``), .jpg files at any depth (e.g. ``train/37.70/...``,
  ``test/database/...``). Names follow the CosPlace convention, '@'-separated::

      @UTM_east@UTM_north@UTM_zone_number@UTM_zone_letter@lat@lon@pano_id@tile_num@heading@pitch@roll@height@timestamp@note@.jpg
      @0544388.51@4172758.25@10@S@037.70098@-122.49646@kPnABhWJ1kA61eMNPLs1vQ@@210@@@@201606@@.jpg

  so ``name.split('@')`` gives easting [1], northing [2], zone [3], letter [4], lat [5], lon [6], pano id [7],
  tile [8], heading [9], pitch [10]; empty fields are allowed except easting, northing and zone. The zone
  letter is a UTM latitude band (San Francisco is band "S", a *northern* band), so the hemisphere comes from
  the latitude field's sign, or from the band (N..X north) when latitude is missing: EPSG 326zz / 327zz.
  Lat/lon are recomputed from UTM with pyproj; a file whose own lat/lon disagree by > 100 m is skipped.
  Images in another UTM zone than most are reprojected into the majority zone (SF is all zone 10).
- Addresses, either
  * ``annotations``: AddressCLIP's released annotation JSON (a file or a folder of ``*.json``; default
    ``raw_dir/annotations/`` when it exists), each ``{image path: [caption, verbose address sentence,
    canonical address]}``. Keys match image paths relative to the image root, else by file name. The split
    comes from the file name: the word train / val / test if exactly one is present, else database -> val,
    queries -> test (as Pitts-IAL's pitts_database / pitts_queries). When file names carry "base" or "large",
    only files of the requested ``variant`` are read. Images the files do not list are counted under
    ``image_without_annotation`` but never raise in strict mode: the annotations select a subset of SF-XL.
  * ``osm``: an OpenStreetMap extract (path or bundled name) for ``addressclip.datasets.osm.load_osm``; the
    image points (in their UTM CRS) and the loaded city go to
    ``addressclip.datasets.partition.assign_addresses``, which returns (points with ``street``, ``address``,
    ``neighbourhood``, NA where unassigned; segments). Unassigned images are counted as ``no_address``; the
    segments are written to ``segments.gpkg``. Splits are then drawn per panorama from a hash of the pano id
    (``split_fractions``), so they are location-disjoint and reproducible. SF-IAL-Base's 6 km2 extent is not
    published: with ``variant="base"`` this path needs ``subset_bbox`` (lon_min, lat_min, lon_max, lat_max).
    Captions: this path has no released captions. Pass ``captioner=`` (any `addressclip.datasets.captions.Captioner`
    that reads the photo, e.g. the BLIP example in that module) to caption every kept image; the card's
    ``captions`` names it. Without one the captions stay empty, the card says ``"captions": "none"`` and a
    warning (also in the card's ``warnings``) says that the caption loss then only repeats the address loss
    (train with caption weight 0). The project's `TemplateCaptioner` is refused here: it describes a rendered
    scene from the renderer's metadata and, given a real photo and no metadata, can only emit one of three
    generic sentences (one of them "a wide street with no buildings in view"), which would be wrong captions.

``location_id`` = pano id (all crops of a panorama share it); ``heading`` / ``pitch`` from fields 9 / 10
(NaN when empty). ``street`` / ``neighbourhood`` come from the partition (OSM path) or are parsed from the
address as for Pitts-IAL (`addressclip.datasets.pitts.parse_address`). Images are symlinked or copied as in Pitts-IAL: the table's
paths are ``images/<path under the image root>``. Skipped inputs: see `addressclip.datasets.pitts.SKIP_REASONS`.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from .captions import Captioner, TemplateCaptioner
from .rawdata import (
    ANNOTATION_COLUMNS,
    RawDataError,
    SkipLog,
    add_street_columns,
    finish_build,
    log_unannotated,
    match_annotations,
    outside,
    parse_address,
    read_annotation_file,
    utm_to_lonlat,
)

# Sanity box around San Francisco (lon_min, lat_min, lon_max, lat_max): catches impossible coordinates only.
SF_AREA = (-122.65, 37.60, -122.30, 37.90)
MAX_COORD_DISAGREEMENT_M = 100.0
VARIANTS = ("base", "large")

EXPECTED_LAYOUT = """\
expected SF-XL `processed` images with '@'-separated CosPlace names (e.g.
@0544388.51@4172758.25@10@S@037.70098@-122.49646@kPnABhWJ1kA61eMNPLs1vQ@@210@@@@201606@@.jpg) at any depth under
  {raw}/processed/   (or directly under {raw})
plus addresses: annotations=<AddressCLIP SF json file or folder> (default {raw}/annotations/) or osm=<OSM extract>.
Pass raw_dir=... to build from elsewhere."""


def build_sf_ial(
    out_dir: str | Path,
    name: str = "sf-ial-base",
    variant: str = "base",
    raw_dir: str | Path | None = None,
    annotations: str | Path | None = None,
    osm: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
    link_images: bool = True,
    verify_images: str = "header",
    area: tuple[float, float, float, float] = SF_AREA,
    subset_bbox: tuple[float, float, float, float] | None = None,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    captioner: Captioner | None = None,
    **_: Any,
) -> Path:
    """Build SF-IAL-`variant` into `out_dir` (module docstring); returns the dataset folder.

    `captioner` is used on the OSM path only (the annotation files carry AddressCLIP's captions)."""
    from .registry import raw_dir as default_raw_dir

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    raw = Path(raw_dir) if raw_dir is not None else default_raw_dir(name)
    image_root = locate_image_root(raw)
    if annotations is None and osm is None and (raw / "annotations").is_dir():
        annotations = raw / "annotations"
    if annotations is None and osm is None:
        raise ValueError(f"{name}: pass annotations=<AddressCLIP json file or folder> or osm=<OSM extract>; "
                         + EXPECTED_LAYOUT.format(raw=raw))
    if annotations is None and variant == "base" and subset_bbox is None:
        raise ValueError("SF-IAL-Base's 6 km2 extent is not published: without annotations pass "
                         "subset_bbox=(lon_min, lat_min, lon_max, lat_max)")

    if captioner is not None and annotations is None:
        check_photo_captioner(captioner)
    log = SkipLog(strict, root=image_root)
    found = list_images(image_root, progress)
    card: dict[str, Any] = {
        "name": name,
        "description": f"SF-IAL-{variant.capitalize()}: SF-XL `processed` images with readable addresses.",
        "source": "SF-XL processed (Berton et al. 2022, CosPlace) + "
        + ("AddressCLIP annotations" if annotations is not None else "OSM address partition"),
        "variant": variant,
        "raw_dir": str(raw),
        "assumptions": {
            "location_id": "pano id (file name field 7); rounded UTM when empty",
            "heading": "file name field 9, degrees (NaN when empty)",
            "epsg": "UTM zone from field 3; hemisphere from the latitude sign, else the band letter (N..X north)",
            "street": "address up to the first ' & ' or ','",
            "neighbourhood": "address after the last ', ' ('' if none)",
        },
    }
    segments = None
    if annotations is not None:
        samples, files = annotated_samples(Path(annotations), variant, found, log)
        card["inputs"] = {"annotations": str(annotations)}
        card["split_mapping"] = {
            "files": files, "rule": "train/val/test in the file name, else database->val, queries->test"
        }
        card["captions"] = "AddressCLIP annotation files (first element of each entry)"
        captioner = None
    else:
        samples, segments = osm_samples(found, osm, log, subset_bbox, split_fractions)
        card["inputs"] = {"osm": str(osm), "subset_bbox": list(subset_bbox) if subset_bbox else None}
        card["split_mapping"] = {"rule": "sha256(pano id) -> train/val/test", "fractions": list(split_fractions)}
        if captioner is not None:
            card["captions"] = describe_captioner(captioner)
        else:
            card["captions"] = "none"
            warnings.warn(NO_CAPTIONS_WARNING, UserWarning, stacklevel=2)
            card["warnings"] = [NO_CAPTIONS_WARNING]
    return finish_build(
        samples, out=Path(out_dir), card=card, image_root=image_root, log=log, area=area,
        link_images=link_images, verify_images=verify_images, progress=progress, segments=segments,
        captioner=captioner,
    )


NO_CAPTIONS_WARNING = (
    "captions: none. The OSM path has no released captions and no photo captioner was given, so every caption is "
    "empty and the caption text reduces to ' Address: <address>.': the caption loss would only repeat the address "
    "loss. Train with caption weight 0, or rebuild with captioner=<a Captioner that reads photos, e.g. BLIP>."
)


def describe_captioner(captioner: Captioner) -> str:
    """What the card records about a captioner: its ``name`` attribute if any, else its class name."""
    return str(getattr(captioner, "name", None) or type(captioner).__name__)


def check_photo_captioner(captioner: Captioner) -> None:
    """Refuse captioners that need rendered-scene metadata (`TemplateCaptioner`): a real photo has none."""
    if isinstance(captioner, TemplateCaptioner):
        raise ValueError(
            "TemplateCaptioner writes captions from a renderer's scene metadata; SF-XL photos have none, so it "
            "would caption every image with one of three generic (and often false) sentences. Pass a captioner "
            "that reads the photo (see addressclip.datasets.captions), or none (the card then says captions: none)."
        )
    if not callable(captioner):
        raise TypeError(f"captioner must be callable as captioner(image, info) -> str, not {type(captioner).__name__}")


def locate_image_root(raw: Path) -> Path:
    if not raw.is_dir():
        raise FileNotFoundError(f"SF-XL raw folder {raw} does not exist; " + EXPECTED_LAYOUT.format(raw=raw))
    return raw / "processed" if (raw / "processed").is_dir() else raw


def list_images(root: Path, progress: bool) -> list[str]:
    """Relative paths of every .jpg under `root` (any depth); raises if there is none."""
    found = []
    bar = tqdm(desc="listing SF-XL images", unit=" files", disable=not progress)
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else rel_folder + "/"
        batch = [prefix + f for f in files if f.lower().endswith((".jpg", ".jpeg"))]
        found += batch
        bar.update(len(batch))
    bar.close()
    if not found:
        raise FileNotFoundError(f"no .jpg images under {root}; " + EXPECTED_LAYOUT.format(raw=root.parent))
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------
# File names


def parse_sfxl_name(file_name: str) -> dict[str, Any]:
    """Fields of one CosPlace-style '@' name; raises ValueError when easting, northing or zone are unusable."""
    f = file_name.split("@")
    if len(f) < 10:
        raise ValueError(f"{len(f)} '@' fields, expected at least 10")
    zone = int(f[3])
    if not 1 <= zone <= 60:
        raise ValueError(f"UTM zone {zone}")
    lat, lon = _float_or_nan(f[5]), _float_or_nan(f[6])
    north = lat >= 0 if np.isfinite(lat) else f[4].strip().upper() >= "N"
    easting, northing = float(f[1]), float(f[2])
    return {
        "easting": easting,
        "northing": northing,
        "epsg": (32600 if north else 32700) + zone,
        "name_lat": lat,
        "name_lon": lon,
        # An empty pano id still needs a place: the UTM position rounded to a metre stands in for it.
        "location_id": f[7].strip() or f"utm{zone}_{round(easting)}_{round(northing)}",
        "heading": _float_or_nan(f[9]),
        "pitch": _float_or_nan(f[10]) if len(f) > 10 else np.nan,
    }


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan


def parse_names(rels: Sequence[str], log: SkipLog) -> pd.DataFrame:
    """Frame of file-name fields for `rels`, with lat/lon from UTM, in one CRS; logs unusable names."""
    rows, bad = [], []
    for rel in rels:
        try:
            rows.append({"rel": rel, **parse_sfxl_name(rel.rsplit("/", 1)[-1])})
        except ValueError as exc:
            bad.append(f"{rel} ({exc})")
    log.add("unparseable_file_name", bad)
    meta = pd.DataFrame(rows, columns=["rel", "easting", "northing", "epsg", "name_lat", "name_lon",
                                       "location_id", "heading", "pitch"])
    return unify_crs(check_lonlat(meta, log))


def check_lonlat(meta: pd.DataFrame, log: SkipLog) -> pd.DataFrame:
    """Set lat/lon from UTM; drop files whose own lat/lon disagree with their UTM by > 100 m."""
    meta = meta.assign(lat=np.nan, lon=np.nan)
    for epsg, idx in meta.groupby("epsg").groups.items():
        lon, lat = utm_to_lonlat(meta.loc[idx, "easting"], meta.loc[idx, "northing"], epsg)
        meta.loc[idx, "lon"], meta.loc[idx, "lat"] = lon, lat
    dy = (meta["name_lat"] - meta["lat"]) * 110_574.0
    dx = (meta["name_lon"] - meta["lon"]) * 111_320.0 * np.cos(np.radians(meta["lat"]))
    far = np.hypot(dx, dy) > MAX_COORD_DISAGREEMENT_M  # NaN (no lat/lon in the name) compares False
    log.add("inconsistent_coordinates", meta.loc[far, "rel"])
    return meta[~far].drop(columns=["name_lat", "name_lon"])


def unify_crs(meta: pd.DataFrame) -> pd.DataFrame:
    """Reproject rows of minority UTM zones into the majority zone (one dataset, one metric CRS)."""
    if meta.empty or meta["epsg"].nunique() == 1:
        return meta
    from pyproj import Transformer

    main = int(meta["epsg"].mode().iloc[0])
    other = meta["epsg"] != main
    e, n = Transformer.from_crs(4326, main, always_xy=True).transform(
        meta.loc[other, "lon"].to_numpy(), meta.loc[other, "lat"].to_numpy()
    )
    return meta.assign(
        easting=meta["easting"].mask(other, pd.Series(e, index=meta.index[other])),
        northing=meta["northing"].mask(other, pd.Series(n, index=meta.index[other])),
        epsg=main,
    )


# ---------------------------------------------------------------------------------------------------------
# Addresses from AddressCLIP's files


def split_from_file_name(stem: str) -> str | None:
    """'sf_base_train' -> train; 'x_test_database' -> test; 'sf_database' -> val; 'sf_queries' -> test."""
    words = set(re.split(r"[^a-z0-9]+", stem.lower()))
    named = [s for s in ("train", "val", "test") if s in words]
    if len(named) == 1:
        return named[0]
    if not named:
        implied = {s for w, s in (("database", "val"), ("db", "val"), ("queries", "test"), ("query", "test"))
                   if w in words}
        if len(implied) == 1:
            return implied.pop()
    return None


def annotation_files(path: Path, variant: str, log: SkipLog) -> list[tuple[Path, str]]:
    """(file, split) pairs to read: `path` itself or its *.json, narrowed to `variant` when names say it."""
    if not path.exists():
        raise FileNotFoundError(f"annotation file or folder {path} does not exist")
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no *.json annotation files in {path}")
    words = {f: set(re.split(r"[^a-z0-9]+", f.stem.lower())) for f in files}
    if any(w & set(VARIANTS) for w in words.values()):
        files = [f for f in files if variant in words[f]]
    pairs = []
    for f in files:
        split = split_from_file_name(f.stem)
        if split is None:
            log.add("unknown_split_file", f.name)
        else:
            pairs.append((f, split))
    return pairs


def annotated_samples(path: Path, variant: str, found: Sequence[str], log: SkipLog) -> tuple[pd.DataFrame, dict]:
    files = annotation_files(path, variant, log)
    frames = [read_annotation_file(f, split, log) for f, split in files]
    annotations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ANNOTATION_COLUMNS)
    annotations = match_annotations(annotations, found, log)
    log_unannotated(found, annotations["rel"], log, fatal=False)
    meta = parse_names(list(annotations["rel"]), log)
    samples = add_street_columns(annotations.merge(meta, on="rel", how="inner"))
    return samples, {f.name: split for f, split in files}


# ---------------------------------------------------------------------------------------------------------
# Addresses from OpenStreetMap (thin: the partition lives in addressclip.datasets.partition)


def osm_samples(found, osm, log, subset_bbox, split_fractions) -> tuple[pd.DataFrame, Any]:
    meta = parse_names(found, log)
    if subset_bbox is not None:
        away = outside(meta, subset_bbox)
        log.add("outside_subset_bbox", meta.loc[away, "rel"], fatal=False)
        meta = meta[~away]
    if meta.empty:
        raise RawDataError(f"no usable images to address (subset_bbox={subset_bbox}); skipped: {dict(log.counts)}")
    assigned, segments = assign_osm_addresses(meta, osm)
    address = assigned["address"].fillna("").astype(str).str.strip()
    missing = (address == "").to_numpy()
    log.add("no_address", meta.loc[missing, "rel"], fatal=False)
    samples = meta[~missing].assign(address=address[~missing], caption="", address_sentence="")
    parsed = samples["address"].map(parse_address)
    samples["street"] = _column_or(assigned, "street", parsed.str[0], ~missing)
    samples["neighbourhood"] = _column_or(assigned, "neighbourhood", parsed.str[1], ~missing)
    samples["split"] = hash_split(samples["location_id"], split_fractions)
    return samples, segments


def _column_or(assigned: pd.DataFrame, col: str, fallback: pd.Series, keep) -> pd.Series:
    if col not in assigned.columns:
        return fallback
    values = assigned.loc[keep, col].fillna("").astype(str)
    return values.where(values != "", fallback)


def assign_osm_addresses(meta: pd.DataFrame, osm) -> tuple[pd.DataFrame, Any]:
    """(addresses aligned with `meta`, segments) from the OSM loader and the address partition."""
    try:
        from .osm import load_osm
        from .partition import assign_addresses
    except ImportError as exc:
        raise ImportError(
            "building SF-IAL from OpenStreetMap needs addressclip.datasets.osm.load_osm and "
            f"addressclip.datasets.partition.assign_addresses, which cannot be imported ({exc}); "
            "pass annotations=<AddressCLIP SF annotation json> instead"
        ) from exc
    import geopandas as gpd

    epsg = int(meta["epsg"].iloc[0]) if len(meta) else 32610
    points = gpd.GeoDataFrame(
        meta[["rel", "location_id"]],
        geometry=gpd.points_from_xy(meta["easting"], meta["northing"]),
        crs=f"EPSG:{epsg}",
    )
    assigned, segments = assign_addresses(points, load_osm(osm))
    return pd.DataFrame(assigned).reindex(meta.index), segments


def hash_split(location_ids: pd.Series, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """train/val/test per location from sha256(location id): deterministic and location-disjoint."""
    cuts = np.cumsum(fractions) / np.sum(fractions)
    unique = location_ids.unique()
    u = np.array([int.from_bytes(hashlib.sha256(str(x).encode()).digest()[:8], "big") / 2**64 for x in unique])
    split = dict(zip(unique, np.where(u < cuts[0], "train", np.where(u < cuts[1], "val", "test"))))
    return location_ids.map(split).to_numpy()
