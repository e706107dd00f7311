"""Pitts-IAL: the Pittsburgh-250k database images with the AddressCLIP address annotations.

Raw inputs, in their released formats, under ``raw_dir`` (default ``<data>/raw/pitts250k/``):

- Images: folders ``000`` .. ``010`` holding ``NNNNNN_pitchP_yawY.jpg`` (480x640). ``NNNNNN`` numbers the
  Street View panorama (folder ``NNN`` = number // 1000); each panorama is cut into 24 views, 12 yaw x 2 pitch,
  all named with the same number. Only these database images are used: Pitts-IAL is the 254,064 database
  images, so ``queries_real/`` is never read.
- Coordinates: NetVLAD's ``pitts250k_train.mat``, ``pitts250k_val.mat``, ``pitts250k_test.mat`` (MATLAB v5,
  read with scipy), each holding the struct ``dbStruct`` with fields whichSet, dbImageFns (Nx1 cell of paths
  such as ``000/000000_pitch1_yaw1.jpg``), utmDb (2xN: easting; northing), qImageFns, utmQ, numImages,
  numQueries, posDistThr, posDistSqThr, nonTrivPosDistSqThr. The db parts of the three files together cover
  every database image; only dbImageFns and utmDb are used. UTM zone 17N, EPSG:32617.
- Addresses: AddressCLIP's ``pitts_train.json``, ``pitts_database.json``, ``pitts_queries.json``, each
  ``{relative image path: [caption, verbose address sentence, canonical address]}``.
  The ``.mat`` and ``.json`` files may sit in ``raw_dir`` itself or in one folder below it (e.g. ``datasets/``).

Splits, as released: pitts_train.json -> train, pitts_database.json -> val, pitts_queries.json -> test.
These are AddressCLIP's location-disjoint re-split of the database images, not NetVLAD's train/val/test.
The card's ``retrieval_database`` is ``["train", "val"]``: the two-stage baselines (``baselines/two_stage.py``)
search every non-query image with known GPS, as the paper's two-stage comparison does (selection on val then
uses the train part only).

Columns derived here:

- ``location_id``: the 6-digit panorama number, shared by its 24 views (which also share one utmDb entry).
- ``heading`` = 30 * (yaw - 1) degrees for yaw1..yaw12. ASSUMPTION: yaw1 faces north. The dataset documents
  12 yaw directions 30 degrees apart; that they are north-referenced is not verified.
- ``pitch``: pitch1 -> 4.0, pitch2 -> 26.5 degrees, the two pitch directions reported by the dataset's
  authors (Torii et al., CVPR 2013). ASSUMPTION: taken from that paper, not checkable from the files.
- ``street`` / ``neighbourhood``: parsed from the canonical address, see `parse_address`.
- ``caption``: the first annotation element; the verbose sentence is kept as extra column ``address_sentence``.

Images: ``<out>/images`` becomes a symlink to ``raw_dir`` (``link_images=True``: no copy of ~20 GB, but the
dataset breaks if the raw folder moves), or a folder holding copies of the kept images
(``link_images=False``). Either way the table's paths read ``images/000/000015_pitch1_yaw1.jpg``.

Bad inputs are never dropped silently: each is counted under a reason in the card's ``skipped`` dict, with a
few example files (see `SKIP_REASONS`), or, with ``strict=True``, raises `RawDataError` naming the file.

The second half of this module holds the helpers shared with the SF-IAL builder (``sfxl.py``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from .rawdata import (
    SkipLog,
    add_street_columns,
    finish_build,
    log_unannotated,
    match_annotations,
    normalise_key,
    read_annotation_file,
    utm_to_lonlat,
)

PITTS_EPSG = 32617
IMAGE_FOLDERS = tuple(f"{i:03d}" for i in range(11))
MAT_FILES = ("pitts250k_train.mat", "pitts250k_val.mat", "pitts250k_test.mat")
ANNOTATION_SPLITS = {"pitts_train.json": "train", "pitts_database.json": "val", "pitts_queries.json": "test"}
YAW_STEP_DEG = 30.0
PITCH_DEG = {1: 4.0, 2: 26.5}
# Sanity box (lon_min, lat_min, lon_max, lat_max) around Pittsburgh, generous on purpose: it only catches
# coordinates that cannot be right (zeros, swapped axes, another UTM zone), not images at the city's edge.
PITTS_AREA = (-80.25, 40.30, -79.75, 40.60)
_NAME_RE = re.compile(r"^(?P<place>\d{6})_pitch(?P<pitch>[12])_yaw(?P<yaw>\d{1,2})\.jpe?g$", re.IGNORECASE)

EXPECTED_LAYOUT = """\
expected Pittsburgh-250k + AddressCLIP files:
  {raw}/000/ .. {raw}/010/   database images named like 000015_pitch1_yaw1.jpg
  {raw}/pitts250k_train.mat, pitts250k_val.mat, pitts250k_test.mat   NetVLAD dbStruct files
  {raw}/pitts_train.json, pitts_database.json, pitts_queries.json    AddressCLIP annotations
