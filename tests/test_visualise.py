"""Figures of visualise.py on the fixture, with hand-made predictions so every count is known in advance."""
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from PIL import Image  # noqa: E402
from shapely.geometry import LineString  # noqa: E402

from addressclip import visualise as vis  # noqa: E402
from addressclip.datasets import load_dataset  # noqa: E402
from addressclip.metrics import distance_to_prediction  # noqa: E402

from fixtures import CROSS, STREETS  # noqa: E402


def addr(street: int, cross: int) -> str:
    return f"{STREETS[street]} & {CROSS[cross]}, Helsinki 00100"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def ds(tiny_dataset):
    return load_dataset(str(tiny_dataset))


@pytest.fixture(scope="module")
def pred(ds):
    """Street 0: hits; street 1: the next sub-street of the same street (near misses); street 2: street 0's
    sub-street with the same cross street (far misses). The true address is always second when missed."""
    frame = ds.split("test")
    rows = []
    for _, r in frame.iterrows():
        s, c = STREETS.index(r["street"]), CROSS.index(r["address"].split(" & ")[1].split(",")[0])
        guess = {0: addr(0, c), 1: addr(1, (c + 1) % 3), 2: addr(0, c)}[s]
        rest = [a for a in ds.addresses if a not in (guess, r["address"])]
        topk = [guess] + ([r["address"]] if guess != r["address"] else []) + rest
        rows.append({"image": r["image"], "address": r["address"], "street": r["street"], "easting": r["easting"],
                     "northing": r["northing"], "pred": guess, "pred_street": ds.address_to_street[guess],
                     "topk": topk[:5], "scores": list(np.linspace(0.9, 0.5, 5))})
    out = pd.DataFrame(rows)
    out["distance_m"] = distance_to_prediction(out["easting"], out["northing"], out["pred"], ds.address_shapes)
    return out


def test_outcomes_are_classified(pred):
    counts = vis.outcome(pred).value_counts().to_dict()
    assert counts == {"hit": 6, "near miss": 6, "far miss": 6}
    acc = vis.per_address_accuracy(pred)["ssa1"]
    assert (acc[[addr(0, c) for c in range(3)]] == 100).all() and (acc[[addr(2, c) for c in range(3)]] == 0).all()


def test_partition_map(ds, tmp_path):
    fig = vis.plot_partition(ds, save_dir=tmp_path)
    ax = fig.axes[0]
    assert "9 sub-street addresses" in ax.get_title()
    assert len(ax.texts) == 9 and {t.get_text() for t in ax.texts} == {a.split(",")[0] for a in ds.addresses}
    segments = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert sum(len(c.get_segments()) for c in segments) == 9
    assert (tmp_path / "partition.png").stat().st_size > 1000


def test_touching_segments_get_different_colours():
    import geopandas as gpd

    lines = [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (20, 0)]), LineString([(20, 0), (30, 0)]),
             LineString([(500, 0), (510, 0)])]
    colours = vis.partition_colours(gpd.GeoSeries(lines, crs="EPSG:32635"))
    assert colours[0] != colours[1] != colours[2] and len(set(colours)) >= 2


def test_outcome_map_and_backdrop(ds, pred, monkeypatch):
    assert vis.city_layers(ds) == {}  # the fixture names no OSM city: segments only
    fig = vis.plot_outcome_map(pred, ds)
    ax = fig.axes[0]
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    places = vis.location_outcomes(pred)
    # one marker per location (its 2 views together), coloured by the share of its views that are hits
    assert len(points) == 1 and len(points[0].get_offsets()) == len(places) == 9
    assert sorted(points[0].get_array()) == sorted(places["ssa1"]) == [0.0] * 6 + [100.0] * 3
    assert (places["ssa1"] * places["views"]).sum() / places["views"].sum() == pytest.approx(100 * (pred["pred"] == pred["address"]).mean())
    assert "SSA-1 33.3%" in ax.get_title() and len(fig.axes) == 2  # map and colour bar
    # a rendered dataset names its city: the map is drawn over its buildings and streets
    monkeypatch.setitem(ds.card, "build_parameters", {"city": "helsinki"})
    layers = vis.city_layers(ds, margin_m=2000)
    assert set(layers) == {"buildings", "roads"} and len(layers["roads"]) > 0
    with_city = vis.plot_outcome_map(pred, ds, layers).axes[0]
    assert len(with_city.collections) > len(ax.collections)


