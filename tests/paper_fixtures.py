"""Raw data for the paper-path rehearsal, in the released formats and at the released image sizes.

- Pittsburgh-250k + NetVLAD + AddressCLIP: ``NNN/NNNNNN_pitchP_yawY.jpg`` JPEGs of 480x640 (height x width),
  ``pitts250k_{train,val,test}.mat`` written by scipy.io.savemat (the layout loadmat returns for the real files),
  ``pitts_{train,database,queries}.json`` = {path: [caption, address sentence, canonical address]}.
- SF-XL ``processed``: 512x512 JPEGs with CosPlace '@' names, plus AddressCLIP-style annotation JSON.

Pixels come from real photographs (scikit-image's bundled samples), one photograph per address and a different
window of it per place and view, saved as plain baseline JPEGs like Street View crops (no EXIF).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as photos

from test_real_builders import pitts_rel, sf_name, write_db_struct

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "stereo_motorcycle")
# (main street, cross street, neighbourhood): 3 streets, 6 sub-street addresses
PITTS_ADDRESSES = [("Forbes Avenue", "Craig Street", "Oakland"), ("Forbes Avenue", "Atwood Street", "Oakland"),
                   ("Penn Avenue", "16th Street", "Strip District"), ("Penn Avenue", "21st Street", "Strip District"),
                   ("Liberty Avenue", "10th Street", "Downtown"), ("Liberty Avenue", "Smithfield Street", "Downtown")]
PITTS_SPLIT_FILES = ["pitts_train.json"] * 3 + ["pitts_database.json", "pitts_queries.json"]  # per place of an address
PITTS_VIEWS = [(1, 1), (2, 7)]
SF_ADDRESSES = [("Market Street & 8th Street, SoMa", 37.7750, -122.4190), ("Market Street & 7th Street, SoMa", 37.7760, -122.4175),
                ("Mission Street & 4th Street, SoMa", 37.7830, -122.4030), ("Mission Street & 3rd Street, SoMa", 37.7850, -122.4010)]
SF_SPLIT_FILES = ["sf_base_train.json", "sf_base_train.json", "sf_base_val.json", "sf_base_test.json"]


def photo(i: int) -> np.ndarray:
    image = getattr(photos, PHOTOS[i % len(PHOTOS)])()
    return image[0] if isinstance(image, tuple) else image


def window(source: np.ndarray, height: int, width: int, seed: int) -> Image.Image:
    """A crop of the photograph, scaled to height x width, different for every seed."""
    rng = np.random.default_rng(seed)
    h, w = source.shape[:2]
    scale = rng.uniform(0.6, 0.9)
    ch, cw = int(h * scale), int(w * scale)
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return Image.fromarray(source[top:top + ch, left:left + cw]).resize((width, height), Image.BICUBIC)


def make_pitts_raw(raw: Path) -> Path:
    files: dict[str, dict] = {name: {} for name in ("pitts_train.json", "pitts_database.json", "pitts_queries.json")}
    coords: dict[str, tuple[float, float]] = {}
    place = 0
    for a, (street, cross, hood) in enumerate(PITTS_ADDRESSES):
        address = f"{street} & {cross}, {hood}"
        for k, file in enumerate(PITTS_SPLIT_FILES):
            number = f"{place:06d}"
            coords[number] = (584000.0 + 400 * a + 30 * k, 4477000.0 + 25 * k)  # UTM 17N, central Pittsburgh
            for pitch, yaw in PITTS_VIEWS:
                rel = pitts_rel(number, pitch, yaw)
                path = raw / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                window(photo(a), 480, 640, seed=1000 * place + 10 * pitch + yaw).save(path, "JPEG", quality=90)
                files[file][rel] = [f"A street view of a city street near {cross}, view {yaw}",
                                    f"The photo was taken on {street} near {cross}.", address]
            place += 1
    for name, content in files.items():
        (raw / name).write_text(json.dumps(content))
    numbers = sorted(coords)
    # NetVLAD's own split of the database images, unrelated to AddressCLIP's: every image is in exactly one .mat
    for i, (mat, which) in enumerate((("pitts250k_train.mat", "train"), ("pitts250k_val.mat", "val"),
                                      ("pitts250k_test.mat", "test"))):
        write_db_struct(raw / mat, which, {n: coords[n] for n in numbers[i::3]}, views=PITTS_VIEWS)
    return raw


def make_sf_raw(raw: Path) -> Path:
    files: dict[str, dict] = {}
    for a, (address, lat, lon) in enumerate(SF_ADDRESSES):
        for k, file in enumerate(SF_SPLIT_FILES):
            pano = f"Pano{a}{k}" + "x" * 16
            for heading in (0, 180):
                plat, plon = lat + 0.0002 * k, lon + 0.0002 * k
                name = sf_name(pano, plat, plon, heading)
                rel = f"{'test' if 'test' in file else 'train'}/{plat:.2f}/{name}"
                path = raw / "processed" / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                window(photo(a + 2), 512, 512, seed=100 * a + 10 * k + heading).save(path, "JPEG", quality=90)
                files.setdefault(file, {})[rel] = [f"A street view of a busy road, heading {heading}", f"Near {address}.", address]
    (raw / "annotations").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (raw / "annotations" / name).write_text(json.dumps(content))
    return raw