(.mat and .json files may also sit one folder below, e.g. {raw}/datasets/). Pass raw_dir=... to build from
elsewhere."""


def build_pitts_ial(
    out_dir: str | Path,
    name: str = "pitts-ial",
    raw_dir: str | Path | None = None,
    strict: bool = False,
    link_images: bool = True,
    progress: bool = True,
    verify_images: str = "header",
    area: tuple[float, float, float, float] = PITTS_AREA,
    **_: Any,
) -> Path:
    """Build Pitts-IAL into `out_dir` from the raw files (module docstring); returns the dataset folder.

    verify_images: "header" (PIL open + verify, cheap), "full" (decode every pixel; also catches truncated
    files) or "none".
    """
    from .registry import raw_dir as default_raw_dir

    raw = Path(raw_dir) if raw_dir is not None else default_raw_dir("pitts-ial")
    mats, annotation_files = locate_pitts_inputs(raw)
    log = SkipLog(strict, root=raw)

    coords, mat_info = read_pitts_coordinates(mats, log)
    annotations = pd.concat(
        [read_annotation_file(path, split, log) for path, split in annotation_files], ignore_index=True
    )
    found = list_pitts_images(raw, progress)
    annotations = match_annotations(annotations, found, log)
    log_unannotated(found, annotations["rel"], log)
    samples = pitts_samples(annotations, coords, log)

    card = {
        "name": name,
        "description": "Pitts-IAL: Pittsburgh-250k database images with AddressCLIP's released addresses, "
        "captions and splits; coordinates from NetVLAD's dbStruct files.",
        "source": "Pittsburgh-250k (Torii et al. 2013) + NetVLAD pitts250k_*.mat + AddressCLIP pitts_*.json",
        "raw_dir": str(raw),
        "split_mapping": ANNOTATION_SPLITS,
        "assumptions": {
            "location_id": "6-digit panorama number in the file name (its 24 views share it)",
            "heading": "30 * (yaw - 1) degrees, yaw1 assumed to face north (unverified)",
            "pitch": f"pitch1 -> {PITCH_DEG[1]}, pitch2 -> {PITCH_DEG[2]} degrees (Torii et al. 2013; unverified)",
            "street": "canonical address up to the first ' & ' or ','",
            "neighbourhood": "canonical address after the last ', ' ('' if none)",
        },
        "inputs": {"mat_files": mat_info, "annotation_files": [str(p) for p, _ in annotation_files]},
        "captions": "AddressCLIP annotation files (first element of each entry)",
        # the two-stage baselines' database: every non-query image with known GPS (pitts_database.json is val)
        "retrieval_database": ["train", "val"],
    }
    return finish_build(
        samples, out=Path(out_dir), card=card, image_root=raw, log=log, area=area,
        link_images=link_images, verify_images=verify_images, progress=progress,
    )


def locate_pitts_inputs(raw: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Find the .mat and .json inputs; raise FileNotFoundError listing whatever is missing."""
    if not raw.is_dir():
        raise FileNotFoundError(f"Pitts-IAL raw folder {raw} does not exist; " + EXPECTED_LAYOUT.format(raw=raw))
    wanted = {n: find_input_file(raw, n) for n in (*MAT_FILES, *ANNOTATION_SPLITS)}
    missing = [n for n, p in wanted.items() if p is None]
    if not any((raw / f).is_dir() for f in IMAGE_FOLDERS):
        missing.append("image folders 000..010")
    if missing:
        raise FileNotFoundError(
            f"Pitts-IAL raw data at {raw} is incomplete: missing {', '.join(missing)}; "
            + EXPECTED_LAYOUT.format(raw=raw)
        )
    mats = [wanted[n] for n in MAT_FILES]
    return mats, [(wanted[n], split) for n, split in ANNOTATION_SPLITS.items()]


def find_input_file(raw: Path, name: str) -> Path | None:
    """`raw/name`, else `raw/<subfolder>/name` (first in sorted order); None if neither exists."""
    if (raw / name).is_file():
        return raw / name
    for sub in sorted(p for p in raw.iterdir() if p.is_dir()):
        if (sub / name).is_file():
            return sub / name
    return None


def list_pitts_images(raw: Path, progress: bool) -> list[str]:
    """Relative paths (``000/000015_pitch1_yaw1.jpg``) of every .jpg in the database image folders."""
    found = []
    folders = [f for f in IMAGE_FOLDERS if (raw / f).is_dir()]
    for folder in tqdm(folders, desc="listing Pitts-250k images", disable=not progress):
        with os.scandir(raw / folder) as entries:
            found += [f"{folder}/{e.name}" for e in entries if e.name.lower().endswith((".jpg", ".jpeg"))]
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------
# NetVLAD dbStruct


