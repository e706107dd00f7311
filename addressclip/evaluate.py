"""Evaluation: every candidate address ranked for each image of a split (through the one inference path,
`inference`), and the metrics, predictions and per-address table of any method's ranking (`result_from_ranking`)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .data import ADDRESS_TEMPLATE, ImageRows
from .datasets.format import IALDataset
from .inference import encode_after_frozen, encode_images, encode_texts, topk
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
                "distance_to", "skipped_images"}
        return {k: v for k, v in self.metrics.items() if k not in skip}


def evaluate(
    model,
    ds: IALDataset,
    split: str = "test",
    k: int = 5,
    batch_size: int = 64,
    num_workers: int | None = None,  # None: threads.loader_workers
    address_template: str = ADDRESS_TEMPLATE,
    progress: bool = False,
    frozen: torch.Tensor | None = None,
    skip: "set[str] | dict[str, str] | None" = None,
) -> EvalResult:
    """Encode every candidate address once and the split's images in batches; rank by cosine similarity.
    `skip`: images (paths relative to the dataset) known to be unreadable (`image_check`); they, and any image
    that fails to decode here, are left out and counted as ``skipped_images``. `frozen`: cached outputs of the
    frozen image layers for the split's rows less `skip` (`frozen_layers`), if any."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    frame = ds.split(split)
    if not len(frame):
        raise ValueError(f"split {split!r} of dataset {ds.name!r} has no images to evaluate")
    skipped = 0
    if skip:
        keep = ~frame["image"].isin(set(skip))
        skipped = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    gallery = encode_texts(model, [address_template.format(address=a) for a in ds.addresses], progress=progress,
                           desc="addresses")
    t_gallery = time.perf_counter() - start
    if frozen is not None:
        feats = encode_after_frozen(model, frozen)
    else:
        rows = ImageRows(ds.root, frame["image"].tolist(), model.preprocess_val, model.image_size, report_errors=True)
        feats, kept, failed = encode_images(model, rows, batch_size, num_workers, progress)
        if failed:  # unreadable since the check (or never checked): skipped as prediction skips them
            skipped += len(failed)
            frame = frame.iloc[kept].reset_index(drop=True)
    if not len(frame):
        raise ValueError(f"split {split!r} of dataset {ds.name!r} has no readable images to evaluate ({skipped} skipped)")
    scores, top = topk(feats, gallery.to(feats.device), k)
    elapsed = time.perf_counter() - start
    model.train(was_training)
    return result_from_ranking(ds, split, top.cpu().numpy(), scores.cpu().numpy(), {
        "eval_seconds": round(elapsed, 3), "gallery_seconds": round(t_gallery, 3),
        "images_per_s": round(len(frame) / max(elapsed, 1e-9), 2),
        "frozen_layers_cached": frozen is not None,  # if so, images/s excludes the frozen layers
        "skipped_images": skipped}, frame=frame)


def result_from_ranking(ds: IALDataset, split: str, top: np.ndarray, scores: np.ndarray, extra: dict | None = None,
                        frame: pd.DataFrame | None = None) -> EvalResult:
    """Metrics, predictions and per-address table from a ranking of `ds.addresses` for each image of `split`
    (`top` [N, k] candidate indices best first, `scores` [N, k]), or of the rows `frame` of it (the readable
    ones). Every method is scored by this one function."""
    frame = ds.split(split) if frame is None else frame
    candidates = ds.addresses
    street_of = ds.address_to_street  # built once (a property computed from the samples table)
    streets = np.array([street_of[a] for a in candidates], dtype=object)
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
