"""Transfer baselines on frozen features (baselines/adapters.py): on the fixture dataset through the real model,
and on hand-made FeatureBanks whose right answer is known."""
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from shapely.geometry import LineString

from addressclip.baselines import get_baseline
from addressclip.baselines.adapters import (ClipAdapter, cache_logits, run_clip_adapter, run_linear_probe, run_tip_adapter,
                                            run_tip_adapter_f, run_zero_shot)
from addressclip.datasets.format import SPLITS, IALDataset, read_dataset, validate_samples
from addressclip.features import FeatureBank, feature_bank
from addressclip.model import create_model

# small settings so every trained method runs in well under a second on the fixtures
FAST = {
    "linear-probe": {"C_grid": (0.1, 10.0, 1000.0)},
    "clip-adapter": {"epochs": 15, "batch_size": 16, "lr": 1e-2},
    "tip-adapter": {},
    "tip-adapter-f": {"epochs": 5, "batch_size": 16},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny problems: a second thread (torch's or BLAS's) only adds synchronisation, badly so on a shared CPU."""
    import sklearn.linear_model  # noqa: F401  (loads its BLAS, so the limit below reaches it)
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def build_fixture_bank(tiny_dataset, tmp_path_factory):
    """The default model (seeded, so both test modules share the on-disk feature cache) over the fixture dataset."""
    torch.manual_seed(0)
    model = create_model(train_image="proj", train_text="proj")
    cache = tmp_path_factory.getbasetemp() / "baseline-features"
    return model, feature_bank(model, read_dataset(tiny_dataset), cache_dir=cache)


@pytest.fixture(scope="module")
def real(tiny_dataset, tmp_path_factory, one_thread):
    return build_fixture_bank(tiny_dataset, tmp_path_factory)


# --- hand-made banks ----------------------------------------------------------------------------------------------
def address_name(a: int) -> str:
    return f"Addr {a:02d}"


def synthetic_bank(feats: dict, labels: dict, gallery, xy: dict | None = None, with_segments: bool = True) -> FeatureBank:
    """A FeatureBank over a hand-made dataset. Address a is "Addr aa" on street "Street a//2"; its segment is an
    80 m line from (100a, 0); images lie on their segment unless `xy` gives their coordinates. Features are
    L2-normalised here; splits missing from `labels` are empty."""
    gallery = np.asarray(gallery, dtype=np.float32)
    n_addr, dim = gallery.shape
    rows, image, lab, coords = [], {}, {}, {}
    for split in SPLITS:
        y = np.asarray(labels.get(split, []), dtype=int)
        f = np.asarray(feats.get(split, np.zeros((0, dim))), dtype=np.float32).reshape(len(y), dim)
        pts = np.asarray(xy[split], float) if xy and split in xy else \
            np.stack([100.0 * y + 10 + 6 * (np.arange(len(y)) % 10), np.full(len(y), 1.0)], axis=1).reshape(len(y), 2)
        for i, (a, (e, n)) in enumerate(zip(y, pts)):
            rows.append({"image": f"{split}/{i}.jpg", "split": split, "location_id": f"{split}-{i}", "heading": np.nan,
                         "pitch": np.nan, "easting": e, "northing": n, "epsg": 32635, "lat": np.nan, "lon": np.nan,
                         "street": f"Street {a // 2}", "address": address_name(a), "caption": "", "neighbourhood": ""})
        image[split] = F.normalize(torch.as_tensor(f), dim=-1)
        lab[split] = torch.as_tensor(y, dtype=torch.long)
        coords[split] = torch.as_tensor(pts, dtype=torch.float64)
    segments = None
    if with_segments:
        segments = gpd.GeoDataFrame(
            {"address": [address_name(a) for a in range(n_addr)], "street": [f"Street {a // 2}" for a in range(n_addr)],
             "geometry": [LineString([(100.0 * a, 0.0), (100.0 * a + 80, 0.0)]) for a in range(n_addr)]},
            geometry="geometry", crs="EPSG:32635")
    ds = IALDataset(Path("synthetic"), validate_samples(pd.DataFrame(rows)), {"name": "synthetic"}, segments)
    assert ds.addresses == [address_name(a) for a in range(n_addr)], "every address must have an image"
    return FeatureBank(ds, image, F.normalize(torch.as_tensor(gallery), dim=-1), lab, coords, key="synthetic")


def cluster_bank(seed=0, n_addr=6, dim=32, per_address=(12, 4, 4), noise=1.0, unseen=(), with_segments=True):
    """Train-like data: each address's images scatter around its own centre in every split, while the address
    texts (gallery) are unrelated random directions, so zero-shot is at chance and anything trained on the
    train images should find the clusters. Addresses in `unseen` have no train images."""
    rng = np.random.default_rng(seed)
    centres, gallery = rng.normal(size=(n_addr, dim)), rng.normal(size=(n_addr, dim))
    feats, labels = {}, {}
    for split, n in zip(SPLITS, per_address):
        y = np.repeat(np.arange(n_addr), n)
        if split == "train":
            y = y[~np.isin(y, unseen)]
        feats[split], labels[split] = centres[y] + noise * rng.normal(size=(len(y), dim)), y
    return synthetic_bank(feats, labels, gallery, with_segments=with_segments)


def conflict_bank(val_favours: str) -> FeatureBank:
    """4 addresses, gallery = e0..e3, two cache keys per address a at e(4+a). One eval split is built so that the
    text gallery is right and the cache wrong (0.6 e_a + 0.8 e_(4+a+1)); the other the reverse
    (0.6 e_(a+1) + 0.8 e_(4+a)). With scale 100, beta 1: alpha 0 gets the first kind right, alpha 100 the second."""
    eye = np.eye(8)
    a = np.arange(4)
    nxt = (a + 1) % 4
    text_right = 0.6 * eye[a] + 0.8 * eye[4 + nxt]
    cache_right = 0.6 * eye[nxt] + 0.8 * eye[4 + a]
    val, test = (text_right, cache_right) if val_favours == "text" else (cache_right, text_right)
    train = np.repeat(eye[4:], 2, axis=0)
    return synthetic_bank({"train": train, "val": val, "test": test},
                          {"train": np.repeat(a, 2), "val": a, "test": a}, eye[:4])


def permute_test_labels(bank: FeatureBank) -> FeatureBank:
    """The same bank with every test image's address (and street) moved to the next address."""
    ds, names = bank.ds, bank.ds.addresses
    shift = {n: names[(i + 1) % len(names)] for i, n in enumerate(names)}
    samples = ds.samples.copy()
    test = samples["split"] == "test"
    samples.loc[test, "address"] = samples.loc[test, "address"].map(shift)
    samples.loc[test, "street"] = samples.loc[test, "address"].map(ds.address_to_street)
    ds2 = IALDataset(ds.root, samples, ds.card, ds.segments)
    labels = {**bank.labels, "test": (bank.labels["test"] + 1) % len(names)}
    return FeatureBank(ds2, bank.image, bank.gallery, labels, bank.coords, bank.key + "-permuted")


def topk(res) -> list:
    return res.result.predictions["topk"].tolist()


# --- the real model on the fixture dataset ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["zero-shot", *FAST])
def test_runs_on_fixture_bank_with_costs(real, name):
    model, bank = real
    res = get_baseline(name)(bank, model, seed=0, k=5, **FAST.get(name, {}))
    n_test = len(bank.ds.split("test"))
    assert res.name == name
    assert {"SSA-1", "SSA-5", "SA-1", "SA-5"} <= set(res.result.quality)
    assert len(res.result.predictions) == n_test
    assert all(len(set(row)) == 5 for row in topk(res))
    assert res.storage_bytes >= bank.gallery.numel() * 4 and res.query_ms > 0
    if name != "zero-shot":
        assert "val_SSA-1" in res.chosen and "no val split" not in res.notes


def test_storage_counts_what_is_kept(real):
    model, bank = real
    gallery = bank.gallery.numel() * 4
    assert run_zero_shot(bank, model).storage_bytes == gallery
    n_train, dim, n_addr = len(bank.labels["train"]), bank.dim, len(bank.ds.addresses)
    assert run_tip_adapter(bank, model).storage_bytes == gallery + n_train * dim * 4 + n_train * 8
    assert run_linear_probe(bank, model, C_grid=(1.0,)).storage_bytes == gallery + n_addr * (dim + 1) * 4
    adapter_params = 2 * dim * (dim // 4) * 4
    assert run_clip_adapter(bank, model, epochs=1).storage_bytes == gallery + adapter_params


def test_tip_adapter_with_alpha_zero_is_zero_shot(real):
    model, bank = real
    zero = run_zero_shot(bank, model)
    assert topk(run_tip_adapter(bank, model, alpha_grid=(0.0,), beta_grid=(1.0,))) == topk(zero)
    # nor can fine-tuning change anything when the cache has no weight: no gradient reaches the keys
    assert topk(run_tip_adapter_f(bank, model, alpha_grid=(0.0,), beta_grid=(1.0,), epochs=2)) == topk(zero)


@pytest.mark.parametrize("name", list(FAST))
def test_choices_never_see_test_labels(real, name):
    """Moving every test label changes the scores but neither the chosen hyperparameters nor the rankings."""
    model, bank = real
    run = get_baseline(name)
    a = run(bank, model, seed=0, **FAST[name])
    b = run(permute_test_labels(bank), model, seed=0, **FAST[name])
    assert a.chosen == b.chosen
    assert topk(a) == topk(b)
    assert (a.result.predictions["address"] != b.result.predictions["address"]).all()  # the labels really differ


@pytest.mark.parametrize("name", ["clip-adapter", "tip-adapter-f"])
def test_trained_adapters_are_deterministic(real, name):
    model, bank = real
    run = get_baseline(name)
    a, b = run(bank, model, seed=3, **FAST[name]), run(bank, model, seed=3, **FAST[name])
    assert a.chosen == b.chosen
    assert a.result.predictions["scores"].tolist() == b.result.predictions["scores"].tolist()


# --- hand-made banks ----------------------------------------------------------------------------------------------
def test_tip_adapter_alpha_follows_val_not_test():
    # val rewards the text gallery, test the cache: alpha=0 must win, and test pays for it
    res = run_tip_adapter(conflict_bank("text"), alpha_grid=(0.0, 100.0), beta_grid=(1.0,))
    assert res.chosen["alpha"] == 0.0 and res.chosen["val_SSA-1"] == 100
    assert res.result.quality["SSA-1"] == 0
    # and the other way round: the choice flips with val, so the test above can fail
    res = run_tip_adapter(conflict_bank("cache"), alpha_grid=(0.0, 100.0), beta_grid=(1.0,))
    assert res.chosen["alpha"] == 100.0 and res.chosen["val_SSA-1"] == 100
    assert res.result.quality["SSA-1"] == 0


# CLIP-Adapter keeps (1 - ratio) of the frozen feature and its MLP ends in a ReLU, so against a gallery of random
# directions it cannot reach every address as cleanly as a free classifier; it must still clear chance by far.
FLOOR = {"linear-probe": 90, "tip-adapter": 90, "tip-adapter-f": 90, "clip-adapter": 75}


@pytest.mark.parametrize("name", list(FAST))
def test_trained_methods_beat_zero_shot_on_train_like_data(name):
    bank = cluster_bank()
    zero = run_zero_shot(bank).result.quality["SSA-1"]
    ssa1 = get_baseline(name)(bank, **FAST[name]).result.quality["SSA-1"]
    assert zero <= 50
    assert ssa1 >= FLOOR[name] and ssa1 >= zero + 40


def test_linear_probe_ranks_addresses_unseen_in_train_last():
    bank = cluster_bank(unseen=(2, 4))
    res = run_linear_probe(bank, k=6, C_grid=(10.0,))
    unseen = {address_name(2), address_name(4)}
    for row in topk(res):
        assert set(row[-2:]) == unseen  # after all four seen ones
    assert res.result.quality["SSA-1"] == pytest.approx(100 * 4 / 6, abs=0.01)  # unseen test images are missed


def test_linear_probe_with_two_addresses():
    res = run_linear_probe(cluster_bank(n_addr=2), k=2, C_grid=(10.0,))
    assert res.result.quality["SSA-1"] >= 90


def test_no_val_split_uses_first_grid_point():
    bank = cluster_bank(per_address=(12, 0, 4))
    res = run_tip_adapter(bank, alpha_grid=(0.3, 3.0), beta_grid=(2.0, 5.0))
    assert (res.chosen["alpha"], res.chosen["beta"]) == (0.3, 2.0) and "no val split" in res.notes
    assert "no val split" in run_clip_adapter(bank, epochs=2).notes


def test_clip_adapter_residual_mix():
    f = F.normalize(torch.randn(5, 16), dim=-1)
    assert torch.allclose(ClipAdapter(16, ratio=0.0)(f), f, atol=1e-6)  # ratio 0 keeps the frozen feature
    assert not torch.allclose(ClipAdapter(16, ratio=0.6)(f), f, atol=1e-3)


def test_cache_logits_sum_per_address_and_mask_own_entry():
    keys = F.normalize(torch.randn(5, 8), dim=-1)
    values = torch.tensor([0, 1, 1, 2, 0])
    f = keys[[1, 3]]
    dense = torch.exp(-2.0 * (1 - f @ keys.T)) @ F.one_hot(values, 4).float()
    assert torch.allclose(cache_logits(f, keys, values, 4, beta=2.0), dense, atol=1e-6)
    # Tip-Adapter-F's training masks each query's own key: it must count exactly once less
    masked = cache_logits(f, keys, values, 4, beta=2.0, drop=torch.tensor([1, -1]))
    assert torch.allclose(masked[0], dense[0] - F.one_hot(torch.tensor(1), 4).float(), atol=1e-6)
    assert torch.allclose(masked[1], dense[1], atol=1e-6)
