"""Photos as cameras write them, for the own-city / own-photos tests.

Pixels come from real photographs (scikit-image's bundled samples). Positions are written into the JPEG's EXIF
GPS IFD with Pillow's Exif API the way cameras and phones do: GPSVersionID 2.3, GPSLatitude / GPSLongitude as three
rationals (degrees, minutes, seconds with a 1/10000 s denominator), GPSLatitudeRef N/S, GPSLongitudeRef E/W,
GPSImgDirection as a rational with GPSImgDirectionRef T, GPSMapDatum WGS-84; plus Make / Model / DateTimeOriginal
and, for rotated shots, the Orientation tag with the pixels stored as the sensor read them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational
from skimage import data as photos

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # bundled in the scikit-image wheel (no download)


def photo(i: int) -> Image.Image:
    image = getattr(photos, PHOTOS[i % len(PHOTOS)])()
    image = image[0] if isinstance(image, tuple) else image
    return Image.fromarray(np.asarray(image)[..., :3])


def dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    """Decimal degrees (>= 0) as EXIF (degrees, minutes, seconds) rationals."""
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(round(seconds * 10000), 10000)


def camera_exif(lat: float | None = None, lon: float | None = None, heading: float | None = None,
                orientation: int | None = None, status: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "Canon EOS 80D"
    exif[ExifTags.Base.DateTime] = "2024:05:01 12:00:00"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if lat is not None and lon is not None:
        gps = {
            ExifTags.GPS.GPSVersionID: b"\x02\x03\x00\x00",
            ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
            ExifTags.GPS.GPSLatitude: dms(abs(lat)),
            ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
            ExifTags.GPS.GPSLongitude: dms(abs(lon)),
            ExifTags.GPS.GPSMapDatum: "WGS-84",
        }
        if heading is not None:
            gps[ExifTags.GPS.GPSImgDirectionRef] = "T"
            gps[ExifTags.GPS.GPSImgDirection] = IFDRational(round(heading * 100), 100)
        if status is not None:
            gps[ExifTags.GPS.GPSStatus] = status
        exif[ExifTags.IFD.GPSInfo] = gps
    return exif


def write_photo(path: Path, i: int, lat: float | None = None, lon: float | None = None, heading: float | None = None,
                orientation: int | None = None, status: str | None = None, size: tuple[int, int] = (160, 120),
                seed: int = 0) -> Image.Image:
    """Write a JPEG as a camera would; returns the upright picture it shows. With orientation 6 (the camera held
    upright, sensor turned) the stored pixels are the picture turned 90 degrees anticlockwise, as sensors store them."""
    rng = np.random.default_rng(seed)
    source = photo(i)
    w, h = source.size
    cw, ch = int(w * rng.uniform(0.6, 0.9)), int(h * rng.uniform(0.6, 0.9))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    upright = source.crop((left, top, left + cw, top + ch)).resize(size, Image.BICUBIC)
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, "JPEG", quality=92, exif=camera_exif(lat, lon, heading, orientation, status).tobytes())
    return upright


# ------------------------------------------------------------------------------------------------ the city
def hatfield_extract(folder: Path) -> Path:
    """A real OpenStreetMap extract of a city we never shipped: Hatfield, Hertfordshire (UK), central ~1.6 x 1.0 km
    around Lemsford Road and Wellfield Road, 15 named streets, UTM zone 30N, west of Greenwich. It is the OSM-binary
    project's `sample.pbf` (ODbL, © OpenStreetMap contributors) as it ships inside PyPI `pyogrio` (a geopandas
    dependency) as `pyogrio/tests/fixtures/sample.osm.pbf`. Copied under the city's name, since a user's extract is
    named after its city and the dataset's city name comes from the file name."""
    import shutil

    import pyogrio

    source = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "sample.osm.pbf"
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: pyogrio ships it in its wheel (installed with geopandas)")
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, folder / "hatfield.osm.pbf"))


def along(city, street: str, fraction: float, side_m: float = 3.0) -> tuple[float, float, float]:
    """(lat, lon, heading along the street) of a point `fraction` of the way along the longest piece of `street`,
    `side_m` to its right (a pavement)."""
    from pyproj import Transformer
    from shapely.ops import linemerge

    merged = linemerge(list(city.streets.geometry[city.streets["name"] == street]))
    line = max(getattr(merged, "geoms", [merged]), key=lambda g: g.length)
    d = fraction * line.length
    a, b = line.interpolate(max(d - 1, 0)), line.interpolate(min(d + 1, line.length))
    dx, dy = b.x - a.x, b.y - a.y
    norm = float(np.hypot(dx, dy)) or 1.0
    p = line.interpolate(d)
    x, y = p.x + side_m * dy / norm, p.y - side_m * dx / norm
    lon, lat = Transformer.from_crs(city.epsg, 4326, always_xy=True).transform(x, y)
    return lat, lon, float(np.degrees(np.arctan2(dx, dy)) % 360)


