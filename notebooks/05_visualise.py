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
# # 05 — What the model does: maps, examples, geography, saliency, confusions
#
# Shows a trained run on a dataset split: where it is right and wrong on the city's own map, example images with
# their top-5 addresses, what the geography loss does to the image embedding, a t-SNE of the test embeddings, where
# the image tower looks (Grad-CAM), and which neighbouring sub-streets it confuses. Predictions go through the same
# `AddressLocator` API as `addressclip predict`, including an open-vocabulary candidate list. Every figure is also
# saved under `<run>/figures/`.
#
# ```bash
# papermill notebooks/05_visualise.ipynb outputs/executed/05_visualise.ipynb -p run demo -p dataset helsinki-synth
# papermill notebooks/05_visualise.ipynb out.ipynb -p run demo -p dataset helsinki-synth -p compare_run demo-nogeo  # with / without geography loss
# ```
# `compare_run` is a run trained without the geography loss, e.g.
# `papermill notebooks/02_train.ipynb out.ipynb -p profile demo -p w_geography 0 -p run_name demo-nogeo`.
# `photos` maps a folder of your own photos: each one's predicted sub-street on the city map, and with EXIF GPS the
# metres from the photo to it:
# `papermill notebooks/05_visualise.ipynb out.ipynb -p run bremen -p dataset data/bremen-synth -p photos ~/Pictures/bremen`.

# %% tags=["parameters"]
run: "Optional[str]" = None  # run name under outputs/runs, a run folder or model.pt; None: newest finished run on `dataset`
dataset: str = "helsinki-synth-tiny"  # dataset whose images and addresses are shown (registry name or folder)
compare_run: "Optional[str]" = None  # a run trained without the geography loss, for the with/without plot; None: this run only
photos: "Optional[str]" = None  # a folder of your own photos to predict and show on the city map; None: one view of each of the split's first `examples` places
split: str = "test"  # val | test
k: int = 5  # predictions kept per image
examples: int = 4  # images per example grid
saliency_images: int = 4  # images in the saliency figure
seed: int = 0  # seed of the example choice and of t-SNE
device: str = "auto"  # auto | cpu | cuda

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from addressclip import notebook
from addressclip import visualise as vis
from addressclip.datasets import load_dataset
from addressclip.evaluate import evaluate
from addressclip.frozen_layers import image_outputs
from addressclip.predict import AddressLocator
from addressclip.runs import Run, check_trained_on

params = notebook.check_parameters(globals(), ["run", "dataset", "compare_run", "photos", "split", "k", "examples",
                                               "saliency_images", "seed", "device"])
ds = load_dataset(dataset)
locator = AddressLocator.from_checkpoint(run, dataset=dataset, device=device)
check_trained_on(locator.model.train_config, dataset, locator.model.checkpoint.parent)  # another dataset's addresses: warned about
trained = Run(locator.model.checkpoint.parent)
figures = trained.figures_dir
print(trained.folder, "|", ds.name, "|", len(locator.candidates), "candidate addresses |", "backbone", locator.model.spec.backbone)
print("figures ->", figures)

# %% [markdown]
# ## Predictions on the split
# `evaluate()` gives the metrics; the `AddressLocator` (the API behind `addressclip predict`) must rank the same way. The image embeddings are computed once here and reused below.

# %%
paths = [str(ds.root / p) for p in ds.split(split)["image"]]
result = evaluate(locator.model, ds, split, k=k, frozen=image_outputs(locator.model, paths, locator.model.preprocess_val))  # frozen layers: cached
pred = result.predictions
pred["outcome"] = vis.outcome(pred)
labels, feats, skipped = locator.embed_images(paths)
scores, top = locator.rank(feats, k)
m = result.metrics
assert m["images"] == len(ds.split(split)) == len(labels) and not skipped
assert [locator.candidates[i] for i in top[:, 0]] == pred["pred"].tolist(), "the locator and evaluate() disagree on top-1"
assert np.allclose(scores, np.stack(pred["scores"]), atol=1e-4)
assert abs(100 * (pred["outcome"] == "hit").mean() - m["SSA-1"]) < 1e-9
pd.concat([pd.Series(result.quality, name="value").round(2).to_frame(),
           pred["outcome"].value_counts().rename("value").to_frame()])

# %% [markdown]
# ## Open vocabulary
# The candidates can be any list of strings: here the dataset's addresses plus a few that no image shows. The text
# embeddings of each list are encoded once and cached next to the checkpoint (`gallery_cache/`); asking again reads
# the file back.

