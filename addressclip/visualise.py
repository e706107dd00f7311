"""Figures of what a trained model does: maps, example grids, geography of the embedding, saliency, confusions.

Every ``plot_*`` function returns a matplotlib Figure and, given ``save_dir`` (normally ``<run>/figures``),
also writes it there as PNG. Maps are drawn with geopandas in the dataset's metric CRS over the city's own
building footprints and streets when the dataset was rendered from an OpenStreetMap extract (no web tiles);
for other datasets over the sub-street segments alone.

The functions take the ``predictions`` table of :func:`addressclip.evaluate.evaluate` (columns image,
address, street, easting, northing, pred, pred_street, distance_m, topk, scores).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import shapely
import torch
from matplotlib.figure import Figure
from PIL import Image

from .cache import atomic_write
from .data import fast_transform, open_image
from .metrics import per_address_table

log = logging.getLogger(__name__)

OUTCOMES = ("hit", "near miss", "far miss")
OUTCOME_COLOURS = {"hit": "#1a9850", "near miss": "#fdae61", "far miss": "#d73027"}
OUTCOME_TITLES = {"hit": "hits", "near miss": "near misses (right street, wrong sub-street)",
                  "far miss": "far misses (wrong street)"}


# ------------------------------------------------------------------------------------------------ helpers
def save_figure(fig: Figure, save_dir: str | Path | None, name: str) -> Path | None:
    """Write `fig` as `<save_dir>/<name>.png` (nothing when save_dir is None)."""
    if save_dir is None:
        return None
    # a half-written figure never replaces a good one
    return atomic_write(Path(save_dir) / f"{name}.png", lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight"))


def outcome(predictions: pd.DataFrame) -> pd.Series:
    """Per image: hit (right sub-street), near miss (right street, wrong sub-street) or far miss."""
    hit = predictions["pred"] == predictions["address"]
    same_street = predictions["pred_street"] == predictions["street"]
    return pd.Series(np.where(hit, "hit", np.where(same_street, "near miss", "far miss")), index=predictions.index)


def short_address(address: str, street: str | None = None) -> str:
    """"Mikonkatu & Kaivokatu, Helsinki 00100" -> "Kaivokatu" given street "Mikonkatu": for crowded labels."""
    text = address.split(", ")[0]
    if street and text.startswith(street + " & "):
        text = text[len(street) + 3 :]
    return text


def address_geometries(ds) -> gpd.GeoSeries:
    """One geometry per address, in the dataset's CRS: its sub-street segments, or (real data without street
    geometry) the points where its images were taken (`IALDataset.address_shapes`)."""
    return ds.address_shapes


# -------------------------------------------------------------------------------------------- base layers
def city_layers(ds, margin_m: float = 120.0) -> dict[str, gpd.GeoDataFrame]:
    """Building footprints and street lines around the dataset, from the OSM extract it was rendered from.

    Empty for datasets not built from OSM (real photo datasets) or when the extract cannot be read: maps
    then show the segments alone."""
    source = (ds.card.get("build_parameters") or {}).get("city") or ds.card.get("osm_source")
    if not source or ds.segments is None:
        return {}
    try:
        from .datasets.osm import load_osm

        city = load_osm(source)
    except Exception as exc:  # noqa: BLE001 - a missing backdrop must not stop the figures
        log.warning("no city backdrop for %s (%s): drawing segments only", ds.name, exc)
        return {}
    xmin, ymin, xmax, ymax = ds.segments.total_bounds
    xmin, ymin, xmax, ymax = xmin - margin_m, ymin - margin_m, xmax + margin_m, ymax + margin_m
    layers = {}
    for name, frame in (("buildings", city.buildings), ("roads", city.roads)):
        frame = frame.to_crs(ds.segments.crs) if frame.crs != ds.segments.crs else frame
        layers[name] = frame.cx[xmin:xmax, ymin:ymax]
    return layers


def _map_axes(ds, layers: dict | None, title: str, figsize=(9, 8)):
    """A figure with the city backdrop (buildings, streets) and faint segments, zoomed to the segments."""
    fig, ax = plt.subplots(figsize=figsize)
    layers = layers or {}
    if "buildings" in layers and len(layers["buildings"]):
        layers["buildings"].plot(ax=ax, color="#d9d9d9", edgecolor="#bdbdbd", linewidth=0.3, zorder=1)
    if "roads" in layers and len(layers["roads"]):
        layers["roads"].plot(ax=ax, color="#969696", linewidth=0.6, zorder=2)
    shapes = ds.address_shapes
    xmin, ymin, xmax, ymax = shapes.total_bounds
    pad = 0.05 * max(xmax - xmin, ymax - ymin, 50.0)
    ax.set_xlim(xmin - pad, xmax + pad)
    ax.set_ylim(ymin - pad, ymax + pad)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.set_xlabel(f"easting (m, {shapes.crs.to_string()})")
    ax.set_ylabel("northing (m)")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    return fig, ax


def _draw_segments(ax, geoms: gpd.GeoSeries, **style) -> None:
    gpd.GeoSeries(geoms.values, crs=geoms.crs).plot(ax=ax, **{"color": "#525252", "linewidth": 1.2, "zorder": 3, **style})


# ---------------------------------------------------------------------------------------------------- maps
def partition_colours(geoms: gpd.GeoSeries, touch_m: float = 1.0, palette: str = "tab20") -> list:
    """A colour per address such that segments touching each other never share one (greedy colouring),
    so the partition stays readable however many addresses there are."""
    geoms = gpd.GeoSeries(geoms.values, crs=geoms.crs)
    left, right = geoms.sindex.query(geoms, predicate="dwithin", distance=touch_m)
    neighbours: dict[int, set[int]] = {i: set() for i in range(len(geoms))}
    for a, b in zip(left, right):
        if a != b:
            neighbours[a].add(b)
    colours = plt.get_cmap(palette).colors
    if palette == "tab20":  # dark shades first, so the few colours neighbours need are distinct hues
        colours = colours[::2] + colours[1::2]
    chosen: dict[int, int] = {}
    for i in sorted(neighbours, key=lambda i: -len(neighbours[i])):
        taken = {chosen[j] for j in neighbours[i] if j in chosen}
        chosen[i] = next(c for c in range(len(colours) + len(taken) + 1) if c not in taken)
    return [colours[chosen[i] % len(colours)] for i in range(len(geoms))]


def plot_partition(ds, layers: dict | None = None, save_dir=None, label_max: int = 30) -> Figure:
    """The semantic address partition: each sub-street segment coloured by its address label."""
    geoms = address_geometries(ds)
    fig, ax = _map_axes(ds, layers, f"address partition: {len(geoms)} sub-street addresses")
    _draw_segments(ax, geoms, color=partition_colours(geoms), linewidth=3.0)
    if len(geoms) <= label_max:
        for address, geom in geoms.items():
            p = geom.interpolate(0.5, normalized=True) if geom.geom_type.endswith("LineString") else geom.centroid
            # just above the segment, on a see-through box, so a short segment is not hidden by its own label
            ax.annotate(short_address(address), (p.x, p.y), xytext=(0, 4), textcoords="offset points", fontsize=6,
                        ha="center", va="bottom", zorder=5,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.5})
    save_figure(fig, save_dir, "partition")
    return fig


def location_outcomes(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per test location (the views taken at one point): its views, and the share of them whose top-1
    address is right (SSA-1 of the location, %)."""
    hit = (predictions["pred"] == predictions["address"]).astype(float)
    keys = [predictions["easting"].round(1), predictions["northing"].round(1)]
    table = hit.groupby(keys).agg(["size", "mean"]).rename(columns={"size": "views", "mean": "ssa1"})
    table["ssa1"] *= 100
    return table.reset_index().rename(columns={"level_0": "easting", "level_1": "northing"})


