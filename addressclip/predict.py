"""Predict the address of any street photo against any list of candidate addresses (open vocabulary).

    locator = AddressLocator.from_checkpoint("outputs/runs/<run>", dataset="helsinki-synth")
    locator.predict(["photo.jpg", "more_photos/"], k=5)            # DataFrame, one row per readable image
    locator.set_candidates(["Mannerheimintie & Kaivokatu, Helsinki 00100", ...])  # new streets, no retraining

The candidate side (the "gallery") is encoded once per (checkpoint, candidate list, template) and cached next
to the checkpoint as a safetensors file, so the next call with the same list only reads it back. Ranking is
chunked over both images and candidates, so 100,000 candidates never need an [N, 100k] score matrix.
Unreadable images are reported (a warning, and ``frame.attrs["skipped"]``) and skipped; the rest are predicted.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from .data import ADDRESS_TEMPLATE, open_image

log = logging.getLogger(__name__)

# Bump when the way candidate texts are turned into embeddings changes: old cache files then miss.
GALLERY_CACHE_VERSION = "1"
CACHE_FOLDER = "gallery_cache"

ImageInput = Union[str, Path, Image.Image]


class UnreadableImageWarning(UserWarning):
    """Some inputs could not be decoded as images and were skipped."""


# --------------------------------------------------------------------------------------------- candidates
def read_candidates(source: Sequence[str] | str | Path) -> list[str]:
    """Candidate addresses from a list of strings or a text file (one address per line).

    Whitespace is stripped, blank lines dropped, and repeats removed (keeping the first), since a repeated
    candidate would only fill the top-k with copies of itself."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no candidate address file at {path} (expected one address per line)")
        items: Iterable[str] = path.read_text(encoding="utf-8").splitlines()
    else:
        items = source
    out = list(dict.fromkeys(s.strip() for s in items if isinstance(s, str) and s.strip()))
    if not out:
        raise ValueError("the candidate address list is empty")
    return out


def dataset_candidates(name_or_path: str | Path) -> list[str]:
    """Every address of a built dataset (the gallery evaluation ranks)."""
    from .datasets import load_dataset

    return load_dataset(name_or_path).addresses


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


class _ImageBatch(torch.utils.data.Dataset):
    """Inputs as (tensor or None, error or None): decoding errors travel with the item instead of raising."""

    def __init__(self, items: list[ImageInput], transform, size_hint: int | None):
        self.items, self.transform, self.size_hint = items, transform, size_hint

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            return self.transform(open_image(self.items[i], self.size_hint)), None
        except Exception as exc:  # noqa: BLE001 - any decoder failure (Pillow raises many kinds) skips this input only
            return None, f"{type(exc).__name__}: {exc}"


def _collate(batch):
    return batch  # a list of (tensor | None, error | None); stacking happens after dropping failures


