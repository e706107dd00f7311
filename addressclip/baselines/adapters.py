"""Transfer baselines on frozen features: zero-shot, linear probe, CLIP-Adapter, Tip-Adapter and Tip-Adapter-F.

Each ranks every candidate of ``bank.ds.addresses`` for the test images from cached features (features.py),
chooses its hyperparameters on the val split only (never test: Tip-Adapter-F's original code picks its epoch on
the test set, which is not done here), and is scored by `evaluate.result_from_ranking` like AddressCLIP. The
plumbing (ranking through `inference.topk_by`, timing, choosing on val, the training loop) is in `common`.

Selection rule shared by all (`common.by_val_ssa`): the grid point (or epoch) with the best val SSA-1, ties broken
by val SSA-k, then by the first in grid order (earliest epoch). Without a val split the first grid point is used
and `notes` says so.

Costs reported with every result:
- ``storage_bytes``: what must be kept beside the backbone to answer a query (address gallery, adapter weights,
  cache keys and labels), as stored: float32 features, int64 labels.
- ``query_ms``: wall time of ranking the whole test split (features given, in chunks) divided by its size, the
  best of three passes (`inference.timed_ranking`, which times AddressCLIP's ranking in `ablations.gallery_cost`
  too): amortised per-query cost.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..features import FeatureBank
from . import BaselineResult
from .common import (NO_VAL_NOTE, BestOnVal, RankFn, finish, has_val, logit_scale_of, nbytes, rank_by, rows_per_chunk,
                     train_epochs, val_figures)


# --- zero-shot ----------------------------------------------------------------------------------------------------
def run_zero_shot(bank: FeatureBank, model=None, seed: int = 0, k: int = 5) -> BaselineResult:
    """Cosine similarity of each test image with every address text: the aligned backbone before address
    training (what CLIP's zero-shot classification does, with the address gallery as the class names)."""
    gallery = bank.gallery
    rank = rank_by(lambda f: f @ gallery.T, len(gallery))
    return finish("zero-shot", bank, rank, k, {}, nbytes(gallery))


# --- linear probe -------------------------------------------------------------------------------------------------
def run_linear_probe(bank: FeatureBank, model=None, seed: int = 0, k: int = 5,
                     C_grid=(0.1, 1.0, 10.0, 100.0, 1000.0), max_iter: int = 1000) -> BaselineResult:
    """Linear probe (as in CLIP, Radford et al. 2021): multinomial logistic regression, L2-regularised, lbfgs,
    on the frozen train image features, over the addresses present in train. The inverse regularisation C is
    chosen on val from `C_grid`; the probe is fitted on train only (like every other baseline here).

    Addresses unseen in train cannot be predicted by the probe: they are ranked after all seen ones, among
    themselves by zero-shot cosine (hence the gallery is kept too)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x, y = bank.image["train"].numpy(), bank.labels["train"].numpy()
    seen = np.unique(y)
    if len(seen) < 2:
        raise ValueError(f"linear probe needs at least 2 addresses in train, got {len(seen)}")
    gallery, seen_t = bank.gallery, torch.as_tensor(seen)

    def ranker(weight: torch.Tensor, bias: torch.Tensor) -> RankFn:
        def score(f):
            logits = f @ weight.T + bias
            out = f @ gallery.T + (logits.min(dim=1, keepdim=True).values - 2)  # cosine <= 1: below every seen one
            out[:, seen_t] = logits
            return out
        return rank_by(score, len(gallery))

    best, unconverged = BestOnVal(), []
    grid = C_grid if has_val(bank) else C_grid[:1]
    for C in grid:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            # lbfgs does not use random_state: the probe is seed-free (baselines.seed_free relies on it)
            clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter).fit(x, y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            unconverged.append(C)
        weight = torch.as_tensor(clf.coef_, dtype=torch.float32)
        bias = torch.as_tensor(clf.intercept_, dtype=torch.float32)
        if len(seen) == 2:  # sklearn stores one row for two classes: logits (0, w.x + b) rank the same
            weight, bias = torch.cat([torch.zeros_like(weight), weight]), torch.cat([torch.zeros_like(bias), bias])
        best.offer(val_figures(ranker(weight, bias), bank, k), {"C": C}, (weight, bias))
    weight, bias = best.state
    notes = [] if has_val(bank) else [NO_VAL_NOTE]
    if unconverged:
        notes.append(f"lbfgs reached max_iter={max_iter} for C in {unconverged}")
    return finish("linear-probe", bank, ranker(weight, bias), k, best.summary(), nbytes(weight, bias, gallery),
                  "; ".join(notes))


# --- CLIP-Adapter -------------------------------------------------------------------------------------------------
class ClipAdapter(nn.Module):
    """CLIP-Adapter's visual adapter (Gao et al. 2021): a 2-layer bottleneck MLP whose output is mixed with the
    frozen feature, ``ratio * A(f) + (1 - ratio) * f``; the mix keeps the pretrained knowledge when data are few."""

    def __init__(self, dim: int, ratio: float, reduction: int = 4):
        super().__init__()
        hidden = max(1, dim // reduction)
        self.ratio = ratio
        self.mlp = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(),
                                 nn.Linear(hidden, dim, bias=False), nn.ReLU())

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ratio * self.mlp(f) + (1 - self.ratio) * f, dim=-1)


def run_clip_adapter(bank: FeatureBank, model=None, seed: int = 0, k: int = 5, ratios=(0.2, 0.6), epochs: int = 20,
                     batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4, reduction: int = 4,
                     logit_scale: float | None = None) -> BaselineResult:
    """CLIP-Adapter on the image branch: train the adapter with cross-entropy of scaled cosine against the
    (frozen) address gallery on train; the residual ratio and the epoch are chosen on val (one adapter trained
    per ratio, its state kept at the best val epoch)."""
    # clones: features computed under inference_mode cannot be saved for backward
    scale, gallery = logit_scale_of(model, logit_scale), bank.gallery.clone()
    x, y = bank.image["train"].clone(), bank.labels["train"]
    best = BestOnVal()
    for ratio in (ratios if has_val(bank) else ratios[:1]):
        torch.manual_seed(seed)
        adapter = ClipAdapter(bank.dim, ratio, reduction)

        def loss_fn(idx):
            return F.cross_entropy(scale * adapter(x[idx]) @ gallery.T, y[idx])

        def after_epoch(epoch):
            adapter.eval()
            best.offer(val_figures(rank_by(lambda f: adapter(f) @ gallery.T, len(gallery)), bank, k),
                       {"ratio": ratio, "epoch": epoch}, adapter.state_dict())
            adapter.train()

        train_epochs(adapter.parameters(), loss_fn, len(x), epochs, batch_size, lr, weight_decay, seed + 1, after_epoch)
    adapter = ClipAdapter(bank.dim, best.chosen["ratio"], reduction)
    adapter.load_state_dict(best.state)
    adapter.eval()
    rank = rank_by(lambda f: adapter(f) @ gallery.T, len(gallery))
    return finish("clip-adapter", bank, rank, k, best.summary(), nbytes(gallery, *adapter.parameters()),
                  "" if has_val(bank) else NO_VAL_NOTE)


# --- Tip-Adapter --------------------------------------------------------------------------------------------------
# The original searches alpha in [0.1, 3] and beta in [0.1, 7] for 16-shot caches over a CLIP whose zero-shot
# logits are informative. Here the cache may hold every train image (sums of many entries per address) and the
# address gallery may be near chance before address training (the paper's zero-shot CLIP: < 1.3% SSA-1), when
# the cache must dominate: hence alpha from 0.01 up to 100.
ALPHA_GRID = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
BETA_GRID = (0.5, 1.0, 2.0, 4.0, 7.0)


def few_shot_indices(labels: torch.Tensor, shots: int | None, seed: int) -> torch.Tensor:
    """All train images (shots=None), or up to `shots` per address drawn with the seed (Tip-Adapter's few-shot cache)."""
    if shots is None:
        return torch.arange(len(labels))
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    keep, count = [], {}
    for i in order.tolist():
        a = int(labels[i])
        if count.get(a, 0) < shots:
            count[a] = count.get(a, 0) + 1
            keep.append(i)
    return torch.as_tensor(sorted(keep))


def cache_logits(f: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, n_addresses: int, beta: float,
                 drop: torch.Tensor | None = None) -> torch.Tensor:
    """Tip-Adapter's cache model, ``exp(-beta * (1 - f @ keys.T)) @ one_hot(values)``, with the one-hot product
    done as a scatter-add over the address ids. `drop` [n] masks one cache entry per query (-1: none)."""
    weights = torch.exp(-beta * (1 - f @ keys.T))
    if drop is not None:
        rows = (drop >= 0).nonzero().squeeze(1)
        weights = weights.index_put((rows, drop[rows]), torch.zeros(len(rows)))
    return torch.zeros(len(f), n_addresses, dtype=weights.dtype).index_add(1, values, weights)


def tip_ranker(bank: FeatureBank, keys, values, scale: float, alpha: float, beta: float) -> RankFn:
    """Tip-Adapter's logits: ``scale * f @ gallery.T + alpha * cache_logits(f)``."""
    gallery, n_addr = bank.gallery, len(bank.ds.addresses)
    return rank_by(lambda f: scale * f @ gallery.T + alpha * cache_logits(f, keys, values, n_addr, beta), n_addr,
                   rows_per_chunk(len(keys)))


@torch.no_grad()
def search_alpha_beta(bank: FeatureBank, keys, values, scale: float, alpha_grid, beta_grid, k: int) -> dict:
    """Grid search of (alpha, beta) on val, as Tip-Adapter does (on val here, never test). The cache logits are
    computed once per (val chunk, beta); each alpha is then a cheap weighted sum."""
    if not has_val(bank):
        return {"alpha": alpha_grid[0], "beta": beta_grid[0]}
    feats, truth = bank.image["val"], bank.labels["val"]
    gallery, n_addr, kk = bank.gallery, len(bank.ds.addresses), min(k, len(bank.ds.addresses))
    grid = [(a, b) for b in beta_grid for a in alpha_grid]
    top1, topk = torch.zeros(len(grid)), torch.zeros(len(grid))
    step = rows_per_chunk(len(keys))
    for i in range(0, len(feats), step):
        f, t = feats[i : i + step], truth[i : i + step, None]
        clip = scale * f @ gallery.T
        for j, beta in enumerate(beta_grid):
            cache = cache_logits(f, keys, values, n_addr, beta)
            for m, alpha in enumerate(alpha_grid):
                top = (clip + alpha * cache).topk(kk, dim=1).indices
                g = j * len(alpha_grid) + m
                top1[g] += (top[:, :1] == t).sum()
                topk[g] += (top == t).any(dim=1).sum()
    best = BestOnVal()
    for g, (alpha, beta) in enumerate(grid):
        best.offer({"val_SSA-1": float(top1[g]) * 100 / len(feats), "val_SSA-k": float(topk[g]) * 100 / len(feats)},
                   {"alpha": alpha, "beta": beta})
    return best.summary()


def run_tip_adapter(bank: FeatureBank, model=None, seed: int = 0, k: int = 5,
                    alpha_grid=ALPHA_GRID, beta_grid=BETA_GRID,
                    shots: int | None = None, logit_scale: float | None = None) -> BaselineResult:
    """Tip-Adapter (Zhang et al. 2022), training-free: a key-value cache of the train features (keys) and their
    one-hot addresses over all candidates (values, kept as ids); logits =
    ``scale * f @ gallery.T + alpha * exp(-beta * (1 - f @ keys.T)) @ values``, alpha and beta by grid search on
    val (grids: see ALPHA_GRID). ``shots=None`` caches every train image (the full-data setting); an int caches
    that many per address."""
    idx = few_shot_indices(bank.labels["train"], shots, seed)
    keys, values = bank.image["train"][idx], bank.labels["train"][idx]
    scale = logit_scale_of(model, logit_scale)
    chosen = search_alpha_beta(bank, keys, values, scale, alpha_grid, beta_grid, k)
    rank = tip_ranker(bank, keys, values, scale, chosen["alpha"], chosen["beta"])
    return finish("tip-adapter", bank, rank, k, {**chosen, "cache": len(keys)}, nbytes(bank.gallery, keys, values),
                  "" if has_val(bank) else NO_VAL_NOTE)


def run_tip_adapter_f(bank: FeatureBank, model=None, seed: int = 0, k: int = 5,
                      alpha_grid=ALPHA_GRID, beta_grid=BETA_GRID,
                      shots: int | None = None, epochs: int = 20, batch_size: int = 256, lr: float = 1e-3,
                      weight_decay: float = 0.01, logit_scale: float | None = None) -> BaselineResult:
    """Tip-Adapter-F: the cache keys become parameters and are fine-tuned with cross-entropy on train (AdamW,
    eps 1e-4, cosine schedule, as the original). Everything is selected on val only:

    1. (alpha, beta) by Tip-Adapter's val grid search with the initial keys; training uses them;
    2. the epoch (0 = the untrained cache, i.e. Tip-Adapter) with the best val accuracy, keys kept from it;
    3. (alpha, beta) searched again on val with those keys.

    The original fine-tunes on augmented views whose features differ from the keys; on cached features a train
    query would meet its own key (affinity 1) and learn nothing, so its own cache entry is masked in training."""
    idx = few_shot_indices(bank.labels["train"], shots, seed)
    keys0, values = bank.image["train"][idx], bank.labels["train"][idx]
    x, y = bank.image["train"].clone(), bank.labels["train"]  # clone: see run_clip_adapter
    own = torch.full((len(x),), -1, dtype=torch.long)
    own[idx] = torch.arange(len(idx))
    scale, n_addr = logit_scale_of(model, logit_scale), len(bank.ds.addresses)
    start = search_alpha_beta(bank, keys0, values, scale, alpha_grid, beta_grid, k)
    alpha, beta = start["alpha"], start["beta"]
    clip_train = scale * x @ bank.gallery.T
    keys = nn.Parameter(keys0.clone())

    def loss_fn(i):
        return F.cross_entropy(clip_train[i] + alpha * cache_logits(x[i], keys, values, n_addr, beta, drop=own[i]), y[i])

    best = BestOnVal()
    best.offer(val_figures(tip_ranker(bank, keys0, values, scale, alpha, beta), bank, k), {"epoch": 0}, keys0)

    def after_epoch(epoch):
        best.offer(val_figures(tip_ranker(bank, keys.detach(), values, scale, alpha, beta), bank, k),
                   {"epoch": epoch}, keys.detach())

    if has_val(bank):
        train_epochs([keys], loss_fn, len(x), epochs, batch_size, lr, weight_decay, seed, after_epoch, eps=1e-4)
    keys = best.state
    chosen = search_alpha_beta(bank, keys, values, scale, alpha_grid, beta_grid, k)
    rank = tip_ranker(bank, keys, values, scale, chosen["alpha"], chosen["beta"])
    return finish("tip-adapter-f", bank, rank, k,
                  {"epoch": best.chosen["epoch"], **chosen, "init_alpha": alpha, "init_beta": beta, "cache": len(keys)},
                  nbytes(bank.gallery, keys, values), "" if has_val(bank) else NO_VAL_NOTE + " (no fine-tuning)")
