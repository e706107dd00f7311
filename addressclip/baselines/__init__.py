"""Baselines, each a small module over the shared model interface and cached features (features.py).

Every baseline is a function ``run(bank, model=None, seed=0, k=5, **hparams) -> BaselineResult``: it fits on
the train split, chooses hyperparameters on the val split only, ranks the test split's candidates, and is
scored by the same `evaluate.result_from_ranking` as AddressCLIP. What they share (ranking through `inference`,
the timing of ``query_ms``, the choice on val, the training loop) is in `common`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import NotApplicable  # noqa: F401  (re-exported: baselines raise it)
from ..evaluate import EvalResult


@dataclass
class BaselineResult:
    name: str
    result: EvalResult                       # test-split metrics, predictions, per-address table
    chosen: dict[str, Any] = field(default_factory=dict)  # hyperparameters chosen on val
    storage_bytes: int | None = None         # what the method must keep to answer queries (beyond the model)
    query_ms: float | None = None            # per-query time to rank the test split, features given (timed_ranking)
    notes: str = ""

    def summary(self) -> dict[str, Any]:
        from ..comparisons import encode_hits, hits_from_predictions

        return {"method": self.name, **self.result.quality, "storage_bytes": self.storage_bytes,
                "query_ms": self.query_ms, "chosen": self.chosen, "notes": self.notes,
                "test_hits": encode_hits(hits_from_predictions(self.result.predictions))}  # for paired comparisons


# name -> "module:function"; modules are imported lazily
BASELINES: dict[str, str] = {
    "zero-shot": "addressclip.baselines.adapters:run_zero_shot",
    "linear-probe": "addressclip.baselines.adapters:run_linear_probe",
    "clip-adapter": "addressclip.baselines.adapters:run_clip_adapter",
    "tip-adapter": "addressclip.baselines.adapters:run_tip_adapter",
    "tip-adapter-f": "addressclip.baselines.adapters:run_tip_adapter_f",
    "coop": "addressclip.baselines.prompts:run_coop",
    "cocoop": "addressclip.baselines.prompts:run_cocoop",
    "maple": "addressclip.baselines.prompts:run_maple",
    "two-stage-retrieval": "addressclip.baselines.two_stage:run_retrieval",
    "two-stage-geoclip": "addressclip.baselines.two_stage:run_geoclip",
}


def seed_free(name: str, options: dict[str, Any] | None = None) -> bool:
    """Whether the baseline's result cannot depend on the seed: no training and no sampling (zero-shot, exact
    retrieval, Tip-Adapter over every train image) or a deterministic solver (the lbfgs linear probe). Such a
    baseline runs once per profile; other seeds reuse its result."""
    if name == "tip-adapter":
        return (options or {}).get("shots") is None
    return name in {"zero-shot", "linear-probe", "two-stage-retrieval"}


def get_baseline(name: str) -> Callable[..., BaselineResult]:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}")
    module, func = BASELINES[name].split(":")
    return getattr(importlib.import_module(module), func)
