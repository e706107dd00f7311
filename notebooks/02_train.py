# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 — Train AddressCLIP
#
# Trains AddressCLIP (address + caption + geography losses) on a dataset. For the offline default backbone, whose
# towers were never aligned with each other, an **alignment pre-training** run comes first: CLIP image–caption
# training on another city (no addresses), standing in for CLIP's web pre-training. Finished runs are reused;
# interrupted ones resume. Everything lands in `outputs/runs/<run>/`.
#
# ```bash
# papermill notebooks/02_train.ipynb outputs/executed/02_train.ipynb -p profile demo
# papermill notebooks/02_train.ipynb out.ipynb -p profile paper -p dataset sf-ial-base -p pretrained ~/weights/ViT-B-16.pt
# ```
# Parameters left at `None` take the profile's value (`addressclip/profiles.py`). The `paper` profile is the paper's
# setting (OpenAI CLIP ViT-B/16 from `pretrained`, every layer trained, 224 px, batch 256, 100 epochs) and stops
# without a weights file.

# %% tags=["parameters"]
profile: str = "smoke"  # smoke (CI, minutes) | demo (make demo) | paper (the paper's setting; needs `pretrained`)
dataset: "Optional[str]" = None  # registry name or dataset folder
backbone: "Optional[str]" = None  # effnet-lite0-minilm (offline default) or an open_clip architecture; paper: ViT-B-16-quickgelu
pretrained: "Optional[str]" = None  # open_clip backbones: weights file (OpenAI's ViT-B-16.pt, an open_clip state dict or .safetensors)
align_dataset: "Optional[str]" = None  # city for alignment pre-training (offline backbone); "" to skip
align_epochs: "Optional[int]" = None  # epochs of alignment pre-training
epochs: "Optional[int]" = None  # AddressCLIP training epochs
batch_size: "Optional[int]" = None  # global batch size
lr: "Optional[float]" = None  # peak learning rate (cosine schedule to lr_min)
lr_min: "Optional[float]" = None  # final learning rate
warmup_steps: "Optional[int]" = None  # linear warm-up steps
train_image: "Optional[str]" = None  # image tower: all | none | proj | last:N
train_text: "Optional[str]" = None  # text tower: all | none | proj | last:N
image_size: "Optional[int]" = None  # None: the backbone's own
image_resize_mode: "Optional[str]" = None  # non-square photos: shortest (centre crop) | longest (pad) | squash
train_splits: "Optional[str]" = None  # train | train+val (Pitts-IAL: train + the released database)
augment: "Optional[bool]" = None  # open_clip's random resized crop in training
w_address: float = 1.0  # weight of the image-address loss
w_caption: float = 0.2  # weight of the image-(caption+address) loss
w_geography: float = 0.8  # weight of the image-geography loss
geography_form: str = "similarity"  # similarity (towards 1 - distance) | literal (the paper's equation as written)
label_aware: bool = False  # images sharing an address are positives for each other
seed: int = 0  # random seed
device: str = "auto"  # auto | cpu | cuda
run_name: "Optional[str]" = None  # default: derived from the configuration
expect_learning: bool = True  # check that test accuracy is above chance (off for rehearsals too short to learn)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from IPython.display import Markdown

from addressclip import notebook, profiles, report
from addressclip.config import TrainConfig
from addressclip.datasets import build_embedded, load_dataset
from addressclip.runs import Run
from addressclip.train import aligned_start, train
from addressclip.visualise import save_figure

given = notebook.check_parameters(globals(), [
    "profile", "dataset", "backbone", "pretrained", "align_dataset", "align_epochs", "epochs", "batch_size", "lr",
    "lr_min", "warmup_steps", "train_image", "train_text", "image_size", "image_resize_mode", "train_splits", "augment",
    "w_address", "w_caption", "w_geography", "geography_form", "label_aware", "seed", "device", "run_name", "expect_learning"])
given.pop("expect_learning")
p = profiles.resolve(given.pop("profile"), **given)  # the paper profile stops here without a weights file
cfg = TrainConfig.from_dict(profiles.training_values(p))  # validates every value

# %% [markdown]
# ## Data
# Synthetic datasets are built on first use; real ones must have been built with `01_build_dataset.ipynb`.

# %%
build_embedded(cfg.dataset, p["align_dataset"])
# a real dataset not built yet fails here, before the alignment run trains
load_dataset(cfg.dataset);

# %%
cfg = aligned_start(cfg, p["align_dataset"], p["align_epochs"])  # offline backbone only; CLIP weights are aligned already
run = Run(train(cfg))
results = run.results().set_index("epoch")
metrics = run.metrics

# %% [markdown]
# ## Summary

# %%
Markdown(report.findings_markdown(report.run_findings(metrics)))

# %% [markdown]
# ## The setting

# %%
print(run.folder, "| curves also in TensorBoard: .venv/bin/tensorboard --logdir", run.folder.parent)
pd.Series(cfg.identity(), name="value").astype(str).to_frame()

# %% [markdown]
# ## Alignment pre-training (offline backbone only)

# %%
if cfg.init_checkpoint:
    display(Run(Path(cfg.init_checkpoint).parent).results().set_index("epoch").round(3))

# %% [markdown]
# ## AddressCLIP training

# %%
results.round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
results[[c for c in results if c.endswith("_loss")] + ["loss"]].plot(ax=axes[0], marker="o", title="training loss")
results[[c for c in results if c.startswith("val_S")]].plot(ax=axes[1], marker="o", title="validation accuracy (%)")
plt.tight_layout()
save_figure(fig, run.figures_dir, "training_curves");

# %% [markdown]
# ## Test metrics

# %%
top = 5 if "SSA-5" in metrics else 1  # SSA-5 / SA-5 need at least 5 candidate addresses
chance = 100.0 * top / metrics["candidates"]
assert all(0 <= metrics[k] <= 100 for k in ("SSA-1", f"SSA-{top}", "SA-1", f"SA-{top}"))
assert metrics[f"SSA-{top}"] >= metrics["SSA-1"] and metrics["SA-1"] >= metrics["SSA-1"]
assert not expect_learning or metrics[f"SSA-{top}"] > chance, f"SSA-{top} {metrics[f'SSA-{top}']:.1f}% is not above chance ({chance:.1f}%)"
notebook.show_json(run.metrics_path)
