"""Your own geotagged photos + an OpenStreetMap extract of the area -> a dataset in the common format.

    build_photo_dataset("data/my-street-photos", photos="~/Pictures/trip", osm="bremen.osm.pbf")
    addressclip build my-street-photos --osm bremen.osm.pbf --photos ~/Pictures/trip [--coordinates coords.csv]

Inputs:

- ``photos``: a folder, searched recursively, of image files with an extension Pillow reads (.jpg, .jpeg, .png,
  .webp, .tif, ...; other files are not photos and are ignored). Every photo is decoded once with the project's one
  decoder (`addressclip.data.open_image`, EXIF orientation applied), so training, evaluation and prediction see
  the same pixels.
- Coordinates, per photo:
  * EXIF GPS, as cameras and phones write it: ``GPSLatitude`` / ``GPSLongitude`` as three rationals (degrees,
    minutes, seconds) with ``GPSLatitudeRef`` N/S and ``GPSLongitudeRef`` E/W; ``GPSImgDirection`` (degrees, true
    or magnetic north as ``GPSImgDirectionRef`` says; recorded as is) gives the heading when present. A fix marked
    void (``GPSStatus`` "V"), a zero denominator or a value out of range makes the GPS unusable (``bad_gps``).
  * ``coordinates``: a CSV with a header and columns ``file, lat, lon`` and optionally ``heading`` (degrees from
    north), for photos without EXIF GPS. ``file`` is the path relative to the photo folder, or a bare file name
    when that name is unique in the folder. A CSV row wins over the photo's own EXIF GPS (the user said so
    explicitly); the table's ``coordinates_from`` column says which was used.
- ``osm``: an OpenStreetMap extract of the area (``.osm.pbf``, ``.osm``, ``.osm.bz2``; see
  `addressclip.datasets.osm.load_osm`). The dataset's metric CRS is the extract's UTM zone.

Addresses come from the extract exactly as for SF-IAL's OSM path: the photo points go to
`addressclip.datasets.partition.assign_addresses` with the extract's streets (reverse geocoding to the nearest
named street within ``max_snap_m``, the paper's semantic partition with its merge of sparse segments, and the
postcode-vote neighbourhood). The partition therefore depends on where the photos were taken, as in the paper.

Locations: photos taken within ``location_radius_m`` of each other (linked in a chain) are one location (a user
turning on the spot takes several views of one place, with GPS readings a few metres apart). Splits are drawn per
location, stratified by address, ~70/10/20 % as for the rendered datasets (`synth.split_locations`), so they are
location-disjoint and every val/test address also appears in train.

Captions: photos carry no rendered-scene metadata, so the template captioner is refused (it could only emit
generic, often false, sentences). Without a captioner the captions are empty and the card says
``"captions": "none"`` (train with caption weight 0); a captioner that reads photos (e.g. the BLIP example in
`addressclip.datasets.captions`) may be passed.

Bad inputs are counted by reason in the card's ``skipped`` (with examples); with ``strict=True`` the build stops at
the first: ``unsupported_format`` (HEIC or RAW files Pillow cannot decode here), ``corrupt_image``,
``duplicate_photo`` (same bytes as an earlier photo in path order: the first is kept), ``no_gps``, ``bad_gps``,
``outside_extract``, ``no_address``, plus ``malformed_coordinates_row`` and ``coordinates_without_photo`` for the CSV.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import ExifTags, Image
from tqdm.auto import tqdm

from .captions import Captioner
from .rawdata import RawDataError, SkipLog, finish_build

LOCATION_RADIUS_M = 10.0
CAPTIONER_CHOICES = ("none", "template")
# Camera formats that are photos but that Pillow does not decode without a plugin: counted, never silently ignored.
CAMERA_FORMATS = (".heic", ".heif", ".hif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef",
                  ".srw")


class PhotoInputError(ValueError):
    """The photo folder or the coordinates file cannot be used at all."""


# ------------------------------------------------------------------------------------------------ EXIF GPS
def _rational(value: Any) -> float:
    """An EXIF rational (Pillow's IFDRational, a (num, den) pair or a number) as float; NaN for 0/0 or junk."""
    try:
        if isinstance(value, tuple) and len(value) == 2:
            num, den = value
            return float(num) / float(den) if float(den) else math.nan
        out = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return math.nan
    return out


def _dms(value: Any) -> float:
    """(degrees, minutes, seconds) rationals -> decimal degrees; a single number is taken as degrees."""
    if isinstance(value, (tuple, list)):
        parts = [_rational(v) for v in value]
        if not 1 <= len(parts) <= 3:
            return math.nan
        parts += [0.0] * (3 - len(parts))
        return parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    return _rational(value)


def _ref(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip("\x00 ").upper()


class GPSError(ValueError):
    """EXIF GPS present but unusable."""


def exif_gps(image: Image.Image) -> tuple[float, float, float] | None:
    """(lat, lon, heading) from an image's EXIF GPS IFD; None when there is no GPS position at all.

    heading is NaN without ``GPSImgDirection``. Raises `GPSError` when a position is present but unusable
    (void fix, bad reference letter, zero denominators, out of range)."""
    try:
        gps = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # noqa: BLE001 - a damaged EXIF block means no usable GPS, not an unreadable photo
        return None
    if not gps or ExifTags.GPS.GPSLatitude not in gps or ExifTags.GPS.GPSLongitude not in gps:
        return None
    if _ref(gps.get(ExifTags.GPS.GPSStatus)) == "V":
        raise GPSError("GPSStatus is V (void: the camera had no fix)")
    lat, lon = _dms(gps[ExifTags.GPS.GPSLatitude]), _dms(gps[ExifTags.GPS.GPSLongitude])
    lat_ref = _ref(gps.get(ExifTags.GPS.GPSLatitudeRef, "N")) or "N"
    lon_ref = _ref(gps.get(ExifTags.GPS.GPSLongitudeRef, "E")) or "E"
    if lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
        raise GPSError(f"GPSLatitudeRef {lat_ref!r} / GPSLongitudeRef {lon_ref!r} (expected N/S and E/W)")
    lat, lon = (-lat if lat_ref == "S" else lat), (-lon if lon_ref == "W" else lon)
    check_lat_lon(lat, lon)
    heading = math.nan
    if ExifTags.GPS.GPSImgDirection in gps:
        heading = _rational(gps[ExifTags.GPS.GPSImgDirection])
        heading = heading % 360.0 if math.isfinite(heading) else math.nan
    return lat, lon, heading


def check_lat_lon(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise GPSError(f"latitude/longitude not numbers ({lat}, {lon})")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise GPSError(f"latitude {lat} / longitude {lon} out of range")


def read_photo_gps(path: str | Path) -> tuple[float, float, float] | None:
    """EXIF (lat, lon, heading) of a photo file; None when it has none or it is unusable or unreadable."""
    try:
        with Image.open(path) as im:
            return exif_gps(im)
    except (GPSError, OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------- inputs
def photo_extensions() -> set[str]:
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def list_photos(folder: Path) -> tuple[list[str], list[str]]:
    """Relative paths (sorted) under `folder` of the files whose extension Pillow reads, and of camera formats it
    cannot decode here (HEIC, RAW; see CAMERA_FORMATS). Hidden files and folders are skipped; other files (notes,
    videos) are not photos and are ignored."""
    readable = photo_extensions()
    unsupported = set(CAMERA_FORMATS) - readable
    found, other = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_root = Path(root).relative_to(folder)
        for f in files:
            suffix = Path(f).suffix.lower()
            if f.startswith("."):
                continue
            if suffix in readable:
                found.append((rel_root / f).as_posix())
            elif suffix in unsupported:
                other.append((rel_root / f).as_posix())

    def clean(paths):
        return sorted(p[2:] if p.startswith("./") else p for p in paths)

    return clean(found), clean(other)


def read_coordinates(path: Path, photos: list[str], log: SkipLog) -> dict[str, tuple[float, float, float]]:
    """{photo rel path: (lat, lon, heading)} from a CSV with columns file, lat, lon[, heading]."""
    if not path.is_file():
        raise PhotoInputError(f"coordinates file {path} does not exist (expected a CSV with columns file, lat, lon[, heading])")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, skipinitialspace=True)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PhotoInputError(f"coordinates file {path} is not a readable CSV: {exc}") from exc
    missing = [c for c in ("file", "lat", "lon") if c not in columns]
    if missing:
        raise PhotoInputError(f"coordinates file {path} lacks columns {missing}; it has {columns}; "
                              "expected a header line: file,lat,lon[,heading]")
    by_name: dict[str, list[str]] = {}
    for rel in photos:
        by_name.setdefault(rel.rsplit("/", 1)[-1], []).append(rel)
    known, out, bad, unmatched = set(photos), {}, [], []
    for line, row in enumerate(rows, start=2):
        name = row["file"].replace("\\", "/").lstrip("./")
        rel = name if name in known else (by_name.get(name, [None])[0] if len(by_name.get(name, [])) == 1 else None)
        if rel is None:
            unmatched.append(f"line {line}: {row['file']}")
            continue
        try:
            lat, lon = float(row["lat"]), float(row["lon"])
            check_lat_lon(lat, lon)
            heading = float(row["heading"]) % 360.0 if row.get("heading") else math.nan
        except (ValueError, GPSError) as exc:
            bad.append(f"line {line}: {row['file']} ({exc})")
            continue
        out[rel] = (lat, lon, heading)
    log.add("malformed_coordinates_row", bad)
    log.add("coordinates_without_photo", unmatched)
    return out


def scan_photos(root: Path, rels: list[str], coordinates: dict[str, tuple[float, float, float]], log: SkipLog,
                progress: bool) -> pd.DataFrame:
    """Decode every photo once (the one decoder), read its GPS, drop corrupt, duplicate and unlocated ones."""
    from ..data import CorruptImageError, load_image

    rows, corrupt, dup, no_gps, bad_gps = [], [], [], [], []
    seen: dict[str, str] = {}
    for rel in tqdm(rels, desc="reading photos", unit="photo", disable=not progress):
        path = root / rel
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            load_image(path, size_hint=64)  # decodes (at reduced scale for JPEG): a photo that cannot be read is out
            with Image.open(path) as im:
                width, height = im.size
                try:
                    gps = exif_gps(im)
                    gps_error = None
                except GPSError as exc:
                    gps, gps_error = None, str(exc)
        except (CorruptImageError, OSError, ValueError) as exc:
            corrupt.append(f"{rel} ({type(exc).__name__})")
            continue
        if digest in seen:
            dup.append(f"{rel} (same bytes as {seen[digest]})")
            continue
        seen[digest] = rel
        if rel in coordinates:
            lat, lon, heading = coordinates[rel]
            source = "csv"
        elif gps is not None:
            lat, lon, heading = gps
            source = "exif"
        elif gps_error is not None:
            bad_gps.append(f"{rel} ({gps_error})")
            continue
        else:
            no_gps.append(rel)
            continue
        rows.append({"rel": rel, "lat": lat, "lon": lon, "heading": heading, "coordinates_from": source,
                     "width": width, "height": height})
    log.add("corrupt_image", corrupt)
    log.add("duplicate_photo", dup)
    log.add("bad_gps", bad_gps)
    log.add("no_gps", no_gps)
    return pd.DataFrame(rows, columns=["rel", "lat", "lon", "heading", "coordinates_from", "width", "height"])


def group_locations(easting: np.ndarray, northing: np.ndarray, radius_m: float) -> np.ndarray:
    """Location index per photo: photos within `radius_m` of each other, chained (single linkage), share one.
    Indices follow the order of each group's first photo."""
    import shapely

    n = len(easting)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n:
        points = shapely.points(np.column_stack([easting, northing]))
        a, b = shapely.STRtree(points).query(points, predicate="dwithin", distance=radius_m)
        for i, j in zip(a, b):
            ri, rj = find(int(i)), find(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    roots = [find(i) for i in range(n)]
    order = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return np.array([order[r] for r in roots], dtype=int)


def fill_empty_splits(address: pd.Series, split: pd.Series) -> tuple[pd.Series, list[str]]:
    """Give an empty val or test split one location (a small photo folder stratified ~70/10/20 per address often
    leaves val empty, and training validates on it): the last train location of the address with the most train
    locations (at least 2, so the address stays in train). One row per location; returns (splits, what moved)."""
    split = split.copy()
    moved = []
    for target in ("val", "test"):
        if (split == target).any():
            continue
        train = split[split == "train"]
        counts = address[train.index].value_counts()
        counts = counts[counts >= 2]
        if counts.empty:
            continue  # too few locations: training then says which split is missing
        best = sorted(counts[counts == counts.max()].index)[0]
        row = train.index[address[train.index] == best][-1]
        split[row] = target
        moved.append(f"location {row} of {best!r}: train -> {target}")
    return split, moved


def check_captioner(captioner: Captioner | str | None) -> Captioner | None:
    """None / "none" -> no captions; "template" or a TemplateCaptioner -> refused (needs rendered-scene info)."""
    from .sfxl import check_photo_captioner
    from .captions import TemplateCaptioner

    if captioner is None or (isinstance(captioner, str) and captioner.lower() == "none"):
        return None
    if isinstance(captioner, str):
        if captioner.lower() == "template":
            captioner = TemplateCaptioner()
        else:
            raise ValueError(f"unknown captioner {captioner!r}; valid: {', '.join(CAPTIONER_CHOICES)} or a Captioner object")
    if isinstance(captioner, TemplateCaptioner):
        raise ValueError(
            "captioner 'template' writes captions from a renderer's scene metadata (buildings, cars, weather in view); "
            "a photograph has none, so it would caption every photo with a generic and often false sentence. Use "
            "captioner='none' (the card then says captions: none; train with w_caption 0) or pass a Captioner that "
            "reads the photo (see addressclip.datasets.captions)."
        )
    check_photo_captioner(captioner)
    return captioner


# ------------------------------------------------------------------------------------------------- builder
def build_photo_dataset(
    out_dir: str | Path,
    photos: str | Path,
    osm: str | Path,
    name: str | None = None,
    coordinates: str | Path | None = None,
    strict: bool = False,
    captioner: Captioner | str | None = None,
    location_radius_m: float = LOCATION_RADIUS_M,
    seed: int = 0,
    link_images: bool = True,
    progress: bool = True,
    **ignored: Any,
) -> Path:
    """Build a dataset from a folder of geotagged photos and an OSM extract of the area (module docstring).

    Returns `out_dir`. Raises `PhotoInputError` when the folder or the CSV cannot be used at all,
    `addressclip.datasets.osm.OSMExtractError` for an unusable extract, and `RawDataError` in strict mode at the
    first bad photo, or when no photo is left."""
    import time

    import geopandas as gpd

    from .osm import load_osm
    from .partition import DEFAULT_MAX_SNAP_M, assign_addresses
    from .sfxl import NO_CAPTIONS_WARNING, describe_captioner
    from .synth import split_locations

    t0 = time.time()
    unknown = sorted(set(ignored) - {"raw_dir", "city_scale"})
    if unknown:
        warnings.warn(f"build_photo_dataset ignores unknown options {unknown}", stacklevel=2)
    root = Path(photos).expanduser()
    if not root.is_dir():
        raise PhotoInputError(f"photo folder {str(photos)!r} does not exist or is not a folder")
    if location_radius_m < 0:
        raise ValueError(f"location_radius_m must be >= 0, got {location_radius_m}")
    captioner = check_captioner(captioner)
    city = load_osm(osm)  # a bad extract fails before the photos are read
    rels, unsupported = list_photos(root)
    if not rels:
        formats = f"; found only {len(unsupported)} HEIC/RAW files, which need converting to JPEG" if unsupported else ""
        raise PhotoInputError(f"no photos under {root} (looked for files with the extensions Pillow reads: .jpg, .jpeg, "
                              f".png, .webp, .tif, ...){formats}")
    log = SkipLog(strict, root=root)
    log.add("unsupported_format", unsupported)
    coords = read_coordinates(Path(coordinates).expanduser(), rels, log) if coordinates is not None else {}
    meta = scan_photos(root, rels, coords, log, progress)

    bounds = city.bounds_lonlat
    lon_min, lat_min, lon_max, lat_max = bounds
    away = ~(meta["lon"].between(lon_min, lon_max) & meta["lat"].between(lat_min, lat_max))
    log.add("outside_extract", [f"{r} ({la:.5f}, {lo:.5f})" for r, la, lo in
                                meta.loc[away, ["rel", "lat", "lon"]].itertuples(index=False)])
    meta = meta[~away].reset_index(drop=True)
    if meta.empty:
        raise RawDataError(f"no usable photos under {root} inside the extract {city.source} "
                           f"(lon/lat box {tuple(round(b, 5) for b in bounds)}); skipped per reason: {dict(log.counts)}")

    points = gpd.GeoDataFrame(meta[["rel"]], geometry=gpd.points_from_xy(meta["lon"], meta["lat"]),
                              crs="EPSG:4326").to_crs(city.epsg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # photos far from a street are counted below, by name
        assigned, segments = assign_addresses(points, city, max_snap_m=DEFAULT_MAX_SNAP_M)
    unassigned = assigned["address"].isna().to_numpy()
    log.add("no_address", [f"{r} ({d:.0f} m from the nearest named street)" for r, d in
                           zip(meta.loc[unassigned, "rel"], assigned.loc[unassigned, "snap_m"])])
    keep = ~unassigned
    meta, assigned = meta[keep].reset_index(drop=True), assigned[keep].reset_index(drop=True)
    if meta.empty:
        raise RawDataError(f"no photo under {root} lies within {DEFAULT_MAX_SNAP_M} m of a named street of "
                           f"{city.source}; skipped per reason: {dict(log.counts)}")

    east, north = assigned.geometry.x.to_numpy(), assigned.geometry.y.to_numpy()
    loc_index = group_locations(east, north, location_radius_m)
    slug = "".join(ch for ch in (name or Path(out_dir).name).lower() if ch.isascii() and (ch.isalnum() or ch in "-_"))
    slug = slug.strip("-_") or "photos"
    location_id = np.array([f"{slug}-{i:05d}" for i in loc_index])
    # a location whose photos snapped to different addresses (a corner) takes its first photo's address
    first = pd.Series(assigned["address"].to_numpy(), index=location_id).groupby(level=0).first()
    per_loc = first.reindex(sorted(first.index))
    loc_splits = pd.Series(split_locations(pd.Series(per_loc.to_numpy(), dtype="string"), seed=seed).to_numpy(),
                           index=per_loc.index)
    loc_splits, moved = fill_empty_splits(per_loc, loc_splits)
    split_of = loc_splits.to_dict()
    samples = pd.DataFrame({
        "rel": meta["rel"], "split": [split_of[x] for x in location_id], "location_id": location_id,
        "heading": meta["heading"].astype(float), "pitch": np.nan, "easting": east, "northing": north,
        "epsg": city.epsg, "lat": meta["lat"], "lon": meta["lon"],
        "street": assigned["street"].astype(str), "address": assigned["address"].astype(str), "caption": "",
        "neighbourhood": assigned["neighbourhood"].fillna("").astype(str),
        "coordinates_from": meta["coordinates_from"], "snap_m": assigned["snap_m"].round(2),
        "width": meta["width"], "height": meta["height"],
    })
    mixed = (pd.Series(samples["address"].to_numpy(), index=location_id).groupby(level=0).nunique() > 1).sum()
    card: dict[str, Any] = {
        "name": name or Path(out_dir).name,
        "description": f"Your own geotagged photos, addressed with the semantic address partition of the OpenStreetMap "
                       f"extract {Path(city.source).name} ({city.name}).",
        "synthetic": False,
        "source": "user photos + OSM address partition",
        "city": city.name,
        "osm_source": str(city.source),
        "osm_file": Path(city.source).name,
        "licence": "photos: the user's; map data ODbL 1.0, © OpenStreetMap contributors",
        "inputs": {"photos": str(root.resolve()), "coordinates": str(coordinates) if coordinates else None,
                   "osm": str(osm)},
        "photos_found": len(rels) + len(unsupported),
        "coordinates_from": {k: int(v) for k, v in samples["coordinates_from"].value_counts().items()},
        "extract_bounds_lonlat": [round(b, 6) for b in bounds],
        "assumptions": {
            "coordinates": "EXIF GPS (GPSLatitude/GPSLongitude as degrees, minutes, seconds with N/S, E/W refs); a "
                           "row of the coordinates CSV wins over EXIF",
            "heading": "EXIF GPSImgDirection or the CSV's heading (degrees; NaN when absent)",
            "location_id": f"photos within {location_radius_m} m of each other (chained) share a location",
            "locations_with_several_addresses": int(mixed),
            "address": f"nearest named street within {DEFAULT_MAX_SNAP_M} m, then the semantic address partition "
                       "of the extract's streets (sparse segments merged, as in the paper)",
            "orientation": "EXIF orientation applied by the one decoder (addressclip.data.open_image)",
        },
        "split_rule": "location-disjoint, stratified by address: ~70/10/20 % of each address's locations; "
                      "each address has >= 1 train location; an empty val or test split takes one train location "
                      "of the address with the most (training reads all three)",
        "split_moves": moved,
        "neighbourhood_rule": "postcode vote among addressed OSM objects within 300 m of the segment "
                              "(nearest within 1 km otherwise; else the city name)",
    }
    if captioner is not None:
        card["captions"] = describe_captioner(captioner)
    else:
        card["captions"] = "none"
        message = NO_CAPTIONS_WARNING.replace("The OSM path has no released captions", "Photos come without captions")
        warnings.warn(message, UserWarning, stacklevel=2)
        card["warnings"] = [message]
    segments = segments[segments["address"].isin(set(samples["address"]))]
    out = finish_build(
        samples, out=Path(out_dir), card=card, image_root=root, log=log, area=tuple(bounds),
        link_images=link_images, verify_images="none", progress=progress, segments=segments, captioner=captioner,
    )
    _record_build_time(out, time.time() - t0)
    return out


def _record_build_time(out: Path, seconds: float) -> None:
    """Add the wall time to the finished card (card.json and card.md)."""
    import json

    from ..cache import seal, unseal, write_text
    from .format import card_markdown

    card = json.loads((out / "card.json").read_text())
    card["build_time_s"] = round(seconds, 2)
    write_text(out / "card.md", card_markdown(card))
    unseal(out, ["card.json"])
    write_text(out / "card.json", json.dumps(card, indent=2, sort_keys=True, default=str))
    seal(out, ["card.json"])