def plot_outcome_map(predictions: pd.DataFrame, ds, layers: dict | None = None, save_dir=None) -> Figure:
    """Test locations coloured by the share of their views predicted right: one marker per location, so the map
    shows the same accuracy as the numbers (several views of one point would otherwise hide each other)."""
    places = location_outcomes(predictions)
    overall = 100 * float((predictions["pred"] == predictions["address"]).mean())
    views = sorted(places["views"].unique())
    fig, ax = _map_axes(ds, layers, f"{len(places)} test locations ({'/'.join(map(str, views))} views each): "
                                    f"top-1 right, share of views (SSA-1 {overall:.1f}%)")
    _draw_segments(ax, address_geometries(ds), color="#737373", linewidth=1.0)
    points = ax.scatter(places["easting"], places["northing"], s=22, c=places["ssa1"], cmap="RdYlGn", vmin=0, vmax=100,
                        edgecolor="black", linewidth=0.3, zorder=6)
    fig.colorbar(points, ax=ax, shrink=0.7, label="SSA-1 of the location's views (%)")
    save_figure(fig, save_dir, "map_outcomes")
    return fig


def per_address_accuracy(predictions: pd.DataFrame) -> pd.DataFrame:
    """SSA-1 (%) and image count per true address, indexed by address."""
    hit = predictions["pred"] == predictions["address"]
    return per_address_table(predictions["address"], hit, hit).set_index("address")[["images", "ssa1"]]