def test_accuracy_choropleth(ds, pred):
    fig = vis.plot_accuracy_choropleth(pred, ds)
    assert len(fig.axes) == 2 and "SSA-1" in fig.axes[1].get_ylabel()  # map and colour bar
    coloured = [c for c in fig.axes[0].collections if isinstance(c, LineCollection) and len(c.get_segments()) == 9]
    assert coloured, "all nine sub-streets have test images and must be coloured"
    greens = np.array(coloured[-1].get_colors())
    red, green = plt.get_cmap("RdYlGn")(0.0), plt.get_cmap("RdYlGn")(1.0)
    assert sum(np.allclose(c, green) for c in greens) == 3 and sum(np.allclose(c, red) for c in greens) == 6


def test_miss_lines_go_to_the_predicted_segment(ds, pred):
    lines = vis.miss_lines(pred, ds)
    misses = pred[pred["pred"] != pred["address"]]
    assert len(lines) == 12 and set(lines["outcome"]) == {"near miss", "far miss"}
    assert np.allclose(lines["length_m"].to_numpy(), misses["distance_m"].to_numpy())
    assert (lines["length_m"] > 10).all()  # the true segment is 2 m away; the predicted ones are not
    fig = vis.plot_miss_lines(pred, ds)
    assert "12 images" in fig.axes[0].get_title()


def test_example_grid(ds, pred, tmp_path):
    fig = vis.plot_examples(pred, ds.root, "near miss", n=3, save_dir=tmp_path)
    images = [a for a in fig.axes if any(isinstance(x, AxesImage) for x in a.get_children())]
    assert len(images) == 3
    bold = [t for a in fig.axes for t in a.texts if t.get_fontweight() == "bold"]
    assert len(bold) == 3 and all(t.get_text().startswith("2. ") for t in bold)  # the truth, ranked second
    assert (tmp_path / "examples_near_miss.png").exists()
    empty = vis.plot_examples(pred[vis.outcome(pred) == "hit"], ds.root, "far miss")
    assert "no far misses" in empty.axes[0].texts[0].get_text()
    with pytest.raises(ValueError, match="unknown outcome"):
        vis.plot_examples(pred, ds.root, "miss")


