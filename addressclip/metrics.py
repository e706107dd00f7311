"""Metrics of image address localisation, per test image (micro average).

- SSA-k: the true sub-street address is among the top-k predictions.
- SA-k: one of the top-k predictions lies on the true *main street* (cross streets ignored). It is computed
  from each candidate's street name, never from string prefixes of the address text.
- Distance: metres from the image's location to the geometry of the top-1 predicted sub-street.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

DISTANCE_THRESHOLDS_M = (25, 50, 100)


def ranking_metrics(topk: np.ndarray, truth: np.ndarray, candidate_streets: np.ndarray, ks=(1, 5)) -> dict[str, float]:
    """`topk` [N, K] candidate indices best first, `truth` [N] the true candidate index,
    `candidate_streets` [A] the main street of each candidate (any hashable labels)."""
    topk, truth = np.asarray(topk), np.asarray(truth)
    streets = np.asarray(candidate_streets, dtype=object)
    if topk.ndim != 2 or len(topk) != len(truth):
        raise ValueError(f"topk must be [N, K] with N = len(truth); got {topk.shape} and {truth.shape}")
    out = {}
    for k in ks:
        if k > topk.shape[1]:
            raise ValueError(f"k={k} but only {topk.shape[1]} predictions per image")
        hit = (topk[:, :k] == truth[:, None]).any(axis=1)
        street_hit = (streets[topk[:, :k]] == streets[truth][:, None]).any(axis=1)
        out[f"SSA-{k}"] = float(hit.mean() * 100) if len(hit) else float("nan")
        out[f"SA-{k}"] = float(street_hit.mean() * 100) if len(hit) else float("nan")
    return out


def distance_to_prediction(easting, northing, predicted: list[str], geoms) -> np.ndarray:
    """Metres from each location to its predicted address's geometry (`geoms`: GeoSeries indexed by address,
    e.g. `IALDataset.address_shapes`; NaN where the address has none)."""
    import shapely

    lookup = [geoms.get(a) for a in predicted]
    points = shapely.points(np.asarray(easting, float), np.asarray(northing, float))
    out = np.full(len(lookup), np.nan)
    known = np.array([g is not None for g in lookup], dtype=bool)
    if known.any():
        out[known] = shapely.distance(points[known], np.array([g for g in lookup if g is not None], dtype=object))
    return out


def distance_metrics(distances: np.ndarray) -> dict[str, float]:
    d = np.asarray(distances, float)
    d = d[np.isfinite(d)]
    if not len(d):
        return {}
    out = {"median_m": float(np.median(d))}
    for t in DISTANCE_THRESHOLDS_M:
        out[f"within_{t}m"] = float((d <= t).mean() * 100)
    return out


def per_address_table(true_addresses, top1, topk_hits) -> pd.DataFrame:
    """Accuracy per true address: images, SSA-1, SSA-k (in %)."""
    frame = pd.DataFrame({"address": list(true_addresses), "hit1": np.asarray(top1, bool), "hitk": np.asarray(topk_hits, bool)})
    table = frame.groupby("address").agg(images=("hit1", "size"), ssa1=("hit1", "mean"), ssak=("hitk", "mean"))
    table[["ssa1", "ssak"]] *= 100
    return table.sort_values(["ssa1", "images"], ascending=[True, False]).reset_index()