def plot_accuracy_choropleth(predictions: pd.DataFrame, ds, layers: dict | None = None, save_dir=None) -> Figure:
    """Street segments coloured by their SSA-1 on the test images; segments without test images dashed grey."""
    geoms = address_geometries(ds)
    acc = per_address_accuracy(predictions)
    frame = gpd.GeoDataFrame({"ssa1": acc["ssa1"].reindex(geoms.index)}, geometry=geoms.values, crs=geoms.crs)
    fig, ax = _map_axes(ds, layers, "SSA-1 per sub-street (test images)")
    empty = frame[frame["ssa1"].isna()]
    if len(empty):
        empty.plot(ax=ax, color="#9e9e9e", linewidth=1.5, linestyle="--", zorder=3)
    scored = frame[frame["ssa1"].notna()]
    scored.plot(ax=ax, column="ssa1", cmap="RdYlGn", vmin=0, vmax=100, linewidth=4.0, zorder=4)
    mappable = plt.cm.ScalarMappable(cmap="RdYlGn", norm=plt.Normalize(0, 100))
    fig.colorbar(mappable, ax=ax, shrink=0.7, label="SSA-1 (%)")
    save_figure(fig, save_dir, "map_accuracy")
    return fig


def miss_lines(predictions: pd.DataFrame, ds, geoms: gpd.GeoSeries | None = None) -> gpd.GeoDataFrame:
    """For each missed image, the shortest line from where it was taken to the predicted sub-street
    (`geoms`: `address_geometries(ds)`, when the caller has it already)."""
    geoms = address_geometries(ds) if geoms is None else geoms
    misses = predictions[predictions["pred"] != predictions["address"]]
    misses = misses[misses["pred"].isin(geoms.index)]
    points = shapely.points(misses["easting"].to_numpy(float), misses["northing"].to_numpy(float))
    lines = shapely.shortest_line(points, geoms.loc[misses["pred"]].to_numpy())
    return gpd.GeoDataFrame({"image": misses["image"].to_numpy(), "outcome": outcome(misses).to_numpy(),
                             "length_m": shapely.length(lines)}, geometry=lines, crs=geoms.crs)


def plot_miss_lines(predictions: pd.DataFrame, ds, layers: dict | None = None, save_dir=None) -> Figure:
    """Lines from each missed image's true location to its predicted sub-street."""
    geoms = address_geometries(ds)
    lines = miss_lines(predictions, ds, geoms)
    fig, ax = _map_axes(ds, layers, f"misses: true location -> predicted sub-street ({len(lines)} images)")
    _draw_segments(ax, geoms, color="#737373", linewidth=1.0)
    for kind in ("near miss", "far miss"):
        part = lines[lines["outcome"] == kind]
        if len(part):
            part.plot(ax=ax, color=OUTCOME_COLOURS[kind], linewidth=1.0, alpha=0.8, zorder=5)
    starts = shapely.get_point(lines.geometry.values, 0)
    ax.scatter(shapely.get_x(starts), shapely.get_y(starts), s=10, c="black", zorder=6, label="missed image")
    for kind in ("near miss", "far miss"):  # legend entries for the line colours
        ax.plot([], [], color=OUTCOME_COLOURS[kind], label=f"{kind} ({int((lines['outcome'] == kind).sum())})")
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, save_dir, "map_misses")
    return fig


