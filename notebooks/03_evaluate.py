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
# # 03 — Evaluate a run
#
# Ranks every candidate address of the dataset for each image of a split: SSA-1/5 (sub-street), SA-1/5 (main street),
# distance from the image to the predicted sub-street, and accuracy per address. The evaluation is saved in the run
# folder as `eval-<dataset>-<split>.json`.
#
# ```bash
# papermill notebooks/03_evaluate.ipynb outputs/executed/03_evaluate.ipynb -p run <run name or folder> -p dataset helsinki-synth
# ```

# %% tags=["parameters"]
run: "Optional[str]" = None  # run name under outputs/runs, a run folder or model.pt; None: newest finished run on `dataset`
dataset: str = "helsinki-synth-tiny"  # dataset to evaluate on (registry name or folder)
split: str = "test"  # val | test
k: int = 5  # predictions kept per image
device: str = "auto"  # auto | cpu | cuda

# %%
import matplotlib.pyplot as plt
import seaborn as sns

from IPython.display import Markdown

from addressclip import notebook, report
from addressclip.datasets import load_dataset
from addressclip.evaluate import evaluate
from addressclip.frozen_layers import image_outputs
from addressclip.inference import load_model
from addressclip.runs import Run, check_trained_on
from addressclip.visualise import save_figure

params = notebook.check_parameters(globals(), ["run", "dataset", "split", "k", "device"])
ds = load_dataset(dataset)
model = load_model(run, device=device, dataset=dataset)
check_trained_on(model.train_config, dataset, model.checkpoint.parent)  # another dataset's addresses: warned about
trained = Run(model.checkpoint.parent)
print(trained.folder, ds.name)

# %%
paths = [str(ds.root / image) for image in ds.split(split)["image"]]
result = evaluate(model, ds, split, k=k, frozen=image_outputs(model, paths, model.preprocess_val))  # frozen layers: cached
saved = trained.write_evaluation(ds.name, split, {**result.metrics, "params": params})
m = result.metrics
assert m["images"] == len(ds.split(split)) and m["candidates"] == len(ds.addresses)
assert m["SSA-1"] <= m["SA-1"] and all(m[f"{a}-1"] <= m[f"{a}-5"] for a in ("SSA", "SA") if f"{a}-5" in m)  # -5: k >= 5 only
display(Markdown(report.findings_markdown(report.run_findings(m))))
notebook.show_json(saved).drop(index="params")

# %% [markdown]
# ## Accuracy per address

# %%
table = result.per_address
fig, ax = plt.subplots(figsize=(10, max(3, 0.22 * len(table))))
sns.barplot(data=table, y="address", x="ssa1", ax=ax, color="tab:blue")
ax.set_xlabel(f"SSA-1 (%) of each address's {split} images"); ax.set_ylabel(""); ax.tick_params(axis="y", labelsize=7)
plt.tight_layout()
save_figure(fig, trained.figures_dir, f"per_address_{ds.name}_{split}");

# %% [markdown]
# ## How far off are the misses?

# %%
pred = result.predictions
pred["outcome"] = ["hit" if a == p else ("right street" if s == ps else "wrong street")
                   for a, p, s, ps in zip(pred["address"], pred["pred"], pred["street"], pred["pred_street"])]
if pred["distance_m"].notna().any():
    ax = sns.histplot(data=pred, x="distance_m", hue="outcome", bins=30, multiple="stack")
    ax.set_xlabel(f"metres from image to the predicted address ({ds.distance_basis})")
    save_figure(ax.figure, trained.figures_dir, f"miss_distances_{ds.name}_{split}")
pred["outcome"].value_counts().to_frame("images")
