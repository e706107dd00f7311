"""Predict the address of any street photo against any list of candidate addresses (open vocabulary).

    locator = AddressLocator.from_checkpoint("outputs/runs/<run>", dataset="helsinki-synth")
    locator.predict(["photo.jpg", "more_photos/"], k=5)            # DataFrame, one row per readable image
    locator.set_candidates(["Mannerheimintie & Kaivokatu, Helsinki 00100", ...])  # new streets, no retraining

The candidate side (the "gallery") is encoded once per (checkpoint, candidate list, template) and cached next
to the checkpoint (a checksummed file, `cache`), so the next call with the same list only reads it back. Models,
texts, images and rankings go through the one inference path (`inference`): ranking is chunked over both images
and candidates, so 100,000 candidates never need an [N, 100k] score matrix.
Unreadable images are reported (a warning, and ``frame.attrs["skipped"]``) and skipped; the rest are predicted.
Images smaller than `MIN_IMAGE_SIDE` pixels on a side are predicted too, with a `SmallImageWarning` (and
``frame.attrs["small"]``): scaled up to the model's input size they carry almost nothing to recognise.

A city needs no dataset: ``AddressLocator.from_checkpoint(run, osm="city.osm.pbf")`` (or
``locator.set_candidates_from_osm(...)``) ranks the sub-street addresses of an OpenStreetMap extract, from the same
semantic partition the datasets use. Every prediction carries a point: ``lat``/``lon`` of the predicted sub-street
(the middle of its segment) when the candidates have geometry (an extract, or a dataset), and, when the photo has
EXIF GPS, ``photo_lat``/``photo_lon`` and ``distance_m``, the metres from the photo to the predicted sub-street.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
import pandas as pd
import torch
from PIL import Image

from . import cache
from .data import ADDRESS_TEMPLATE, ImageRows
from .errors import UserError
from .inference import encode_images, encode_texts, load_model, topk

# Bump when the way candidate texts are turned into embeddings changes: old cache files then miss.
GALLERY_CACHE_VERSION = "3"  # 2: checksummed files written by `cache`; 3: batches by token length (new rounding)
CACHE_FOLDER = "gallery_cache"
MIN_IMAGE_SIDE = 16  # pixels: a smaller image is still predicted, with a SmallImageWarning

ImageInput = Union[str, Path, Image.Image]


class UnreadableImageWarning(UserWarning):
    """Some inputs could not be decoded as images and were skipped."""


class SmallImageWarning(UserWarning):
    """Some images are smaller than `MIN_IMAGE_SIDE` pixels on a side: predicted, but unlikely to be meaningful."""


def image_size(item: ImageInput) -> tuple[int, int] | None:
    """(width, height) of an image, from its header only (no decoding); None if it cannot be read."""
    if isinstance(item, Image.Image):
        return item.size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # reported when it is decoded
            with Image.open(item) as im:
                return im.size
    except Exception:  # noqa: BLE001 - unreadable files are reported by the decoder
        return None


def small_images(items: Sequence[ImageInput], labels: Sequence[str] | None = None,
                 min_side: int = MIN_IMAGE_SIDE) -> dict[str, str]:
    """{label: "WxH"} of the images whose shorter side is under `min_side` pixels."""
    labels = labels if labels is not None else [_label(item, i) for i, item in enumerate(items)]
    out = {}
    for item, label in zip(items, labels):
        size = image_size(item)
        if size is not None and min(size) < min_side:
            out[label] = f"{size[0]}x{size[1]}"
    return out


# --------------------------------------------------------------------------------------------- candidates
def read_candidates(source: Sequence[str] | str | Path) -> list[str]:
    """Candidate addresses from a list of strings or a text file (one address per line).

    Whitespace is stripped, blank lines dropped, and repeats removed (keeping the first), since a repeated
    candidate would only fill the top-k with copies of itself."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no candidate address file at {path} (expected a text file, one address per line)")
        items: Iterable[str] = path.read_text(encoding="utf-8").splitlines()
    else:
        items = source
    out = list(dict.fromkeys(s.strip() for s in items if isinstance(s, str) and s.strip()))
    if not out:
        where = f"candidate address file {source}" if isinstance(source, (str, Path)) else "the candidate address list"
        raise UserError(f"{where} is empty (expected one address per line)")
    return out