# -------------------------------------------------------------------------------------------- example grid
def pick_examples(predictions: pd.DataFrame, kind: str, n: int = 4, seed: int = 0) -> pd.DataFrame:
    if kind not in OUTCOMES:
        raise ValueError(f"unknown outcome {kind!r}; valid: {', '.join(OUTCOMES)}")
    part = predictions[outcome(predictions) == kind]
    return part.sample(n=min(n, len(part)), random_state=seed) if len(part) else part


def plot_examples(predictions: pd.DataFrame, root: str | Path, kind: str, n: int = 4, seed: int = 0,
                  save_dir=None) -> Figure:
    """Images of one outcome with their true address and the top-k predictions and scores (the true one
    in bold green)."""
    chosen = pick_examples(predictions, kind, n, seed)
    cols = max(1, len(chosen))
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 6.4), gridspec_kw={"height_ratios": [3, 2]}, squeeze=False)
    fig.suptitle(f"{OUTCOME_TITLES[kind]}: {len(chosen)} of {int((outcome(predictions) == kind).sum())}")
    if not len(chosen):
        for ax in axes.flat:
            ax.axis("off")
        axes[0, 0].text(0.5, 0.5, f"no {OUTCOME_TITLES[kind]} in these predictions", ha="center", va="center")
    for c, (_, row) in enumerate(chosen.iterrows()):
        axes[0, c].imshow(open_image(Path(root) / row["image"]))
        axes[0, c].set_xticks([]), axes[0, c].set_yticks([])
        axes[0, c].set_title(f"true: {short_address(row['address'])}", fontsize=8)
        text_ax = axes[1, c]
        text_ax.axis("off")
        for r, (address, score) in enumerate(zip(row["topk"], row["scores"])):
            right = address == row["address"]
            text_ax.text(0.0, 0.95 - 0.16 * r, f"{r + 1}. {score:.3f}  {short_address(address)}", fontsize=7.5,
                         color="#1a9850" if right else "black", fontweight="bold" if right else "normal",
                         transform=text_ax.transAxes, va="top")
    fig.tight_layout()
    save_figure(fig, save_dir, f"examples_{kind.replace(' ', '_')}")
    return fig


# ------------------------------------------------------------------------------ similarity vs distance
def similarity_distance_pairs(feats: torch.Tensor | np.ndarray, coords: np.ndarray, max_pairs: int = 20000,
                              seed: int = 0) -> pd.DataFrame:
    """Cosine similarity and metres between pairs of images (all pairs, or a seeded sample of max_pairs)."""
    f = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    f = torch.nn.functional.normalize(f, dim=1).numpy()
    xy = np.asarray(coords, dtype=float)
    i, j = np.triu_indices(len(f), k=1)
    if len(i) > max_pairs:
        keep = np.random.default_rng(seed).choice(len(i), size=max_pairs, replace=False)
        i, j = i[keep], j[keep]
    return pd.DataFrame({"distance_m": np.linalg.norm(xy[i] - xy[j], axis=1),
                         "similarity": np.einsum("nd,nd->n", f[i], f[j])})


def similarity_distance_summary(pairs: dict[str, pd.DataFrame], near_m: float = 50.0, far_m: float = 200.0) -> pd.DataFrame:
    """Per model: Spearman correlation of similarity with distance, and the mean similarity of near and
    far pairs (a model that learnt geography has near > far and a negative correlation)."""
    rows = {}
    for label, p in pairs.items():
        rows[label] = {
            "pairs": len(p),
            "spearman": float(p["similarity"].corr(p["distance_m"], method="spearman")),
            f"similarity_within_{near_m:g}m": float(p.loc[p["distance_m"] <= near_m, "similarity"].mean()),
            f"similarity_beyond_{far_m:g}m": float(p.loc[p["distance_m"] > far_m, "similarity"].mean()),
        }
    return pd.DataFrame(rows).T


