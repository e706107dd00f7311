"""OSM loading: the two bundled extracts, hand-written XML extracts, and clear errors."""
from __future__ import annotations

import bz2

import pytest
from shapely.geometry import Point

from addressclip.datasets.osm import OSMExtractError, PostcodeNeighbourhood, load_osm, utm_epsg

NODES = """
  <node id="1" lat="60.1700" lon="24.9400" version="1"/>
  <node id="2" lat="60.1700" lon="24.9420" version="1"/>
  <node id="3" lat="60.1690" lon="24.9410" version="1"/>
  <node id="4" lat="60.1710" lon="24.9410" version="1"/>
  <node id="5" lat="60.1700" lon="24.9410" version="1"/>
  <node id="11" lat="60.1702" lon="24.9402" version="1"/>
  <node id="12" lat="60.1702" lon="24.9405" version="1"/>
  <node id="13" lat="60.1704" lon="24.9405" version="1"/>
  <node id="14" lat="60.1704" lon="24.9402" version="1"/>
  <node id="20" lat="60.1703" lon="24.9403" version="1"><tag k="addr:postcode" v="00100"/></node>
"""
STREETS = """
  <way id="100" version="1"><nd ref="1"/><nd ref="5"/><nd ref="2"/>
    <tag k="highway" v="residential"/><tag k="name" v="Main Street"/></way>
  <way id="101" version="1"><nd ref="3"/><nd ref="5"/><nd ref="4"/>
    <tag k="highway" v="tertiary"/><tag k="name" v="Cross Street"/></way>
  <way id="102" version="1"><nd ref="3"/><nd ref="2"/><tag k="highway" v="footway"/><tag k="name" v="Park Path"/></way>
"""
BUILDING = """
  <way id="200" version="1"><nd ref="11"/><nd ref="12"/><nd ref="13"/><nd ref="14"/><nd ref="11"/>
    <tag k="building" v="apartments"/><tag k="building:levels" v="4"/><tag k="height" v="14"/></way>
"""


def write_osm(path, body: str, compress: bool = False):
    text = f'<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="hand">{body}</osm>\n'
    if compress:
        path.write_bytes(bz2.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("city, epsg, n_names, min_buildings", [("helsinki", 32635, 70, 400), ("kotka", 32635, 90, 2000)])
def test_bundled_cities_load(city, epsg, n_names, min_buildings):
    c = load_osm(city)
    assert c.epsg == epsg and c.streets.crs.to_epsg() == epsg and c.buildings.crs.to_epsg() == epsg
    assert len(c.street_names) >= n_names
    assert len(c.buildings) >= min_buildings
    assert {"building", "building:levels", "height"} <= set(c.buildings.columns)
    assert set(c.streets.geom_type) == {"LineString"}
    assert c.streets["name"].notna().all()
    assert not c.streets["highway"].isin(["footway", "cycleway", "path", "steps"]).any()
    assert len(c.addressed) > 0 and c.addressed["addr:postcode"].notna().all()
    minx, miny, maxx, maxy = c.streets.total_bounds
    assert 500 < maxx - minx < 5000 and 500 < maxy - miny < 5000  # metres: a few km across
    assert load_osm(city) is c  # cached per process


def test_helsinki_neighbourhood_vote_gives_postcode_labels():
    c = load_osm("helsinki")
    vote = c.neighbourhoods()
    labels = {vote(g) for g in c.streets.geometry.iloc[::40]}
    assert all(label.startswith("Helsinki ") for label in labels)
    assert len(labels) >= 2 and "Helsinki 00100" in labels


@pytest.mark.parametrize("compress", [False, True])
def test_xml_extract_loads_with_osmium(tmp_path, compress):
    path = write_osm(tmp_path / ("mini.osm.bz2" if compress else "mini.osm"), NODES + STREETS + BUILDING, compress)
    c = load_osm(path)
    assert c.street_names == ["Cross Street", "Main Street"]  # the footway is not a street ...
    assert sorted(c.roads["highway"]) == ["footway", "residential", "tertiary"]  # ... but is drawn
    assert c.epsg == utm_epsg(24.94, 60.17) == 32635
    assert len(c.buildings) == 1 and c.buildings.geom_type.iloc[0] == "Polygon"
    row = c.buildings.iloc[0]
    assert (row["building"], row["building:levels"], row["height"], row["id"]) == ("apartments", "4", "14", "200")
    assert 150 < c.buildings.area.iloc[0] < 500  # ~17 m x 22 m
    assert list(c.addressed["addr:postcode"]) == ["00100"]
    assert c.neighbourhoods()(c.streets.geometry.iloc[0]) == "Mini 00100"


def test_extract_without_named_streets_is_a_clear_error(tmp_path):
    path = write_osm(tmp_path / "nostreets.osm", NODES + BUILDING)
    with pytest.raises(OSMExtractError, match="nostreets.osm.*no named streets"):
        load_osm(path)


def test_extract_without_buildings_is_a_clear_error(tmp_path):
    path = write_osm(tmp_path / "nobuildings.osm", NODES + STREETS)
    with pytest.raises(OSMExtractError, match="nobuildings.osm.*no building"):
        load_osm(path)


def test_bad_path_and_bad_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="helsinki, kotka"):
        load_osm(tmp_path / "missing.osm.pbf")
    with pytest.raises(FileNotFoundError, match="'berlin'"):
        load_osm("berlin")
    other = tmp_path / "streets.geojson"
    other.write_text("{}")
    with pytest.raises(ValueError, match=r"streets.geojson.*\.osm\.pbf"):
        load_osm(other)


def test_utm_epsg_hemispheres():
    assert utm_epsg(-79.95, 40.44) == 32617   # Pittsburgh
    assert utm_epsg(-122.42, 37.77) == 32610  # San Francisco
    assert utm_epsg(151.2, -33.9) == 32756    # Sydney


def test_postcode_vote_falls_back_to_city_name(tmp_path):
    c = load_osm(write_osm(tmp_path / "mini.osm", NODES + STREETS + BUILDING))
    vote = PostcodeNeighbourhood(c.addressed, "Mini", radius_m=10, fallback_m=100)
    x, y = c.addressed.geometry.iloc[0].coords[0]
    assert vote(Point(x + 5, y)) == "Mini 00100"     # within the vote radius
    assert vote(Point(x + 50, y)) == "Mini 00100"    # nearest, within the fallback distance
    assert vote(Point(x + 5000, y)) == "Mini"        # nothing near: the city name alone
