"""Small hand-made datasets in the project's format, for tests that must not wait for the renderer.

Each address gets its own colour pattern plus noise, so a model can learn the mapping in a few steps.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from PIL import Image
from shapely.geometry import LineString

from addressclip.datasets.format import write_dataset

STREETS = ["Aleksanterinkatu", "Esplanadi", "Mannerheimintie"]
CROSS = ["Kaivokatu", "Mikonkatu", "Unioninkatu"]


def make_tiny_dataset(root: Path, locations_per_address: int = 4, views: int = 2, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows, segments = [], []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for s, street in enumerate(STREETS):
        for c, cross in enumerate(CROSS):
            address = f"{street} & {cross}, Helsinki 00100"
            x0, y0 = 385000.0 + 100 * c, 6672000.0 + 200 * s
            segments.append({"address": address, "street": street, "geometry": LineString([(x0, y0), (x0 + 90, y0)])})
            colour = np.array([60 + 60 * s, 60 + 60 * c, 120], dtype=float)
            for loc in range(locations_per_address):
                loc_id = f"{s}-{c}-{loc}"
                split = "train" if loc < locations_per_address - 2 else ("val" if loc == locations_per_address - 2 else "test")
                for v in range(views):
                    img = np.clip(colour + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                    img[: size // 4] = [150, 190, 230]  # sky
                    name = f"images/{loc_id}_{v}.jpg"
                    Image.fromarray(img).save(root / name, quality=90)
                    rows.append({
                        "image": name, "split": split, "location_id": loc_id, "heading": 90.0 * v, "pitch": 0.0,
                        "easting": x0 + 20 * loc, "northing": y0 + 2.0, "epsg": 32635, "lat": 60.17, "lon": 24.94,
                        "street": street, "address": address,
                        "caption": f"A street view of a {['red', 'green', 'blue'][c]} building with {loc} cars parked on the road",
                        "neighbourhood": "Helsinki 00100",
                    })
    seg = gpd.GeoDataFrame(segments, geometry="geometry", crs="EPSG:32635")
    write_dataset(root, pd.DataFrame(rows), {"name": root.name, "synthetic": True, "description": "test fixture"}, seg)
    return root
