"""Frozen features of a model on a dataset, computed once and cached on disk (`cache`): what the transfer baselines
(linear probe, adapters, Tip-Adapter, retrieval, prompt learning on frozen image features) train on."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import cache
from .data import ADDRESS_TEMPLATE, ImageRows
from .datasets.format import SPLITS, IALDataset
from .frozen_layers import image_outputs
from .inference import encode_after_frozen, encode_images, encode_texts
from .paths import features_root


@dataclass
class FeatureBank:
    """L2-normalised image features per split, address-text features of every candidate (``ds.addresses``
    order), and per split the true address ids and UTM coordinates."""

    ds: IALDataset
    image: dict[str, torch.Tensor]
    gallery: torch.Tensor
    labels: dict[str, torch.Tensor]
    coords: dict[str, torch.Tensor]
    key: str

    @property
    def dim(self) -> int:
        return self.gallery.shape[1]


def feature_bank(model, ds: IALDataset, cache_dir: str | Path | None = None, address_template: str = ADDRESS_TEMPLATE,
                 num_workers: int | None = None, progress: bool = False) -> FeatureBank:
    key = f"{ds.name}-{cache.digest(model.clip.state_dict(), address_template, length=16)}"
    path = Path(cache_dir or features_root()) / f"bank-{key}.pt"
    labels = {s: torch.as_tensor([ds.address_id(a) for a in ds.split(s)["address"]], dtype=torch.long) for s in SPLITS}
    coords = {s: torch.as_tensor(ds.split(s)[["easting", "northing"]].to_numpy(), dtype=torch.float64) for s in SPLITS}

    def compute():
        was_training = model.training
        model.eval()
        image = {split: _split_features(model, ds, split, path.parent, num_workers, progress) for split in SPLITS}
        gallery = encode_texts(model, [address_template.format(address=a) for a in ds.addresses]).cpu()
        model.train(was_training)
        return {"image": image, "gallery": gallery}

    def whole(payload) -> bool:  # a bank for these splits and candidates
        return (len(payload["gallery"]) == len(ds.addresses)
                and all(len(payload["image"][s]) == len(labels[s]) for s in SPLITS))

    payload, _ = cache.load_or_compute(path, compute, valid=whole)
    return FeatureBank(ds, payload["image"], payload["gallery"], labels, coords, key)


def _split_features(model, ds: IALDataset, split: str, cache_dir: Path, num_workers: int | None,
                    progress: bool) -> torch.Tensor:
    frame = ds.split(split)
    if not len(frame):
        return torch.empty(0, model.encode_text(["x"]).shape[1])
    # frozen image layers cached by training runs from the same weights are reused (frozen_layers.py)
    frozen = image_outputs(model, [str(ds.root / p) for p in frame["image"]], model.preprocess_val,
                           cache_dir=cache_dir, num_workers=num_workers, progress=progress)
    if frozen is not None:
        return encode_after_frozen(model, frozen).cpu()
    rows = ImageRows(ds.root, frame["image"].tolist(), model.preprocess_val, model.image_size)
    return encode_images(model, rows, num_workers=num_workers, progress=progress)[0].cpu()