def plot_similarity_vs_distance(pairs: dict[str, pd.DataFrame], bins: int = 12, save_dir=None) -> Figure:
    """Feature similarity of image pairs against their distance: a faint cloud per model and its binned
    median with the inter-quartile band (one curve per model, e.g. with and without the geography loss)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    top = max(float(p["distance_m"].max()) for p in pairs.values())
    edges = np.linspace(0, top, bins + 1)
    for (label, p), colour in zip(pairs.items(), plt.get_cmap("tab10").colors):
        ax.scatter(p["distance_m"], p["similarity"], s=2, alpha=0.12, color=colour, rasterized=True)
        groups = p.groupby(pd.cut(p["distance_m"], edges, include_lowest=True), observed=True)["similarity"]
        stats = groups.quantile([0.25, 0.5, 0.75]).unstack()
        mids = [iv.mid for iv in stats.index]
        ax.plot(mids, stats[0.5], marker="o", color=colour, label=label)
        ax.fill_between(mids, stats[0.25], stats[0.75], color=colour, alpha=0.2)
    ax.set_xlabel("distance between the two images (m)")
    ax.set_ylabel("cosine similarity of image features")
    ax.set_title("image feature similarity against geographic distance (test pairs)")
    ax.legend()
    save_figure(fig, save_dir, "similarity_vs_distance")
    return fig


# --------------------------------------------------------------------------------------------- projection
def project_embeddings(feats: torch.Tensor | np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of the embeddings (cosine distance; perplexity scaled down for small sets; the exact
    method below 1,000 points, where it is several times faster than Barnes-Hut)."""
    from sklearn.manifold import TSNE

    x = np.asarray(feats, dtype=np.float32)
    if len(x) < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {len(x)}")
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    method = "exact" if len(x) < 1000 else "barnes_hut"
    return TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", method=method,
                random_state=seed).fit_transform(x)


def plot_embedding_projection(feats, streets: Sequence[str], hits: Sequence[bool] | None = None, seed: int = 0,
                              save_dir=None) -> Figure:
    """t-SNE of test image embeddings coloured by main street (hollow markers: top-1 misses)."""
    xy = project_embeddings(feats, seed)
    streets = np.asarray(list(streets), dtype=object)
    hits = np.ones(len(xy), bool) if hits is None else np.asarray(hits, bool)
    names = sorted(set(streets))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(8, 7))
    for n, name in enumerate(names):
        colour = cmap(n % cmap.N)
        mask = streets == name
        ax.scatter(xy[mask & hits, 0], xy[mask & hits, 1], s=22, color=colour, label=name)
        ax.scatter(xy[mask & ~hits, 0], xy[mask & ~hits, 1], s=22, facecolors="none", edgecolors=colour)
    ax.set_title(f"t-SNE of {len(xy)} test image embeddings, coloured by street (hollow: top-1 miss)")
    ax.set_xticks([]), ax.set_yticks([])
    if len(names) <= 20:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save_figure(fig, save_dir, "tsne_by_street")
    return fig


# ------------------------------------------------------------------------------------------------ saliency
def tower_kind(model) -> str:
    """'cnn' (timm trunk or ModifiedResNet) or 'vit' (open_clip or timm vision transformer): Grad-CAM reads a
    transformer block's first norm, a CNN's last conv stage (see saliency_layer)."""
    return "vit" if isinstance(saliency_layer(model)[1], torch.nn.LayerNorm) else "cnn"


def saliency_layer(model) -> tuple[str, torch.nn.Module]:
    """The activation Grad-CAM reads. CNNs: the last conv stage. ViTs: the input of the last block's
    attention (its first norm): with class-token pooling the last block's *output* patch tokens get no
    gradient, while attention in the last block still routes it to them."""
    visual = model.clip.visual
    if hasattr(visual, "transformer"):
        return "transformer.resblocks[-1].ln_1", visual.transformer.resblocks[-1].ln_1
    if hasattr(visual, "trunk"):
        trunk = visual.trunk
        if hasattr(trunk, "blocks") and hasattr(trunk.blocks[-1], "norm1"):
            return "trunk.blocks[-1].norm1", trunk.blocks[-1].norm1
        name = trunk.feature_info[-1]["module"]
        return f"trunk.{name}", trunk.get_submodule(name)
    return "layer4", visual.layer4  # open_clip ModifiedResNet


