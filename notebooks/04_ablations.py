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
# # 04 — Baselines and ablations
#
# Reproduces the paper's comparison table and loss ablation, plus further ablations and widely used CLIP transfer
# baselines, on the chosen dataset. Each experiment variant is trained once per seed (finished runs are reused, so
# re-rendering costs nothing) and every number below is read from the runs' `metrics.json` files or the baselines'
# saved results. `make demo` renders this notebook to HTML without code under `outputs/reports/`.
#
# ```bash
# papermill notebooks/04_ablations.ipynb outputs/executed/04_ablations.ipynb -p profile demo
# papermill notebooks/04_ablations.ipynb out.ipynb -p profile paper -p pretrained /path/to/ViT-B-16.pt -p second_city sf-ial-base -p osm /path/to/pittsburgh.osm.pbf
# ```
# A variant or baseline that cannot run in the chosen setting is listed with the reason (e.g. `labels` re-partitions
# a real city only with an OSM extract of it, `osm`; `multi_city` needs `second_city`).

# %% tags=["parameters"]
profile: str = "smoke"  # smoke (CI, minutes) | demo (make demo) | paper (every experiment, for a GPU)
experiments: "Optional[list]" = None  # experiment names (addressclip.ablations.EXPERIMENTS); None: the profile's
seeds: "Optional[list]" = None  # seeds per variant; None: the profile's
baselines: "Optional[list]" = None  # baseline names (addressclip.baselines.BASELINES); None: the profile's
dataset: "Optional[str]" = None  # evaluation dataset; None: the profile's
epochs: "Optional[int]" = None  # training epochs of every variant; None: the profile's ablation setting
batch_size: "Optional[int]" = None  # global batch size of every variant; None: the profile's
backbone: "Optional[str]" = None  # None: the profile's (paper: ViT-B-16-quickgelu)
pretrained: "Optional[str]" = None  # open_clip backbones: weights file (needed by the paper profile)
second_city: "Optional[str]" = None  # dataset of the multi_city experiment's second city; None: the profile's
osm: "Optional[str]" = None  # OSM extract of the dataset's city, for label experiments that redo the partition
device: str = "auto"  # auto | cpu | cuda

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from addressclip import ablations, notebook, profiles, report
from addressclip.baselines import BASELINES
from addressclip.config import TrainConfig
from addressclip.datasets import build_embedded, load_dataset
from addressclip.features import feature_bank
from addressclip.paths import outputs_root
from addressclip.inference import resolve_device
from addressclip.train import aligned_start
from addressclip.visualise import save_figure

given = notebook.check_parameters(globals(), ["profile", "experiments", "seeds", "baselines", "dataset", "epochs",
                                              "batch_size", "backbone", "pretrained", "second_city", "osm", "device"])
# epochs and batch_size are the variants' only: 02_train's setting, and so the alignment run every variant and
# baseline starts from, keeps the profile's
sweep = {k: v for k in ("epochs", "batch_size") if (v := given.pop(k)) is not None}
p = profiles.resolve(given.pop("profile"), **given)
notebook.check_not_empty(p, ["experiments", "seeds"])  # else the whole baseline sweep runs before the tables fail
notebook.check_names("experiments", p["experiments"], ablations.EXPERIMENTS)
notebook.check_names("baselines", p["baselines"], BASELINES)
main = TrainConfig.from_dict({**profiles.training_values(p), "progress": False})  # the 02_train setting
base = main.replace(eval_every=0, **{**p["ablation_overrides"], **sweep})  # every ablation variant and seed starts from this
# another sweep than the profile's (-p epochs 6, other experiments, seeds or baselines) names its own tables and figures
suffix = ablations.setting_suffix({**sweep, **{k: given[k] for k in ("experiments", "seeds", "baselines") if given[k] is not None}})
tables, figures = outputs_root() / "tables", outputs_root() / "reports" / f"04_figures{suffix}"
tables.mkdir(parents=True, exist_ok=True)

# %%
build_embedded(base.dataset, p["align_dataset"], p["second_city"])
ds = load_dataset(base.dataset)
base = base.replace(init_checkpoint=aligned_start(main, p["align_dataset"], p["align_epochs"]).init_checkpoint)  # shared with 02_train
start = ablations.starting_model(base, resolve_device(device))  # what every variant and baseline starts from

# %%
bank = feature_bank(start, ds)  # frozen features of the starting model: the CLIP file itself in the paper profile
# the variants' runs and the baselines side by side in one sweep (one process per core)
runs, baseline_runs = ablations.run_experiments_and_baselines(
    base, p["experiments"], p["seeds"], p["baselines"], bank, start, outputs_root() / "baselines",
    options=p["baseline_options"], second_city=p["second_city"], osm=p["osm"])
summary = ablations.summarise(runs)
assert len(runs) == sum(len(ablations.EXPERIMENTS[e]) for e in p["experiments"]) * len(p["seeds"])
assert (runs[["SSA-1", "SA-1"]].notna().all(axis=1) | runs["notes"].str.startswith("not applicable")).all()  # a value or a reason
runs.drop(columns="test_hits").to_csv(tables / f"ablation-runs-{profile}-{ds.name}{suffix}.csv", index=False)  # per seed
table, comparison = ablations.compare_methods(baseline_runs, runs, ablations.gallery_cost(bank, outputs_root() / "baselines"))
assert set(p["baselines"]) <= set(comparison.index)  # every requested baseline: a value or its reason
table.drop(columns="test_hits").to_csv(tables / f"methods-{profile}-{ds.name}{suffix}.csv", index=False)  # per seed
checks, why = ablations.method_checks(table), ablations.investigate(runs)