def _dataset_addresses(name_or_path: str | Path):
    """A dataset's addresses and their places (address -> geometry)."""
    from .datasets import load_dataset

    ds = load_dataset(name_or_path)
    return ds.addresses, ds.address_shapes


def osm_candidate_shapes(source: str | Path, spacing_m: float | None = None):
    """Address -> sub-street geometry (GeoSeries, the extract's UTM CRS) of every address of an OSM extract, from
    its map alone (`addressclip.datasets.synth.city_addresses`: the datasets' partition)."""
    from .datasets.synth import city_addresses

    segments = city_addresses(source, spacing_m=spacing_m)
    return segments.set_index("address").geometry.sort_index()


def address_points(shapes) -> pd.DataFrame:
    """One WGS84 point per address (index): halfway along its segment line (for an address of several disjoint
    pieces, along the longest), else a point on its geometry (e.g. one of its image locations); columns lat, lon."""
    import geopandas as gpd

    def middle(g):
        if g.geom_type == "MultiLineString":
            g = max(g.geoms, key=lambda part: part.length)
        return g.interpolate(0.5, normalized=True) if g.geom_type == "LineString" else g.representative_point()

    pts = gpd.GeoSeries([middle(g) for g in shapes.values], index=shapes.index, crs=shapes.crs).to_crs(4326)
    return pd.DataFrame({"lat": pts.y.to_numpy(), "lon": pts.x.to_numpy()}, index=shapes.index)


# ------------------------------------------------------------------------------------------------ images
def list_images(inputs: Iterable[ImageInput]) -> list[ImageInput]:
    """Expand folders into the image files under them (recursive, sorted; by the extensions Pillow can read).

    Files named directly are kept whatever their extension, so a bad one is reported rather than ignored."""
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    out: list[ImageInput] = []
    for item in inputs:
        if isinstance(item, Image.Image):
            out.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*"))
                     if p.is_file() and p.suffix.lower() in readable and not p.name.startswith(".")]
            out.extend(found)
        else:
            out.append(path)  # missing files are reported when read
    return out


def _label(item: ImageInput, i: int) -> str:
    return str(item) if not isinstance(item, Image.Image) else f"<image {i}>"


# ------------------------------------------------------------------------------------------- gallery cache
def gallery_key(checkpoint_digest: str, candidates: Sequence[str], template: str) -> str:
    """Digest of everything the gallery embeddings depend on."""
    return cache.digest("gallery", GALLERY_CACHE_VERSION, checkpoint_digest, template, list(candidates), length=32)


# ----------------------------------------------------------------------------------------------- locator
@dataclass
class GalleryInfo:
    """Where the current candidate embeddings came from."""

    count: int
    key: str
    path: Path | None      # cache file, or None when caching is off
    from_cache: bool
    seconds: float          # time to encode or to read back


