"""Semantic address partition (AddressCLIP, Sec. 3): label camera locations with sub-street addresses.

The paper reverse-geocodes every image to a street, splits each main street at its cross streets into
sub-street segments, drops junctions that are too close together, and merges segments with fewer than five
locations into a neighbour. Labels read "Main St & Cross St[ & Cross St 2], Neighbourhood". The paper leaves
the junction-merge distance and the treatment of images at intersections open; the choices here are:

- reverse geocoding = nearest named street centreline (metric CRS); exact ties (e.g. a point on the junction
  node) go to the alphabetically first street name, so results never depend on input order;
- junction-merge distance: 30 m (about half a short city block; with 10–15 m camera spacing a 30 m
  segment still holds two or three locations before the min-points merge);
- junctions within the merge distance of a street end do not cut (no stub segments where OSM ways
  overshoot a junction); they name that end instead;
- a sparse segment (< ``min_points`` locations) merges into the neighbour along the street holding fewer
  locations (ties: the preceding one), repeatedly, until every segment has enough or the street is one segment;
  a disconnected piece of a street with too few locations joins the nearest piece of that street that has
  enough; a whole street with fewer than ``min_points`` locations stays one (small) address;
- neighbourhood: the caller's choice (see ``assign_addresses``); the OSM extracts have no suburb polygons, so
  :meth:`addressclip.datasets.osm.OSMCity.neighbourhoods` votes among postcodes of nearby addressed objects
  ("Helsinki 00100"), one vote per segment so that all locations of a segment share one label.

Streets are handled per connected piece ("chain") of one name: a name with several disconnected pieces (or
dual carriageways) yields segments per piece; segments that end up with the same label are one address and
their geometries are merged.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Union

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import LineString, MultiLineString, Point
from shapely.geometry.base import BaseGeometry
from shapely.ops import linemerge, substring

if TYPE_CHECKING:
    from .osm import OSMCity

Neighbourhood = Union[str, Callable[[BaseGeometry], str], None]

DEFAULT_JUNCTION_MERGE_M = 30.0
DEFAULT_MIN_POINTS = 5
DEFAULT_MAX_SNAP_M = 50.0
DEFAULT_JUNCTION_TOL_M = 2.0


@dataclass
class Junction:
    position: float   # metres along the chain
    names: set[str]   # cross-street names meeting the chain here


@dataclass
class Chain:
    """One connected piece of a named street, with its kept junctions and current segment cuts."""

    name: str
    line: LineString
    junctions: list[Junction] = field(default_factory=list)   # kept (after the merge distance), sorted
    cuts: list[float] = field(default_factory=list)           # interior positions splitting segments
    start_name: str | None = None   # junction within the merge distance of the start (names that end)
    end_name: str | None = None


def assign_addresses(
    points: gpd.GeoDataFrame,
    streets: "gpd.GeoDataFrame | OSMCity",
    *,
    junction_merge_m: float = DEFAULT_JUNCTION_MERGE_M,
    min_points: int = DEFAULT_MIN_POINTS,
    max_snap_m: float = DEFAULT_MAX_SNAP_M,
    neighbourhood: Neighbourhood = None,
    junction_tol_m: float = DEFAULT_JUNCTION_TOL_M,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Give every camera location a main street and a sub-street address.

    Args:
        points: camera locations (Point geometries) in a metric (projected) CRS; reprojected internally to the
            streets' CRS when it differs (the returned frame keeps the original geometry and CRS).
        streets: street centrelines with a ``name`` column in a metric CRS; every named line counts as a street
            and as a potential cross street (filter highway classes beforehand, as ``load_osm`` does). An
            :class:`~addressclip.datasets.osm.OSMCity` is accepted too: its streets are used and, unless
            ``neighbourhood`` is given, its postcode vote names the neighbourhoods.
        junction_merge_m: a junction closer than this (along the street) to the previously kept one is dropped;
            junctions this close to a street end do not cut. Default 30 m (the paper leaves it open).
        min_points: segments with fewer locations merge into a neighbour (paper: 5).
        max_snap_m: points farther than this from every named street get no address (NA) and are reported
            with a warning, never dropped silently. Default 50 m.
        neighbourhood: None (labels without a neighbourhood, or the city's postcode vote when ``streets`` is an
            OSMCity), a fixed string ("" for none), or a callable mapping a segment geometry (in the streets'
            CRS) to a name (e.g. ``OSMCity.neighbourhoods()``).
        junction_tol_m: a cross street whose end lies within this distance of the street counts as meeting it
            (OSM T-junctions that miss by a little). Default 2 m.

    Returns:
        (points copy with columns ``street``, ``address``, ``neighbourhood``, ``snap_m``;
         segments GeoDataFrame with ``address``, ``street``, ``neighbourhood``, ``n_points``, ``geometry``),
        segments (in the points' CRS) only for streets that received points, one row per address.
    """
    if hasattr(streets, "streets") and hasattr(streets, "neighbourhoods"):  # an OSMCity
        if neighbourhood is None:
            neighbourhood = streets.neighbourhoods()
        streets = streets.streets
    _check_inputs(points, streets, min_points)
    original = points
    points = points.to_crs(streets.crs) if points.crs != streets.crs else points
    streets = streets[streets["name"].notna() & streets.geometry.notna() & ~streets.geometry.is_empty]
    streets = streets.reset_index(drop=True)
    if streets.empty:
        raise ValueError("streets has no named, non-empty geometries to assign addresses from")
    names, snap_m = _snap_to_streets(points, streets)
    far = snap_m > max_snap_m
    if far.any():
        ids = list(points.index[far][:10])
        warnings.warn(
            f"{int(far.sum())} of {len(points)} points lie farther than max_snap_m={max_snap_m} m from every named "
            f"street and get no address (first index labels: {ids})",
            stacklevel=2,
        )
    names = np.where(far, None, names)

    lengths = streets.assign(_len=streets.length).groupby("name")["_len"].sum().to_dict()
    tree = shapely.STRtree(streets.geometry.values)
    seg_of_point = np.full(len(points), -1)
    seg_rows: list[tuple[str, str, BaseGeometry, int]] = []   # (label, street, geometry, n_points)
    geoms = points.geometry.values
    for name in sorted({n for n in names if n is not None}):
        sel = np.flatnonzero(names == name)
        chains = _build_chains(name, streets, tree, lengths, junction_merge_m, junction_tol_m)
        for label, geom, members in _partition_street(chains, geoms[sel], min_points):
            seg_of_point[sel[members]] = len(seg_rows)
            seg_rows.append((label, name, geom, len(members)))

    raw = _raw_segments(seg_rows, neighbourhood, points.crs)
    has = seg_of_point >= 0
    result = original.copy()
    for col in ("street", "address", "neighbourhood"):
        values = pd.Series(pd.NA, index=points.index, dtype="string")
        values.iloc[np.flatnonzero(has)] = raw[col].to_numpy()[seg_of_point[has]]
        result[col] = values
    result["snap_m"] = snap_m
    return result, _dissolve(raw).to_crs(original.crs)


