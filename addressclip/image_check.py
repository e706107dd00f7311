"""Which images of a dataset can be read: checked once per dataset, so training skips bad images as prediction does.

Every image is decoded once by the one decoder (`data.open_image`, JPEGs in draft mode at the model's input size);
the names of those that fail, with the reason, are cached (`cache.load_or_compute`) under a key made of every image's
path, size and modification time, so the check is paid once and repeated only for a dataset whose files changed (an
image deleted, overwritten or added). Training drops the bad rows from its tables, deterministically, records them in
the run folder (``skipped_images.json``) and warns; ``strict_images=True`` stops instead (`BadImagesError`).
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import cache, threads
from .data import ImageRows
from .errors import UserError
from .inference import collate_readable

CHECK_VERSION = 1  # bump when what counts as readable changes


class BadImagesError(UserError):
    """Images that cannot be read, where the user asked to stop rather than skip them (``strict_images``)."""


class SkippedImagesWarning(UserWarning):
    """Unreadable images were left out of training and evaluation."""


def file_states(root: Path, images: list[str]) -> list[tuple]:
    """(relative path, size, mtime in ns) of each image; (path, None, None) for a missing one."""
    states = []
    for rel in images:
        try:
            st = os.stat(root / rel)
            states.append((rel, st.st_size, st.st_mtime_ns))
        except OSError:
            states.append((rel, None, None))
    return states


def _nothing(image) -> torch.Tensor:
    """The check's transform: the image is decoded, nothing is kept (a module function: workers started by spawn,
    as on macOS or inside a sweep's process, must pickle it)."""
    return torch.empty(0)


def decode_failures(root: Path, images: list[str], size_hint: int | None, num_workers: int | None = None,
                    progress: bool = False) -> dict[str, str]:
    """{relative path: reason} of the `images` under `root` that `open_image` cannot decode (`data.ImageRows`
    reporting errors, as prediction reads images; nothing is transformed). `num_workers` None: one per core."""
    from tqdm.auto import tqdm

    rows = ImageRows(root, images, _nothing, size_hint, report_errors=True)
    if num_workers is None:
        num_workers = threads.loader_workers("cpu", decode_only=True, batches=-(-len(images) // 64))
    loader = DataLoader(rows, batch_size=64, num_workers=num_workers, collate_fn=collate_readable,
                        generator=torch.Generator())  # own generator: the global RNG is untouched
    failures: dict[int, str] = {}
    for _, _, errors in tqdm(loader, desc="checking images", disable=not progress, leave=False):
        failures.update(errors)
    return {images[i]: why for i, why in sorted(failures.items())}


def unreadable_images(ds, size_hint: int | None, cache_dir: str | Path | None, num_workers: int | None = None,
                      progress: bool = False) -> tuple[dict[str, str], dict]:
    """({relative path: reason} of the images of dataset `ds` that cannot be read, facts about the check: images,
    seconds, whether the result came from the cache). Cached in `cache_dir` (None: not cached)."""
    start = time.perf_counter()
    root = Path(ds.root).resolve()
    images = ds.samples["image"].tolist()
    states = file_states(root, images)
    key = cache.digest("readable images", CHECK_VERSION, str(root), size_hint, states, length=24)
    path = None if cache_dir is None else Path(cache_dir) / f"checked-{Path(str(ds.name)).name}-{key}.pt"

    def compute():
        t0 = time.perf_counter()
        missing = {rel: "FileNotFoundError: no such file" for rel, size, _ in states if size is None}
        present = [rel for rel, size, _ in states if size is not None]
        bad = {**missing, **decode_failures(root, present, size_hint, num_workers, progress)}
        return {"bad": dict(sorted(bad.items())), "images": len(images), "decode_seconds": round(time.perf_counter() - t0, 3)}

    payload, from_cache = cache.load_or_compute(path, compute,
                                                valid=lambda p: isinstance(p.get("bad"), dict) and p.get("images") == len(images))
    facts = {"images": len(images), "unreadable": len(payload["bad"]), "from_cache": from_cache,
             "seconds": round(time.perf_counter() - start, 3), "decode_seconds": payload.get("decode_seconds")}
    return dict(payload["bad"]), facts


def describe(bad: dict[str, str], limit: int = 5) -> str:
    """The first `limit` bad images with their reasons, on one line."""
    shown = "; ".join(f"{name} ({why})" for name, why in list(bad.items())[:limit])
    return shown + (f"; and {len(bad) - limit} more" if len(bad) > limit else "")


def warn_skipped(bad: dict[str, str], where: str) -> None:
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s) of {where}: {describe(bad)}", SkippedImagesWarning,
                      stacklevel=3)
