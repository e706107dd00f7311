"""AddressCLIP's three losses. Each function returns a scalar; `AddressCLIPLoss` returns a dict of named,
weighted terms that the trainer sums, so an ablation is a weight of zero (the term is then not computed).

- address: symmetric InfoNCE between images and their address texts (CLIP's loss). Plain InfoNCE treats
  other images of the same address as negatives (and the same address text as several columns). With
  ``label_aware``, each distinct address of the batch is one class: image->address is cross-entropy over
  the batch's distinct addresses, address->image is -log of the summed softmax probability of all images
  of that address, averaged over distinct addresses.
- caption: the same between images and (caption + address) texts.
- geography: mean over all N^2 pairs of (S - T)^2, S the images' cosine-similarity matrix and D the
  Manhattan distance between min-max normalised UTM coordinates (D in [0, 2]). ``form="similarity"``
  (default) uses T = 1 - D, so geographically close images are pulled together and T spans [-1, 1]
  like a cosine; ``form="literal"`` uses T = D as the paper's equation reads.

Numerics: `AddressCLIPLoss` computes every term in (at least) float32 even when it is called inside a
``torch.autocast(dtype=torch.bfloat16)`` region (as the trainer does): autocast is disabled for the loss
and half-precision features and logit scale are cast up to float32, so the logits, the softmax /
cross-entropy and the geography term are never bf16. Gradients still flow back to the bf16 features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GEOGRAPHY_FORMS = ("similarity", "literal")
DEFAULT_WEIGHTS = {"address": 1.0, "caption": 0.2, "geography": 0.8}


def _label_aware_nce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`logits` [N images, N texts] where texts with equal labels are the same text."""
    unique, inverse = torch.unique(labels, return_inverse=True)
    # first column of each distinct label
    order = torch.arange(len(labels), device=labels.device)
    first = torch.full((len(unique),), len(labels), device=labels.device, dtype=order.dtype).scatter_reduce(
        0, inverse, order, reduce="amin"
    )
    per_class = logits[:, first]                                   # [N, U]
    i2t = F.cross_entropy(per_class, inverse)
    members = inverse[None, :] == torch.arange(len(unique), device=labels.device)[:, None]  # [U, N]
    log_p = per_class.T.log_softmax(dim=1)
    t2i = -torch.logsumexp(log_p.masked_fill(~members, float("-inf")), dim=1).mean()
    return (i2t + t2i) / 2


def info_nce(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE on L2-normalised features; `logit_scale` is the log temperature (CLIP's).
    With `labels` (equal labels = the same text), the label-aware variant described above."""
    logits = logit_scale.exp() * image_features @ text_features.T
    if labels is None:
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return _label_aware_nce(logits, labels)


def geo_distance_matrix(coords: torch.Tensor) -> torch.Tensor:
    """Pairwise Manhattan distance between per-axis min-max normalised coordinates ([N, 2] metres)."""
    coords = coords.to(torch.float64)  # UTM metres are large: normalise in double before going to float
    lo, hi = coords.min(dim=0).values, coords.max(dim=0).values
    scaled = (coords - lo) / (hi - lo).clamp_min(1e-9)
    return torch.cdist(scaled, scaled, p=1).float()


def geo_loss(image_features: torch.Tensor, coords: torch.Tensor, form: str = "similarity",
             cities: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference between the images' feature similarity and their geographic target over the batch's
    pairs. `cities` (an index per row; joint multi-city training): each city's coordinates are normalised on their
    own, and only pairs within one city count. The paper normalises over one city's batch; across cities the UTM
    zones may differ, and the distance between the cities would squash every distance within one towards 0."""
    if form not in GEOGRAPHY_FORMS:
        raise ValueError(f"unknown geography loss form {form!r}; valid: {', '.join(GEOGRAPHY_FORMS)}")
    sim = image_features @ image_features.T
    several = cities is not None and len(cities) > 0 and bool((cities != cities[0]).any())
    if several:
        dist = torch.zeros_like(sim)
        for city in cities.unique():
            rows = (cities == city).nonzero().squeeze(1)
            dist[rows[:, None], rows[None, :]] = geo_distance_matrix(coords[rows]).to(sim.dtype)
    else:
        dist = geo_distance_matrix(coords).to(sim.dtype)
    target = 1.0 - dist if form == "similarity" else dist
    squared = (sim - target) ** 2
    return squared[cities[:, None] == cities[None, :]].mean() if several else squared.mean()


def _at_least_fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    """Cast half-precision (bf16 / fp16) tensors to float32; float32 and float64 are left as they are."""
    if t is None or not t.is_floating_point():
        return t
    return t.to(torch.promote_types(t.dtype, torch.float32))


class AddressCLIPLoss(nn.Module):
    def __init__(self, weights: dict[str, float] | None = None, geography_form: str = "similarity",
                 label_aware: bool = False):
        super().__init__()
        weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        unknown = set(weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; valid: {', '.join(DEFAULT_WEIGHTS)}")
        if geography_form not in GEOGRAPHY_FORMS:
            raise ValueError(f"unknown geography loss form {geography_form!r}; valid: {', '.join(GEOGRAPHY_FORMS)}")
        self.weights, self.geography_form, self.label_aware = weights, geography_form, label_aware

    def active(self, term: str) -> bool:
        return self.weights[term] != 0

    def forward(
        self,
        image_features: torch.Tensor,
        logit_scale: torch.Tensor,
        address_features: torch.Tensor | None = None,
        caption_features: torch.Tensor | None = None,
        address_ids: torch.Tensor | None = None,
        coords: torch.Tensor | None = None,
        cities: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        # fp32 numerics even inside a bf16 autocast region: autocast off, half-precision inputs cast up
        with torch.autocast(device_type=image_features.device.type, enabled=False):
            image_features, logit_scale, address_features, caption_features = (
                _at_least_fp32(t) for t in (image_features, logit_scale, address_features, caption_features))
            return self._terms(image_features, logit_scale, address_features, caption_features, address_ids, coords,
                               cities)

    def _terms(self, image_features, logit_scale, address_features, caption_features, address_ids, coords, cities):
        out = {}
        if self.active("address"):
            labels = address_ids if self.label_aware else None
            out["address_loss"] = self.weights["address"] * info_nce(image_features, address_features, logit_scale, labels)
        if self.active("caption"):
            out["caption_loss"] = self.weights["caption"] * info_nce(image_features, caption_features, logit_scale)
        if self.active("geography"):
            out["geo_loss"] = self.weights["geography"] * geo_loss(image_features, coords, self.geography_form, cities)
        if not out:
            raise ValueError("every loss weight is zero: nothing to train")
        return out
