"""Is method A better than method B? Paired comparisons over the same test images and seeds.

Every method is scored on the same test images, so the question is answered on paired per-image outcomes:
``hits[s, i]`` = 1 when seed s of the method ranks image i's true address first. The difference in SSA-1 (points)
gets a two-level paired bootstrap confidence interval: each replicate resamples the seeds (training randomness)
and, independently, the test images (which images happened to be in the test split), the same draws for both
methods. A method that ran once (deterministic) is paired with every seed of the other. The verdict follows from
the interval alone: better when it lies above 0, worse when below, otherwise not shown either way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LEVEL = 0.95
REPLICATES = 2000


def hits_from_predictions(predictions: pd.DataFrame) -> np.ndarray:
    """Top-1 hits (0/1) per test image, in the predictions' row order (the dataset's split order)."""
    return (predictions["pred"].to_numpy() == predictions["address"].to_numpy()).astype(np.int8)


def encode_hits(hits: np.ndarray) -> str:
    """Compact text form for JSON result files: one character per image."""
    return "".join("1" if h else "0" for h in np.asarray(hits).astype(bool))


def decode_hits(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8) - ord("0")


def paired_bootstrap(a: np.ndarray, b: np.ndarray, replicates: int = REPLICATES, level: float = LEVEL,
                     seed: int = 0) -> dict[str, float]:
    """SSA-1 difference A - B in points with its bootstrap interval. `a`, `b`: [seeds, images] 0/1 arrays over the
    same images (one row = a method that ran once)."""
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two methods were scored on different test sets ({a.shape[1]} vs {b.shape[1]} images)")
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ValueError(f"seeds do not pair up ({len(a)} vs {len(b)})")
    seeds = max(len(a), len(b))
    a, b = (np.repeat(x, seeds, axis=0) if len(x) == 1 else x for x in (a, b))
    diff = (a - b) * 100.0                                  # [seeds, images]
    rng = np.random.default_rng(seed)
    n = diff.shape[1]
    # per replicate: mean over resampled seeds of the mean over resampled images
    boot = np.empty(replicates)
    for r in range(replicates):
        rows = rng.integers(0, seeds, seeds)
        cols = rng.integers(0, n, n)
        boot[r] = diff[rows][:, cols].mean()
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"difference": float(diff.mean()), "ci_low": float(lo), "ci_high": float(hi), "seeds": seeds, "images": n}


def verdict(ci_low: float, ci_high: float, level: float = LEVEL) -> str:
    """Plain words for an interval of the difference A - B."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "cannot be judged: per-image results are missing"
    pct = f"{level:.0%}"
    if ci_low > 0:
        return f"better: the {pct} interval lies above 0"
    if ci_high < 0:
        return f"worse: the {pct} interval lies below 0"
    return f"no difference shown: the {pct} interval includes 0"


def compare(name_a: str, a: np.ndarray | None, name_b: str, b: np.ndarray | None, **kwargs) -> dict:
    """One row of a comparison table: the difference, its interval and the verdict (NaN and a reason when the
    per-image results of either side are missing)."""
    row = {"A": name_a, "B": name_b}
    if a is None or b is None:
        return {**row, "difference": np.nan, "ci_low": np.nan, "ci_high": np.nan, "seeds": 0, "images": 0,
                "verdict": verdict(np.nan, np.nan)}
    result = paired_bootstrap(a, b, **kwargs)
    return {**row, **result, "verdict": verdict(result["ci_low"], result["ci_high"])}
