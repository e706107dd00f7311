"""Run profiles shared by the notebooks: `smoke` (the defaults nbval runs in CI, a few minutes on 2 CPU
cores), `demo` (what `make demo` runs: the embedded default end to end within 30 minutes on 2 CPU cores)
and `paper` (the paper's setting, for real data and a GPU).

A notebook parameter left at None takes the profile's value; any parameter given overrides it.
"""
from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "dataset": "helsinki-synth-tiny", "align_dataset": "kotka-synth-tiny", "align_epochs": 2,
        "epochs": 4, "batch_size": 32, "lr": 1e-3, "lr_min": 1e-5, "train_image": "last:3", "train_text": "proj",
        "warmup_steps": 0,
    },
    "demo": {
        "dataset": "helsinki-synth", "align_dataset": "kotka-synth", "align_epochs": 3,
        "epochs": 6, "batch_size": 64, "lr": 5e-4, "lr_min": 5e-6, "train_image": "last:3", "train_text": "proj",
        "warmup_steps": 20,
    },
    "paper": {
        "dataset": "pitts-ial", "align_dataset": None, "align_epochs": 0,
        "epochs": 100, "batch_size": 256, "lr": 2.4e-5, "lr_min": 2.4e-8, "train_image": "all", "train_text": "all",
        "warmup_steps": 0,
    },
}


def resolve(profile: str, **given: Any) -> dict[str, Any]:
    """The profile's values, overridden by every given value that is not None."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    return {**PROFILES[profile], **{k: v for k, v in given.items() if v is not None}}
