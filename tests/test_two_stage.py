"""Two-stage Image -> GPS -> Address baselines (baselines/two_stage.py): reverse geocoding, retrieval, GeoCLIP."""
import numpy as np
import pandas as pd
import pytest
import shapely
import torch

import torch.nn.functional as F

from addressclip.baselines.two_stage import (CityFrame, Geocoder, LocationEncoder, distinct_ranking, reverse_geocode,
                                             run_geoclip, run_retrieval)
from addressclip.datasets.format import SPLITS, IALDataset, read_dataset
from addressclip.features import FeatureBank

# the hand-made banks and the seeded fixture bank are shared with the adapter tests
from test_adapters import address_name, build_fixture_bank, cluster_bank, one_thread, permute_test_labels, synthetic_bank  # noqa: F401

GEOCLIP_FAST = {"epochs": 30, "batch_size": 16, "hidden": 64, "frequencies": 32}


@pytest.fixture(scope="module")
def real(tiny_dataset, tmp_path_factory, one_thread):  # noqa: F811
    return build_fixture_bank(tiny_dataset, tmp_path_factory)


def without_segments(ds: IALDataset) -> IALDataset:
    return IALDataset(ds.root, ds.samples, ds.card, None)


def topk(res) -> list:
    return res.result.predictions["topk"].tolist()


# --- reverse geocoding --------------------------------------------------------------------------------------------
def test_reverse_geocode_points_on_and_near_segments(tiny_dataset):
    ds = read_dataset(tiny_dataset)
    mids = np.array([[g.interpolate(0.5, normalized=True).x, g.interpolate(0.5, normalized=True).y] for g in ds.segments.geometry])
    assert reverse_geocode(mids, ds) == ds.segments["address"].tolist()
    assert reverse_geocode(mids + [0.0, 3.0], ds) == ds.segments["address"].tolist()  # a few metres off the line
    # the fixture's own image locations lie 2 m from their segment: every label comes back
    test = ds.split("test")
    assert reverse_geocode(test[["easting", "northing"]].to_numpy(), ds) == test["address"].tolist()
    # the far end of a segment is nearer the next segment's training images than its own: the map decides
    end = np.array(ds.segments.geometry.iloc[0].coords[-1]) - [5.0, 0.0]
    assert reverse_geocode(end[None], ds) == [ds.segments["address"].iloc[0]]
    assert reverse_geocode(end[None], without_segments(ds)) == [ds.segments["address"].iloc[1]]


def test_reverse_geocode_falls_back_to_nearest_training_image(tiny_dataset):
    ds = without_segments(read_dataset(tiny_dataset))
    train = ds.split("train")
    xy = train[["easting", "northing"]].to_numpy()
    assert reverse_geocode(xy + 1.0, ds) == train["address"].tolist()
    # between two training images of different addresses the nearer one wins
    a, b = 0, int(np.flatnonzero(train["address"] != train["address"][0])[0])
    mid = xy[a] + 0.3 * (xy[b] - xy[a])
    assert reverse_geocode(mid[None], ds) == [train["address"][a]]
    assert Geocoder(ds).source.startswith("nearest training image")


def test_geocoder_keeps_only_candidate_addresses():
    bank = cluster_bank(n_addr=3)
    extra = bank.ds.segments.iloc[:1].assign(address="Not a candidate", geometry=[shapely.LineString([(0, 5), (80, 5)])])
    ds = IALDataset(bank.ds.root, bank.ds.samples, bank.ds.card, pd.concat([bank.ds.segments, extra]))
    assert reverse_geocode([[40.0, 5.0]], ds) == [address_name(0)]


def test_distinct_ranking_pads_with_gallery_order():
    gallery = torch.eye(4)
    feats = torch.tensor([[0.1, 0.2, 0.9, 0.3]])
    top, scores = distinct_ranking(np.array([[1, 1, 3, 1]]), np.array([[0.9, 0.8, 0.7, 0.6]]), feats, gallery, k=4)
    assert top.tolist() == [[1, 3, 2, 0]]  # located ones in order, then the rest by cosine
    assert np.all(np.diff(scores[0]) < 0) and scores[0, 1] == pytest.approx(0.7)


