"""Building a scene: read the inputs, add filler buildings, index buildings and roads, rasterise the ground,
plant street trees."""
from __future__ import annotations

from typing import Any

from .filler import _filler_buildings, _filler_lots
from .geodata import _real_buildings, _streets
from .ground_rasters import _rasterise
from .scene import Scene
from .scene_arrays import _index_buildings, _index_roads
from .street_trees import _place_trees


def build_scene(buildings: Any, streets: Any, seed: int = 0, *, add_filler: bool = True) -> Scene:
    """Build a renderable scene from building footprints and street centrelines (same metric CRS).

    buildings: GeoDataFrame of polygons with optional columns 'building', 'building:levels', 'height',
    'id' (also used when present: 'building:material', 'shop', 'amenity').
    streets: GeoDataFrame of LineStrings with optional 'name' and 'highway' (road width from the class).
    Streets without a real building within 25 m get procedural filler buildings (``add_filler``).
    """
    scene = Scene(seed)
    street_list = _streets(streets)
    real = _real_buildings(buildings, scene.seed)
    lots = _filler_lots(street_list, [g for _, g, _ in real], scene.seed) if add_filler else []
    _index_buildings(scene, real + _filler_buildings(lots, scene.seed), n_real=len(real))
    _index_roads(scene, street_list)
    _rasterise(scene)
    _place_trees(scene, street_list)
    return scene
