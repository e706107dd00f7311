"""A city we never shipped, through the notebooks as a user runs them: 01 (the city from its OSM extract, and a folder
of geotagged photos addressed from it) -> 02 (smoke) -> 03 -> `addressclip predict --osm` on the photos.

The city is Hatfield (UK), a real OpenStreetMap extract that ships inside PyPI pyogrio; the photos are real
photographs with GPS written into their EXIF (tests/own_city_fixtures.py). Sizes are scaled down (40 locations of
64 px rendered views, 2 epochs, no alignment stage) so the whole path takes about 1.5 minutes on 2 CPU cores."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from addressclip.cli import main
from addressclip.datasets import load_dataset
from own_city_fixtures import EXPECTED_SKIPS, hatfield_extract, make_photo_folder
from notebook_runs import project_folders, run_notebook


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-city")
    with project_folders(root):
        extract = hatfield_extract(root / "osm")
        photos = root / "photos"
        expected = make_photo_folder(photos, extract)
        executed = root / "executed"
        executed.mkdir()
        city = root / "data" / "hatfield"
        times = {
            "01 city": run_notebook("01_build_dataset", executed, "-city", dataset="hatfield", osm=str(extract),
                                    city_scale="tiny", max_locations=40),
            "01 photos": run_notebook("01_build_dataset", executed, "-photos", dataset="hatfield-photos", osm=str(extract),
                                      photos=str(photos), coordinates=str(expected["csv"])),
            "02 smoke": run_notebook("02_train", executed, profile="smoke", dataset=str(city), align_dataset="", epochs=2,
                                     batch_size=16, run_name="hatfield", expect_learning=False),
            "03": run_notebook("03_evaluate", executed, run="hatfield", dataset=str(city)),
            # the photos train as they are (no captions: caption weight 0), and evaluate
            "02 photos": run_notebook("02_train", executed, "-photos", profile="smoke", dataset=str(root / "data" / "hatfield-photos"),
                                      align_dataset="", epochs=1, batch_size=8, w_caption=0.0, run_name="hatfield-photos",
                                      expect_learning=False),
            "03 photos": run_notebook("03_evaluate", executed, "-photos", run="hatfield-photos",
                                      dataset=str(root / "data" / "hatfield-photos")),
        }
        start = time.perf_counter()
        assert main(["predict", "--checkpoint", "hatfield", "--osm", str(extract), "-k", "3", "--quiet", str(photos),
                     "-o", str(root / "predictions.csv")]) == 0
        times["predict"] = time.perf_counter() - start
        print("own-city wall times (s):", {k: round(v, 1) for k, v in times.items()})
        yield root, extract, expected, times


def test_city_built_from_its_extract(journey):
    root, extract, _, _ = journey
    ds = load_dataset(root / "data" / "hatfield")
    assert ds.card["city"] == "Hatfield" and ds.card["epsg"] == 32630 and ds.card["osm_file"] == "hatfield.osm.pbf"
    assert sum(ds.card["locations"].values()) == 40 and sum(ds.card["images"].values()) == 160
    assert ds.samples["address"].str.endswith(", Hatfield").all() and ds.samples["street"].nunique() >= 3


def test_photos_built_with_their_skip_table(journey):
    root, _, _, _ = journey
    card = json.loads((root / "data" / "hatfield-photos" / "card.json").read_text())
    assert {reason: v["count"] for reason, v in card["skipped"].items()} == EXPECTED_SKIPS
    assert sum(card["images"].values()) == 27 and card["addresses"] == 5 and card["captions"] == "none"
    shown = json.loads((root / "executed" / "01_build_dataset-photos.ipynb").read_text())
    text = json.dumps([c.get("outputs", []) for c in shown["cells"]])
    assert "outside_extract" in text and "coordinates_without_photo" in text  # the notebook shows the skip table


def test_trained_and_evaluated_on_the_city(journey):
    root, _, _, _ = journey
    run = root / "outputs" / "runs" / "hatfield"
    params = json.loads((run / "params.json").read_text())["config"]
    assert params["dataset"] == str(root / "data" / "hatfield") and params["init_checkpoint"] is None
    metrics = json.loads((run / "metrics.json").read_text())
    ds = load_dataset(root / "data" / "hatfield")
    assert metrics["images"] == len(ds.split("test")) and metrics["candidates"] == len(ds.addresses)
    evaluation = json.loads((run / "eval-hatfield-test.json").read_text())
    assert evaluation["SSA-1"] == metrics["SSA-1"] and 0 <= evaluation["SSA-5"] <= 100
    photos = json.loads((root / "outputs" / "runs" / "hatfield-photos" / "eval-hatfield-photos-test.json").read_text())
    assert photos["images"] == 6 and photos["candidates"] == 5  # the photos' own test split and addresses


def test_predicted_from_the_map_with_points(journey):
    root, _, expected, times = journey
    table = pd.read_csv(root / "predictions.csv")
    good = table[table["error"].isna()]
    assert len(good) == 3 * 33 and good[["lat", "lon"]].notna().all().all()
    assert good["lat"].between(51.76, 51.77).all() and good["lon"].between(-0.242, -0.226).all()
    walk = good[good["image"].str.contains(r"/walk/\d\d_\d\.jpg$", regex=True)]
    assert len(walk) == 3 * 24 and walk["distance_m"].notna().all() and (walk["distance_m"] < 1500).all()
    assert good.loc[good["image"].str.contains("/scans/"), "distance_m"].isna().all()  # no EXIF GPS
    assert sum(times.values()) < 300, times  # ~1.5 minutes here; far more means something regressed
