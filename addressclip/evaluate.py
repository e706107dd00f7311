"""Rank every candidate address for each image: encode the addresses once, images in batches, top-k by cosine."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import ADDRESS_TEMPLATE, ImageRows
from .datasets.format import IALDataset
from .metrics import distance_metrics, distance_to_prediction, per_address_table, ranking_metrics


@dataclass
class EvalResult:
    metrics: dict
    predictions: pd.DataFrame   # one row per image: truth, top-k addresses and scores
    per_address: pd.DataFrame

    @property
    def quality(self) -> dict[str, float]:
        """The accuracy and distance figures, without bookkeeping (counts, timings)."""
        skip = {"split", "images", "candidates", "eval_seconds", "gallery_seconds", "images_per_s", "frozen_layers_cached",
                "distance_to"}
        return {k: v for k, v in self.metrics.items() if k not in skip}


@torch.inference_mode()
def encode_texts(model, texts: list[str], batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    chunks = range(0, len(texts), batch_size)
    feats = [model.encode_text(texts[i : i + batch_size]).float() for i in tqdm(chunks, desc="addresses", disable=not progress, leave=False)]
    return torch.cat(feats)


@torch.inference_mode()
def encode_images(model, rows: ImageRows, batch_size: int = 64, num_workers: int = 1, progress: bool = False) -> torch.Tensor:
    loader = DataLoader(rows, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    device = model.device
    out = []
    for images, _ in tqdm(loader, desc="images", disable=not progress, leave=False):
        out.append(model.encode_image(images.to(device, non_blocking=True)).float())
    if not out:
        raise ValueError("no images to encode")
    return torch.cat(out)


@torch.inference_mode()
def encode_prefix(model, prefix: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Image features from cached frozen-layer outputs (prefix_cache.py), in batches."""
    return torch.cat([model.encode_image_from_prefix(prefix[i : i + batch_size].to(model.device)).float()
                      for i in range(0, len(prefix), batch_size)])


def topk_scores(image_feats: torch.Tensor, gallery: torch.Tensor, k: int, chunk: int = 4096):
    """Top-k cosine scores and indices, in image chunks so the [N, A] matrix never exists whole."""
    k = min(k, gallery.shape[0])
    scores, idx = [], []
    for i in range(0, len(image_feats), chunk):
        s, j = (image_feats[i : i + chunk] @ gallery.T).topk(k, dim=1)
        scores.append(s)
        idx.append(j)
    return torch.cat(scores).cpu().numpy(), torch.cat(idx).cpu().numpy()


def evaluate(
    model,
    ds: IALDataset,
    split: str = "test",
    k: int = 5,
    batch_size: int = 64,
    num_workers: int = 1,
    address_template: str = ADDRESS_TEMPLATE,
    progress: bool = False,
    prefix: torch.Tensor | None = None,
) -> EvalResult:
    """Encode every candidate address once and the split's images in batches; rank by cosine similarity.
    `prefix`: cached outputs of the frozen image layers for the split's rows (prefix_cache.py), if any."""
    was_training = model.training
    model.eval()
    frame = ds.split(split)
    start = time.perf_counter()
    gallery = encode_texts(model, [address_template.format(address=a) for a in ds.addresses], progress=progress)
    t_gallery = time.perf_counter() - start
    if prefix is not None:
        feats = encode_prefix(model, prefix)
    else:
        feats = encode_images(model, ImageRows(ds.root, frame["image"].tolist(), model.preprocess_val, model.image_size), batch_size, num_workers, progress)
    scores, top = topk_scores(feats, gallery.to(feats.device), k)
    elapsed = time.perf_counter() - start
    model.train(was_training)
    return result_from_ranking(ds, split, top, scores, {
        "eval_seconds": round(elapsed, 3), "gallery_seconds": round(t_gallery, 3),
        "images_per_s": round(len(frame) / max(elapsed, 1e-9), 2),
        "frozen_layers_cached": prefix is not None})  # if so, images/s excludes the frozen layers


def result_from_ranking(ds: IALDataset, split: str, top: np.ndarray, scores: np.ndarray, extra: dict | None = None) -> EvalResult:
    """Metrics, predictions and per-address table from a ranking of `ds.addresses` for each image of `split`
    (`top` [N, k] candidate indices best first, `scores` [N, k]). Every method is scored by this one function."""
    frame = ds.split(split)
    candidates = ds.addresses
    streets = np.array([ds.address_to_street[a] for a in candidates], dtype=object)
    top, scores = np.asarray(top), np.asarray(scores)
    truth = np.array([ds.address_id(a) for a in frame["address"]])
    metrics = ranking_metrics(top, truth, streets, ks=tuple(x for x in (1, 5) if x <= top.shape[1]))
    pred_addr = [[candidates[j] for j in row] for row in top]
    top1 = [p[0] for p in pred_addr]
    dist = distance_to_prediction(frame["easting"], frame["northing"], top1, ds.address_shapes)
    metrics.update(distance_metrics(dist))
    metrics.update({"split": split, "distance_to": ds.distance_basis, "images": int(len(frame)), "candidates": len(candidates), **(extra or {})})
    predictions = pd.DataFrame(
        {
            "image": frame["image"], "address": frame["address"], "street": frame["street"],
            "easting": frame["easting"], "northing": frame["northing"],
            "pred": top1, "pred_street": [streets[row[0]] for row in top], "distance_m": dist,
            "topk": pred_addr, "scores": [list(map(float, s)) for s in scores],
        }
    )
    per_addr = per_address_table(frame["address"], top[:, 0] == truth, (top == truth[:, None]).any(axis=1))
    return EvalResult(metrics, predictions, per_addr)