def _partition_street(chains: list[Chain], geoms: np.ndarray,
                      min_points: int) -> list[tuple[str, BaseGeometry, np.ndarray]]:
    """Split one street's chains into labelled segments; returns (label, geometry, point indices) each."""
    which, pos = _locate_on_chains(chains, geoms)
    which, pos = _absorb_small_chains(chains, geoms, which, pos, min_points)
    out = []
    for ci, chain in enumerate(chains):
        mine = np.flatnonzero(which == ci)
        if not len(mine):
            continue
        _merge_sparse(chain, pos[mine], min_points)
        seg_idx = np.searchsorted(chain.cuts, pos[mine], side="right")
        bounds = [0.0, *chain.cuts, chain.line.length]
        for k in range(len(bounds) - 1):
            out.append((_segment_label(chain, bounds[k], bounds[k + 1]),
                        substring(chain.line, bounds[k], bounds[k + 1]), mine[seg_idx == k]))
    return out


def _check_inputs(points: gpd.GeoDataFrame, streets: gpd.GeoDataFrame, min_points: int) -> None:
    if "name" not in streets.columns:
        raise ValueError(f"streets needs a 'name' column; got columns {list(streets.columns)}")
    for what, gdf in (("points", points), ("streets", streets)):
        if gdf.crs is None or not gdf.crs.is_projected:
            raise ValueError(f"{what} must be in a metric (projected) CRS, got {gdf.crs}; reproject with .to_crs()")
    if min_points < 1:
        raise ValueError(f"min_points must be >= 1, got {min_points}")
    bad = set(points.geometry.geom_type) - {"Point"}
    if bad:
        raise ValueError(f"points must be Point geometries, got {sorted(bad)}")