def _cam_from(acts: torch.Tensor, grads: torch.Tensor) -> np.ndarray:
    """Grad-CAM: channel weights = mean gradient over positions; map = ReLU of the weighted activations."""
    if acts.ndim == 4:  # [1, C, H, W]
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = (weights * acts).sum(dim=1)[0]
    else:  # [1, N, D] tokens: the trailing g*g are patches (class / register tokens come first)
        side = int(np.sqrt(acts.shape[1]))
        patches, pgrads = acts[:, -side * side :], grads[:, -side * side :]
        weights = pgrads.mean(dim=1, keepdim=True)
        cam = (weights * patches).sum(dim=2)[0].reshape(side, side)
    return torch.relu(cam).numpy()


def saliency_map(model, image: Image.Image | str | Path, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the image-text cosine similarity: (map in [0, 1] at the model's input size, the model's
    input image as RGB in [0, 1], to overlay it on)."""
    # the loaders' decoding and transform (`data.ImageRows`), so that the map explains the input they give
    x = fast_transform(model.preprocess_val)(open_image(image, model.image_size)).unsqueeze(0).to(model.device)
    x.requires_grad_(True)  # frozen towers: make the graph track activations anyway
    _, layer = saliency_layer(model)
    store: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        store["acts"] = output[0] if isinstance(output, tuple) else output

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(keep)
    try:
        with torch.no_grad():
            target = model.encode_text([text])
        with torch.enable_grad():
            score = (model.encode_image(x) * target).sum()
            # gradient w.r.t. the activation only: no .grad is left on the model's parameters
            grads = torch.autograd.grad(score, store["acts"])[0].detach().cpu()
    finally:
        handle.remove()
        model.train(was_training)
    acts = store["acts"].detach().cpu()
    cam = torch.as_tensor(_cam_from(acts, grads))[None, None]
    size = x.shape[-2:]
    cam = torch.nn.functional.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0].clamp(min=0)
    cam = cam / cam.max() if float(cam.max()) > 0 else cam  # upsampling lowers the peak: scale back to [0, 1]
    return cam.numpy(), _unnormalise(model, x.detach()[0].cpu())


def _unnormalise(model, x: torch.Tensor) -> np.ndarray:
    """The model's input tensor back to an RGB picture (undoing the Normalize in preprocess_val)."""
    from torchvision.transforms import Normalize

    norm = next((t for t in getattr(model.preprocess_val, "transforms", []) if isinstance(t, Normalize)), None)
    if norm is not None:
        x = x * torch.tensor(norm.std)[:, None, None] + torch.tensor(norm.mean)[:, None, None]
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def plot_saliency(model, images: Sequence[Image.Image | str | Path], texts: Sequence[str],
                  titles: Sequence[str] | None = None, save_dir=None) -> Figure:
    """Where the model looks: Grad-CAM of each image against a text (normally its true address)."""
    name, _ = saliency_layer(model)
    cols = max(1, len(images))
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 6.6), squeeze=False)
    for c, (image, text) in enumerate(zip(images, texts)):
        cam, picture = saliency_map(model, image, text)
        axes[0, c].imshow(picture)
        axes[1, c].imshow(picture)
        axes[1, c].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        title = titles[c] if titles else short_address(text)
        if cam.max() == 0:  # Grad-CAM keeps only positive evidence; for some misses there is none
            title += "\n(no positive evidence)"
        axes[0, c].set_title(title, fontsize=8)
        for ax in axes[:, c]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Grad-CAM of image-address similarity ({tower_kind(model).upper()} tower, {name})")
    fig.tight_layout()
    save_figure(fig, save_dir, "saliency")
    return fig


# ----------------------------------------------------------------------------------------------- confusion
def order_along_street(geoms: gpd.GeoSeries) -> list[str]:
    """Addresses of one street in order along it (segment midpoints projected on their main axis)."""
    mids = np.array([[g.centroid.x, g.centroid.y] for g in geoms.values])
    if len(mids) < 2:
        return list(geoms.index)
    centred = mids - mids.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    return [geoms.index[i] for i in np.argsort(centred @ axis)]


def busiest_street(predictions: pd.DataFrame) -> str:
    """The street whose test images span the most sub-streets (ties: most images)."""
    counts = predictions.groupby("street").agg(subs=("address", "nunique"), images=("address", "size"))
    return counts.sort_values(["subs", "images"], ascending=False).index[0]