# %% [markdown]
# ## Summary
# Computed from the tables below. Each "A vs B" is the SSA-1 difference in points with a 95% paired bootstrap interval
# over the same test images and seeds (seeds and images resampled); the verdict follows from the interval.

# %%
Markdown(report.findings_markdown(report.findings(comparison, checks, why, ds.name)))

# %% [markdown]
# ## The setting

# %%
setting = {
    "backbone": base.backbone, "dataset": ds.name, "images": "rendered street views of a real city (synthetic)"
    if ds.card.get("synthetic") else "photographs", "test images": len(ds.split("test")), "candidate addresses": len(ds.addresses),
    "image size": start.image_size, "epochs (every ablation variant)": base.epochs, "epochs (02_train main run)": main.epochs,
    "batch size": base.batch_size, "learning rate": base.lr,
    "trainable": f"image {base.train_image}, text {base.train_text}", "seeds": ", ".join(map(str, p["seeds"])),
    "starting point": "alignment pre-training on " + str(p["align_dataset"]) if base.init_checkpoint else base.pretrained,
}
pd.Series(setting, name="value").to_frame()

# %% [markdown]
# **Read with care.** The paper's numbers come from OpenAI's ViT-B/16, pre-trained on 400M web image–text pairs and
# fine-tuned for 100 epochs on real street photos. Ours come from the setting above. Orderings between methods are
# what can be compared, not absolute values.

# %% [markdown]
# ## Methods
# One row per method: mean ± standard deviation over seeds (%), the best value of each accuracy column in bold, the paper's numbers beside ours where the paper has the method. A method that did not run shows why.

# %%
report.styled(report.method_table(comparison, ablations.PAPER_METHODS), report.best_rows(comparison))

# %%
ran = comparison[comparison["SSA-1"].notna()].index
fig, ax = plt.subplots(figsize=(8, 0.45 * len(ran) + 1))
sns.barplot(data=table[table["variant"].isin(ran)].assign(method=lambda t: t["variant"].map(lambda v: report.METHOD_NAMES.get(v, v))),
            y="method", x="SSA-1", errorbar="sd", order=[report.METHOD_NAMES.get(v, v) for v in ran], ax=ax)
ax.set_ylabel(""); ax.set_xlabel("SSA-1 (%); error bars: standard deviation over seeds"); ax.set_title(f"methods on {ds.name}")
save_figure(fig, figures, "methods");

# %%
skipped = [b for b in BASELINES if b not in p["baselines"]]
if skipped:  # e.g. CoCoOp in the demo profile: it encodes every address for every image, too slow for a CPU demo
    print(f"not in the {profile!r} profile's list, so not run here: {', '.join(skipped)} (pass -p baselines, or use the paper profile)")
print("share of method pairs ordered as in the paper (Pitts-IAL):",
      round(ablations.ordering_agreement(comparison["SSA-1"].dropna().rename(index=report.PAPER_ROW), ablations.PAPER_METHODS.set_index("method")["Pitts-IAL SSA-1"]), 2))

# %% [markdown]
# ## Does AddressCLIP beat address-only fine-tuning, and do both beat prompt learning?
# The paper's claims, tested on these runs. "No difference shown" means the interval includes 0: these runs cannot
# tell the two apart, which is not evidence that they are equal (see "Why" below).

# %%
report.comparison_table(checks)

# %% [markdown]
# ## Ablations
# Every experiment variant, mean ± standard deviation over seeds (%).

# %%
report.styled(report.ablation_table(summary))

# %%
fig, axes = plt.subplots(1, len(p["experiments"]), figsize=(5 * len(p["experiments"]), 4), squeeze=False)
for ax, experiment in zip(axes[0], p["experiments"]):
    part = runs[runs["experiment"] == experiment]
    sns.barplot(data=part, x="SSA-1", y="variant", ax=ax, errorbar="sd", color="tab:blue")
    ax.set_title(experiment); ax.set_ylabel(""); ax.set_xlabel("SSA-1 (%), ± sd over seeds")
plt.tight_layout()
save_figure(fig, figures, "ablations");

# %% [markdown]
# ### The paper's loss table beside ours (SSA-1, %)

# %%
if "losses" in p["experiments"]:
    losses = report.loss_table(summary, ablations.PAPER_LOSSES)
    agreement = {c: ablations.ordering_agreement(summary.loc["losses"]["SSA-1"], ablations.PAPER_LOSSES.set_index("variant")[c])
                 for c in ("Pitts-IAL SSA-1", "SF-IAL-Base SSA-1")}
    print("share of variant pairs ordered as in the paper:", {k: round(v, 2) for k, v in agreement.items()})
    display(report.styled(losses, caption=report.STD_NOTE))

# %% [markdown]
# ## Why: what the other experiments say
# Where AddressCLIP does not beat the address loss alone, these paired comparisons say where the gain goes: each
# auxiliary loss added on its own, the direction of the geography target (the paper's equation read literally, T = D,
# against the similarity form, T = 1 - D), label-aware positives, and (with `losses_frozen_image` among the
# experiments) whether the auxiliary losses need an image tower that trains.

# %%
report.comparison_table(why.reset_index(drop=True)).reset_index().assign(question=why.index.tolist()).set_index("question")
