import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import LineString

from addressclip.metrics import distance_metrics, distance_to_prediction, per_address_table, ranking_metrics

# candidates: 0 "Main & A", 1 "Main & B", 2 "Side & A", 3 "Other & C"
STREETS = np.array(["Main", "Main", "Side", "Other"], dtype=object)


def test_ssa_and_sa_on_hand_made_cases():
    truth = np.array([0, 1, 2, 3])
    topk = np.array([
        [0, 2, 3],   # exact hit at 1
        [0, 2, 1],   # wrong segment of the right street at 1; exact at 3
        [3, 0, 1],   # far miss at 1; SSA misses entirely, SA misses too (no Side street)
        [2, 3, 0],   # hit at 2
    ])
    m = ranking_metrics(topk, truth, STREETS, ks=(1, 3))
    assert m["SSA-1"] == pytest.approx(25.0)
    assert m["SA-1"] == pytest.approx(50.0)       # rows 0 and 1
    assert m["SSA-3"] == pytest.approx(75.0)      # rows 0, 1, 3
    assert m["SA-3"] == pytest.approx(75.0)       # rows 0, 1, 3; never 100 when a street is missed
    with pytest.raises(ValueError, match="k=5"):
        ranking_metrics(topk, truth, STREETS, ks=(5,))


def test_street_accuracy_does_not_use_text_prefixes():
    # "Main St" and "Main Street Extension" share a prefix but are different streets
    streets = np.array(["Main St", "Main Street Extension"], dtype=object)
    m = ranking_metrics(np.array([[1]]), np.array([0]), streets, ks=(1,))
    assert m["SA-1"] == 0.0


def test_distances_to_predicted_segment():
    seg = gpd.GeoDataFrame(
        {"address": ["A", "B"], "street": ["x", "y"]},
        geometry=[LineString([(0, 0), (100, 0)]), LineString([(0, 100), (100, 100)])], crs="EPSG:32635",
    )
    d = distance_to_prediction([50, 50, 50], [10, 10, 0], ["A", "B", "missing"], seg.set_index("address").geometry)
    assert d[0] == pytest.approx(10) and d[1] == pytest.approx(90) and np.isnan(d[2])
    m = distance_metrics(d)
    assert m["median_m"] == pytest.approx(50)
    assert m["within_25m"] == pytest.approx(50) and m["within_100m"] == pytest.approx(100)


def test_per_address_table():
    t = per_address_table(["A", "A", "B"], [True, False, True], [True, True, True]).set_index("address")
    assert t.loc["A", "images"] == 2 and t.loc["A", "ssa1"] == 50 and t.loc["A", "ssak"] == 100
    assert t.loc["B", "ssa1"] == 100


def test_without_segments_an_address_is_placed_by_its_train_and_val_images(tiny_dataset, tmp_path):
    """Real datasets come without street geometry. A test image's own place must not locate its address: a correct
    prediction would then measure 0 m by construction. An address seen only in test keeps its test places."""
    from addressclip.datasets.format import read_dataset, write_dataset

    samples = read_dataset(tiny_dataset).samples.copy()
    only_test = samples["address"].iloc[0]
    samples = samples[(samples["address"] != only_test) | (samples["split"] == "test")]
    ds = read_dataset(write_dataset(tmp_path / "no-segments", samples, {"name": "no-segments"}))
    assert ds.segments is None and "train and val" in ds.distance_basis
    shapes = ds.address_shapes
    test = ds.split("test")
    dist = distance_to_prediction(test["easting"], test["northing"], test["address"], shapes)
    others = test["address"] != only_test
    assert (dist[others.to_numpy()] > 0).all()  # tiny's test places lie 20-40 m from the address's others
    assert (dist[~others.to_numpy()] == 0).all()
    for address, shape in shapes.items():
        database = samples[(samples["address"] == address) & (samples["split"] != "test")]
        places = {(round(x, 6), round(y, 6)) for x, y in zip(database["easting"], database["northing"])}
        if address != only_test:
            assert {(round(p.x, 6), round(p.y, 6)) for p in getattr(shape, "geoms", [shape])} == places
