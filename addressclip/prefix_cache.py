"""Outputs of the frozen leading image layers, computed once per (frozen weights, images) and kept on disk.

With the image trunk partly frozen (``train_image="last:N"``, ``"proj"`` or ``"none"``), the frozen layers give
the same output for an image in every epoch and in every run that starts from the same weights (ablations,
seeds). Caching them is exact and removes most of the image cost of training and evaluation on a CPU.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import runs
from .data import ImageRows
from .paths import outputs_root


def _prefix_key(model, paths: list[str], blocks: int) -> str:
    h = hashlib.sha1(f"{blocks}|{model.image_size}|{model.spec.backbone}".encode())
    trunk = model.clip.visual.trunk
    for module in [trunk.conv_stem, trunk.bn1, *trunk.blocks[:blocks]] + ([trunk.conv_head, trunk.bn2] if blocks == len(trunk.blocks) else []):
        for t in module.state_dict().values():
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update("\n".join(map(str, paths)).encode())
    return h.hexdigest()[:16]


def prefix_features(model, paths: list[str], transform, *, cache_dir: str | Path | None = None, max_gb: float = 4.0,
                    num_workers: int = 1, batch_size: int = 64, progress: bool = False) -> torch.Tensor | None:
    """[N, ...] frozen-layer outputs for the images at `paths`, or None where the tower does not split or the
    cache would exceed `max_gb`. Read from / written to `cache_dir` (default outputs/features)."""
    blocks = model.frozen_image_blocks()
    if blocks is None or not paths:
        return None
    rows = ImageRows(None, paths, transform, model.image_size)
    first = model.encode_image_prefix(rows[0][0][None].to(model.device))
    if first.numel() * first.element_size() * len(rows) / 1e9 > max_gb:
        return None
    path = Path(cache_dir or outputs_root() / "features") / f"prefix-{_prefix_key(model, paths, blocks)}.pt"
    if path.exists():
        try:
            return runs.load_checkpoint(path)["prefix"]
        except RuntimeError:
            path.unlink()  # a damaged cache file is recomputed, never trusted
    was_training = model.training
    model.eval()
    loader = DataLoader(rows, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    parts = [model.encode_image_prefix(images.to(model.device)).cpu()
             for images, _ in tqdm(loader, desc="frozen image layers", disable=not progress, leave=False)]
    model.train(was_training)
    prefix = torch.cat(parts)
    runs.save_checkpoint(path, {"prefix": prefix})
    return prefix


def _text_key(model, texts: list[str]) -> str:
    """Hash of the frozen text trunk's weights (not the trainable projection) and the strings."""
    from .freezing import _projection_names

    proj = _projection_names(model.clip, "text")
    h = hashlib.sha1(model.spec.backbone.encode())
    for name, t in sorted(model.clip.state_dict().items()):
        if not name.startswith(("visual.", "logit_")) and name not in proj:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update("\n".join(texts).encode())
    return h.hexdigest()[:16]


def warm_text_cache(model, texts: list[str], *, cache_dir: str | Path | None = None, batch_size: int = 256,
                    progress: bool = False) -> bool:
    """Fill the model's per-string cache of frozen text-trunk outputs for `texts` from disk, computing and
    saving what is missing. Only when the text trunk is frozen (else returns False and does nothing).
    Runs from the same weights (seeds, ablation variants) then never encode the same captions twice."""
    from .freezing import frozen_text_trunk

    if not frozen_text_trunk(model) or not model.cache_frozen_text:
        return False
    unique = sorted(set(texts))
    path = Path(cache_dir or outputs_root() / "features") / f"text-{_text_key(model, unique)}.pt"
    pooled = None
    if path.exists():
        try:
            pooled = runs.load_checkpoint(path)["pooled"]
        except RuntimeError:
            path.unlink()
    if pooled is None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            pooled = torch.cat([model._trunk_text(model.tokenize(unique[i : i + batch_size]).to(model.device)).cpu()
                                for i in tqdm(range(0, len(unique), batch_size), desc="frozen text layers",
                                              disable=not progress, leave=False)])
        model.train(was_training)
        runs.save_checkpoint(path, {"pooled": pooled})
    model._text_cache.update({t: p.to(model.device) for t, p in zip(unique, pooled)})
    return True