def _snap_to_streets(points: gpd.GeoDataFrame, streets: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Nearest named street per point; exact ties go to the alphabetically first name."""
    names = streets["name"].to_numpy(dtype=object)
    tree = shapely.STRtree(streets.geometry.values)
    (pi, si), dist = tree.query_nearest(points.geometry.values, return_distance=True, all_matches=True)
    cand = pd.DataFrame({"p": pi, "name": names[si], "d": dist}).sort_values(["p", "d", "name"], kind="stable")
    best = cand.drop_duplicates("p").set_index("p").reindex(range(len(points)))
    return best["name"].to_numpy(dtype=object), best["d"].to_numpy(dtype=float)


def _build_chains(name: str, streets: gpd.GeoDataFrame, tree: shapely.STRtree, lengths: dict[str, float],
                  merge_m: float, tol_m: float) -> list[Chain]:
    pieces = streets.geometry[streets["name"] == name].tolist()
    pieces.sort(key=lambda g: g.coords[0])  # deterministic merge regardless of input row order
    merged = linemerge(MultiLineString([list(p.coords) for p in pieces]))
    lines = list(merged.geoms) if isinstance(merged, MultiLineString) else [merged]
    chains = []
    for line in lines:
        if tuple(line.coords[0]) > tuple(line.coords[-1]):
            line = line.reverse()  # orient each chain the same way every run
        chain = Chain(name, line)
        chain.junctions = _keep_junctions(_find_junctions(chain.line, name, streets, tree, lengths, tol_m), merge_m)
        chain.cuts = [j.position for j in chain.junctions if merge_m <= j.position <= line.length - merge_m]
        near_ends = [j for j in chain.junctions if j.position not in chain.cuts]
        starts = [j for j in near_ends if j.position <= line.length - j.position]
        ends = [j for j in near_ends if j.position > line.length - j.position]
        chain.start_name = _junction_name(starts[0]) if starts else None
        chain.end_name = _junction_name(ends[-1]) if ends else None
        chains.append(chain)
    chains.sort(key=lambda c: (-c.line.length, c.line.coords[0]))
    return chains


def _find_junctions(line: LineString, name: str, streets: gpd.GeoDataFrame, tree: shapely.STRtree,
                    lengths: dict[str, float], tol_m: float) -> list[Junction]:
    """Where other named streets cross or touch `line`, grouped by position (within `tol_m`)."""
    hits: list[tuple[float, str]] = []
    for i in tree.query(line.buffer(tol_m)):
        other = streets["name"].iat[i]
        if other == name:
            continue
        geom = streets.geometry.iat[i]
        pts = _points_of(line.intersection(geom))
        pts += [Point(c) for c in (geom.coords[0], geom.coords[-1]) if line.distance(Point(c)) <= tol_m]
        hits += [(line.project(p), other) for p in pts]
    hits.sort()
    junctions: list[Junction] = []
    for pos, other in hits:
        if junctions and pos - junctions[-1].position <= tol_m:
            junctions[-1].names.add(other)
        else:
            junctions.append(Junction(pos, {other}))
    for j in junctions:
        j.names = {max(sorted(j.names), key=lambda n: lengths.get(n, 0.0))}  # name the junction by its major street
    return junctions


def _points_of(geom: BaseGeometry) -> list[Point]:
    if geom.is_empty:
        return []
    if geom.geom_type == "Point":
        return [geom]
    if geom.geom_type in ("LineString", "LinearRing"):
        return [Point(geom.coords[0]), Point(geom.coords[-1])]  # overlapping stretch: both ends meet
    if hasattr(geom, "geoms"):
        return [p for g in geom.geoms for p in _points_of(g)]
    return []


def _keep_junctions(junctions: list[Junction], merge_m: float) -> list[Junction]:
    """Walk along the street; drop a junction closer than `merge_m` to the previously kept one."""
    kept: list[Junction] = []
    for j in junctions:
        if kept and j.position - kept[-1].position < merge_m:
            continue
        kept.append(j)
    return kept


def _locate_on_chains(chains: list[Chain], geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest chain (ties: the longer one) and the position along it, per point."""
    dist = np.array([[c.line.distance(g) for c in chains] for g in geoms]).reshape(len(geoms), len(chains))
    which = dist.argmin(axis=1)
    pos = np.array([chains[w].line.project(g) for w, g in zip(which, geoms)], dtype=float)
    return which, pos


def _absorb_small_chains(chains: list[Chain], geoms: np.ndarray, which: np.ndarray, pos: np.ndarray,
                         min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Move the points of a chain with < min_points onto the nearest same-name chain that has enough.

    Short disconnected pieces of a street (a stub beyond a square, one side of a dual carriageway) would
    otherwise become addresses of their own with one or two locations.
    """
    counts = np.bincount(which, minlength=len(chains))
    big = [ci for ci in range(len(chains)) if counts[ci] >= min_points]
    if not big or len(big) == len(chains):
        return which, pos
    which, pos = which.copy(), pos.copy()
    for i in np.flatnonzero(counts[which] < min_points):
        target = min(big, key=lambda ci: (chains[ci].line.distance(geoms[i]), ci))
        which[i], pos[i] = target, chains[target].line.project(geoms[i])
    return which, pos


def _merge_sparse(chain: Chain, positions: np.ndarray, min_points: int) -> None:
    """Remove cuts until every segment holds >= min_points locations (or the chain is one segment)."""
    while chain.cuts:
        counts = np.bincount(np.searchsorted(chain.cuts, positions, side="right"), minlength=len(chain.cuts) + 1)
        k = int(counts.argmin())
        if counts[k] >= min_points:
            return
        if k == 0:
            drop = 0                     # first segment: only a following neighbour
        elif k == len(counts) - 1:
            drop = k - 1                 # last segment: only a preceding neighbour
        else:
            drop = k if counts[k + 1] < counts[k - 1] else k - 1   # into the emptier neighbour; ties: preceding
        del chain.cuts[drop]


def _junction_name(j: Junction) -> str:
    return next(iter(j.names))


def _segment_label(chain: Chain, start: float, end: float) -> str:
    """"Main & Cross[ & Cross 2]": the cross streets bounding [start, end]; inside ones if none bound it."""
    at_cut = {j.position: _junction_name(j) for j in chain.junctions if j.position in chain.cuts}
    first = at_cut.get(start) if start > 0 else chain.start_name
    last = at_cut.get(end) if end < chain.line.length else chain.end_name
    cross = [n for n in (first, last) if n]
    if not cross:  # bounded by no junction (its cuts were merged away): name it by the junctions inside
        cross = [_junction_name(j) for j in chain.junctions if start < j.position < end][:2]
    return " & ".join([chain.name, *dict.fromkeys(cross)])


def _raw_segments(rows: list[tuple[str, str, BaseGeometry, int]], neighbourhood: Neighbourhood,
                  crs) -> gpd.GeoDataFrame:
    """One row per chain segment with its neighbourhood and full address."""
    df = gpd.GeoDataFrame(
        {"label": [r[0] for r in rows], "street": [r[1] for r in rows], "n_points": [r[3] for r in rows]},
        geometry=[r[2] for r in rows], crs=crs,
    )
    if neighbourhood is None:
        nbh = [""] * len(df)
    elif isinstance(neighbourhood, str):
        nbh = [neighbourhood] * len(df)
    elif callable(neighbourhood):
        nbh = [str(neighbourhood(g)) for g in df.geometry]
    else:
        raise TypeError(
            f"neighbourhood must be None, a string or a callable(geometry) -> str, got {type(neighbourhood).__name__}"
        )
    df["neighbourhood"] = pd.Series(nbh, index=df.index, dtype="string")
    df["address"] = df["label"].where(df["neighbourhood"] == "", df["label"] + ", " + df["neighbourhood"])
    return df


def _dissolve(raw: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Segments sharing an address are one address: merge their geometries, sum their points."""
    cols = ["address", "street", "neighbourhood", "n_points"]
    raw = raw[raw["n_points"] > 0]
    if raw.empty:
        return gpd.GeoDataFrame({c: [] for c in cols}, geometry=[], crs=raw.crs)
    seg = raw.dissolve(by="address", aggfunc={"street": "first", "neighbourhood": "first", "n_points": "sum"})
    seg = seg.reset_index()
    seg["geometry"] = seg.geometry.apply(lambda g: linemerge(g) if g.geom_type == "MultiLineString" else g)
    return gpd.GeoDataFrame(seg[cols + ["geometry"]].sort_values("address").reset_index(drop=True), crs=raw.crs)