def street_confusion(predictions: pd.DataFrame, ds, street: str | None = None) -> pd.DataFrame:
    """Counts of true sub-street (rows) against predicted sub-street (columns) for one street's images,
    in order along the street; predictions on any other street are pooled in the column "other street"."""
    street = street or busiest_street(predictions)
    subs = [a for a, s in ds.address_to_street.items() if s == street]
    if not subs:
        raise ValueError(f"no addresses on street {street!r} in dataset {ds.name!r}")
    geoms = address_geometries(ds)
    order = order_along_street(geoms.loc[[a for a in subs if a in geoms.index]]) if ds.segments is not None else sorted(subs)
    order += sorted(set(subs) - set(order))
    rows = predictions[predictions["street"] == street]
    pred = rows["pred"].where(rows["pred"].isin(order), "other street")
    table = pd.crosstab(pd.Categorical(rows["address"], categories=order),
                        pd.Categorical(pred, categories=order + ["other street"]), dropna=False)
    table.index.name, table.columns.name = "true", "predicted"
    return table


def plot_street_confusion(predictions: pd.DataFrame, ds, street: str | None = None, save_dir=None) -> Figure:
    """Confusion between neighbouring sub-streets of one street (rows ordered along the street; colour: row
    share, numbers: image counts)."""
    import seaborn as sns

    street = street or busiest_street(predictions)
    table = street_confusion(predictions, ds, street)
    share = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    n = len(table)
    fig, ax = plt.subplots(figsize=(2.0 + 1.1 * (n + 1), 1.5 + 0.7 * n))
    sns.heatmap(share, annot=table.to_numpy(), fmt="d", cmap="Blues", vmin=0, vmax=1, cbar_kws={"label": "share of row"},
                xticklabels=[short_address(a, street) for a in table.columns],
                yticklabels=[short_address(a, street) for a in table.index], ax=ax)
    ax.set_title(f"{street}: true vs predicted sub-street (ordered along the street)")
    ax.tick_params(labelsize=8)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    save_figure(fig, save_dir, f"confusion_{street.replace(' ', '_').replace('/', '_')}")
    return fig


# ----------------------------------------------------------------------------------- your own photos on a map
def osm_layers(source: str, crs, bounds: tuple[float, float, float, float], margin_m: float = 120.0) -> dict:
    """Building footprints and street lines of an OSM extract inside `bounds` (+ margin), in `crs`: the backdrop
    of a map when there is no dataset (prediction from an extract alone). Empty when the extract cannot be read."""
    try:
        from .datasets.osm import load_osm

        city = load_osm(source)
    except Exception as exc:  # noqa: BLE001 - a missing backdrop must not stop the figure
        log.warning("no city backdrop from %s (%s)", source, exc)
        return {}
    xmin, ymin, xmax, ymax = bounds
    layers = {}
    for name, frame in (("buildings", city.buildings), ("roads", city.roads)):
        frame = frame.to_crs(crs) if frame.crs != crs else frame
        layers[name] = frame.cx[xmin - margin_m:xmax + margin_m, ymin - margin_m:ymax + margin_m]
    return layers


def photo_prediction_lines(predictions: pd.DataFrame, shapes: gpd.GeoSeries) -> gpd.GeoDataFrame:
    """Per predicted photo: its predicted point (the middle of the predicted sub-street, from the table's lat/lon)
    and, where the photo's position is known (photo_lat/photo_lon), the shortest line from the photo to the
    predicted sub-street, with its length in metres; in `shapes`' metric CRS."""
    crs = shapes.crs
    pred_pts = gpd.GeoSeries(gpd.points_from_xy(predictions["lon"], predictions["lat"]), crs=4326).to_crs(crs)
    has_photo = predictions[["photo_lat", "photo_lon"]].notna().all(axis=1).to_numpy()
    photo_pts = gpd.GeoSeries(gpd.points_from_xy(predictions["photo_lon"].fillna(0.0), predictions["photo_lat"].fillna(0.0)),
                              crs=4326).to_crs(crs)
    lines, lengths = [], []
    for i, address in enumerate(predictions["address"]):
        if has_photo[i] and address in shapes.index:
            line = shapely.shortest_line(photo_pts.iloc[i], shapes.loc[address])
            lines.append(line)
            lengths.append(float(line.length))
        else:
            lines.append(None)
            lengths.append(np.nan)
    return gpd.GeoDataFrame({"image": predictions["image"].to_numpy(), "address": predictions["address"].to_numpy(),
                             "predicted": pred_pts.to_numpy(), "photo": np.where(has_photo, photo_pts.to_numpy(), None),
                             "length_m": lengths}, geometry=lines, crs=crs)


