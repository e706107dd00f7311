"""Semantic address partition on hand-made street networks (metric CRS, metres)."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import LineString, Point

from addressclip.datasets.partition import assign_addresses

CRS = "EPSG:32635"


def streets(*rows: tuple[str, list[tuple[float, float]]]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"name": [r[0] for r in rows]}, geometry=[LineString(r[1]) for r in rows], crs=CRS)


def points(xy) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"pid": range(len(xy))}, geometry=[Point(x, y) for x, y in xy], crs=CRS)


def along_main(step: float = 10.0, length: float = 400.0, y: float = 2.0) -> gpd.GeoDataFrame:
    """Camera points every `step` m, 2 m beside Main St (y=0), avoiding the junction columns exactly."""
    return points([(x, y) for x in np.arange(step / 2, length, step)])


def main_with_three_crossings() -> gpd.GeoDataFrame:
    # Main St runs 0..400 along y=0 in two OSM pieces; A, B, C cross at x=100, 200, 300.
    return streets(
        ("Main St", [(0, 0), (150, 0)]), ("Main St", [(150, 0), (400, 0)]),
        ("A St", [(100, -80), (100, 80)]), ("B St", [(200, -80), (200, 80)]), ("C St", [(300, 0), (300, 80)]),
    )


def labels_by_x(res: gpd.GeoDataFrame) -> list[tuple[float, str]]:
    return [(p.x, a) for p, a in zip(res.geometry, res["address"])]


def test_three_crossings_give_bounded_segment_labels():
    res, seg = assign_addresses(along_main(), main_with_three_crossings(), neighbourhood="Kallio")
    expected = {
        5: "Main St & A St, Kallio", 95: "Main St & A St, Kallio",
        105: "Main St & A St & B St, Kallio", 195: "Main St & A St & B St, Kallio",
        205: "Main St & B St & C St, Kallio", 295: "Main St & B St & C St, Kallio",
        305: "Main St & C St, Kallio", 395: "Main St & C St, Kallio",
    }
    got = dict(labels_by_x(res))
    for x, label in expected.items():
        assert got[x] == label, x
    assert set(res["street"]) == {"Main St"}
    assert set(res["neighbourhood"]) == {"Kallio"}
    assert sorted(seg["address"]) == sorted(set(expected.values()))
    assert set(seg.columns) >= {"address", "street", "geometry"}
    assert seg.crs == res.crs
    # each segment's geometry is the piece of Main St between its bounding junctions
    ab = seg.set_index("address").loc["Main St & A St & B St, Kallio", "geometry"]
    assert ab.length == pytest.approx(100.0)
    assert seg["n_points"].sum() == len(res)


def test_input_order_does_not_change_labels():
    net = main_with_three_crossings()
    a, _ = assign_addresses(along_main(), net)
    b, _ = assign_addresses(along_main(), net.iloc[::-1].reset_index(drop=True))
    assert list(a["address"]) == list(b["address"])
    assert "," not in a["address"].iloc[0]  # no neighbourhood given: bare labels


def test_close_junctions_are_merged():
    # D St crosses 12 m after B St: closer than the 30 m merge distance, so it is dropped.
    net = main_with_three_crossings()
    net = gpd.GeoDataFrame(
        {"name": [*net["name"], "D St"]}, geometry=[*net.geometry, LineString([(212, -50), (212, 50)])], crs=CRS
    )
    res, seg = assign_addresses(along_main(), net, junction_merge_m=30.0, min_points=1)  # no sparse merging
    assert not any("D St" in a for a in seg["address"])
    assert dict(labels_by_x(res))[255] == "Main St & B St & C St"
    # with a smaller merge distance D St cuts Main St again
    res, seg = assign_addresses(along_main(), net, junction_merge_m=10.0, min_points=1)
    assert dict(labels_by_x(res))[255] == "Main St & D St & C St"
    assert dict(labels_by_x(res))[205] == "Main St & B St & D St"
    assert set(res["street"]) == {"Main St"}


def test_sparse_segment_merges_into_a_neighbour_and_is_relabelled():
    # Dense points everywhere except between B (200) and C (300): only 2 points there.
    xy = [(x, 2.0) for x in np.arange(5, 400, 10) if not 200 < x < 300] + [(240, 2.0), (260, 2.0)]
    res, seg = assign_addresses(points(xy), main_with_three_crossings(), min_points=5)
    got = dict(labels_by_x(res))
    # B..C (2 points) merges into the emptier neighbour: C..end (10 points) vs A..B (10 points) -> tie -> preceding
    assert got[240] == got[260] == got[195] == "Main St & A St & C St"
    assert got[305] == "Main St & C St"
    assert not any(a.endswith("& B St & C St") for a in seg["address"])
    assert (seg["n_points"] >= 5).all()


def test_sparse_merge_prefers_the_emptier_neighbour():
    xy = [(x, 2.0) for x in np.arange(5, 200, 10)] + [(240, 2.0), (260, 2.0)] + [(x, 2.0) for x in (305, 325, 345, 365, 385)]
    res, _ = assign_addresses(points(xy), main_with_three_crossings(), min_points=5)
    got = dict(labels_by_x(res))
    # B..C has 2, A..B has 10, C..end has 5 -> merged with C..end, which becomes bounded by B St only
    assert got[240] == got[385] == "Main St & B St"


def test_point_at_intersection_goes_to_nearest_street_ties_deterministic():
    net = main_with_three_crossings()
    xy = [(101.0, 6.0), (106.0, 1.0), (100.0, 0.0), (300.0, 0.0)]  # nearer A; nearer Main; on junction nodes
    res, _ = assign_addresses(points(xy), net, min_points=1)
    assert list(res["street"]) == ["A St", "Main St", "A St", "C St"]  # exact ties: alphabetical first


def test_far_points_are_reported_not_dropped():
    xy = [(x, 2.0) for x in np.arange(5, 400, 10)] + [(5000.0, 5000.0)]
    with pytest.warns(UserWarning, match="1 of 41 points lie farther than max_snap_m=50"):
        res, _ = assign_addresses(points(xy), main_with_three_crossings(), max_snap_m=50.0)
    assert len(res) == 41
    assert res["address"].isna().sum() == 1 and res["address"].isna().iloc[-1]
    assert res["snap_m"].iloc[-1] > 5000


def test_street_without_junction_keeps_bare_name():
    net = streets(("Lone Rd", [(0, 1000), (300, 1000)]), *[(r.name, list(r.geometry.coords)) for r in main_with_three_crossings().itertuples()])
    res, seg = assign_addresses(points([(x, 1002.0) for x in range(5, 300, 10)]), net, neighbourhood="Town")
    assert set(res["address"]) == {"Lone Rd, Town"}
    assert list(seg["address"]) == ["Lone Rd, Town"]


def test_neighbourhood_callable_is_voted_per_segment():
    res, seg = assign_addresses(along_main(), main_with_three_crossings(),
                                neighbourhood=lambda g: "West" if g.centroid.x < 200 else "East")
    got = dict(labels_by_x(res))
    assert got[5] == "Main St & A St, West" and got[395] == "Main St & C St, East"
    assert set(res["neighbourhood"]) == {"West", "East"}


def test_points_in_another_metric_crs_are_reprojected():
    pts = along_main().to_crs("EPSG:3067")  # Finnish TM35FIN, also metric
    res, seg = assign_addresses(pts, main_with_three_crossings())
    assert res.crs == pts.crs and seg.crs == pts.crs
    assert dict(zip(res["pid"], res["address"]))[0] == "Main St & A St"


def test_rejects_geographic_crs():
    with pytest.raises(ValueError, match="metric"):
        assign_addresses(along_main().to_crs(4326), main_with_three_crossings())


def test_street_ending_at_a_junction_names_that_end_and_near_end_junctions_do_not_cut():
    net = main_with_three_crossings()
    extra = streets(("End St", [(400, -60), (400, 60)]), ("Stub St", [(10, 0), (10, 60)]))
    net = gpd.GeoDataFrame({"name": [*net["name"], *extra["name"]]}, geometry=[*net.geometry, *extra.geometry], crs=CRS)
    res, _ = assign_addresses(along_main(y=-2.0), net)
    got = dict(labels_by_x(res))
    assert got[395] == "Main St & C St & End St"   # the T-junction at the end bounds the last segment
    assert got[25] == got[95] == "Main St & Stub St & A St"  # Stub St, 10 m from the start, names that end


def test_small_disconnected_piece_joins_the_nearest_piece_of_its_street():
    net = main_with_three_crossings()
    extra = streets(("Main St", [(420, 30), (440, 30)]))  # a separate 20 m stub of Main St
    net = gpd.GeoDataFrame({"name": [*net["name"], *extra["name"]]}, geometry=[*net.geometry, *extra.geometry], crs=CRS)
    pts = points([*[(x, 2.0) for x in np.arange(5, 400, 10)], (425, 32), (435, 32)])
    res, seg = assign_addresses(pts, net)
    assert res["address"].iloc[-1] == res["address"].iloc[-2] == "Main St & C St"
    assert len(seg) == 4
