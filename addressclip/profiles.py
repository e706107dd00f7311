"""Run profiles shared by the notebooks: `smoke` (the defaults nbval runs in CI, a few minutes on 2 CPU
cores), `demo` (what `make demo` runs: the embedded default end to end on 2 CPU cores) and `paper` (the
paper's setting: OpenAI's CLIP ViT-B/16 from a local weights file, every layer trained, 224 px, global batch
256, Adam 0.9/0.98, cosine 2.4e-5 -> 2.4e-8, 100 epochs, no alignment stage; for real data and a GPU).

Where the paper is silent, the paper profile's choice is stated here and in the run's params.json:
no augmentation (`augment`), no warm-up (`warmup_steps`), train split only (`train_splits`: Pitts-IAL's
released database is the val split; "train+val" trains on both), centre crop of non-square photos
(`image_resize_mode` "shortest"; "longest" pads instead, so the sides of a 480x640 Pitts image stay).

A notebook parameter left at None takes the profile's value; any parameter given overrides it.
"""
from __future__ import annotations

from typing import Any

from .errors import UserError

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "backbone": "effnet-lite0-minilm", "second_city": "kotka-synth-tiny", "osm": None,
        "dataset": "helsinki-synth-tiny", "align_dataset": "kotka-synth-tiny", "align_epochs": 2,
        "epochs": 4, "batch_size": 32, "lr": 1e-3, "lr_min": 1e-5, "train_image": "last:1", "train_text": "proj",
        "warmup_steps": 0,
        # every experiment once, so that CI proves each one runs end to end (04: about 2 min on the tiny datasets)
        "experiments": ["losses", "geography_form", "geo_weight", "caption_weight", "address_weight", "label_aware",
                        "caption_text", "labels", "towers", "coverage", "multi_city", "losses_frozen_image"],
        "seeds": [0], "ablation_overrides": {"train_image": "proj", "epochs": 4},
        # the prompt learners' code at smoke scale: the same lr grid and selection on val, a few steps (CoCoOp with
        # its defaults took 272 s of CI's 04 run on the tiny datasets: it encodes every address for every image)
        "baseline_options": {"cocoop": {"epochs": 1, "max_steps": 8, "max_val": 32}, "coop": {"epochs": 1, "max_steps": 8}},
        "baselines": ["zero-shot", "linear-probe", "clip-adapter", "tip-adapter", "tip-adapter-f", "coop", "cocoop",
                      "maple", "two-stage-retrieval", "two-stage-geoclip"],
    },
    "demo": {
        "backbone": "effnet-lite0-minilm", "second_city": "kotka-synth", "osm": None,
        "dataset": "helsinki-synth", "align_dataset": "kotka-synth", "align_epochs": 3,
        "epochs": 8, "batch_size": 64, "lr": 5e-4, "lr_min": 5e-6, "train_image": "last:1", "train_text": "proj",
        "warmup_steps": 20,
        "experiments": ["losses", "geography_form", "label_aware"], "seeds": [0, 1, 2],
        # the last image block trains, as in 02_train: with the image trunk frozen (`proj`) the auxiliary losses
        # measured no gain at all (see `losses_frozen_image`); 2 epochs, so that the 21 runs (side by side, one
        # per core) fit `make demo`'s 15 minutes: what 2 epochs cost against the 6 of earlier demos is in the README
        "ablation_overrides": {"train_image": "last:1", "epochs": 2, "lr": 1e-3},
        # CoCoOp encodes every address for every image: ~20 min for this test split on 2 cores; run it with `paper`
        "baselines": ["zero-shot", "linear-probe", "clip-adapter", "tip-adapter", "tip-adapter-f", "coop",
                      "maple", "two-stage-retrieval", "two-stage-geoclip"],
        # CoOp re-encodes all 180 addresses every step (~45 s an epoch on one core): 1 epoch (2 in earlier demos;
        # the README gives what that costs)
        "baseline_options": {"coop": {"batch_size": 256, "epochs": 1, "lr": [0.2]}},
    },
    "paper": {
        "backbone": "ViT-B-16-quickgelu", "image_size": 224, "image_resize_mode": "shortest", "train_splits": "train",
        "augment": False, "second_city": None, "osm": None,  # multi_city: e.g. sf-ial-base beside pitts-ial
        "dataset": "pitts-ial", "align_dataset": None, "align_epochs": 0,
        "epochs": 100, "batch_size": 256, "lr": 2.4e-5, "lr_min": 2.4e-8, "train_image": "all", "train_text": "all",
        "warmup_steps": 0,
        "experiments": ["losses", "geography_form", "geo_weight", "caption_weight", "address_weight", "label_aware",
                        "caption_text", "labels", "towers", "coverage", "multi_city", "losses_frozen_image"],
        "seeds": [0, 1, 2],
        "ablation_overrides": {}, "baseline_options": {},
        "baselines": ["zero-shot", "linear-probe", "clip-adapter", "tip-adapter", "tip-adapter-f", "coop", "cocoop",
                      "maple", "two-stage-retrieval", "two-stage-geoclip"],
    },
}

# Keys only the ablation report uses; training notebooks ignore them.
# `ablation_overrides`: what the ablation sweep changes so that its many runs fit the profile's time
# (on a CPU: fewer epochs, and only the last image block trains, on cached frozen features).
# `second_city`: the other city of the multi-city experiment; `osm`: an OSM extract of the dataset's city, for
# label experiments that redo the partition (the embedded datasets record their own).
REPORT_KEYS = ("experiments", "seeds", "baselines", "ablation_overrides", "baseline_options", "second_city", "osm")

PAPER_WEIGHTS_HINT = ("pass the OpenAI CLIP ViT-B/16 weights file the paper fine-tunes, e.g. -p pretrained /path/to/ViT-B-16.pt "
                      "(the TorchScript archive that OpenAI's `clip` package downloads; an open_clip state dict or "
                      ".safetensors file of ViT-B-16-quickgelu also works)")


def resolve(profile: str, **given: Any) -> dict[str, Any]:
    """The profile's values, overridden by every given value that is not None. The paper profile never trains
    a randomly initialised or another backbone in place of the CLIP weights it needs."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    values = {**PROFILES[profile], **{k: v for k, v in given.items() if v is not None}}
    if profile == "paper" and not values.get("pretrained"):
        raise UserError(f"profile 'paper' needs CLIP weights: {PAPER_WEIGHTS_HINT}")
    return values


def training_values(values: dict[str, Any]) -> dict[str, Any]:
    """The resolved values without the report-only and alignment keys: what TrainConfig takes."""
    return {k: v for k, v in values.items() if k not in REPORT_KEYS + ("align_dataset", "align_epochs")}