class AddressLocator:
    """A trained model plus an encoded candidate list: images in, ranked addresses out."""

    def __init__(self, model, checkpoint: Path | None = None, template: str = ADDRESS_TEMPLATE,
                 cache_dir: str | Path | bool | None = None, batch_size: int = 64, text_batch_tokens: int | None = None,
                 num_workers: int | None = None, progress: bool = False):
        """`checkpoint` (the model.pt the weights came from) identifies the model in the gallery cache;
        without it, or with `cache_dir=False`, embeddings are not cached. `cache_dir` defaults to
        `<checkpoint folder>/gallery_cache`."""
        self.model = model.eval()
        # inference never needs the per-string trunk cache training uses; with 100k strings it only costs memory
        self.model.cache_frozen_text = False
        self.model.clear_text_cache()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.template = template
        if cache_dir is False or self.checkpoint is None:
            self.cache_dir = None
        else:
            self.cache_dir = Path(cache_dir) if cache_dir else self.checkpoint.parent / CACHE_FOLDER
        self.batch_size, self.text_batch_tokens = batch_size, text_batch_tokens
        self.num_workers, self.progress = num_workers, progress
        self._checkpoint_digest: str | None = None
        self.train_config: dict = {}  # the run's training configuration, when loaded from a checkpoint
        self.small: dict[str, str] = {}  # images of the last call smaller than MIN_IMAGE_SIDE: {label: "WxH"}
        self.candidates: list[str] = []
        self.gallery: torch.Tensor | None = None
        self.gallery_info: GalleryInfo | None = None
        # address -> geometry (GeoSeries, metric CRS) of the candidates that have one, and their points
        self.shapes = None
        self.points: pd.DataFrame | None = None

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None, candidates: Sequence[str] | str | Path | None = None,
                        dataset: str | Path | None = None, device: str = "auto", osm: str | Path | None = None,
                        **kwargs) -> "AddressLocator":
        """Load a run folder, a model.pt, or a run name under outputs/runs (None: the newest finished run on
        `dataset`). Candidates come from `candidates` (a list or a text file), else `osm` (the sub-street
        addresses of an OpenStreetMap extract, from its map alone), else `dataset`'s addresses, else the addresses
        of the dataset the run was trained on. Extracts and datasets also give each address its place."""
        # candidates before the model: a bad list, extract or an unknown dataset fails fast
        if sum(x is not None for x in (candidates, osm)) > 1:
            raise ValueError("pass either candidates (a list or file of addresses) or osm (an OSM extract), not both")
        shapes = None
        if candidates is not None:
            texts = read_candidates(candidates)
        elif osm is not None:
            shapes = osm_candidate_shapes(osm)
            texts = list(shapes.index)
        else:
            texts = None
            if dataset is not None:
                texts, shapes = _dataset_addresses(dataset)
        model = load_model(checkpoint, device=device, dataset=dataset)
        if texts is None:  # the addresses of the dataset the run was trained on
            name = model.train_config.get("dataset")
            if not name:
                raise ValueError(f"{model.checkpoint} does not say which dataset it was trained on; pass candidates, osm or dataset")
            texts, shapes = _dataset_addresses(name)
        locator = cls(model, checkpoint=model.checkpoint, **kwargs)
        locator.train_config = model.train_config
        locator.set_candidates(texts, shapes=shapes)
        return locator

    # --- candidates -----------------------------------------------------------------------------
    def set_candidates_from_osm(self, source: str | Path, spacing_m: float | None = None) -> GalleryInfo:
        """Candidates = every sub-street address of an OpenStreetMap extract (no dataset needed), with places."""
        shapes = osm_candidate_shapes(source, spacing_m)
        return self.set_candidates(list(shapes.index), shapes=shapes)

    def set_candidates(self, candidates: Sequence[str] | str | Path, shapes=None) -> GalleryInfo:
        """Use these candidate addresses (a list of strings or a text file): read from the cache, or encode
        once and cache. `shapes` (GeoSeries address -> geometry in a metric CRS) gives addresses their places;
        without it, addresses keep the places already known to this locator, and new ones have none."""
        import time

        texts = read_candidates(candidates)
        shapes = shapes if shapes is not None else self.shapes
        if shapes is not None:
            shapes = shapes[shapes.index.isin(set(texts))]
            shapes = shapes[~shapes.index.duplicated()]
        self.shapes = shapes if shapes is not None and len(shapes) else None
        self.points = address_points(self.shapes) if self.shapes is not None else None
        start = time.perf_counter()
        key, path = self._cache_path(texts)
        payload, from_cache = cache.load_or_compute(
            path, lambda: {"embeddings": encode_texts(self.model, [self.template.format(address=t) for t in texts],
                                                      self.text_batch_tokens, self.progress, "candidate addresses").cpu()},
            valid=lambda p: p["embeddings"].ndim == 2 and p["embeddings"].shape[0] == len(texts))
        self.candidates = texts
        self.gallery = payload["embeddings"].to(self.model.device)
        self.gallery_info = GalleryInfo(len(texts), key, path, from_cache, time.perf_counter() - start)
        return self.gallery_info

    def _cache_path(self, texts: list[str]) -> tuple[str, Path | None]:
        if self.cache_dir is None:
            return gallery_key("uncached", texts, self.template), None
        if self._checkpoint_digest is None:
            self._checkpoint_digest = cache.file_digest(self.checkpoint)
        key = gallery_key(self._checkpoint_digest, texts, self.template)
        return key, self.cache_dir / f"gallery-{key}.pt"

    # --- images ---------------------------------------------------------------------------------
    def embed_images(self, images: ImageInput | Iterable[ImageInput]) -> tuple[list[str], torch.Tensor, dict[str, str]]:
        """Normalised image embeddings of every readable input: (labels, [N, D] float32, skipped {label: reason})."""
        items = list_images([images] if isinstance(images, (str, Path, Image.Image)) else images)
        rows = ImageRows(None, items, self.model.preprocess_val, self.model.image_size, report_errors=True)
        feats, kept, failed = encode_images(self.model, rows, self.batch_size, self.num_workers, self.progress)
        labels = [_label(items[i], i) for i in kept]
        skipped = {_label(items[i], i): why for i, why in sorted(failed.items())}
        if not kept:
            feats = torch.empty(0, self.gallery.shape[1] if self.gallery is not None else 0, device=self.model.device)
        if skipped:
            message = f"skipped {len(skipped)} unreadable image(s): " + "; ".join(f"{k} ({v})" for k, v in list(skipped.items())[:5])
            warnings.warn(message + (" ..." if len(skipped) > 5 else ""), UnreadableImageWarning, stacklevel=3)
        self.small = small_images([items[i] for i in kept], labels)
        if self.small:
            shown = "; ".join(f"{k} ({v})" for k, v in list(self.small.items())[:5]) + (" ..." if len(self.small) > 5 else "")
            warnings.warn(f"{len(self.small)} image(s) smaller than {MIN_IMAGE_SIDE} px on a side, unlikely to give a "
                          f"meaningful address (predicted anyway): {shown}", SmallImageWarning, stacklevel=3)
        return labels, feats, skipped

    def rank(self, feats: torch.Tensor, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosine scores and candidate indices for image embeddings, best first."""
        if self.gallery is None:
            raise RuntimeError("no candidate addresses: call set_candidates() first")
        scores, idx = topk(feats, self.gallery, k)
        return scores.cpu().numpy(), idx.cpu().numpy()

    def predict(self, images: ImageInput | Iterable[ImageInput], k: int = 5,
                records: bool = False) -> pd.DataFrame | list[dict]:
        """Top-k addresses per image (paths, folders or PIL images; any size or format Pillow reads).

        Returns a DataFrame with one row per readable image: `image`, `address` and `score` (the best),
        `topk` and `scores` (lists, best first; k is capped at the number of candidates). Scores are cosine
        similarities. Unreadable inputs are skipped with an :class:`UnreadableImageWarning` and listed in
        ``frame.attrs["skipped"]`` ({image: reason}); images under `MIN_IMAGE_SIDE` pixels on a side are predicted
        with a :class:`SmallImageWarning` and listed in ``frame.attrs["small"]`` ({image: "WxH"}). With
        `records=True`, a list of ``{"image", "predictions": [{"address", "score"}, ...]}`` instead (skipped ones
        as ``{"image", "error"}``).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        items = list_images([images] if isinstance(images, (str, Path, Image.Image)) else images)
        labels, feats, skipped = self.embed_images(items)
        scores, idx = self.rank(feats, k)
        topk = [[self.candidates[j] for j in row] for row in idx]
        columns = ["image", "address", "score", "topk", "scores", "lat", "lon", "photo_lat", "photo_lon", "distance_m",
                   "topk_lat", "topk_lon", "topk_distance_m"]
        if not labels:
            frame = pd.DataFrame(columns=columns)
            frame.attrs["skipped"], frame.attrs["small"] = skipped, {}
            return to_records(frame) if records else frame
        by_label = {_label(item, i): item for i, item in enumerate(items)}
        photo = np.array([self._photo_gps(by_label[label]) for label in labels], dtype=float).reshape(-1, 2)
        places = self.places(topk, photo)
        frame = pd.DataFrame({
            "image": labels,
            "address": [t[0] for t in topk],
            "score": [float(s[0]) for s in scores],
            "topk": topk,
            "scores": [[float(x) for x in s] for s in scores],
            "lat": places["lat"][:, 0], "lon": places["lon"][:, 0],
            "photo_lat": photo[:, 0], "photo_lon": photo[:, 1],
            "distance_m": places["distance_m"][:, 0],
            "topk_lat": [list(r) for r in places["lat"]], "topk_lon": [list(r) for r in places["lon"]],
            "topk_distance_m": [list(r) for r in places["distance_m"]],
        }, columns=columns)
        frame.attrs["skipped"], frame.attrs["small"] = skipped, dict(self.small)
        return to_records(frame) if records else frame

    @staticmethod
    def _photo_gps(item: ImageInput) -> tuple[float, float]:
        """(lat, lon) of a photo's EXIF GPS; NaN when it has none (or it is unusable)."""
        from .datasets.photos import GPSError, exif_gps, read_photo_gps

        if isinstance(item, Image.Image):
            try:
                gps = exif_gps(item)
            except GPSError:
                gps = None
        else:
            gps = read_photo_gps(item)
        return (gps[0], gps[1]) if gps is not None else (np.nan, np.nan)

    def places(self, topk: list[list[str]], photo_latlon: np.ndarray) -> dict[str, np.ndarray]:
        """Per image and rank: lat/lon of the address's point and metres from the photo's position (lat, lon; NaN
        when unknown) to the address's geometry. NaN where the address has no place."""
        n, k = len(topk), max((len(t) for t in topk), default=0)
        out = {key: np.full((n, k), np.nan) for key in ("lat", "lon", "distance_m")}
        if self.shapes is None or not n:
            return out
        import geopandas as gpd

        have = np.isfinite(photo_latlon).all(axis=1)
        photo_pts = gpd.GeoSeries(gpd.points_from_xy(np.where(have, photo_latlon[:, 1], 0.0),
                                                     np.where(have, photo_latlon[:, 0], 0.0)), crs=4326).to_crs(self.shapes.crs)
        geoms = self.shapes.to_dict()
        for i, row in enumerate(topk):
            for r, address in enumerate(row):
                if address not in geoms:
                    continue
                out["lat"][i, r], out["lon"][i, r] = self.points.at[address, "lat"], self.points.at[address, "lon"]
                if have[i]:
                    out["distance_m"][i, r] = float(photo_pts.iloc[i].distance(geoms[address]))
        return out


def _num(value, digits: int) -> float | None:
    """A float rounded for output, None for NaN (JSON has no NaN)."""
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _per_rank(frame: pd.DataFrame, column: str) -> list[list[float]]:
    if column in frame.columns:
        return list(frame[column])
    return [[np.nan] * len(t) for t in frame["topk"]]


def to_records(frame: pd.DataFrame) -> list[dict]:
    """Prediction table as JSON-ready records (missing values as null); skipped inputs last, with their reason.

    Each image: ``image``, ``photo_lat``/``photo_lon`` (its EXIF GPS) and ``predictions``, best first, each with
    ``address``, ``score``, ``lat``/``lon`` (the point of that sub-street) and ``distance_m`` (photo to sub-street)."""
    n = len(frame)
    photo_lat = frame["photo_lat"] if "photo_lat" in frame.columns else [np.nan] * n
    photo_lon = frame["photo_lon"] if "photo_lon" in frame.columns else [np.nan] * n
    out = []
    for img, t, sc, la, lo, di, pla, plo in zip(frame["image"], frame["topk"], frame["scores"], _per_rank(frame, "topk_lat"),
                                                _per_rank(frame, "topk_lon"), _per_rank(frame, "topk_distance_m"),
                                                photo_lat, photo_lon):
        out.append({"image": img, "photo_lat": _num(pla, 7), "photo_lon": _num(plo, 7),
                    "predictions": [{"address": a, "score": round(s, 6), "lat": _num(y, 7), "lon": _num(x, 7),
                                     "distance_m": _num(d, 1)} for a, s, y, x, d in zip(t, sc, la, lo, di)]})
    out += [{"image": img, "error": why} for img, why in frame.attrs.get("skipped", {}).items()]
    return out


LONG_COLUMNS = ["image", "rank", "address", "score", "lat", "lon", "distance_m", "photo_lat", "photo_lon"]


def to_long(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (image, rank): the shape a CSV of predictions wants. lat/lon: the point of that rank's
    sub-street; distance_m: metres from the photo's EXIF GPS to it; photo_lat/photo_lon: the photo's GPS
    (empty where unknown)."""
    n = len(frame)
    photo_lat = frame["photo_lat"] if "photo_lat" in frame.columns else [np.nan] * n
    photo_lon = frame["photo_lon"] if "photo_lon" in frame.columns else [np.nan] * n
    rows = [(img, r + 1, a, s, y, x, d, pla, plo)
            for img, t, sc, la, lo, di, pla, plo in zip(frame["image"], frame["topk"], frame["scores"],
                                                         _per_rank(frame, "topk_lat"), _per_rank(frame, "topk_lon"),
                                                         _per_rank(frame, "topk_distance_m"), photo_lat, photo_lon)
            for r, (a, s, y, x, d) in enumerate(zip(t, sc, la, lo, di))]
    return pd.DataFrame(rows, columns=LONG_COLUMNS)
