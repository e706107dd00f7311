"""Outputs of the frozen layers, computed once per (frozen weights, inputs) and kept on disk (`cache`).

With the image trunk partly frozen (``train_image="last:N"``, ``"proj"`` or ``"none"``), the frozen leading
layers give the same output for an image in every epoch and in every run that starts from the same weights
(ablations, seeds); with the text trunk frozen (``train_text="proj"`` or ``"none"``) the same holds for every
caption and address. Caching them is exact and removes most of the cost of training and evaluation on a CPU.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import cache, threads
from .data import ImageRows
from .freezing import frozen_text_trunk, projection_names
from .paths import features_root


def image_outputs(model, paths: list[str], transform, *, cache_dir: str | Path | None = None, max_gb: float = 4.0,
                  num_workers: int | None = None, batch_size: int = 64, progress: bool = False) -> torch.Tensor | None:
    """[N, ...] outputs of the frozen image layers for the images at `paths`, or None where the tower does not
    split or the cache would exceed `max_gb`. Read from / written to `cache_dir` (default outputs/features)."""
    blocks = model.frozen_image_blocks()
    if blocks is None or not paths:
        return None
    rows = ImageRows(None, paths, transform, model.image_size)
    key = cache.digest("frozen image layers, batch norms folded", blocks, model.image_size, model.spec.backbone,
                       [m.state_dict() for m in model.frozen_image_layers()], [str(p) for p in paths], length=24)
    path = Path(cache_dir or features_root()) / f"image-{key}.pt"
    # their size in memory: the cached file's, else one image's output times N (a cached file needs no image
    # through the layers, nor their folded copy built: most runs of a sweep only read the cache)
    if path.exists():
        nbytes = path.stat().st_size
    else:
        first = model.encode_frozen_image_layers(rows[0][0][None].to(model.device))
        nbytes = first.numel() * first.element_size() * len(rows)
    if nbytes / 1e9 > max_gb:
        return None

    def compute():
        was_training = model.training
        model.eval()
        loader = DataLoader(rows, batch_size=batch_size, shuffle=False,
                            **threads.loader_options(model.device, num_workers, batches=-(-len(rows) // batch_size)))
        parts = [model.encode_frozen_image_layers(images.to(model.device, non_blocking=True)).cpu()
                 for images, _ in tqdm(loader, desc="frozen image layers", disable=not progress, leave=False)]
        model.train(was_training)
        return {"outputs": torch.cat(parts)}

    payload, _ = cache.load_or_compute(path, compute)
    return payload["outputs"]


def text_outputs(model, texts: list[str], *, cache_dir: str | Path | None = None, batch_size: int = 256,
                 progress: bool = False) -> bool:
    """Give the model the frozen text-trunk outputs of `texts` (`AddressCLIP.remember_text_trunk`), from disk
    where known, computing and saving what is missing. Only when the text trunk is frozen (else returns False and
    does nothing). Runs from the same weights (seeds, ablation variants) then never encode the same captions twice."""
    if not frozen_text_trunk(model) or not model.cache_frozen_text:
        return False
    unique = sorted(set(texts))
    if not unique:
        return True
    proj = projection_names(model.clip, "text")
    trunk = {n: t for n, t in model.clip.state_dict().items() if not n.startswith(("visual.", "logit_")) and n not in proj}
    key = cache.digest("frozen text trunk", model.spec.backbone, trunk, unique, length=24)

    def compute():
        was_training = model.training
        model.eval()
        # batches of texts of similar length, each padded only to its longest: far less padding than the sorted
        # strings' order gives (the outputs are written back in `unique` order)
        order = sorted(range(len(unique)), key=lambda i: (len(unique[i]), i))
        pooled = None
        with torch.no_grad():
            for start in tqdm(range(0, len(unique), batch_size), desc="frozen text layers", disable=not progress,
                              leave=False):
                rows = order[start : start + batch_size]
                out = model.encode_text_trunk(model.tokenize([unique[i] for i in rows]).to(model.device)).cpu()
                if pooled is None:
                    pooled = torch.empty(len(unique), *out.shape[1:], dtype=out.dtype)
                pooled[rows] = out
        model.train(was_training)
        return {"outputs": pooled}

    payload, _ = cache.load_or_compute(Path(cache_dir or features_root()) / f"text-{key}.pt", compute)
    model.remember_text_trunk(unique, payload["outputs"])
    return True
