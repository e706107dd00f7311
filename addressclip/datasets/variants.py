"""Label variants of a built dataset, for the label ablations: the same images with whole-street labels, or
with the semantic address partition redone at another junction-merge distance. A variant is a dataset folder
of its own (`data/<name>@<variant>`) whose `images` links to the original's."""
from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import pandas as pd

from ..paths import data_root
from .format import IALDataset, write_dataset
from .registry import load_dataset

LABELS = ("street", "partition")


def variant_name(base: str, labels: str = "partition", junction_merge_m: float | None = None) -> str:
    if labels not in LABELS:
        raise ValueError(f"unknown labels {labels!r}; valid: {', '.join(LABELS)}")
    if labels == "street":
        return f"{base}@street"
    if junction_merge_m is None:
        raise ValueError("a partition variant needs junction_merge_m")
    return f"{base}@merge{junction_merge_m:g}m"


def _link_images(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    link = dst / "images"
    if not link.exists():
        os.symlink((src / "images").resolve(), link, target_is_directory=True)


def _street_labels(ds: IALDataset) -> tuple[pd.DataFrame, gpd.GeoDataFrame | None]:
    samples = ds.samples.copy()
    samples["address"] = samples["street"]
    segments = None
    if ds.segments is not None:
        segments = ds.segments.dissolve(by="street", as_index=False)[["street", "geometry"]]
        segments["address"] = segments["street"]
    return samples, segments


def _repartition(ds: IALDataset, junction_merge_m: float, osm: str | Path | None = None
                 ) -> tuple[pd.DataFrame, gpd.GeoDataFrame, int]:
    from ..errors import NotApplicable
    from .osm import load_osm
    from .partition import assign_addresses

    city = osm or ds.card.get("build_parameters", {}).get("city")
    if not city:
        raise NotApplicable(f"redoing the address partition needs an OSM extract of the city of {ds.name!r} "
                            f"(pass osm=<.osm.pbf/.osm/.osm.bz2 file>)")
    epsg = int(ds.samples["epsg"].iloc[0])
    locs = ds.samples.drop_duplicates("location_id")
    points = gpd.GeoDataFrame(locs[["location_id"]].reset_index(drop=True),
                              geometry=gpd.points_from_xy(locs["easting"], locs["northing"]), crs=f"EPSG:{epsg}")
    labelled, segments = assign_addresses(points, load_osm(city), junction_merge_m=junction_merge_m)
    lookup = labelled.set_index("location_id")[["street", "address", "neighbourhood"]]
    samples = ds.samples.drop(columns=["street", "address", "neighbourhood"]).join(lookup, on="location_id")
    missing = int(samples["address"].isna().sum())
    samples = samples[samples["address"].notna()].reset_index(drop=True)
    return samples, segments.to_crs(epsg=epsg), missing


def label_variant(base: str, labels: str = "partition", junction_merge_m: float | None = None,
                  out_dir: str | Path | None = None, osm: str | Path | None = None) -> Path:
    """Build (once) and return the folder of a label variant of dataset `base`. Redoing the partition reads the
    OSM city the dataset was rendered from, or `osm` (an extract of a real dataset's city)."""
    name = variant_name(Path(base).name if Path(base).exists() else base, labels, junction_merge_m)
    out = Path(out_dir) if out_dir else data_root() / name
    if (out / "card.json").exists():
        return out
    ds = load_dataset(base)
    if labels == "street":
        samples, segments, missing = (*_street_labels(ds), 0)
    else:
        samples, segments, missing = _repartition(ds, junction_merge_m, osm)
    _link_images(ds.root, out)
    card = {"name": name, "description": f"{ds.name} with {labels} labels"
            + (f" (junction merge {junction_merge_m:g} m)" if labels == "partition" else ""),
            "synthetic": ds.card.get("synthetic", False), "derived_from": ds.name, "labels": labels,
            "junction_merge_m": junction_merge_m, "images_without_address": missing,
            "build_parameters": ds.card.get("build_parameters", {}), "osm": str(osm) if osm else None}
    return write_dataset(out, samples, card, segments)
