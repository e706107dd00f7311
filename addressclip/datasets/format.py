"""The one on-disk dataset format every source is converted to.

A dataset is a folder::

    <root>/
      images/...            image files; paths in the table are relative to <root>
      samples.parquet       one row per image (columns: SAMPLE_COLUMNS)
      segments.gpkg         sub-street segments (columns: address, street, geometry) in the
                            dataset's metric CRS (``card["epsg"]``); optional for real data
      card.json             counts, provenance, build parameters, skipped inputs
      card.md               the same for people
      SHA256SUMS            the checksums of samples.parquet, segments.gpkg and card.json (`sha256sum -c SHA256SUMS`), checked on every read

Training, evaluation and visualisation read only this format.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..cache import MANIFEST, DamagedFile, atomic_write, seal, verify, write_text
from ..errors import UserError

SPLITS = ("train", "val", "test")
DATASET_FILES = ["samples.parquet", "segments.gpkg", "card.json"]  # what the code reads: checksummed in SHA256SUMS

# name -> pandas dtype; every builder writes exactly these columns (extra ones are allowed after them).
SAMPLE_COLUMNS: dict[str, str] = {
    "image": "string",          # path relative to the dataset root
    "split": "string",          # train | val | test
    "location_id": "string",    # all views of one place share it; splits are location-disjoint
    "heading": "float64",       # degrees clockwise from north; NaN if unknown
    "pitch": "float64",         # degrees; NaN if unknown
    "easting": "float64",       # metres, in the CRS given by `epsg`
    "northing": "float64",
    "epsg": "int64",            # EPSG code of (easting, northing), e.g. 32617 for UTM 17N
    "lat": "float64",           # WGS84; NaN if unknown
    "lon": "float64",
    "street": "string",         # main street name, e.g. "Forbes Avenue"
    "address": "string",        # sub-street address, e.g. "Forbes Avenue & Craig Street, Oakland"
    "caption": "string",        # scene caption (training only); "" if none
    "neighbourhood": "string",  # "" if unknown
}

SEGMENT_COLUMNS = ("address", "street", "geometry")


class DatasetFormatError(UserError):
    """A dataset folder or table does not follow the format."""


def validate_samples(df: pd.DataFrame, where: str = "samples") -> pd.DataFrame:
    """Check columns, types and values; return the frame with canonical dtypes and column order."""
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetFormatError(f"{where}: missing columns {missing}; expected {list(SAMPLE_COLUMNS)}")
    df = df.copy()
    for col, dtype in SAMPLE_COLUMNS.items():
        try:
            df[col] = df[col].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{where}: column {col!r} cannot be read as {dtype}: {exc}") from exc
    bad_split = sorted(set(df["split"].dropna()) - set(SPLITS))
    if bad_split:
        raise DatasetFormatError(f"{where}: unknown split values {bad_split}; valid: {list(SPLITS)}")
    for col in ("image", "split", "location_id", "street", "address"):
        if df[col].isna().any() or (df[col] == "").any():
            raise DatasetFormatError(f"{where}: column {col!r} has empty values")
    for col in ("easting", "northing"):
        if not np.isfinite(df[col].to_numpy()).all():
            raise DatasetFormatError(f"{where}: column {col!r} has missing or infinite values")
    if df["image"].duplicated().any():
        dup = df.loc[df["image"].duplicated(), "image"].iloc[0]
        raise DatasetFormatError(f"{where}: image {dup!r} appears more than once")
    leaks = df.groupby("location_id")["split"].nunique()
    if (leaks > 1).any():
        raise DatasetFormatError(
            f"{where}: location {leaks[leaks > 1].index[0]!r} appears in several splits; splits must be location-disjoint"
        )
    extra = [c for c in df.columns if c not in SAMPLE_COLUMNS]
    return df[list(SAMPLE_COLUMNS) + extra].reset_index(drop=True)


def card_markdown(card: dict[str, Any]) -> str:
    lines = [f"# Dataset card: {card.get('name', '?')}", ""]
    if card.get("description"):
        lines += [card["description"], ""]
    if card.get("synthetic"):
        lines += ["**The images are rendered (synthetic), not photographs.**", ""]
    for key, value in card.items():
        if key in ("name", "description"):
            continue
        if isinstance(value, (dict, list)):
            value = "`" + json.dumps(value, sort_keys=True) + "`"
        lines.append(f"- **{key}**: {value}")
    return "\n".join(lines) + "\n"


def write_dataset(root: str | Path, samples: pd.DataFrame, card: dict[str, Any], segments=None) -> Path:
    """Write table, optional segments and card into `root` (images must already be there).

    The card gets the standard counts added; the table is written last-but-one and the card last,
    so a folder with a card is a finished dataset.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)  # a previous build's checksums describe files about to be replaced
    samples = validate_samples(samples, where=str(root / "samples.parquet"))
    card = dict(card)
    card.setdefault("name", root.name)
    card.update(summarise(samples))
    if segments is not None:
        missing = [c for c in SEGMENT_COLUMNS if c not in segments.columns]
        if missing:
            raise DatasetFormatError(f"segments: missing columns {missing}")
        if segments.crs is None or segments.crs.to_epsg() != int(samples["epsg"].iloc[0]):
            raise DatasetFormatError(
                f"segments: CRS {segments.crs} differs from the samples' EPSG:{int(samples['epsg'].iloc[0])}"
            )
        atomic_write(root / "segments.gpkg", lambda tmp: segments[list(SEGMENT_COLUMNS)].to_file(tmp, driver="GPKG", layer="segments"))
    atomic_write(root / "samples.parquet", lambda tmp: samples.to_parquet(tmp, index=False))
    write_text(root / "card.md", card_markdown(card))
    write_text(root / "card.json", json.dumps(card, indent=2, sort_keys=True, default=str))
    seal(root, DATASET_FILES)
    return root


