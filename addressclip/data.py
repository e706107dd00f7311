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
def to_rgb(im: Image.Image, owned: bool = False) -> Image.Image:
    """Any Pillow image as 8-bit RGB: EXIF orientation applied, transparency over white, 16-bit and float
    greyscale rescaled to 0..255 (Pillow's own conversion would clip them). Never the caller's object: `owned`
    (an image `open_image` has just decoded) lets it rotate in place and skip copies nobody needs."""
    if owned:
        ImageOps.exif_transpose(im, in_place=True)
    else:
        im = ImageOps.exif_transpose(im)  # a copy even when there is nothing to turn: ours from here on
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(a.astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")  # convert("RGB") of an RGB image would copy it


def open_image(item: "str | Path | Image.Image", size_hint: int | None = None) -> Image.Image:
    """Decode one input to RGB. `size_hint` lets JPEG decode at a reduced scale (still >= the model's input
    size), which makes large photos several times cheaper to read."""
    if isinstance(item, Image.Image):
        return to_rgb(item)
    with Image.open(item) as im:
        if size_hint and im.format == "JPEG":
            im.draft("RGB", (size_hint, size_hint))
        im.load()
        return to_rgb(im, owned=True)


def load_image(path: "Path | Image.Image", size_hint: int | None = None) -> Image.Image:
    """`open_image`, with a `CorruptImageError` that names the file."""
    try:
        return open_image(path, size_hint)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CorruptImageError(f"cannot read image {path}: {exc}") from exc


# The one transform to a model's input tensor: `fast_transform` gives the loaders the same tensor as open_clip's
# evaluation transform, at about twice the images per core (bench/bench_pipeline.py).
def fast_transform(transform):
    """An equivalent of `transform` (a model's ``preprocess_val`` or ``preprocess_train``) that costs less per image.

    - open_clip's evaluation transform (Resize of the shortest side or of both sides, CenterCrop, RGB, ToTensor,
      Normalize) becomes `ResizeCropNormalize`: the same tensor, bit for bit, for an image already at the model's
      size (the embedded datasets), and the same up to rounding where it has to be resized (a few values in a
      thousand differ, by at most 2 grey levels);
    - any other Compose ending in ToTensor and Normalize (e.g. training augmentation) keeps its head and ends in
      `NormalizedTensor`, bit for bit the same;
    - anything else is returned as it is."""
    from open_clip.transform import MaybeConvertMode
    from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor

    steps = list(getattr(transform, "transforms", []))
    if not isinstance(transform, Compose) or len(steps) < 2:
        return transform
    *head, to_tensor, norm = steps
    if not isinstance(to_tensor, ToTensor) or not isinstance(norm, Normalize):  # open_clip's MaybeToTensor is one
        return transform
    convert = []
    if head and isinstance(head[-1], MaybeConvertMode) and head[-1].mode == "RGB":
        convert, head = head[-1:], head[:-1]  # both fast paths make RGB themselves
    tail = NormalizedTensor(norm.mean, norm.std, fallback=Compose(convert + [to_tensor, norm]))
    resize = head[0] if head and type(head[0]) is Resize else None
    if resize is not None and resize.max_size is None and resize.interpolation.value in ("bilinear", "bicubic"):
        size = list(resize.size) if isinstance(resize.size, (list, tuple)) else [resize.size]
        if len(head) == 1 and len(size) == 2:  # squash: both sides
            return ResizeCropNormalize(size, None, resize.interpolation.value, tail, fallback=transform)
        if len(head) == 2 and len(size) == 1 and type(head[1]) is CenterCrop:
            crop = list(head[1].size)
            if len(crop) == 2 and crop[0] == crop[1] == size[0]:  # shortest side, then the centre square
                return ResizeCropNormalize(size, crop[0], resize.interpolation.value, tail, fallback=transform)
    return Compose(head + [tail])


PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


class NormalizedTensor:
    """torchvision's ToTensor then Normalize in one step, bit for bit the same: the same float operations in the
    same order (/255, -mean, /std), without the intermediate copies (ToTensor's contiguous uint8 copy, Normalize's
    clone). Anything but a PIL image goes through `fallback`, the steps this replaces."""

    def __init__(self, mean, std, fallback):
        dtype = torch.get_default_dtype()  # what ToTensor makes
        self.mean = torch.as_tensor(mean, dtype=dtype).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=dtype).view(-1, 1, 1)
        self.fallback = fallback

    def __call__(self, image) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            return self.fallback(image)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return self.from_uint8(torch.from_numpy(np.array(rgb)).permute(2, 0, 1))

    def from_uint8(self, image: torch.Tensor, crop: tuple[int, int, int] | None = None) -> torch.Tensor:
        """A [3, H, W] uint8 tensor as the normalised float tensor; `crop` (top, left, side): that square of it."""
        if crop is not None:
            top, left, side = crop
            image = image[:, top : top + side, left : left + side]
        out = torch.empty(image.shape, dtype=self.mean.dtype)
        out.copy_(image)  # uint8 -> float into a contiguous tensor (faster than .float() of a permuted view)
        return out.div_(255).sub_(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return f"NormalizedTensor(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


class ResizeCropNormalize:
    """open_clip's evaluation transform: resize (the shortest side to `size[0]`, or both sides to `size`),
    take the centre `crop` square, normalise. Shrinking uses torch's antialiased uint8 resize (the same filter as
    Pillow's, vectorised: about 2.5x faster on one core), so a photo can differ from Pillow's output by rounding
    (measured: 0.3% of values, at most 2 grey levels, on 480x640 and 512x512 photos; the same on AVX-512 and on
    torch's plain C++ kernels). An image already at the size is not resampled (as with Pillow) and an image
    enlarged is resampled by Pillow: the embedded datasets' tensors are bit for bit those of open_clip's
    transform. The sizes and crop offsets are torchvision's."""

    def __init__(self, size: list[int], crop: int | None, mode: str, tail: NormalizedTensor, fallback):
        self.size, self.crop, self.mode, self.tail, self.fallback = size, crop, mode, tail, fallback

    def __call__(self, image):
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            return self.fallback(image)  # other modes (palette, greyscale) resize differently in Pillow
        w, h = image.size
        if len(self.size) == 2:
            new_h, new_w = self.size
        else:  # torchvision.transforms.functional.resize with an int: the shortest side to size, the other in ratio
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.size[0], int(self.size[0] * long / short)
            new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h) and (new_w > w or new_h > h):  # enlarging (small inputs, e.g. the tiny
            image = image.resize((new_w, new_h), PIL_FILTERS[self.mode])  # datasets' 64 px): Pillow's, as before
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # [3, h, w] view of HWC: channels-last, as the
        if (new_w, new_h) != image.size:                        # vectorised uint8 resize wants it
            x = torch.nn.functional.interpolate(x[None], size=(new_h, new_w), mode=self.mode, antialias=True)[0]
        crop = None
        if self.crop is not None:  # torchvision.transforms.functional.center_crop's offsets
            crop = (int(round((new_h - self.crop) / 2.0)), int(round((new_w - self.crop) / 2.0)), self.crop)
        return self.tail.from_uint8(x, crop)

    def __repr__(self) -> str:
        return f"ResizeCropNormalize(size={self.size}, crop={self.crop}, mode={self.mode!r}, {self.tail!r})"


class ImageRows(Dataset):
    """Images as (transformed image, row index). Items are paths (absolute or relative to `root`) or PIL images.
    `size_hint` (the model's input size) lets large JPEGs decode at a reduced scale that is still at least that size.
    With ``report_errors`` an unreadable image gives ``(None, row, reason)`` instead of raising, so that one bad
    input is skipped and reported rather than stopping the others (`inference.encode_images`)."""

    def __init__(self, root: Path | None, images: list, transform, size_hint: int | None = None,
                 report_errors: bool = False):
        root = Path(root) if root is not None else None
        self.paths = [p if isinstance(p, Image.Image) else (root / p if root is not None else Path(p)) for p in images]
        self.transform = fast_transform(transform)
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
    cities: torch.Tensor | None = None  # [N] which dataset (city) each row comes from: all 0 unless joined (`concat`)

    def __post_init__(self) -> None:
        if self.cities is None:
            self.cities = torch.zeros(len(self.paths), dtype=torch.long)

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
            torch.cat([t.coords for t in tables]),  # each in its own city's UTM zone: the geography loss keeps them apart
            torch.cat([torch.full((len(t.paths),), i, dtype=torch.long) for i, t in enumerate(tables)]),
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
