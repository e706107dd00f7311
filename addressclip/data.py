"""Torch-side access to a built dataset: images by row, and per-row texts, address ids and coordinates."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .datasets.format import IALDataset

# Prompt templates (the paper leaves them open): the address text, and the caption with the address appended.
ADDRESS_TEMPLATE = "{address}"
CAPTION_TEMPLATE = "{caption} Address: {address}."
CAPTION_ONLY_TEMPLATE = "{caption}"


class CorruptImageError(RuntimeError):
    """An image file could not be decoded."""


def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CorruptImageError(f"cannot read image {path}: {exc}") from exc


class ImageRows(Dataset):
    """Image files as (transformed image, row index); paths are absolute or relative to `root`."""

    def __init__(self, root: Path | None, images: list[str], transform):
        root = Path(root) if root is not None else None
        self.paths = [root / p if root is not None else Path(p) for p in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(load_image(self.paths[i])), i


@dataclass
class SplitTable:
    """A split's per-row values in the shapes training needs (looked up by row index, not passed through workers)."""

    frame: pd.DataFrame
    paths: list[str]            # absolute image paths
    address_texts: list[str]
    caption_texts: list[str]
    address_ids: torch.Tensor   # ids into the dataset's sorted address list
    coords: torch.Tensor        # [N, 2] float64 easting, northing

    @classmethod
    def from_dataset(
        cls,
        ds: IALDataset,
        split: str,
        address_template: str = ADDRESS_TEMPLATE,
        caption_template: str = CAPTION_TEMPLATE,
        fraction_locations: float = 1.0,
        seed: int = 0,
    ) -> "SplitTable":
        frame = ds.split(split)
        if fraction_locations < 1.0:
            frame = subsample_locations(frame, fraction_locations, seed)
        if frame.empty:
            raise ValueError(f"dataset {ds.name!r} has no {split!r} rows")
        addresses = [address_template.format(address=a) for a in frame["address"]]
        captions = [
            caption_template.format(caption=c, address=a) for c, a in zip(frame["caption"].fillna(""), frame["address"])
        ]
        ids = torch.as_tensor([ds.address_id(a) for a in frame["address"]], dtype=torch.long)
        coords = torch.as_tensor(frame[["easting", "northing"]].to_numpy(np.float64))
        paths = [str(ds.root / p) for p in frame["image"]]
        return cls(frame, paths, addresses, captions, ids, coords)

    @classmethod
    def concat(cls, tables: list["SplitTable"]) -> "SplitTable":
        """Join tables of several datasets (multi-city training); address ids are re-numbered over the union."""
        if len(tables) == 1:
            return tables[0]
        frame = pd.concat([t.frame for t in tables], ignore_index=True)
        ids_of = {a: i for i, a in enumerate(sorted(frame["address"].unique()))}
        return cls(
            frame,
            [p for t in tables for p in t.paths],
            [x for t in tables for x in t.address_texts],
            [x for t in tables for x in t.caption_texts],
            torch.as_tensor([ids_of[a] for a in frame["address"]], dtype=torch.long),
            torch.cat([t.coords for t in tables]),
        )

    def rows(self, transform) -> ImageRows:
        return ImageRows(None, self.paths, transform)


def subsample_locations(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Keep a seeded `fraction` of the locations (all their views), for location-coverage ablations."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction of locations must be in (0, 1], got {fraction}")
    locs = np.array(sorted(frame["location_id"].unique()))
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(locs, size=max(1, round(fraction * len(locs))), replace=False))
    return frame[frame["location_id"].isin(keep)].reset_index(drop=True)
