"""Frozen features of a model on a dataset, computed once and cached on disk: what the transfer baselines
(linear probe, adapters, Tip-Adapter, retrieval, prompt learning on frozen image features) train on."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from . import runs
from .data import ADDRESS_TEMPLATE, ImageRows
from .datasets.format import SPLITS, IALDataset
from .evaluate import encode_images, encode_prefix, encode_texts
from .paths import outputs_root
from .prefix_cache import prefix_features


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


def _state_digest(model) -> str:
    h = hashlib.sha1()
    for name, tensor in sorted(model.clip.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        h.update(str(tuple(tensor.shape)).encode())
    return h.hexdigest()[:12]


def feature_bank(model, ds: IALDataset, cache_dir: str | Path | None = None, address_template: str = ADDRESS_TEMPLATE,
                 num_workers: int = 1, progress: bool = False) -> FeatureBank:
    key = f"{ds.name}-{_state_digest(model)}-{hashlib.sha1(address_template.encode()).hexdigest()[:6]}"
    path = Path(cache_dir or outputs_root() / "features") / f"{key}.pt"
    labels = {s: torch.as_tensor([ds.address_id(a) for a in ds.split(s)["address"]], dtype=torch.long) for s in SPLITS}
    coords = {s: torch.as_tensor(ds.split(s)[["easting", "northing"]].to_numpy(), dtype=torch.float64) for s in SPLITS}
    if path.exists():
        state = runs.load_checkpoint(path)
        return FeatureBank(ds, state["image"], state["gallery"], labels, coords, key)
    was_training = model.training
    model.eval()
    image = {}
    for split in SPLITS:
        frame = ds.split(split)
        if not len(frame):
            image[split] = torch.empty(0, model.encode_text(["x"]).shape[1])
            continue
        # frozen image layers cached by training runs from the same weights are reused (prefix_cache.py)
        prefix = prefix_features(model, [str(ds.root / p) for p in frame["image"]], model.preprocess_val,
                                 cache_dir=path.parent, num_workers=num_workers, progress=progress)
        if prefix is not None:
            image[split] = encode_prefix(model, prefix).cpu()
        else:
            rows = ImageRows(ds.root, frame["image"].tolist(), model.preprocess_val, model.image_size)
            image[split] = encode_images(model, rows, num_workers=num_workers, progress=progress).cpu()
    gallery = encode_texts(model, [address_template.format(address=a) for a in ds.addresses]).cpu()
    model.train(was_training)
    runs.save_checkpoint(path, {"image": image, "gallery": gallery})
    return FeatureBank(ds, image, gallery, labels, coords, key)
