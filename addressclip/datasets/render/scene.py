"""The Scene: one city ready to render (buildings with fixed appearance, walls, roads, ground rasters, street
trees and the spatial index), filled in by :func:`.build.build_scene`."""
from __future__ import annotations

import numpy as np
from shapely import STRtree
from shapely.geometry import MultiPolygon, Polygon

from .facades import _Facade


class Scene:
    """One city, ready to render: buildings with fixed appearance, walls, roads, trees and indexes.

    Built by :func:`build_scene`. Building ``i`` has footprint ``footprints[i]`` and id ``building_ids[i]``;
    ``is_filler[i]`` marks procedural filler (ids starting with ``"fill-"``).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.building_ids: list[str] = []
        self.footprints: list[Polygon | MultiPolygon] = []
        self.facades: list[_Facade] = []
        self.is_filler = np.zeros(0, bool)
        self.tree: STRtree | None = None
        # per-building arrays, for vectorised shading (filled by _index_buildings)
        self.b_rgb = self.b_trim = self.b_sign = np.zeros((0, 3), np.float32)
        self.b_height = self.b_floor_h = self.b_ground_h = np.zeros(0, np.float32)
        self.b_style = self.b_material = np.zeros(0, np.int8)
        self.b_shop = np.zeros(0, bool)
        self.b_win = np.zeros((0, 5), np.float32)   # pitch, width, height, sill, shop pitch
        self.b_seed = np.zeros(0, np.int64)
        # walls: segment endpoints, outward unit normal, owning building
        self.w_xy = np.zeros((0, 4))
        self.w_normal = np.zeros((0, 2))
        self.w_building = np.zeros(0, np.int64)
        self.w_u0 = self.w_run = np.zeros(0)     # facade runs: see _facade_runs
        self.b_wall_start = self.b_wall_end = np.zeros(0, np.int64)
        # road centreline segments
        self.r_xy = np.zeros((0, 4))
        self.r_half = np.zeros(0)
        self.r_drivable = np.zeros(0, bool)
        self.r_main = np.zeros(0, bool)
        self.r_arc = np.zeros(0)        # arc length of the segment start along its street (dash phase)
        self.r_line = np.zeros(0, np.int64)
        self.street_names: list[str | None] = []
        # rasters over the scene (cell `grid_cell` m, lower-left corner `grid_origin`)
        self.grid_origin = (0.0, 0.0)
        self.grid_cell = 1.0
        self.road_grid = np.full((2, 2), -1, np.int32)          # nearest carriageway segment
        self.road_edge = np.full((2, 2), 50.0, np.float16)      # signed distance to its edge (< 0: on it)
        self.path_edge = np.full((2, 2), 50.0, np.float16)      # same for footways and paths
        self.junction_grid = np.zeros((2, 2), bool)             # where two streets' carriageways overlap
        self.building_grid = np.zeros((2, 2), bool)
        # street trees (fixed features of a street, like the buildings)
        self.trees = np.zeros((0, 5))   # x, y, crown base, crown radius, tint seed
        # (key, objects) of the last place rendered, reused by its other headings (surfaces._nearby_objects)
        self.nearby_objects: tuple | None = None

    @property
    def n_buildings(self) -> int:
        return len(self.building_ids)

    def __repr__(self) -> str:
        return (f"Scene(buildings={self.n_buildings}, filler={int(self.is_filler.sum())}, "
                f"walls={len(self.w_xy)}, road_segments={len(self.r_xy)}, trees={len(self.trees)}, seed={self.seed})")