# --- retrieval ----------------------------------------------------------------------------------------------------
def test_retrieval_returns_the_geocoded_address_of_the_matching_train_image():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(8, 16))
    labels = np.arange(8) % 4
    # train image 5 is labelled address 1 but stands on address 3's segment: the pipeline answers with where
    # the retrieved image stands (reverse geocoding), not with its label
    xy = np.stack([100.0 * labels + 40, np.ones(8)], axis=1)
    xy[5] = [360.0, 1.0]
    queries = train[[0, 2, 5, 7]]
    bank = synthetic_bank({"train": train, "val": queries, "test": queries},
                          {"train": labels, "val": labels[[0, 2, 5, 7]], "test": labels[[0, 2, 5, 7]]},
                          rng.normal(size=(4, 16)), xy={"train": xy})
    res = run_retrieval(bank, k=3)
    assert res.result.predictions["pred"].tolist() == [address_name(a) for a in (0, 2, 3, 3)]
    assert all(len(set(row)) == 3 for row in topk(res))
    assert res.storage_bytes >= 8 * 16 * 4 + 8 * 2 * 8 and res.query_ms > 0
    assert "87.5% of the train labels" in res.notes  # 7 of 8 train images geocode to their label


def test_retrieval_on_fixture_bank(real):
    model, bank = real
    res = run_retrieval(bank, model, k=5)
    n_train, dim = len(bank.labels["train"]), bank.dim
    assert res.chosen == {"neighbours": n_train, "database": "train"}  # 10 * k > 36 train images: all of them
    assert n_train * dim * 4 + n_train * 16 <= res.storage_bytes <= n_train * dim * 4 + n_train * 16 + 4096
    assert res.query_ms > 0 and {"SSA-1", "SSA-5"} <= set(res.result.quality)
    assert all(len(set(row)) == 5 for row in topk(res))
    assert topk(run_retrieval(bank, model, k=5)) == topk(res)


def test_retrieval_beats_zero_shot_on_train_like_data():
    res = run_retrieval(cluster_bank())
    assert res.result.quality["SSA-1"] >= 90


def test_retrieval_without_segments():
    res = run_retrieval(cluster_bank(with_segments=False))
    assert res.result.quality["SSA-1"] >= 90 and "nearest training image" in res.notes


# --- GeoCLIP ------------------------------------------------------------------------------------------------------
def test_city_frame_and_location_encoder():
    xy = np.array([[385000.0, 6672000.0], [385400.0, 6672100.0]])
    frame = CityFrame(xy)
    assert frame(xy).tolist() == [[-1.0, -0.25], [1.0, 0.25]]  # aspect kept, metres survive float32
    enc = LocationEncoder(8, sigmas=(1.0, 16.0), frequencies=4, hidden=8, generator=torch.Generator().manual_seed(0))
    out = enc(frame(xy))
    assert out.shape == (2, 8) and torch.allclose(out.norm(dim=1), torch.ones(2))
    assert enc.B.shape == (2, 4, 2) and enc.B[1].std() > 4 * enc.B[0].std()  # the scales differ


def test_geoclip_learns_locations_on_train_like_data():
    bank = cluster_bank()
    res = run_geoclip(bank, **GEOCLIP_FAST)
    assert res.result.quality["SSA-1"] >= 80
    n_places = len(np.unique(bank.coords["train"].numpy(), axis=0))
    assert res.chosen["gallery"] == n_places and 1 <= res.chosen["epoch"] <= GEOCLIP_FAST["epochs"]
    # gallery coordinates (float64) + their features (float32) + the image head
    head = 2 * (bank.dim * bank.dim + bank.dim) + 1
    assert res.storage_bytes == n_places * 2 * 8 + n_places * bank.dim * 4 + head * 4


def test_geoclip_on_fixture_bank_is_deterministic_and_blind_to_test_labels(real):
    model, bank = real
    a = run_geoclip(bank, model, seed=1, grid_step_m=50.0, **GEOCLIP_FAST)
    b = run_geoclip(permute_test_labels(bank), model, seed=1, grid_step_m=50.0, **GEOCLIP_FAST)
    assert a.chosen == b.chosen and topk(a) == topk(b)
    assert a.result.predictions["scores"].tolist() == b.result.predictions["scores"].tolist()
    assert a.chosen["gallery"] > len(np.unique(bank.coords["train"].numpy(), axis=0))  # the grid was added
    assert all(len(set(row)) == 5 for row in topk(a)) and a.query_ms > 0


# --- the retrieval database (Pitts-IAL: train + val) -------------------------------------------------------------
PENN = "Penn Avenue, Strip District"