def read_pitts_coordinates(mats: Sequence[Path], log: SkipLog) -> tuple[pd.DataFrame, dict[str, Any]]:
    """UTM coordinates of every database image in the .mat files: frame (rel, easting, northing) + file info."""
    from scipy.io import loadmat

    frames, info = [], {}
    for path in mats:
        try:
            db = struct_fields(loadmat(str(path)))
            fns = [normalise_key(f) for f in cell_strings(db["dbImageFns"])]
            utm = utm_matrix(db["utmDb"], len(fns))
            which = cell_strings(db["whichSet"]) if "whichSet" in db else []
        except Exception as exc:  # scipy raises many types for a damaged file; all mean "unusable"
            log.add("malformed_mat_file", f"{path.name}: {type(exc).__name__}: {exc}")
            continue
        frames.append(pd.DataFrame({"rel": fns, "easting": utm[0], "northing": utm[1]}))
        info[path.name] = {"whichSet": which[0] if which else "", "db_images": len(fns)}
    if not frames:
        return pd.DataFrame({"rel": [], "easting": [], "northing": []}), info
    # An image listed twice keeps its first coordinates; the real files' db lists are disjoint
    # (91,464 + 78,648 + 83,952 = 254,064 images).
    return pd.concat(frames, ignore_index=True).drop_duplicates("rel"), info


def struct_fields(mat: dict[str, Any]) -> dict[str, Any]:
    """The 1x1 struct ``dbStruct`` as loadmat returns it (record array, maybe inside 1x1 cells) -> {field: value}."""
    if "dbStruct" not in mat:
        raise ValueError(f"no variable 'dbStruct' (found {sorted(k for k in mat if not k.startswith('__'))})")
    obj = mat["dbStruct"]
    while isinstance(obj, np.ndarray) and obj.dtype == object and obj.size == 1:
        obj = obj.reshape(-1)[0]
    if not (isinstance(obj, np.ndarray) and obj.dtype.names and obj.size == 1):
        raise ValueError("dbStruct is not a 1x1 MATLAB struct")
    record = obj.reshape(-1)[0]
    fields = {n: record[n] for n in obj.dtype.names}
    missing = [f for f in ("dbImageFns", "utmDb") if f not in fields]
    if missing:
        raise ValueError(f"dbStruct lacks fields {missing} (has {sorted(fields)})")
    return fields


def cell_strings(value: Any) -> list[str]:
    """Flatten a MATLAB cell array of strings, however deeply loadmat nested it, into a list of str."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "US":
            return [str(v) for v in value.reshape(-1)]
        if value.dtype == object:
            return [s for v in value.reshape(-1) for s in cell_strings(v)]
    raise ValueError(f"expected a cell array of strings, found {type(value).__name__}")


def utm_matrix(value: Any, n: int) -> np.ndarray:
    """utmDb as a 2 x n float array (accepts n x 2 too); raises if it cannot pair with n file names."""
    utm = np.asarray(value, dtype=float)
    if utm.shape == (2,) and n == 1:
        utm = utm.reshape(2, 1)
    elif utm.shape == (n, 2) and n != 2:  # transposed by whoever re-saved it; (2, 2) stays MATLAB's layout
        utm = utm.T
    if utm.shape != (2, n):
        raise ValueError(f"utmDb has shape {utm.shape}, expected (2, {n}) to match dbImageFns")
    return utm


# ---------------------------------------------------------------------------------------------------------
# Pitts-specific table


def pitts_samples(annotations: pd.DataFrame, coords: pd.DataFrame, log: SkipLog) -> pd.DataFrame:
    """Join annotations with coordinates and file-name fields; log rows lacking either."""
    names = annotations["rel"].str.rsplit("/", n=1).str[-1]
    parts = names.str.extract(_NAME_RE)
    bad_name = parts["place"].isna() | ~parts["yaw"].astype(float).between(1, 12)
    log.add("unparseable_file_name", annotations.loc[bad_name, "rel"])
    df, parts = annotations[~bad_name], parts[~bad_name]

    df = df.merge(coords, on="rel", how="left")
    no_coords = df["easting"].isna().to_numpy()
    log.add("no_coordinates", df.loc[no_coords, "rel"])
    df, parts = df[~no_coords].reset_index(drop=True), parts[~no_coords].reset_index(drop=True)

    df["location_id"] = parts["place"]
    df["heading"] = (parts["yaw"].astype(float) - 1) * YAW_STEP_DEG
    df["pitch"] = parts["pitch"].astype(int).map(PITCH_DEG).astype(float)
    df["epsg"] = PITTS_EPSG
    df["lon"], df["lat"] = utm_to_lonlat(df["easting"], df["northing"], PITTS_EPSG)
    return add_street_columns(df)
