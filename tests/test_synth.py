"""Synthetic dataset builder: a tiny Kotka build read back through the common format, and resuming."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from addressclip.datasets import SAMPLE_COLUMNS, build_dataset, read_dataset
from addressclip.datasets import synth
from addressclip.datasets.captions import word_count

TINY = {"max_locations": 30, "progress": False}  # 120 images at 64 px


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "kotka-synth-tiny"
    build_dataset("kotka-synth-tiny", out_dir=out, **TINY)
    return out


def test_table_columns_images_and_card(built):
    ds = read_dataset(built)
    s = ds.samples
    assert list(s.columns[: len(SAMPLE_COLUMNS)]) == list(SAMPLE_COLUMNS)
    assert len(s) == 30 * 4 and s["location_id"].nunique() == 30
    assert (s.groupby("location_id").size() == 4).all()
    for rel in s["image"].iloc[::17]:
        with Image.open(built / rel) as im:
            assert im.format == "JPEG" and im.size == (64, 64)
    assert (s["pitch"] == 0).all() and (s["epsg"] == 32635).all()
    assert s["lat"].between(60.5, 60.56).all() and s["lon"].between(26.9, 27.0).all()
    card = ds.card
    assert card["synthetic"] is True and card["city"] == "Kotka"
    assert "ODbL" in card["licence"] and "OpenStreetMap" in card["licence"]
    assert card["build_parameters"]["image_size"] == 64 and card["build_parameters"]["max_locations"] == 30
    assert card["build_parameters"]["city_scale"] == "tiny" and "profile" not in card["build_parameters"]
    assert card["images"]["train"] + card["images"]["val"] + card["images"]["test"] == len(s)
    assert card["build_time_s"] > 0
    assert "rendered" in (built / "card.md").read_text()


def test_headings_are_street_parallel_and_perpendicular(built):
    s = read_dataset(built).samples
    for _, g in list(s.groupby("location_id"))[:5]:
        diffs = np.sort((g["heading"].to_numpy() - g["heading"].iloc[0]) % 360)
        assert np.allclose(diffs, [0, 90, 180, 270], atol=1e-2)


def test_splits_are_location_disjoint_and_cover_train_addresses(built):
    s = read_dataset(built).samples
    assert (s.groupby("location_id")["split"].nunique() == 1).all()
    assert set(s["split"]) == {"train", "val", "test"}
    train_addr = set(s.loc[s["split"] == "train", "address"])
    assert set(s.loc[s["split"] != "train", "address"]) <= train_addr
    frac = s.drop_duplicates("location_id")["split"].value_counts(normalize=True)
    assert 0.5 < frac["train"] < 0.85


def test_labels_and_segments(built):
    ds = read_dataset(built)
    s = ds.samples
    assert all(a.startswith(st) for a, st in zip(s["address"], s["street"]))
    assert all(a.endswith(n) and n.startswith("Kotka") for a, n in zip(s["address"], s["neighbourhood"]))
    assert s["address"].str.contains(" & ").any()
    assert set(s["address"]) <= set(ds.segments["address"])
    assert s.groupby("address")["location_id"].nunique().max() >= 5


def test_captions(built):
    s = read_dataset(built).samples
    assert s["caption"].str.startswith("A street view of").all()
    assert s["caption"].map(word_count).between(10, 30).all()
    for cap, street in zip(s["caption"], s["street"]):
        assert street not in cap


def test_rerun_resumes_without_rendering_again(built, monkeypatch):
    from addressclip.datasets import render

    calls = []
    real = render.render_view

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "render_view", counting)
    before = pd.read_parquet(built / "samples.parquet")
    synth.build_synth(built, name="kotka-synth-tiny", city="kotka", city_scale="tiny", **TINY)
    assert calls == []
    # lose two images (e.g. a crash): only those two are rendered again, the table is unchanged
    for rel in before["image"].iloc[[3, 50]]:
        (built / rel).unlink()
    synth.build_synth(built, name="kotka-synth-tiny", city="kotka", city_scale="tiny", **TINY)
    assert len(calls) == 2
    after = pd.read_parquet(built / "samples.parquet")
    pd.testing.assert_frame_equal(before.drop(columns="caption"), after.drop(columns="caption"))


def test_interrupted_build_keeps_finished_images_and_has_no_card(tmp_path, monkeypatch):
    from addressclip.datasets import render

    real, calls = render.render_view, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 10:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "render_view", flaky)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        synth.build_synth(out, name="t", city="kotka", city_scale="tiny", max_locations=6, progress=False)
    assert not (out / "card.json").exists()
    assert len(list((out / "images").glob("*.jpg"))) == 10
    monkeypatch.setattr(render, "render_view", real)
    synth.build_synth(out, name="t", city="kotka", city_scale="tiny", max_locations=6, progress=False)
    assert len(read_dataset(out).samples) == 24
    assert len((out / synth.LOG_NAME).read_text().splitlines()) == 24


def test_other_parameters_in_the_same_folder_are_refused(built):
    with pytest.raises(ValueError, match="other parameters"):
        synth.build_synth(built, name="kotka-synth-tiny", city="kotka", city_scale="tiny", max_locations=31, progress=False)


def test_unknown_city_scale():
    with pytest.raises(ValueError, match="unknown city_scale 'huge'; valid: tiny, full"):
        synth.build_synth("/nonexistent", name="x", city="kotka", city_scale="huge")
    with pytest.raises(ValueError, match="unknown city_scale 'demo'; valid: tiny, full"):
        synth.build_synth("/nonexistent", name="x", city="kotka", city_scale="demo")
    # the old keyword is refused, not ignored: ignoring it would render the whole city
    with pytest.raises(ValueError, match="no option 'profile'; the city's size is city_scale \\(valid: tiny, full\\)"):
        synth.build_synth("/nonexistent", name="x", city="kotka", profile="tiny")


def test_folder_recorded_with_the_old_build_setting_name_resumes(built, monkeypatch):
    """build_params.json written before the city scale was renamed ("profile": "tiny") is the same build."""
    from addressclip.datasets import render

    params = built / synth.PARAMS_NAME
    current = json.loads(params.read_text())
    legacy = {k: v for k, v in current.items() if k != "city_scale"} | {"profile": "tiny"}
    params.write_text(json.dumps(legacy, indent=2, sort_keys=True))
    calls = []
    monkeypatch.setattr(render, "render_view", lambda *a, **k: calls.append(1))
    synth.build_synth(built, name="kotka-synth-tiny", city="kotka", city_scale="tiny", **TINY)
    assert calls == []
    assert json.loads(params.read_text()) == current  # recorded under the current name from now on
    assert synth._upgrade_params({"profile": "demo", "seed": 0}) == {"city_scale": "full", "seed": 0}


def test_split_locations_is_stratified():
    singles = [f"s{i}" for i in range(30)]  # addresses with one location must still be in train
    address = pd.Series(["a"] * 20 + ["b"] * 10 + ["c"] * 1 + ["d"] * 5 + singles)
    split = synth.split_locations(address, seed=3)
    for addr, g in split.groupby(address):
        assert (g == "train").any(), addr
    counts = split[address == "a"].value_counts()
    assert (counts["train"], counts["val"], counts["test"]) == (14, 2, 4)
    assert split.equals(synth.split_locations(address, seed=3))
    assert not split.equals(synth.split_locations(address, seed=4))


def test_sample_locations_spacing_and_offset():
    import geopandas as gpd
    from shapely.geometry import LineString

    streets = gpd.GeoDataFrame({"name": ["N St"]}, geometry=[LineString([(0, 0), (0, 100)])], crs="EPSG:32635")
    locs = synth.sample_locations(streets, spacing_m=10, offset_m=2)
    assert len(locs) == 10
    assert np.allclose(locs.geometry.y, np.arange(5, 100, 10))
    assert np.allclose(locs.geometry.x, 2.0)            # right of a street heading north is east
    assert np.allclose(locs["street_heading"], 0.0)
    json.dumps(locs["street_heading"].tolist())


def test_bad_city_fails_before_writing_and_unknown_options_warn(tmp_path):
    with pytest.warns(UserWarning, match="subset"), pytest.raises(FileNotFoundError, match="'atlantis'"):
        synth.build_synth(tmp_path / "x", name="x", city="atlantis", city_scale="tiny", subset="central")
    assert not (tmp_path / "x").exists()
