"""What the real-data builders (Pitts-IAL, SF-IAL) share: skip bookkeeping, AddressCLIP annotation files,
address parsing, coordinates, image checks and placement, and the common tail of a build."""
from __future__ import annotations

import json
import re
import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from .format import SPLITS, write_dataset

SKIP_REASONS = {
    "malformed_annotation_file": "annotation file is not a JSON object {image: [caption, sentence, address]}",
    "malformed_annotation_entry": "annotation entry is not [caption, verbose address, non-empty canonical address]",
    "unknown_split_file": "annotation file name says neither train/val/test nor database/queries",
    "duplicate_annotation": "image annotated more than once (the first, in train/val/test order, is kept)",
    "ambiguous_annotation_key": "annotation key matches several image files by name",
    "annotation_without_image": "annotated image file not found",
    "image_without_annotation": "image file has no annotation",
    "malformed_mat_file": "NetVLAD .mat file unreadable or without a usable dbStruct",
    "no_coordinates": "image not listed in any dbStruct.dbImageFns",
    "unparseable_file_name": "file name does not follow the dataset's naming convention",
    "inconsistent_coordinates": "UTM and latitude/longitude in the file name disagree by more than 100 m",
    "outside_area": "coordinates outside the dataset's area",
    "outside_subset_bbox": "outside the requested subset_bbox (selection, not an error)",
    "no_address": "the address partition assigned no address",
    "corrupt_image": "image file cannot be opened/decoded by PIL",
    "location_in_several_splits": "location split across train/val/test (kept in its majority split)",
    # your own photos (addressclip.datasets.photos)
    "unsupported_format": "a camera format Pillow cannot decode here (HEIC, RAW): convert it to JPEG",
    "duplicate_photo": "same file content as an earlier photo (the first, in path order, is kept)",
    "no_gps": "no coordinates: no EXIF GPS position and no row in the coordinates CSV",
    "bad_gps": "EXIF GPS present but unusable (fix marked void, bad N/S/E/W reference, zero denominator, out of range)",
    "outside_extract": "coordinates outside the area of the OSM extract",
    "malformed_coordinates_row": "coordinates CSV row whose lat/lon/heading are not numbers in range",
    "coordinates_without_photo": "coordinates CSV row naming a file that is not in the photo folder (or not uniquely)",
}


class RawDataError(ValueError):
    """A raw input is unusable and the build runs with strict=True."""


class SkipLog:
    """Counts skipped inputs per reason with a few examples; with strict=True, a fatal reason raises."""

    def __init__(self, strict: bool, root: Path | None = None, max_examples: int = 5):
        self.strict, self.root, self.max_examples = strict, root, max_examples
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, items: str | Iterable[Any], fatal: bool = True) -> None:
        items = [items] if isinstance(items, str) else [str(i) for i in items]
        if not items:
            return
        if self.strict and fatal:
            more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
            where = f" [under {self.root}]" if self.root is not None else ""
            raise RawDataError(
                f"{reason}: {SKIP_REASONS[reason]}: {items[0]}{more}{where}. "
                "Build with strict=False to skip such inputs and list them in the card's 'skipped'."
            )
        self.counts[reason] += len(items)
        examples = self.examples.setdefault(reason, [])
        examples += items[: self.max_examples - len(examples)]

    def as_card(self) -> dict[str, dict[str, Any]]:
        return {
            r: {"count": n, "why": SKIP_REASONS[r], "examples": self.examples[r]}
            for r, n in sorted(self.counts.items())
        }


ANNOTATION_COLUMNS = ["key", "split", "caption", "address_sentence", "address"]


