"""What every baseline shares: ranking through the one inference path, the timed test ranking, the choice on val
and the training loop.

- A ranking function (`RankFn`: query features [n, D], k -> (top, scores), numpy [n, k], best first) is built by
  `rank_by` (any scorer of queries against all candidates, through `inference.topk_by`) or `over_gallery` (dot
  products with a fixed feature gallery, `inference.topk`); the two-stage methods write their own (search, then
  reverse geocoding).
- `finish` ranks the test split with it, times that with `inference.timed_ranking` (``query_ms``: the best of 3
  passes over the whole split divided by its size, measured as for AddressCLIP in `ablations.gallery_cost`), and
  scores it with `evaluate.result_from_ranking`.
- `BestOnVal` keeps the best candidate (grid point, epoch) seen on val; `run_epochs` is the training loop. The
  rule that orders candidates and the optimiser recipe stay each family's own: see `BestOnVal` and `run_epochs`.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterable

import numpy as np
import torch

from ..evaluate import result_from_ranking
from ..features import FeatureBank
from ..inference import timed_ranking, topk, topk_by
from . import BaselineResult

CHUNK = 2048  # queries scored at once at most, so the [N, A] score matrix of a large split never exists whole
CLIP_LOGIT_SCALE = 100.0  # CLIP's trained exp(logit_scale); Tip-Adapter's formula writes it out
NO_VAL_NOTE = "no val split: the first grid values were used unselected"

RankFn = Callable[[torch.Tensor, int], tuple[np.ndarray, np.ndarray]]  # (features [n, D], k) -> (top, scores) [n, k]


def logit_scale_of(model, override: float | None = None) -> float:
    """The temperature that turns cosines into logits: an explicit value, else the model's learnt
    ``exp(logit_scale)`` (AddressCLIP's), else CLIP's 100."""
    if override is not None:
        return float(override)
    if model is not None:
        return float(model.logit_scale.detach().exp().clamp(max=100).item())
    return CLIP_LOGIT_SCALE


def nbytes(*tensors) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))


def has_val(bank: FeatureBank) -> bool:
    return len(bank.image["val"]) > 0


# --- ranking --------------------------------------------------------------------------------------------------
def rows_per_chunk(width: int) -> int:
    """Queries per chunk so that a [rows, width] float32 matrix stays within 256 MB (e.g. against a large cache)."""
    return max(1, min(CHUNK, (1 << 26) // max(1, width)))


def _numpy(scores: torch.Tensor, top: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return top.cpu().numpy(), scores.cpu().numpy()


def rank_by(score: Callable[[torch.Tensor], torch.Tensor], candidates: int, chunk: int = CHUNK) -> RankFn:
    """Rank `candidates` by ``score(features) -> [n, candidates]``, `chunk` queries at a time (`inference.topk_by`)."""
    return lambda feats, k: _numpy(*topk_by(lambda q, _: score(q), feats, candidates, k, query_chunk=chunk))


def over_gallery(gallery: torch.Tensor) -> RankFn:
    """Rank the rows of a fixed feature gallery by dot product, as AddressCLIP does (`inference.topk`)."""
    return lambda feats, k: _numpy(*topk(feats, gallery, k))


def finish(name: str, bank: FeatureBank, rank: RankFn, k: int, chosen: dict, storage_bytes: int, notes: str = "",
           queries: torch.Tensor | None = None, repeats: int = 3) -> BaselineResult:
    """Rank the test split (`queries`: its features, default the bank's) and score it with the project's one
    metric function; ``query_ms`` by `inference.timed_ranking`, like every method's (best of `repeats` passes;
    a method whose ranking is its main cost, CoCoOp, times its one pass)."""
    queries = bank.image["test"] if queries is None else queries
    (top, scores), query_ms = timed_ranking(rank, queries, min(k, len(bank.ds.addresses)), repeats)
    return BaselineResult(name, result_from_ranking(bank.ds, "test", top, scores), chosen=chosen,
                          storage_bytes=int(storage_bytes), query_ms=query_ms, notes=notes)


# --- choosing on val ------------------------------------------------------------------------------------------
def hits(top: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(SSA-1, SSA-k) in % of a ranking `top` [n, k] against true ids [n]."""
    if not len(truth):
        return (0.0, 0.0)
    return float((top[:, 0] == truth).mean() * 100), float((top == truth[:, None]).any(axis=1).mean() * 100)


def val_figures(rank: RankFn, bank: FeatureBank, k: int) -> dict[str, float]:
    """Val SSA-1 and SSA-k of a ranking function: what `by_val_ssa` orders (all zero without val)."""
    ssa1, ssak = (0.0, 0.0)
    if has_val(bank):
        ssa1, ssak = hits(rank(bank.image["val"], min(k, len(bank.ds.addresses)))[0], bank.labels["val"].numpy())
    return {"val_SSA-1": ssa1, "val_SSA-k": ssak}


def by_val_ssa(figures: dict) -> tuple:
    """The adapters' and two-stage methods' rule: val SSA-1, then val SSA-k."""
    return (figures["val_SSA-1"], figures["val_SSA-k"])


class BestOnVal:
    """The best candidate (a grid point, an epoch) offered so far, by `rule(figures)` (a tuple; higher is better).

    A later candidate replaces the kept one only when strictly better, so among equals the first offered (the
    earliest grid point or epoch) stays. The kept chosen values are copied and the state deep-copied, so training
    may go on changing the module; every offer is recorded in `history` as ``{**chosen, **figures, **record}``.

    The rules differ by family, deliberately, and are kept as they were:
    - transfer and two-stage methods (`adapters`, `two_stage`): `by_val_ssa`, the val SSA-1 then SSA-k of the
      method's own ranking (figures from `val_figures`);
    - prompt learning (`prompts`): `prompts.by_val_accuracy`, the val top-1 accuracy (rounded to 1e-6) of the
      prompt's logits, then the lower val cross-entropy of those logits.
    """

    def __init__(self, rule: Callable[[dict], tuple] = by_val_ssa):
        self.rule = rule
        self.key = self.figures = self.chosen = self.state = None
        self.history: list[dict] = []

    def offer(self, figures: dict, chosen: dict, state=None, **record) -> None:
        self.history.append({**chosen, **figures, **record})
        key = self.rule(figures)
        if self.key is None or key > self.key:
            self.keep(figures, chosen, state)

    def keep(self, figures: dict, chosen: dict, state=None) -> None:
        """Keep this candidate whatever was kept before (when there is nothing to compare: no val split)."""
        self.key, self.figures = self.rule(figures), dict(figures)
        self.chosen, self.state = dict(chosen), copy.deepcopy(state)

    def summary(self) -> dict:
        """The chosen values and their val figures (rounded to 0.01)."""
        return {**self.chosen, **{name: round(value, 2) for name, value in self.figures.items()}}


# --- training -------------------------------------------------------------------------------------------------
def run_epochs(optimizer, schedule, batches: Callable[[], Iterable], loss_fn: Callable[[object], torch.Tensor],
               epochs: int, after_epoch: Callable[[int, int], None], max_steps: int | None = None,
               on_step: Callable[[], None] | None = None) -> int:
    """The training loop of every trained baseline: per epoch, the batches of ``batches()``; per batch, the loss,
    an optimiser step and a schedule step; then ``after_epoch(epoch, steps so far)`` (the val offer). After
    `max_steps` steps the epoch ends early, is still offered, and training stops. Returns the steps taken.

    The recipes stay each family's own: `train_epochs` (adapters, two-stage: AdamW, cosine annealing per step,
    shuffled index batches) and `prompts.select_on_val` (SGD with momentum 0.9, cosine decay per step, a step cap)."""
    step = 0
    for epoch in range(1, epochs + 1):
        for batch in batches():
            loss = loss_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if on_step is not None:
                on_step()
            if max_steps is not None and step >= max_steps:
                break
        after_epoch(epoch, step)
        if max_steps is not None and step >= max_steps:
            break
    return step


def train_epochs(params, loss_fn: Callable[[torch.Tensor], torch.Tensor], n: int, epochs: int, batch_size: int,
                 lr: float, weight_decay: float, seed: int, after_epoch: Callable[[int], None], eps: float = 1e-8) -> None:
    """AdamW with a per-step cosine schedule over shuffled mini-batches of ``range(n)``; ``loss_fn(indices)``
    returns the batch loss and ``after_epoch(epoch)`` runs after each epoch (val selection). `params` may be a
    list of parameter groups (e.g. no weight decay on a temperature)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * math.ceil(n / batch_size)))
    gen = torch.Generator().manual_seed(seed)
    run_epochs(opt, sched, lambda: torch.randperm(n, generator=gen).split(batch_size), loss_fn, epochs,
               lambda epoch, _: after_epoch(epoch))