def far_from_streets(city, min_m: float = 80.0) -> tuple[float, float, float]:
    """(lat, lon, metres) of the point of the extract's box farthest from every named street (a park, a yard)."""
    from pyproj import Transformer
    from shapely.geometry import Point

    lon0, lat0, lon1, lat1 = city.bounds_lonlat
    to_utm = Transformer.from_crs(4326, city.epsg, always_xy=True)
    streets = city.streets.geometry.union_all()
    best = None
    for lat in np.linspace(lat0, lat1, 25)[1:-1]:
        for lon in np.linspace(lon0, lon1, 25)[1:-1]:
            d = streets.distance(Point(*to_utm.transform(lon, lat)))
            if best is None or d > best[2]:
                best = (float(lat), float(lon), float(d))
    assert best[2] >= min_m, best
    return best


# (street, fraction along it) per location; each location is photographed in two directions
PLACES = [("Lemsford Road", 0.10), ("Lemsford Road", 0.15), ("Lemsford Road", 0.20),
          ("Lemsford Road", 0.75), ("Lemsford Road", 0.80), ("Lemsford Road", 0.85),
          ("Wellfield Road", 0.30), ("Wellfield Road", 0.40), ("Wellfield Road", 0.50),
          ("Walsingham Close", 0.25), ("Walsingham Close", 0.50), ("Walsingham Close", 0.75)]
CSV_PLACE = ("Stockbreach Close", 0.5)  # three photos without EXIF GPS, positioned by the coordinates CSV

EXPECTED_SKIPS = {"bad_gps": 1, "coordinates_without_photo": 1, "corrupt_image": 1, "duplicate_photo": 1,
                  "malformed_coordinates_row": 1, "no_address": 1, "no_gps": 2, "outside_extract": 1,
                  "unsupported_format": 1}


def make_photo_folder(folder: Path, extract: Path) -> dict:
    """Photos of Hatfield's streets as a camera writes them, plus every awkward case; returns what to expect.

    Good: 12 locations x 2 views with EXIF GPS and GPSImgDirection (one stored sideways with Orientation 6), and a
    location of 3 views on Stockbreach Close positioned by `coordinates.csv`. Bad, one each unless said: a photo
    without GPS and without a CSV row, one whose CSV row has lat "north" (so it has no coordinates either: no_gps 2,
    malformed_coordinates_row 1), a void fix (GPSStatus V), one in Paris (outside the extract), one in the
    extract's box but 80+ m from every named street, a truncated JPEG, a byte copy of a good photo and a phone's
    HEIC. The CSV also names a file that does not exist. A text file is not a photo and is ignored.
    """
    from addressclip.datasets.osm import load_osm

    city = load_osm(extract)
    expected: dict = {"streets": {}, "views": {}}
    i = 0
    for k, (street, fraction) in enumerate(PLACES):
        lat, lon, heading = along(city, street, fraction)
        for v, turn in enumerate((0.0, 180.0)):
            name = f"walk/{k:02d}_{v}.jpg"
            orientation = 6 if (k, v) == (1, 0) else None
            write_photo(folder / name, i, lat, lon, heading=(heading + turn) % 360, orientation=orientation, seed=i)
            expected["streets"][name] = street
            expected["views"][name] = (lat, lon)
            i += 1
    expected["rotated"] = "walk/01_0.jpg"
    lat, lon, heading = along(city, *CSV_PLACE)
    rows = ["file,lat,lon,heading"]
    for v in range(3):
        name = f"scans/stockbreach_{v}.jpg"
        write_photo(folder / name, i, seed=i)  # a scan: no EXIF GPS
        rows.append(f"stockbreach_{v}.jpg,{lat:.7f},{lon:.7f},{(heading + 120 * v) % 360:.1f}")
        expected["streets"][name] = CSV_PLACE[0]
        expected["views"][name] = (lat, lon)
        i += 1
    write_photo(folder / "scans/no_gps.jpg", i, seed=i)
    write_photo(folder / "scans/bad_row.jpg", i + 1, seed=i + 1)
    rows += ["bad_row.jpg,north,-0.23", "lost_photo.jpg,51.765,-0.232"]
    lat, lon, _ = along(city, "Lemsford Road", 0.3)
    write_photo(folder / "walk/void_fix.jpg", i + 2, lat, lon, status="V", seed=i + 2)
    write_photo(folder / "holiday/paris.jpg", i + 3, 48.8584, 2.2945, heading=90.0, seed=i + 3)
    far_lat, far_lon, far_m = far_from_streets(city)
    write_photo(folder / "walk/in_the_park.jpg", i + 4, far_lat, far_lon, seed=i + 4)
    good = (folder / "walk/00_0.jpg").read_bytes()
    (folder / "walk/broken.jpg").write_bytes(good[: len(good) // 3])  # a download cut short
    (folder / "walk/00_0_copy.jpg").write_bytes(good)  # the same photo imported twice
    (folder / "walk/notes.txt").write_text("Saturday walk round Hatfield\n")
    # a phone's HEIC (the ISO-BMFF 'ftyp' box it starts with): Pillow cannot decode it without a plugin
    (folder / "walk/IMG_0042.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    csv_path = folder.parent / f"{folder.name}-coordinates.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    expected.update(csv=csv_path, far_m=far_m, found=len(PLACES) * 2 + 3 + 2 + 3 + 1 + 1 + 1)
    return expected
