"""Training configuration: one dataclass, validated, with errors that name the bad value and the valid choices."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datasets.registry import DATASETS
from .errors import UserError, check_type, matches
from .freezing import check_block_count, parse_mode
from .losses import GEOGRAPHY_FORMS

CAPTION_TEXTS = ("caption+address", "caption")
# What training reads. "train+val" also trains on the val split: for Pitts-IAL that is the released database
# (pitts_database.json), which the paper's 234K train/val count includes; validation is then not held out.
TRAIN_SPLITS = ("train", "train+val")
# Fields that control how a run is executed, not what it computes: they do not enter the run's identity.
RUN_CONTROL = ("run_name", "runs_dir", "resume", "progress", "num_workers", "stop_after_epochs", "device", "overwrite",
               "cache_frozen_image", "cache_max_gb", "strict_images")


@dataclass
class TrainConfig:
    # what to train on and from
    dataset: str = "helsinki-synth"
    backbone: str = "effnet-lite0-minilm"
    pretrained: str | None = None          # open_clip backbones: path of a local weights file
    init_checkpoint: str | None = None     # run folder or model.pt to start from (e.g. the alignment run)
    image_size: int | None = None
    image_resize_mode: str = "shortest"    # non-square photos: shortest (centre crop) | longest (pad) | squash
    train_image: str = "all"               # all | none | proj | last:N
    train_text: str = "all"
    # optimisation (paper: Adam 0.9/0.98, cosine 2.4e-5 -> 2.4e-8, batch 256, 100 epochs)
    epochs: int = 100
    batch_size: int = 256                  # global batch: split evenly across processes
    lr: float = 2.4e-5
    lr_min: float = 2.4e-8
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    weight_decay: float = 0.0              # 0 = the paper's Adam; > 0 decoupled (AdamW), not on gains/biases/scale
    warmup_steps: int = 0
    # losses
    w_address: float = 1.0
    w_caption: float = 0.2
    w_geography: float = 0.8
    geography_form: str = "similarity"
    label_aware: bool = False
    caption_text: str = "caption+address"  # what the caption loss's texts hold
    # data
    train_splits: str = "train"            # "train", or "train+val" (Pitts-IAL: train + the released database)
    augment: bool = False                  # open_clip's random resized crop (rendered views already vary per capture)
    fraction_locations: float = 1.0        # share of training locations used (coverage ablation)
    extra_datasets: list[str] = field(default_factory=list)  # joint multi-city training
    cache_frozen_image: bool = True        # compute frozen leading image layers once (exact; off with augment)
    cache_max_gb: float = 4.0              # largest such cache held in memory
    # evaluation
    eval_every: int = 1                    # epochs between validation passes; 0: none
    final_split: str | None = "test"       # split of the final metrics; None: skip
    # execution
    seed: int = 0
    device: str = "auto"                   # auto | cpu | cuda | cuda:N
    amp: bool = True                       # bf16 autocast, on CUDA only
    num_workers: int | None = None         # DataLoader workers; None: addressclip.threads.loader_workers
    run_name: str | None = None            # default: derived from the configuration's hash
    runs_dir: str | None = None            # default: outputs/runs
    resume: bool = True                    # continue an interrupted run; reuse a finished one
    overwrite: bool = False                # start again even if the run exists
    progress: bool | None = None           # None: addressclip.progress.enabled() decides (off in headless runs)
    stop_after_epochs: int | None = None   # end this call after N epochs (to test interruption)
    strict_images: bool = False            # stop at unreadable images (naming them) instead of skipping them

    def __post_init__(self) -> None:
        for name, hint in _hints().items():  # a path object where a string is wanted is that path's string
            value = getattr(self, name)
            if isinstance(value, os.PathLike) and matches("", hint):
                setattr(self, name, os.fspath(value))
        self.validate()

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        unknown = sorted(set(values) - set(cls.fields()))
        if unknown:
            raise UserError(f"unknown training options {unknown}; valid: {', '.join(cls.fields())}")
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in RUN_CONTROL}

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]

    @property
    def loss_weights(self) -> dict[str, float]:
        return {"address": self.w_address, "caption": self.w_caption, "geography": self.w_geography}

    def validate(self) -> None:
        """Check every value, before anything is loaded: types against the annotations, names against the valid
        choices, numbers against their ranges, and `last:N` against the backbone's block counts."""
        from .model import OFFLINE_BACKBONES, RESIZE_MODES, backbone_names, check_pretrained

        for name, hint in _hints().items():
            check_type(name, getattr(self, name), hint)
        for name in [self.dataset, *self.extra_datasets]:
            if name not in DATASETS and not Path(name).exists():
                raise UserError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)} or a built dataset folder")
        if self.backbone not in OFFLINE_BACKBONES and self.backbone not in backbone_names():
            raise UserError(
                f"unknown backbone {self.backbone!r}; valid: {', '.join(OFFLINE_BACKBONES)} or an open_clip architecture "
                f"(e.g. ViT-B-16-quickgelu)"
            )
        check_pretrained(self.backbone, self.pretrained)
        for tower in ("image", "text"):
            mode = getattr(self, f"train_{tower}")
            parse_mode(mode, f"train_{tower}")
            check_block_count(self.backbone, tower, mode)
        if self.image_resize_mode not in RESIZE_MODES:
            raise UserError(f"unknown image_resize_mode {self.image_resize_mode!r}; valid: {', '.join(RESIZE_MODES)}")
        if self.train_splits not in TRAIN_SPLITS:
            raise UserError(f"unknown train_splits {self.train_splits!r}; valid: {', '.join(TRAIN_SPLITS)}")
        if self.geography_form not in GEOGRAPHY_FORMS:
            raise UserError(f"unknown geography_form {self.geography_form!r}; valid: {', '.join(GEOGRAPHY_FORMS)}")
        if self.caption_text not in CAPTION_TEXTS:
            raise UserError(f"unknown caption_text {self.caption_text!r}; valid: {', '.join(CAPTION_TEXTS)}")
        if self.final_split not in (None, "val", "test"):
            raise UserError(f"final_split must be 'val', 'test' or None, got {self.final_split!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise UserError(f"batch_size must be at least 2 (contrastive losses need negatives), got {self.batch_size}")
        if self.stop_after_epochs is not None and self.stop_after_epochs < 1:
            raise UserError(f"stop_after_epochs must be at least 1 or None, got {self.stop_after_epochs}")
        if self.image_size is not None and self.image_size < 8:
            raise UserError(f"image_size must be at least 8 pixels or None (the backbone's own), got {self.image_size}")
        for name in ("eval_every", "warmup_steps", "num_workers", "weight_decay", "cache_max_gb", "lr_min"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_workers is None:
            from .threads import loader_workers

            loader_workers("cpu")  # a malformed ADDRESSCLIP_WORKERS is refused here, before any work
        for name in ("lr", "eps"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if min(self.w_address, self.w_caption, self.w_geography) < 0:
            raise UserError(f"loss weights must be >= 0, got {self.loss_weights}")
        if not any(self.loss_weights.values()):
            raise UserError("every loss weight is zero: nothing to train")
        if not 0 < self.fraction_locations <= 1:
            raise UserError(f"fraction_locations must be in (0, 1], got {self.fraction_locations}")
        check_device(self.device)


def check_device(name: str) -> None:
    """Refuse a device name that is none of auto, cpu, cuda, cuda:N (the one rule: TrainConfig and
    `inference.resolve_device`, so that `-p device gpu` fails at once, not deep in torch)."""
    if not (name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise UserError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")


@functools.lru_cache(maxsize=None)
def _hints() -> dict[str, Any]:
    """Field -> its type (the annotations, evaluated)."""
    return typing.get_type_hints(TrainConfig)