# %%
extra = ["Bulevardi & Annankatu, Helsinki 00120", "Fredrikinkatu & Lönnrotinkatu, Helsinki 00120",
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
shown

# %% [markdown]
# ## Maps
# Over the city's own building footprints and streets (rendered datasets) or the segments alone (real data).

# %%
layers = vis.city_layers(ds)
vis.plot_partition(ds, layers, save_dir=figures);

# %%
vis.plot_outcome_map(pred, ds, layers, save_dir=figures);

# %% [markdown]
# ### Photos on the city map
# Each photo's predicted sub-street (star: the middle of its segment, the `lat`/`lon` that `addressclip predict` writes)
# and, where the photo's position is known, the photo (circle) joined to its predicted sub-street, labelled in metres.
# With `photos`, a folder of your own: positions from EXIF GPS. Without, one view of each of the split's first places,
# whose positions come from the dataset's table (rendered images carry no EXIF GPS).

# %%
picked = ds.split(split).drop_duplicates("location_id").head(examples)  # one view of each of the first places
placed = locator.predict(photos if photos else [str(ds.root / p) for p in picked["image"]], k=k)
if not photos:
    placed[["photo_lat", "photo_lon"]] = picked[["lat", "lon"]].to_numpy()
    placed["distance_m"] = vis.photo_prediction_lines(placed, locator.shapes)["length_m"].to_numpy()
    right = placed["address"].to_numpy() == picked["address"].to_numpy()
    if ds.segments is not None:  # without street geometry an address is placed at its other images' places, metres away
        assert (placed.loc[right, "distance_m"] < 10).all(), "a right prediction lies on the photo's own sub-street"
assert placed["lat"].notna().all() and placed["lon"].notna().all()  # every dataset address has a place
vis.plot_photo_predictions(placed, locator.shapes, layers, save_dir=figures)
placed[["image", "address", "score", "lat", "lon", "photo_lat", "photo_lon", "distance_m"]]

# %%
vis.plot_accuracy_choropleth(pred, ds, layers, save_dir=figures);

# %%
lines = vis.miss_lines(pred, ds)
assert len(lines) == int((pred["outcome"] != "hit").sum())
assert np.allclose(np.sort(lines["length_m"]), np.sort(pred.loc[pred["outcome"] != "hit", "distance_m"]), atol=1e-6)
vis.plot_miss_lines(pred, ds, layers, save_dir=figures);

# %% [markdown]
# ## Examples: hits, near misses (right street, wrong sub-street), far misses

# %%
for kind in vis.OUTCOMES:
    vis.plot_examples(pred, ds.root, kind, n=examples, seed=seed, save_dir=figures)

# %% [markdown]
# ## What the geography loss does
# Cosine similarity of the image features of every pair of images against the metres between them. The geography
# loss pulls the features of nearby images together and pushes distant ones apart, so similarity should fall with
# distance faster than without it.

# %%
coords = pred[["easting", "northing"]].to_numpy()
w_geo = locator.train_config.get("w_geography")
pairs = {f"{trained.name} (w_geography={w_geo})": vis.similarity_distance_pairs(feats, coords)}
if compare_run:
    other = AddressLocator.from_checkpoint(compare_run, candidates=ds.addresses, device=device)
    check_trained_on(other.train_config, dataset, other.model.checkpoint.parent)
    name = other.model.checkpoint.parent.name
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
summary.round(3)

# %% [markdown]
# ## Embedding projection (t-SNE) of the test images, coloured by street

# %%
assert feats.shape[0] == len(pred)
vis.plot_embedding_projection(feats.numpy(), pred["street"], pred["outcome"] == "hit", seed=seed, save_dir=figures);

# %% [markdown]
# ## Where the model looks
# Grad-CAM of the similarity between each image and its true address: the last conv stage for a CNN tower, the
# input of the last block's attention for a ViT tower (e.g. a `ViT-B-16-quickgelu` run).

# %%
picked = pred.sample(n=min(saliency_images, len(pred)), random_state=seed)
cam, picture = vis.saliency_map(locator.model, ds.root / picked["image"].iloc[0], picked["address"].iloc[0])
assert cam.shape == picture.shape[:2] == (locator.model.image_size, locator.model.image_size)
assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() in (0.0, 1.0)  # normalised; 0: no positive evidence
vis.plot_saliency(locator.model, [ds.root / p for p in picked["image"]], picked["address"].tolist(),
                  titles=[f"{vis.short_address(a)}\n({o})" for a, o in zip(picked["address"], picked["outcome"])],
                  save_dir=figures);

# %% [markdown]
# ## Confusion between neighbouring sub-streets
# The street whose test images span the most sub-streets; rows in order along the street.

# %%
street = vis.busiest_street(pred)
table = vis.street_confusion(pred, ds, street)
assert int(table.to_numpy().sum()) == int((pred["street"] == street).sum())
vis.plot_street_confusion(pred, ds, street, save_dir=figures)
table

# %% [markdown]
# ## Saved figures

# %%
saved = sorted(p.name for p in figures.glob("*.png"))
expected = {"partition.png", "map_outcomes.png", "map_photos.png", "map_accuracy.png", "map_misses.png", "similarity_vs_distance.png",
            "tsne_by_street.png", "saliency.png", "examples_hit.png", "examples_near_miss.png", "examples_far_miss.png"}
assert expected <= set(saved), expected - set(saved)
saved