def read_annotation_file(path: Path, split: str, log: SkipLog) -> pd.DataFrame:
    """An AddressCLIP annotation file -> rows (key, split, caption, address_sentence, address)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"top level is a {type(data).__name__}, not an object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        log.add("malformed_annotation_file", f"{Path(path).name}: {exc}")
        return pd.DataFrame(columns=ANNOTATION_COLUMNS)
    rows, bad = [], []
    for key, value in data.items():
        if (
            isinstance(value, (list, tuple)) and len(value) >= 3
            and all(isinstance(v, str) for v in value[:3]) and value[2].strip()
        ):
            rows.append((key, split, value[0].strip(), value[1].strip(), value[2].strip()))
        else:
            bad.append(f"{Path(path).name}: {key}")
    log.add("malformed_annotation_entry", bad)
    return pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)


def normalise_key(path: str) -> str:
    """Forward slashes, no leading './' or '/': keys and listed files compare as relative paths."""
    return re.sub(r"^(\./|/)+", "", str(path).strip().replace("\\", "/"))


def match_annotations(annotations: pd.DataFrame, found: Sequence[str], log: SkipLog) -> pd.DataFrame:
    """Attach each annotation to an image file on disk (column ``rel``); log entries that match none.

    A key matches a listed relative path exactly, else by file name when that name is unique on disk
    (keys written relative to another root still match).
    """
    keys = annotations["key"].map(normalise_key)
    found_set = set(found)
    file_names = [f.rsplit("/", 1)[-1] for f in found]
    name_counts = Counter(file_names)
    unique_names = {n: f for n, f in zip(file_names, found) if name_counts[n] == 1}
    key_names = keys.str.rsplit("/", n=1).str[-1]
    exact = keys.isin(found_set)
    ambiguous = ~exact & key_names.map(lambda n: name_counts[n] > 1).astype(bool)
    rel = keys.where(exact, key_names.map(unique_names))
    log.add("ambiguous_annotation_key", keys[ambiguous])
    missing = rel.isna() & ~ambiguous
    log.add("annotation_without_image", keys[missing])
    df = annotations.assign(rel=rel).drop(columns="key")[rel.notna()]
    order = df["split"].map({s: i for i, s in enumerate(SPLITS)})
    df = df.iloc[np.argsort(order.to_numpy(), kind="stable")]
    dup = df["rel"].duplicated()
    log.add("duplicate_annotation", df.loc[dup, "rel"])
    return df[~dup].reset_index(drop=True)


def log_unannotated(found: Sequence[str], annotated: pd.Series, log: SkipLog, fatal: bool = True) -> None:
    annotated_set = set(annotated)
    log.add("image_without_annotation", [f for f in found if f not in annotated_set], fatal=fatal)


def parse_address(address: str) -> tuple[str, str]:
    """(street, neighbourhood) of a canonical address.

    street: the text before the first " & " or "," (whichever comes first), i.e. the main street;
    neighbourhood: the text after the last ", ", or "" when there is no comma.
    "Forbes Avenue & Craig Street, Oakland" -> ("Forbes Avenue", "Oakland").
    """
    address = address.strip()
    street = re.split(r"\s*&\s*|,", address, maxsplit=1)[0].strip()
    neighbourhood = address.rsplit(", ", 1)[1].strip() if ", " in address else ""
    return street or address, neighbourhood


def add_street_columns(df: pd.DataFrame) -> pd.DataFrame:
    parsed = df["address"].map(parse_address)
    return df.assign(street=parsed.str[0], neighbourhood=parsed.str[1])


def address_format_problem(samples: pd.DataFrame, max_examples: int = 5) -> str | None:
    """Why the table's streets make SA (street accuracy) meaningless, with examples; None when they look right.

    SA compares the main streets of the predicted and the true address, so the street column must group the
    addresses: more than one distinct street, and fewer distinct streets than distinct addresses. Violations mean
    the canonical addresses do not have the expected "Main Street & Cross Street, Neighbourhood" form (every
    address a bare street name: SA == SSA; every address on one street: SA == 100%). Checked only when there are
    at least 2 distinct addresses. `samples` needs ``address`` and ``street`` (the latter from `parse_address`
    for annotation-based builds, from the partition for SF-IAL's OSM path).
    """
    pairs = samples[["address", "street"]].drop_duplicates("address").sort_values("address")
    n_addresses, n_streets = len(pairs), pairs["street"].nunique()
    if n_addresses < 2:
        return None
    if n_streets <= 1:
        why = f"all {n_addresses} distinct addresses parse to the same street, so SA-k would be 100%"
    elif n_streets >= n_addresses:
        why = (f"{n_streets} distinct streets for {n_addresses} distinct addresses (each street has a single "
               "address, e.g. bare street names), so SA-k would equal SSA-k")
    else:
        return None
    examples = "; ".join(f"{a!r} -> {s!r}" for a, s in pairs.head(max_examples).itertuples(index=False))
    return (f"address format: {why}. Examples (address -> parsed street): {examples}. The street is the address up "
            "to the first ' & ' or ','; expected addresses such as 'Forbes Avenue & Craig Street, Oakland'.")


def check_address_format(samples: pd.DataFrame, log: SkipLog, card_warnings: list[str]) -> None:
    """Raise `RawDataError` (strict) or warn and append to `card_warnings` when `address_format_problem` finds one."""
    problem = address_format_problem(samples)
    if problem is None:
        return
    if log.strict:
        raise RawDataError(problem + " Build with strict=False to build anyway (the card then records this warning).")
    warnings.warn(problem, UserWarning, stacklevel=3)
    card_warnings.append(problem)


def utm_to_lonlat(easting, northing, epsg: int) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    transformer = Transformer.from_crs(int(epsg), 4326, always_xy=True)
    return transformer.transform(np.asarray(easting, float), np.asarray(northing, float))


def outside(df: pd.DataFrame, box: tuple[float, float, float, float]) -> pd.Series:
    """Rows whose (lon, lat) lie outside `box` = (lon_min, lat_min, lon_max, lat_max); NaN counts as outside."""
    lon_min, lat_min, lon_max, lat_max = box
    return ~(df["lon"].between(lon_min, lon_max) & df["lat"].between(lat_min, lat_max))


def corrupt_images(root: Path, rels: Sequence[str], mode: str, progress: bool) -> list[str]:
    """Relative paths PIL cannot open + verify ("header") or fully decode ("full"); [] for "none"."""
    if mode not in ("header", "full", "none"):
        raise ValueError(f"verify_images must be 'header', 'full' or 'none', not {mode!r}")
    if mode == "none":
        return []
    from PIL import Image

    bad = []
    for rel in tqdm(rels, desc="verifying images", disable=not progress):
        try:
            with Image.open(root / rel) as im:
                im.load() if mode == "full" else im.verify()
        except Exception:  # PIL signals damage with several exception types; any of them makes it unusable
            bad.append(rel)
    return bad


def enforce_location_disjoint(df: pd.DataFrame, log: SkipLog) -> pd.DataFrame:
    """Drop the views of a location that sit outside its majority split (ties: train, val, test order)."""
    if not df.groupby("location_id")["split"].nunique().gt(1).any():
        return df
    counts = df.groupby(["location_id", "split"]).size().unstack(fill_value=0)
    majority = counts.reindex(columns=[s for s in SPLITS if s in counts.columns]).idxmax(axis=1)
    wrong = df["split"] != df["location_id"].map(majority)
    log.add("location_in_several_splits", df.loc[wrong, "rel"])
    return df[~wrong]


def place_images(out: Path, image_root: Path, rels: Sequence[str], link: bool, progress: bool) -> str:
    """Make ``out/images/<rel>`` resolve: symlink the whole raw image root, or copy the kept files."""
    target = out / "images"
    out.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    if link:
        if target.exists():
            raise FileExistsError(f"{target} is a folder (an earlier copy?); remove it or build with link_images=False")
        try:
            target.symlink_to(image_root.resolve(), target_is_directory=True)
        except OSError as exc:
            raise OSError(f"cannot symlink {target} -> {image_root} ({exc}); build with link_images=False") from exc
        return f"symlink to {image_root.resolve()}"
    for rel in tqdm(rels, desc="copying images", disable=not progress):
        src, dst = image_root / rel, target / rel
        if not (dst.exists() and dst.stat().st_size == src.stat().st_size):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return "copied"


def finish_build(
    samples: pd.DataFrame,
    *,
    out: Path,
    card: dict[str, Any],
    image_root: Path,
    log: SkipLog,
    area: tuple[float, float, float, float],
    link_images: bool,
    verify_images: str,
    progress: bool,
    segments=None,
    captioner=None,
) -> Path:
    """Common tail: area check, image check, location-disjointness, address-format check, optional captioning,
    images, table and card.

    `samples` holds ``rel`` (path under `image_root`) and every sample column except ``image``. The address-format
    check (`address_format_problem`) raises in strict mode, else warns and lists the problem in the card's
    ``warnings`` (also holding any ``warnings`` the caller's `card` brought). With a `captioner`, every kept image
    is captioned (`caption_samples`), replacing the ``caption`` column.
    """
    far = outside(samples, area)
    log.add("outside_area", samples.loc[far, "rel"])
    samples = samples[~far]
    bad = set(corrupt_images(image_root, list(samples["rel"]), verify_images, progress))
    log.add("corrupt_image", sorted(bad))
    samples = enforce_location_disjoint(samples[~samples["rel"].isin(bad)], log)
    if samples.empty:
        raise RawDataError(f"no usable images under {image_root}; skipped per reason: {dict(log.counts)}")
    card_warnings = list(card.get("warnings", []))
    check_address_format(samples, log, card_warnings)
    if captioner is not None:
        samples = caption_samples(samples, image_root, captioner, progress)
    storage = place_images(out, image_root, list(samples["rel"]), link_images, progress)
    samples = samples.assign(image="images/" + samples["rel"]).drop(columns="rel")
    card = {
        **card,
        "images_storage": storage,
        "build": {"strict": log.strict, "verify_images": verify_images, "area_lonlat_bbox": list(area)},
        "skipped": log.as_card(),
        "skipped_total": int(sum(log.counts.values())),
        "warnings": card_warnings,
    }
    return write_dataset(out, samples.sort_values("image").reset_index(drop=True), card, segments=segments)


def caption_samples(samples: pd.DataFrame, image_root: Path, captioner, progress: bool) -> pd.DataFrame:
    """Fill the ``caption`` column by calling ``captioner(PIL image, {})`` on each image (real photos carry no
    rendered-scene ``info``). Images are read with the one decoder (EXIF orientation applied), as training sees them."""
    from ..data import load_image

    captions = []
    for rel in tqdm(list(samples["rel"]), desc="captioning images", disable=not progress):
        captions.append(str(captioner(load_image(image_root / rel), {})).strip())
    empty = [rel for rel, c in zip(samples["rel"], captions) if not c]
    if empty:
        raise RawDataError(f"the captioner returned an empty caption for {len(empty)} image(s), e.g. {empty[0]}")
    return samples.assign(caption=captions)