def test_similarity_against_distance():
    pairs = vis.similarity_distance_pairs(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]),
                                          np.array([[0.0, 0.0], [3.0, 4.0], [100.0, 0.0]]))
    assert np.allclose(pairs["distance_m"], [5.0, 100.0, np.hypot(97, 4)])
    assert np.allclose(pairs["similarity"], [1.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 500, (60, 2))
    geo = np.c_[np.cos(coords[:, 0] / 300), np.sin(coords[:, 0] / 300)]  # similarity falls with distance
    noise = rng.normal(size=(60, 2))
    both = {"with": vis.similarity_distance_pairs(geo, coords), "without": vis.similarity_distance_pairs(noise, coords)}
    summary = vis.similarity_distance_summary(both, near_m=50, far_m=200)
    assert summary.loc["with", "spearman"] < -0.3 < summary.loc["without", "spearman"]
    assert summary.loc["with", "similarity_within_50m"] > summary.loc["with", "similarity_beyond_200m"]
    assert len(vis.similarity_distance_pairs(noise, coords, max_pairs=100)) == 100
    fig = vis.plot_similarity_vs_distance(both)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["with", "without"]


def test_embedding_projection(pred):
    rng = np.random.default_rng(0)
    centres = {s: rng.normal(size=16) * 5 for s in STREETS}
    feats = np.stack([centres[s] + rng.normal(size=16) for s in pred["street"]])
    xy = vis.project_embeddings(feats)
    assert xy.shape == (len(pred), 2) and np.isfinite(xy).all()
    hits = (pred["pred"] == pred["address"]).to_numpy()
    fig = vis.plot_embedding_projection(feats, pred["street"], hits)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == sorted(STREETS)
    hollow = [c for c in ax.collections if len(c.get_offsets()) and len(c.get_facecolors()) == 0]
    assert sum(len(c.get_offsets()) for c in hollow) == int((~hits).sum())


def test_grad_cam_arithmetic():
    acts = torch.zeros(1, 2, 2, 2)
    acts[0, 0, 0, 0], acts[0, 1, 1, 1], acts[0, 1, 0, 1] = 1.0, 3.0, -5.0
    assert np.allclose(vis._cam_from(acts, torch.ones_like(acts)), [[1, 0], [0, 3]])  # ReLU drops the negative
    tokens = torch.zeros(1, 5, 2)  # a class token first, then a 2 x 2 grid of patches
    tokens[0, 0] = 100.0
    tokens[0, 4, 1] = 2.0
    assert np.allclose(vis._cam_from(tokens, torch.ones_like(tokens)), [[0, 0], [0, 2]])


def test_saliency_cnn_tower(default_model, ds, pred, tmp_path):
    name, _ = vis.saliency_layer(default_model)
    assert vis.tower_kind(default_model) == "cnn" and name == "trunk.blocks.6"
    was_training = default_model.training
    cam, picture = vis.saliency_map(default_model, ds.root / pred["image"][0], pred["address"][0])
    size = default_model.image_size
    assert cam.shape == (size, size) and picture.shape == (size, size, 3)
    assert cam.min() >= 0 and cam.max() in (0.0, 1.0) and 0 <= picture.min() <= picture.max() <= 1
    assert default_model.training == was_training and all(p.grad is None for p in default_model.parameters())
    fig = vis.plot_saliency(default_model, [ds.root / p for p in pred["image"][:2]], pred["address"][:2].tolist(),
                            save_dir=tmp_path)
    overlays = [a for a in fig.axes if sum(isinstance(x, AxesImage) for x in a.get_children()) == 2]
    assert len(overlays) == 2 and "CNN" in fig._suptitle.get_text() and (tmp_path / "saliency.png").exists()


def test_saliency_with_the_image_trunk_frozen(ds, pred):
    """With every image block frozen, features come from the folded frozen layers under no_grad; a saliency map
    needs the gradient at the last block, so it takes the unfolded tower: the map of a model training it all."""
    from addressclip.model import create_model

    torch.manual_seed(0)
    frozen = create_model(train_image="proj", train_text="proj")
    torch.manual_seed(0)
    trained = create_model(train_image="all", train_text="proj")
    with torch.no_grad():
        frozen.encode_image(torch.zeros(1, 3, frozen.image_size, frozen.image_size))  # the folded copy exists
    image, address = ds.root / pred["image"][0], pred["address"][0]
    cam, _ = vis.saliency_map(frozen, image, address)  # (an untrained head may show no positive evidence: all 0)
    assert cam.shape == (frozen.image_size,) * 2 and np.allclose(cam, vis.saliency_map(trained, image, address)[0], atol=1e-5)


def test_saliency_vit_tower(tmp_path):
    import open_clip

    from addressclip.model import create_model

    config = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    (tmp_path / "tiny-vit-test.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "tiny-vit-test.json")
    torch.manual_seed(0)
    model = create_model("tiny-vit-test")
    assert vis.tower_kind(model) == "vit" and vis.saliency_layer(model)[0] == "transformer.resblocks[-1].ln_1"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8))
    cam, picture = vis.saliency_map(model, image, "Mannerheimintie & Kaivokatu")
    # the gradient reaches the patch tokens (hooking the last block's output would give an all-zero map)
    assert cam.shape == (64, 64) and cam.max() == 1.0 and picture.shape == (64, 64, 3)
    assert "VIT" in vis.plot_saliency(model, [image], ["Mannerheimintie"])._suptitle.get_text()


def test_street_confusion(ds, pred, tmp_path):
    table = vis.street_confusion(pred, ds, "Esplanadi")
    order = [addr(1, c) for c in range(3)]  # the fixture's sub-streets run west to east in CROSS order
    assert list(table.index) in (order, order[::-1]) and list(table.columns)[-1] == "other street"
    for c in range(3):
        assert table.loc[addr(1, c), addr(1, (c + 1) % 3)] == 2
    assert int(table.to_numpy().sum()) == 6 and table["other street"].sum() == 0
    far = vis.street_confusion(pred, ds, "Mannerheimintie")
    assert far["other street"].tolist() == [2, 2, 2]
    fig = vis.plot_street_confusion(pred, ds, "Esplanadi", save_dir=tmp_path)
    assert sorted(t.get_text() for t in fig.axes[0].texts if t.get_text() != "0") == ["2", "2", "2"]
    assert (tmp_path / "confusion_Esplanadi.png").exists()
    with pytest.raises(ValueError, match="no addresses on street"):
        vis.street_confusion(pred, ds, "Nowhere Street")
