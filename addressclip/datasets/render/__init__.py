"""Deterministic street-view renderer (numpy + Pillow only, no OpenGL).

Renders synthetic street-level views of a real city: building footprints extruded to their heights,
roads with kerbs, sidewalks and markings, sky, parked cars, trees and pedestrians. It is the image
source of the embedded (rendered, not photographed) datasets.

How it draws. With the camera level (pitch 0) every image column is a vertical plane through the eye,
so every scene object, all of which stand on vertical faces (building walls, car body sides, camera-
facing billboards for trees and people), cuts that column in one interval of rows. Per column we cast
one horizontal ray against all nearby faces (vectorised over columns x faces), keep the nearest few hits,
and for every pixel take the nearest hit whose interval covers it: exact occlusion, a per-pixel depth,
and the hit's position on its face (u along the wall, z up), which lets facades (windows, shop fronts,
cornices) be shaded per pixel in perspective. Pixels with no hit are ground (below the horizon) or sky.
A pitched view is a homography of a level one (pure rotation about the eye), so it is rendered level on a
larger canvas and warped.

Ground (road, kerb, sidewalk, centre lines) comes from distance fields rasterised once per scene: the
signed distance to the nearest carriageway edge at 1 m cells, interpolated per pixel.

Determinism: building appearance comes from (scene seed, building id), filler lots and street trees from
(scene seed, position): they are the city's and do not change between views. Parked cars and pedestrians
come from (scene seed, capture seed, camera position) (not the heading, so views of one place with one
capture seed agree); weather, time of day, light, fog, exposure and foliage tone from (scene seed, capture
seed). There is no global random state.

Stages, one file each. The scene, built once per city: `geodata` reads footprints and streets, `facades` gives
each building its appearance (kind, material, colour, windows, shop front), `filler` adds procedural buildings on
empty street stretches, `scene_arrays` flattens buildings, walls and roads into the arrays of a `scene.Scene`,
`ground_rasters` rasterises the road distance fields, `street_trees` plants trees, and `build` runs these in order.
One view (`view.render_view`): `conditions` draws weather and light, `camera` holds the camera and its level canvas,
`cars_and_people` places parked cars and pedestrians, `surfaces` gathers every visible vertical face, `visibility`
casts the column rays, `shade_walls`, `shade_objects` (cars, trees, people), `shade_ground` and `shade_sky` colour
the pixels, and `describe` writes the `info` dict for captions. Shared by all: `constants`, `osm_tags` (road widths
by class) and `noise` (seeded generators and hash noise). Saving images is the dataset builder's job
(:mod:`addressclip.datasets.synth`), not the renderer's.

Use::

    scene = build_scene(buildings_gdf, streets_gdf, seed=0)          # metric CRS (UTM)
    image, info = render_view(scene, Camera(x, y, heading=90.0), size=128, capture_seed=7)
"""
from __future__ import annotations

from .build import build_scene
from .camera import Camera
from .conditions import TIMES_OF_DAY, WEATHERS
from .constants import FILLER_CLEARANCE, FILLER_GAP, FLOOR_HEIGHT, QUERY_RADIUS, SIDEWALK_WIDTH
from .facades import MATERIALS
from .osm_tags import is_drivable, road_width
from .scene import Scene
from .view import render_view

__version__ = "1.0"   # recorded in dataset cards; bump when the look of renders changes

__all__ = [
    "Camera", "Scene", "build_scene", "render_view", "road_width", "is_drivable",
    "MATERIALS", "WEATHERS", "TIMES_OF_DAY",
    "SIDEWALK_WIDTH", "FLOOR_HEIGHT", "QUERY_RADIUS", "FILLER_GAP", "FILLER_CLEARANCE",
]