def plot_photo_predictions(predictions: pd.DataFrame, shapes: gpd.GeoSeries, layers: dict | None = None,
                           save_dir=None, label_max: int = 12) -> Figure:
    """A folder of predicted photos on the city map: each photo's predicted sub-street (thick line) and its point
    (star), and where the photo's position is known (EXIF GPS, or the dataset's table) the photo (circle) joined to
    its predicted sub-street by a dashed line labelled in metres. `predictions` is `AddressLocator.predict`'s table;
    `shapes` the locator's address geometries (`AddressLocator.shapes`)."""
    from pathlib import PurePath

    if shapes is None:
        raise ValueError("the candidate addresses have no places (a plain text list): predict with candidates from "
                         "an OSM extract or a dataset to map them")
    placed = predictions[predictions["lat"].notna()]
    lines = photo_prediction_lines(placed, shapes)
    fig, ax = plt.subplots(figsize=(9, 8))
    layers = layers or {}
    if "buildings" in layers and len(layers["buildings"]):
        layers["buildings"].plot(ax=ax, color="#d9d9d9", edgecolor="#bdbdbd", linewidth=0.3, zorder=1)
    if "roads" in layers and len(layers["roads"]):
        layers["roads"].plot(ax=ax, color="#969696", linewidth=0.6, zorder=2)
    chosen = shapes[shapes.index.isin(set(placed["address"]))]
    colours = dict(zip(chosen.index, plt.get_cmap("tab10")(np.arange(len(chosen)) % 10)))
    if len(chosen):  # one call: geopandas redraws the whole figure after each
        gpd.GeoSeries(chosen.values, crs=shapes.crs).plot(ax=ax, color=[colours[a] for a in chosen.index], linewidth=3.5,
                                                          alpha=0.8, zorder=3)
    xs, ys = [], []
    for row in lines.itertuples():
        c = colours.get(row.address, "black")
        ax.scatter([row.predicted.x], [row.predicted.y], marker="*", s=160, color=c, edgecolor="black", linewidth=0.5, zorder=6)
        xs.append(row.predicted.x), ys.append(row.predicted.y)
        if row.photo is not None:
            ax.scatter([row.photo.x], [row.photo.y], marker="o", s=40, color=c, edgecolor="black", linewidth=0.5, zorder=7)
            ax.plot(*row.geometry.xy, linestyle="--", color="black", linewidth=0.8, zorder=5)
            xs.append(row.photo.x), ys.append(row.photo.y)
            label = f"{PurePath(str(row.image)).name}: {row.length_m:.0f} m"
            anchor = row.photo
        else:
            label, anchor = PurePath(str(row.image)).name, row.predicted
        if row.Index < label_max:
            ax.annotate(label, (anchor.x, anchor.y), xytext=(4, 4), textcoords="offset points", fontsize=7, zorder=8)
    for geom in chosen.values:
        x0, y0, x1, y1 = geom.bounds
        xs += [x0, x1]
        ys += [y0, y1]
    if xs:
        pad = 0.08 * max(max(xs) - min(xs), max(ys) - min(ys), 100.0)
        ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_aspect("equal")
    known = lines["length_m"].notna()
    median = f"; median {lines.loc[known, 'length_m'].median():.0f} m from the photo" if known.any() else ""
    ax.set_title(f"{len(placed)} photos: predicted sub-street (star) and photo position (circle){median}", fontsize=10)
    ax.set_xlabel(f"easting (m, {shapes.crs.to_string()})")
    ax.set_ylabel("northing (m)")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    save_figure(fig, save_dir, "map_photos")
    return fig