# --------------------------------------------------------------------------------------------------- top-k
def chunked_topk(queries: torch.Tensor, gallery: torch.Tensor, k: int, query_chunk: int = 256,
                 gallery_chunk: int = 32768) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k dot-product scores and indices of each query against the gallery, best first.

    Scores exist only for one [query_chunk, gallery_chunk] block at a time; a running top-k is merged
    across gallery blocks, so memory does not grow with the number of candidates."""
    k = min(int(k), gallery.shape[0])
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    all_scores, all_idx = [], []
    for i in range(0, len(queries), query_chunk):
        q = queries[i : i + query_chunk]
        best_s = best_i = None
        for j in range(0, gallery.shape[0], gallery_chunk):
            block = q @ gallery[j : j + gallery_chunk].T
            s, idx = block.topk(min(k, block.shape[1]), dim=1)
            idx = idx + j
            if best_s is not None:  # merge with the best so far (fewer than k columns while blocks are small)
                s, pos = torch.cat([best_s, s], dim=1).topk(min(k, best_s.shape[1] + s.shape[1]), dim=1)
                idx = torch.cat([best_i, idx], dim=1).gather(1, pos)
            best_s, best_i = s, idx
        all_scores.append(best_s)
        all_idx.append(best_i)
    if not all_scores:
        return torch.empty(0, k), torch.empty(0, k, dtype=torch.long)
    return torch.cat(all_scores), torch.cat(all_idx)


# ------------------------------------------------------------------------------------------- gallery cache
def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (a checkpoint's identity, wherever it is copied to)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gallery_key(checkpoint_digest: str, candidates: Sequence[str], template: str) -> str:
    """Hash of everything the gallery embeddings depend on."""
    h = hashlib.sha256()
    for part in (GALLERY_CACHE_VERSION, checkpoint_digest, template, str(len(candidates))):
        h.update(part.encode() + b"\0")
    for text in candidates:
        h.update(text.encode("utf-8") + b"\0")
    return h.hexdigest()[:32]


def load_cached_gallery(path: Path, count: int) -> torch.Tensor | None:
    """The cached embeddings, or None when missing or unreadable (a bad file is simply recomputed)."""
    if not path.exists():
        return None
    from safetensors.torch import load_file

    try:
        emb = load_file(str(path))["embeddings"]
    except Exception as exc:  # truncated or foreign file: a cache miss, not an error
        log.warning("ignoring unreadable gallery cache %s: %s", path, exc)
        return None
    return emb if emb.ndim == 2 and emb.shape[0] == count else None


def save_cached_gallery(path: Path, embeddings: torch.Tensor, metadata: dict[str, str]) -> bool:
    """Write atomically (temp file, then rename); False when the folder is not writable."""
    from safetensors.torch import save_file

    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": embeddings.contiguous().cpu()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        log.warning("cannot write gallery cache %s (%s); embeddings stay in memory only", path, exc)
        return False


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
                 cache_dir: str | Path | bool | None = None, batch_size: int = 64, text_batch_size: int = 256,
                 num_workers: int = 0, progress: bool = False):
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
        self.batch_size, self.text_batch_size = batch_size, text_batch_size
        self.num_workers, self.progress = num_workers, progress
        self._checkpoint_digest: str | None = None
        self.train_config: dict = {}  # the run's training configuration, when loaded from a checkpoint
        self.candidates: list[str] = []
        self.gallery: torch.Tensor | None = None
        self.gallery_info: GalleryInfo | None = None

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None, candidates: Sequence[str] | str | Path | None = None,
                        dataset: str | Path | None = None, device: str = "auto", **kwargs) -> "AddressLocator":
        """Load a run folder, a model.pt, or a run name under outputs/runs (None: the newest finished run on
        `dataset`). Candidates come from `candidates` (a list or a text file), else `dataset`'s addresses,
        else the addresses of the dataset the run was trained on."""
        from .model import create_model
        from .runs import load_checkpoint, resolve_run
        from .train import resolve_device

        where = resolve_run(None if checkpoint is None else str(checkpoint), dataset=None if dataset is None else str(dataset))
        model_pt = where / "model.pt" if where.is_dir() else where
        state = load_checkpoint(model_pt)  # read once: weights, spec and the training config
        config = state.get("config") or {}
        # candidates before the model: a bad list or an unknown dataset fails fast
        if candidates is not None:
            texts = read_candidates(candidates)
        elif dataset is not None:
            texts = dataset_candidates(dataset)
        elif config.get("dataset"):
            texts = dataset_candidates(config["dataset"])
        else:
            raise ValueError(f"{model_pt} does not say which dataset it was trained on; pass candidates or dataset")
        model = create_model(device=resolve_device(device), **{**state["spec"], "pretrained": None})  # weights: below
        model.spec.pretrained = state["spec"].get("pretrained")
        model.clip.load_state_dict(state.pop("model"))
        locator = cls(model, checkpoint=model_pt, **kwargs)
        locator.train_config = config
        locator.set_candidates(texts)
        return locator

    # --- candidates -----------------------------------------------------------------------------
    def set_candidates(self, candidates: Sequence[str] | str | Path) -> GalleryInfo:
        """Use these candidate addresses (a list of strings or a text file): read from the cache, or encode
        once and cache."""
        import time

        texts = read_candidates(candidates)
        start = time.perf_counter()
        key, path = self._cache_path(texts)
        emb = load_cached_gallery(path, len(texts)) if path is not None else None
        from_cache = emb is not None
        if emb is None:
            emb = self.encode_candidates(texts)
            if path is not None:
                save_cached_gallery(path, emb, {"count": str(len(texts)), "template": self.template,
                                                "checkpoint": str(self.checkpoint), "version": GALLERY_CACHE_VERSION})
        self.candidates = texts
        self.gallery = emb.to(self.model.device)
        self.gallery_info = GalleryInfo(len(texts), key, path, from_cache, time.perf_counter() - start)
        return self.gallery_info

    def _cache_path(self, texts: list[str]) -> tuple[str, Path | None]:
        if self.cache_dir is None:
            return gallery_key("uncached", texts, self.template), None
        if self._checkpoint_digest is None:
            self._checkpoint_digest = file_digest(self.checkpoint)
        key = gallery_key(self._checkpoint_digest, texts, self.template)
        return key, self.cache_dir / f"gallery-{key}.safetensors"

    @torch.inference_mode()
    def encode_candidates(self, texts: list[str]) -> torch.Tensor:
        """Normalised text embeddings [A, D] (float32), in batches of similar length: each batch is padded
        only to its longest text, so sorting by length saves the padding (the result does not change)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = None  # filled in place: no list of batches to concatenate (a second copy at 100k candidates)
        for start in tqdm(range(0, len(texts), self.text_batch_size), desc="candidate addresses",
                          disable=not self.progress, leave=False):
            rows = order[start : start + self.text_batch_size]
            feats = self.model.encode_text([self.template.format(address=texts[i]) for i in rows]).float().cpu()
            if out is None:
                out = torch.empty(len(texts), feats.shape[1])
            out[torch.as_tensor(rows)] = feats
        return out

    # --- images ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed_images(self, images: ImageInput | Iterable[ImageInput]) -> tuple[list[str], torch.Tensor, dict[str, str]]:
        """Normalised image embeddings of every readable input: (labels, [N, D] float32, skipped {label: reason})."""
        items = list_images([images] if isinstance(images, (str, Path, Image.Image)) else images)
        rows = _ImageBatch(items, self.model.preprocess_val, self.model.image_size)
        loader = torch.utils.data.DataLoader(rows, batch_size=self.batch_size, num_workers=self.num_workers,
                                             collate_fn=_collate, shuffle=False)
        labels, feats, skipped, n = [], [], {}, 0
        for batch in tqdm(loader, desc="images", disable=not self.progress, leave=False):
            good = []
            for tensor, error in batch:
                if error is None:
                    good.append(tensor)
                    labels.append(_label(items[n], n))
                else:
                    skipped[_label(items[n], n)] = error
                n += 1
            if good:
                feats.append(self.model.encode_image(torch.stack(good).to(self.model.device)).float())
        dim = self.gallery.shape[1] if self.gallery is not None else 0
        stacked = torch.cat(feats) if feats else torch.empty(0, dim, device=self.model.device)
        if skipped:
            message = f"skipped {len(skipped)} unreadable image(s): " + "; ".join(f"{k} ({v})" for k, v in list(skipped.items())[:5])
            warnings.warn(message + (" ..." if len(skipped) > 5 else ""), UnreadableImageWarning, stacklevel=3)
        return labels, stacked, skipped

    def rank(self, feats: torch.Tensor, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosine scores and candidate indices for image embeddings, best first."""
        if self.gallery is None:
            raise RuntimeError("no candidate addresses: call set_candidates() first")
        scores, idx = chunked_topk(feats, self.gallery, k)
        return scores.cpu().numpy(), idx.cpu().numpy()

    def predict(self, images: ImageInput | Iterable[ImageInput], k: int = 5,
                records: bool = False) -> pd.DataFrame | list[dict]:
        """Top-k addresses per image (paths, folders or PIL images; any size or format Pillow reads).

        Returns a DataFrame with one row per readable image: `image`, `address` and `score` (the best),
        `topk` and `scores` (lists, best first; k is capped at the number of candidates). Scores are cosine
        similarities. Unreadable inputs are skipped with an :class:`UnreadableImageWarning` and listed in
        ``frame.attrs["skipped"]`` ({image: reason}). With `records=True`, a list of
        ``{"image", "predictions": [{"address", "score"}, ...]}`` instead (skipped ones as ``{"image", "error"}``).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        labels, feats, skipped = self.embed_images(images)
        scores, idx = self.rank(feats, k)
        topk = [[self.candidates[j] for j in row] for row in idx]
        frame = pd.DataFrame({
            "image": labels,
            "address": [t[0] for t in topk],
            "score": [float(s[0]) for s in scores],
            "topk": topk,
            "scores": [[float(x) for x in s] for s in scores],
        }) if labels else pd.DataFrame(columns=["image", "address", "score", "topk", "scores"])
        frame.attrs["skipped"] = skipped
        return to_records(frame) if records else frame


def to_records(frame: pd.DataFrame) -> list[dict]:
    """Prediction table as JSON-ready records; skipped inputs last, with their reason."""
    out = [{"image": img, "predictions": [{"address": a, "score": round(s, 6)} for a, s in zip(t, sc)]}
           for img, t, sc in zip(frame["image"], frame["topk"], frame["scores"])]
    out += [{"image": img, "error": why} for img, why in frame.attrs.get("skipped", {}).items()]
    return out


def to_long(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (image, rank): the shape a CSV of predictions wants."""
    rows = [(img, r + 1, a, s) for img, t, sc in zip(frame["image"], frame["topk"], frame["scores"])
            for r, (a, s) in enumerate(zip(t, sc))]
    return pd.DataFrame(rows, columns=["image", "rank", "address", "score"])
