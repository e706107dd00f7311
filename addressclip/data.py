"""Torch-side access to a built dataset: images by row, and per-row texts, address ids and coordinates."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from .datasets.format import IALDataset

# Prompt templates (the paper leaves them open): the address text, and the caption with the address appended.
ADDRESS_TEMPLATE = "{address}"
CAPTION_TEMPLATE = "{caption} Address: {address}."
CAPTION_ONLY_TEMPLATE = "{caption}"


class CorruptImageError(RuntimeError):
    """An image file could not be decoded."""


# The one image decoder: training, evaluation, prediction and the figures all read images through `open_image`.
def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: EXIF orientation applied, transparency over white, 16-bit and float
    greyscale rescaled to 0..255 (Pillow's own conversion would clip them)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(a.astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def open_image(item: "str | Path | Image.Image", size_hint: int | None = None) -> Image.Image:
    """Decode one input to RGB. `size_hint` lets JPEG decode at a reduced scale (still >= the model's input
    size), which makes large photos several times cheaper to read."""
    if isinstance(item, Image.Image):
        return to_rgb(item)
    with Image.open(item) as im:
        if size_hint and im.format == "JPEG":
            im.draft("RGB", (size_hint, size_hint))
        im.load()
        return to_rgb(im)


def load_image(path: "Path | Image.Image", size_hint: int | None = None) -> Image.Image:
    """`open_image`, with a `CorruptImageError` that names the file."""
    try:
        return open_image(path, size_hint)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CorruptImageError(f"cannot read image {path}: {exc}") from exc


class ImageRows(Dataset):
    """Images as (transformed image, row index). Items are paths (absolute or relative to `root`) or PIL images.
    `size_hint` (the model's input size) lets large JPEGs decode at a reduced scale that is still at least that size.
    With ``report_errors`` an unreadable image gives ``(None, row, reason)`` instead of raising, so that one bad
    input is skipped and reported rather than stopping the others (`inference.encode_images`)."""

    def __init__(self, root: Path | None, images: list, transform, size_hint: int | None = None,
                 report_errors: bool = False):
        root = Path(root) if root is not None else None
        self.paths = [p if isinstance(p, Image.Image) else (root / p if root is not None else Path(p)) for p in images]
        self.transform = transform
        self.size_hint = size_hint
        self.report_errors = report_errors

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        item = self.paths[i]
        if not self.report_errors:
            return self.transform(load_image(item, self.size_hint)), i
        try:
            image = open_image(item, self.size_hint)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure (Pillow raises many kinds) skips this input only
            return None, i, f"{type(exc).__name__}: {exc}"
        return self.transform(image), i  # outside the try: a bug in a transform is an error, not a bad image


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
        skip: "set[str] | None" = None,
    ) -> "SplitTable":
        """The rows of `split` (optionally a seeded share of its locations), less the images in `skip` (relative
        paths of unreadable images, `image_check`): dropped after the location sample, so that sample does not
        depend on which images are bad."""
        frame = pd.concat([ds.split(s) for s in split.split("+")], ignore_index=True)  # e.g. "train+val"
        if fraction_locations < 1.0:
            frame = subsample_locations(frame, fraction_locations, seed)
        if skip:
            frame = frame[~frame["image"].isin(set(skip))].reset_index(drop=True)
        if frame.empty:
            raise ValueError(f"dataset {ds.name!r} has no {'readable ' if skip else ''}{split!r} rows")
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

    def rows(self, transform, size_hint: int | None = None, report_errors: bool = False) -> ImageRows:
        return ImageRows(None, self.paths, transform, size_hint, report_errors=report_errors)


def subsample_locations(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Keep a seeded `fraction` of the locations (all their views), for location-coverage ablations."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction of locations must be in (0, 1], got {fraction}")
    locs = np.array(sorted(frame["location_id"].unique()))
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(locs, size=max(1, round(fraction * len(locs))), replace=False))
    return frame[frame["location_id"].isin(keep)].reset_index(drop=True)