@pytest.fixture(scope="module")
def pitts_bank(tmp_path_factory):
    """A Pitts-IAL dataset built from the real-format fixture (train: panoramas 000000/000001 on Forbes Avenue;
    val = pitts_database.json: 000002 on Penn Avenue; test: 001000, relabelled Penn Avenue), no segments, with
    hand-made features: each train panorama near its own axis, val near e2, test near e2 too, so every test
    image's nearest neighbour is a val image."""
    from test_real_builders import _readdress_pitts, build_pitts, make_pitts

    tmp = tmp_path_factory.mktemp("pitts-two-stage")
    raw = make_pitts(tmp / "raw")
    _readdress_pitts(raw, {"001000": PENN})
    ds = read_dataset(build_pitts(raw, tmp / "out", strict=True))
    assert ds.card["retrieval_database"] == ["train", "val"] and ds.segments is None
    rng = np.random.default_rng(0)
    axis = {"000000": 0, "000001": 1, "000002": 2, "001000": 2}
    image, labels, coords = {}, {}, {}
    for split in SPLITS:
        frame = ds.split(split)
        f = np.eye(8)[[axis[p] for p in frame["location_id"]]] + 0.05 * rng.normal(size=(len(frame), 8))
        if split == "test":
            f += 0.3 * np.eye(8)[0]  # a little towards Forbes & Craig: train-only retrieval has a clear answer
        image[split] = F.normalize(torch.as_tensor(f, dtype=torch.float32), dim=-1)
        labels[split] = torch.as_tensor([ds.address_id(a) for a in frame["address"]], dtype=torch.long)
        coords[split] = torch.as_tensor(frame[["easting", "northing"]].to_numpy(), dtype=torch.float64)
    gallery = F.normalize(torch.as_tensor(rng.normal(size=(len(ds.addresses), 8)), dtype=torch.float32), dim=-1)
    return FeatureBank(ds, image, gallery, labels, coords, key="pitts-two-stage")


def test_retrieval_database_defaults_to_the_cards_and_changes_the_answer(pitts_bank):
    bank = pitts_bank
    test_addresses = bank.ds.split("test")["address"].tolist()
    assert set(test_addresses) == {PENN}
    # by hand: each test image's nearest database image, and its panorama's address
    train, val = bank.ds.split("train"), bank.ds.split("val")
    both = pd.concat([train, val], ignore_index=True)
    nn_full = (bank.image["test"] @ torch.cat([bank.image["train"], bank.image["val"]]).T).argmax(1).numpy()
    nn_train = (bank.image["test"] @ bank.image["train"].T).argmax(1).numpy()
    assert set(both["split"][nn_full]) == {"val"}                # the nearest neighbour is a val image ...
    expected_train = train["address"][nn_train].tolist()
    assert PENN not in expected_train                             # ... which train alone cannot offer

    full = run_retrieval(bank, k=2)                               # default: the card's ["train", "val"]
    assert full.chosen == {"neighbours": 9, "database": "train+val"} and "database: train+val (9 images)" in full.notes
    assert full.result.predictions["pred"].tolist() == both["address"][nn_full].tolist() == [PENN] * 3
    assert full.result.quality["SSA-1"] == 100.0
    # the segment-less geocoder reads the database's labels: with train labels only, Penn's location would come
    # back as a Forbes Avenue address
    assert "nearest labelled train+val image" in full.notes
    assert reverse_geocode(val[["easting", "northing"]].to_numpy(), bank.ds) != [PENN] * 3

    trained = run_retrieval(bank, k=2, database_splits=["train"])
    assert trained.chosen["database"] == "train" and "database: train (6 images)" in trained.notes
    assert trained.result.predictions["pred"].tolist() == expected_train
    assert trained.result.quality["SSA-1"] == 0.0
    with pytest.raises(ValueError, match="test holds the queries"):
        run_retrieval(bank, database_splits=["train", "test"])


def test_geoclip_database_selects_on_train_and_ranks_on_the_full_database(pitts_bank):
    bank = pitts_bank
    fast = {**GEOCLIP_FAST, "epochs": 3}
    full = run_geoclip(bank, k=2, **fast)
    trained = run_geoclip(bank, k=2, database_splits=["train"], **fast)
    n_train_places, n_val_places = (len(np.unique(bank.coords[s].numpy(), axis=0)) for s in ("train", "val"))
    assert full.chosen["database"] == "train+val" and full.chosen["selection_database"] == "train"
    assert full.chosen["gallery"] == n_train_places + n_val_places and trained.chosen["gallery"] == n_train_places
    assert "selection_database" not in trained.chosen
    # the epoch was chosen against the train-only database in both runs: identical choice and val scores
    assert {c: full.chosen[c] for c in ("epoch", "val_SSA-1", "val_SSA-k")} == \
        {c: trained.chosen[c] for c in ("epoch", "val_SSA-1", "val_SSA-k")}
    assert full.chosen["val_SSA-1"] == 0.0  # val's own locations were not in the gallery it was scored on
    assert "epoch chosen on val against the train database" in full.notes
    # only the full database's gallery holds Penn Avenue's location, so only it can answer it
    assert trained.result.quality["SSA-1"] == 0.0
    assert set(full.result.predictions["pred"]) <= set(bank.ds.addresses)