def summarise(samples: pd.DataFrame) -> dict[str, Any]:
    counts = {s: int((samples["split"] == s).sum()) for s in SPLITS}
    locations = {s: int(samples.loc[samples["split"] == s, "location_id"].nunique()) for s in SPLITS}
    addresses = {s: int(samples.loc[samples["split"] == s, "address"].nunique()) for s in SPLITS}
    e, n = samples["easting"], samples["northing"]
    return {
        "images": counts,
        "locations": locations,
        "addresses_per_split": addresses,
        "addresses": int(samples["address"].nunique()),
        "streets": int(samples["street"].nunique()),
        "epsg": int(samples["epsg"].iloc[0]),
        "bbox_area_km2": round(float((e.max() - e.min()) * (n.max() - n.min()) / 1e6), 4),
    }


@dataclass
class IALDataset:
    """A built dataset, read back from its folder."""

    root: Path
    samples: pd.DataFrame
    card: dict[str, Any]
    segments: Any = None  # GeoDataFrame or None
    _address_ids: dict[str, int] = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.card.get("name", self.root.name)

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid: {list(SPLITS)}")
        return self.samples[self.samples["split"] == name].reset_index(drop=True)

    @property
    def addresses(self) -> list[str]:
        """Every candidate address (all splits), sorted: the gallery the model ranks."""
        return sorted(self.samples["address"].unique())

    @property
    def address_to_street(self) -> dict[str, str]:
        return dict(self.samples.drop_duplicates("address").set_index("address")["street"])

    @functools.cached_property
    def address_shapes(self):
        """One geometry per address (GeoSeries indexed by address, metric CRS): its sub-street segments, or for
        datasets without segments (real data comes without street geometry) the points where its train and val
        images were taken (its test images' only where it has no others: a test image's own place would put every
        correct prediction 0 m away). Distances "to the predicted sub-street" and the maps use these. Computed once
        per dataset object."""
        import geopandas as gpd

        if self.segments is not None:
            return self.segments.dissolve(by="address")["geometry"]
        locs = self.samples.drop_duplicates(["address", "location_id"])
        known = locs[locs["split"] != "test"]
        locs = pd.concat([known, locs[~locs["address"].isin(set(known["address"]))]])
        points = gpd.GeoDataFrame(locs[["address"]], geometry=gpd.points_from_xy(locs["easting"], locs["northing"]),
                                  crs=f"EPSG:{int(locs['epsg'].iloc[0])}")
        return points.dissolve(by="address")["geometry"]

    @property
    def distance_basis(self) -> str:
        return "sub-street segments" if self.segments is not None else "train and val image locations of the predicted address"

    def address_id(self, address: str) -> int:
        if self._address_ids is None:
            self._address_ids = {a: i for i, a in enumerate(self.addresses)}
        return self._address_ids[address]


def read_dataset(root: str | Path) -> IALDataset:
    root = Path(root)
    if not (root / "card.json").exists() or not (root / "samples.parquet").exists():
        raise FileNotFoundError(
            f"no finished dataset at {root} (expected card.json and samples.parquet); build it with "
            f"notebooks/01_build_dataset.ipynb or addressclip.datasets.build_dataset()"
        )
    rebuild = (f"the build was interrupted or the file was changed since; rebuild it (addressclip build "
               f"{root.name} --overwrite, or build_dataset(..., overwrite=True))")
    for name in DATASET_FILES:  # bytes as written (SHA256SUMS), else an error: a damaged table never gives answers
        if (root / name).exists():
            try:
                verify(root / name)
            except DamagedFile as exc:
                raise DatasetFormatError(f"{exc}: {rebuild}") from None
    try:
        card = json.loads((root / "card.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{root / 'card.json'} is not valid JSON ({exc}): {rebuild}") from exc
    if not isinstance(card, dict):
        raise DatasetFormatError(f"{root / 'card.json'} holds a {type(card).__name__}, not a JSON object: {rebuild}")
    try:
        table = pd.read_parquet(root / "samples.parquet")
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DatasetFormatError(f"{root / 'samples.parquet'} cannot be read ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:200]}): {rebuild}") from exc
    samples = validate_samples(table, where=str(root / "samples.parquet"))
    segments = None
    if (root / "segments.gpkg").exists():
        import geopandas as gpd

        try:
            segments = gpd.read_file(root / "segments.gpkg", layer="segments")
        except Exception as exc:  # noqa: BLE001 - pyogrio/GDAL raise several types for a damaged file
            raise DatasetFormatError(f"{root / 'segments.gpkg'} cannot be read ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())[:200]}): {rebuild}") from exc
    return IALDataset(root=root, samples=samples, card=card, segments=segments)
