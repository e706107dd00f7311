"""Pitts-IAL and SF-IAL builders on tiny fixtures written in the real raw formats.

Pitts: NetVLAD dbStruct .mat files written with scipy.io.savemat (a dict becomes a 1x1 struct, an (N, 1)
object array of str becomes an Nx1 cell of char arrays: the layout loadmat returns for the real files),
``NNN/NNNNNN_pitchP_yawY.jpg`` images and AddressCLIP ``{path: [caption, sentence, address]}`` JSON.
SF: CosPlace '@' file names with UTM computed from real San Francisco coordinates.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image
from pyproj import Transformer

from addressclip.datasets.format import read_dataset
from addressclip.datasets.pitts import build_pitts_ial, cell_strings
from addressclip.datasets.rawdata import RawDataError, address_format_problem, parse_address
from addressclip.datasets.sfxl import build_sf_ial, hash_split, parse_sfxl_name, split_from_file_name


def write_jpeg(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), (value, 255 - value, 60)).save(path, "JPEG")


# ---------------------------------------------------------------------------------------------------------
# Pitts-IAL fixture

# panorama number -> (UTM 17N easting, northing, AddressCLIP file, canonical address)
PITTS_PLACES = {
    "000000": (584500.0, 4477000.0, "pitts_train.json", "Forbes Avenue & Craig Street, Oakland"),
    # a second sub-street of Forbes Avenue: the build's address-format check wants fewer streets than addresses
    "000001": (584560.0, 4477010.0, "pitts_train.json", "Forbes Avenue & Atwood Street, Oakland"),
    "000002": (585000.0, 4477500.0, "pitts_database.json", "Penn Avenue, Strip District"),
    "001000": (583800.0, 4476400.0, "pitts_queries.json", "Liberty Avenue & 10th Street"),
}
PITTS_VIEWS = [(1, 1), (1, 4), (2, 12)]  # (pitch, yaw)
# NetVLAD's own split differs from AddressCLIP's: coordinates must be found whichever .mat lists the image.
PITTS_MATS = {"pitts250k_train.mat": ["000000", "000002"], "pitts250k_val.mat": ["000001"],
              "pitts250k_test.mat": ["001000"]}


def pitts_rel(place: str, pitch: int, yaw: int) -> str:
    return f"{place[:3]}/{place}_pitch{pitch}_yaw{yaw}.jpg"


def write_db_struct(path: Path, which: str, places: dict[str, tuple[float, float]], views=PITTS_VIEWS) -> None:
    fns = [pitts_rel(p, pitch, yaw) for p in places for pitch, yaw in views]
    utm = np.array([[places[p][i] for p in places for _ in views] for i in (0, 1)])
    cell = np.empty((len(fns), 1), dtype=object)
    cell[:, 0] = fns
    q_cell = np.empty((1, 1), dtype=object)
    q_cell[0, 0] = "queries_real/000/000000_pitch1_yaw1.jpg"
    db = {
        "whichSet": which, "dbImageFns": cell, "utmDb": utm, "qImageFns": q_cell,
        "utmQ": np.array([[584501.0], [4477001.0]]), "numImages": float(len(fns)), "numQueries": 1.0,
        "posDistThr": 25.0, "posDistSqThr": 625.0, "nonTrivPosDistSqThr": 100.0,
    }
    scipy.io.savemat(path, {"dbStruct": db})


def annotation(place: str, pitch: int, yaw: int, address: str) -> list[str]:
    return [f"A street view of a road, view {yaw}", f"The photo was taken near {address}.", address]


def make_pitts(root: Path) -> Path:
    files: dict[str, dict] = {n: {} for n in ("pitts_train.json", "pitts_database.json", "pitts_queries.json")}
    for i, (place, (_, _, file, address)) in enumerate(PITTS_PLACES.items()):
        for pitch, yaw in PITTS_VIEWS:
            write_jpeg(root / pitts_rel(place, pitch, yaw), 40 * i + yaw)
            files[file][pitts_rel(place, pitch, yaw)] = annotation(place, pitch, yaw, address)
    for name, data in files.items():
        (root / name).write_text(json.dumps(data))
    for mat, places in PITTS_MATS.items():
        write_db_struct(root / mat, mat.split("_")[1][:-4], {p: PITTS_PLACES[p][:2] for p in places})
    (root / "queries_real" / "000").mkdir(parents=True)
    write_jpeg(root / "queries_real/000/000000_pitch1_yaw1.jpg")  # a query image: must be ignored
    return root


def build_pitts(raw: Path, out: Path, **kw):
    return build_pitts_ial(out_dir=out, raw_dir=raw, progress=False, **kw)


@pytest.fixture
def pitts_raw(tmp_path):
    return make_pitts(tmp_path / "raw")


def test_savemat_fixture_has_netvlad_layout(pitts_raw):
    """The fixture must read back the way the real files do (1x1 struct, Nx1 cell of 1-element char arrays)."""
    db = scipy.io.loadmat(pitts_raw / "pitts250k_train.mat")["dbStruct"]
    assert db.shape == (1, 1)
    fns = db[0, 0]["dbImageFns"]
    assert fns.shape == (6, 1) and fns[0, 0].shape == (1,) and fns[0, 0][0] == "000/000000_pitch1_yaw1.jpg"
    assert db[0, 0]["utmDb"].shape == (2, 6)
    # The positional access pytorch-NetVlad uses on the real files works on ours too.
    assert [f[0].item() for f in db.item()[1]][:1] == ["000/000000_pitch1_yaw1.jpg"]


def test_pitts_table(pitts_raw, tmp_path):
    ds = read_dataset(build_pitts(pitts_raw, tmp_path / "out"))
    df = ds.samples.set_index("image")
    assert len(df) == 12 and ds.card["images"] == {"train": 6, "val": 3, "test": 3}
    assert ds.card["skipped"] == {} and ds.card["skipped_total"] == 0
    assert ds.card["warnings"] == []  # 4 addresses on 3 streets: the address-format check is satisfied
    assert ds.card["captions"].startswith("AddressCLIP annotation files")
    assert not any("queries_real" in i for i in df.index)

    row = df.loc["images/000/000002_pitch2_yaw12.jpg"]
    assert (row["easting"], row["northing"], row["epsg"]) == (585000.0, 4477500.0, 32617)
    assert row["split"] == "val" and row["location_id"] == "000002"
    assert (row["heading"], row["pitch"]) == (330.0, 26.5)
    assert (row["street"], row["neighbourhood"]) == ("Penn Avenue", "Strip District")
    lon, lat = Transformer.from_crs(32617, 4326, always_xy=True).transform(585000.0, 4477500.0)
    assert row["lat"] == pytest.approx(lat) and row["lon"] == pytest.approx(lon)
    assert 40.40 < row["lat"] < 40.48 and -80.02 < row["lon"] < -79.95  # Pittsburgh, not elsewhere

    row = df.loc["images/001/001000_pitch1_yaw4.jpg"]
    assert (row["split"], row["heading"], row["pitch"]) == ("test", 90.0, 4.0)
    assert (row["street"], row["neighbourhood"], row["address"]) == ("Liberty Avenue", "", "Liberty Avenue & 10th Street")
    assert row["caption"] == "A street view of a road, view 4"
    assert row["address_sentence"] == "The photo was taken near Liberty Avenue & 10th Street."
    assert df.loc["images/000/000000_pitch1_yaw1.jpg", "heading"] == 0.0

    assert ds.samples.groupby("location_id")["split"].nunique().max() == 1
    assert ds.samples.groupby("location_id").size().to_dict() == {p: 3 for p in PITTS_PLACES}
    assert ds.card["inputs"]["mat_files"]["pitts250k_val.mat"] == {"whichSet": "val", "db_images": 3}
    # images/ is a symlink into the raw folder and every table path opens.
    assert (ds.root / "images").is_symlink()
    for image in ds.samples["image"]:
        Image.open(ds.root / image).verify()


def test_pitts_copy_and_files_one_folder_down(pitts_raw, tmp_path):
    (pitts_raw / "datasets").mkdir()
    for mat in PITTS_MATS:
        (pitts_raw / mat).rename(pitts_raw / "datasets" / mat)
    out = build_pitts(pitts_raw, tmp_path / "out", link_images=False, strict=True)
    ds = read_dataset(out)
    assert len(ds.samples) == 12 and ds.card["images_storage"] == "copied"
    assert not (out / "images").is_symlink()
    assert sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.jpg")) == sorted(ds.samples["image"])


def _set_json(raw: Path, name: str, edit) -> None:
    data = json.loads((raw / name).read_text())
    edit(data)
    (raw / name).write_text(json.dumps(data))


def _pitts_corrupt(raw):
    (raw / "000/000001_pitch1_yaw4.jpg").write_bytes(b"this is not a jpeg")


def _pitts_entry_without_image(raw):
    _set_json(raw, "pitts_train.json", lambda d: d.update({"000/000003_pitch1_yaw1.jpg": annotation("", 1, 1, "X Street")}))


def _pitts_image_without_annotation(raw):
    write_jpeg(raw / "000/000009_pitch1_yaw1.jpg")


def _pitts_malformed_json(raw):
    (raw / "pitts_queries.json").write_text('{"001/001000_pitch1_yaw1.jpg": ["a", "b"')


def _pitts_malformed_entry(raw):
    _set_json(raw, "pitts_train.json", lambda d: d.update({"000/000000_pitch1_yaw1.jpg": ["caption only"]}))


def _pitts_malformed_mat(raw):
    (raw / "pitts250k_test.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated garbage")


def _pitts_mat_without_dbstruct(raw):
    scipy.io.savemat(raw / "pitts250k_val.mat", {"something": np.zeros(3)})


def _pitts_outside_area(raw):
    write_db_struct(raw / "pitts250k_test.mat", "test", {"001000": (500000.0, 10.0)})


def _pitts_split_conflict(raw):
    key = "000/000000_pitch2_yaw12.jpg"
    moved = {}
    _set_json(raw, "pitts_train.json", lambda d: moved.update({key: d.pop(key)}))
    _set_json(raw, "pitts_database.json", lambda d: d.update(moved))


def _pitts_duplicate(raw):
    _set_json(raw, "pitts_database.json", lambda d: d.update({"000/000000_pitch1_yaw1.jpg": annotation("", 1, 1, "Y St")}))


def _pitts_bad_name(raw):
    write_jpeg(raw / "000/holiday.jpg")
    _set_json(raw, "pitts_train.json", lambda d: d.update({"000/holiday.jpg": annotation("", 1, 1, "Z St")}))


PITTS_BAD_CASES = {
    # case: (mutation, skipped counts, text the first example and the strict error contain, images kept of 12)
    "corrupt_jpeg": (_pitts_corrupt, {"corrupt_image": 1}, "000001_pitch1_yaw4.jpg", 11),
    "entry_without_image": (_pitts_entry_without_image, {"annotation_without_image": 1}, "000003_pitch1_yaw1.jpg", 12),
    "image_without_annotation": (_pitts_image_without_annotation, {"image_without_annotation": 1}, "000009_pitch1_yaw1.jpg", 12),
    "malformed_json": (_pitts_malformed_json, {"malformed_annotation_file": 1, "image_without_annotation": 3}, "pitts_queries.json", 9),
    "malformed_entry": (_pitts_malformed_entry, {"malformed_annotation_entry": 1, "image_without_annotation": 1}, "000000_pitch1_yaw1.jpg", 11),
    "malformed_mat": (_pitts_malformed_mat, {"malformed_mat_file": 1, "no_coordinates": 3}, "pitts250k_test.mat", 9),
    "mat_without_dbstruct": (_pitts_mat_without_dbstruct, {"malformed_mat_file": 1, "no_coordinates": 3}, "pitts250k_val.mat", 9),
    "outside_area": (_pitts_outside_area, {"outside_area": 3}, "001000_pitch", 9),
    "split_conflict": (_pitts_split_conflict, {"location_in_several_splits": 1}, "000000_pitch2_yaw12.jpg", 11),
    "duplicate_annotation": (_pitts_duplicate, {"duplicate_annotation": 1}, "000000_pitch1_yaw1.jpg", 12),
    "unparseable_name": (_pitts_bad_name, {"unparseable_file_name": 1}, "holiday.jpg", 12),
}


@pytest.mark.parametrize("case", list(PITTS_BAD_CASES))
@pytest.mark.filterwarnings("ignore:address format")  # losing a panorama can leave one address per street
def test_pitts_bad_input_is_counted_or_raised(case, pitts_raw, tmp_path):
    mutate, expected, name, kept = PITTS_BAD_CASES[case]
    mutate(pitts_raw)
    card = read_dataset(build_pitts(pitts_raw, tmp_path / "out")).card
    assert {r: v["count"] for r, v in card["skipped"].items()} == expected
    assert any(name in e for e in card["skipped"][next(iter(expected))]["examples"])
    assert card["skipped_total"] == sum(expected.values())
    assert sum(card["images"].values()) == kept
    with pytest.raises(RawDataError, match=name.replace(".", r"\.")):
        build_pitts(pitts_raw, tmp_path / "strict", strict=True)


def test_pitts_split_conflict_keeps_majority(pitts_raw, tmp_path):
    _pitts_split_conflict(pitts_raw)
    df = read_dataset(build_pitts(pitts_raw, tmp_path / "out")).samples
    assert set(df.loc[df["location_id"] == "000000", "split"]) == {"train"}
    assert "images/000/000000_pitch2_yaw12.jpg" not in set(df["image"])


def test_pitts_truncated_jpeg_needs_full_verify(pitts_raw, tmp_path):
    path = pitts_raw / "000/000000_pitch1_yaw1.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(path, "JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xff\xda") + 200])  # headers up to start-of-scan intact, scan data cut
    header = read_dataset(build_pitts(pitts_raw, tmp_path / "a", verify_images="header")).card
    full = read_dataset(build_pitts(pitts_raw, tmp_path / "b", verify_images="full")).card
    assert header["skipped"] == {}  # header-only verification cannot see truncation: documented trade-off
    assert full["skipped"]["corrupt_image"]["examples"] == ["000/000000_pitch1_yaw1.jpg"]


def test_pitts_missing_inputs_say_what_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*000.*pitts250k_train\.mat.*pitts_train\.json"):
        build_pitts(tmp_path / "nowhere", tmp_path / "out")
    raw = make_pitts(tmp_path / "raw")
    (raw / "pitts250k_val.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing pitts250k_val\.mat;") as err:
        build_pitts(raw, tmp_path / "out")
    assert str(raw) in str(err.value)


def test_cell_strings_flattens_loadmat_layouts():
    nested = np.empty((2, 1), dtype=object)
    nested[0, 0], nested[1, 0] = np.array(["a/x.jpg"]), np.array(["b/y.jpg"])
    assert cell_strings(nested) == ["a/x.jpg", "b/y.jpg"]
    assert cell_strings(np.array(["a/x.jpg", "b/y.jpg"], dtype=object)) == ["a/x.jpg", "b/y.jpg"]  # squeeze_me
    assert cell_strings("a/x.jpg") == ["a/x.jpg"]
    with pytest.raises(ValueError):
        cell_strings(np.zeros(3))


@pytest.mark.parametrize(
    "address, street, neighbourhood",
    [
        ("Forbes Avenue & Craig Street, Oakland", "Forbes Avenue", "Oakland"),
        ("Penn Avenue, Strip District", "Penn Avenue", "Strip District"),
        ("Liberty Avenue & 10th Street", "Liberty Avenue", ""),
        ("Grant Street", "Grant Street", ""),
        ("Fifth Avenue & Market Street & Wood Street, Downtown, Pittsburgh", "Fifth Avenue", "Pittsburgh"),
    ],
)
def test_parse_address(address, street, neighbourhood):
    assert parse_address(address) == (street, neighbourhood)


def _readdress_pitts(raw: Path, addresses: dict[str, str]) -> None:
    """Give every view of each panorama in `addresses` that address, in whichever annotation file lists it."""
    for name in ("pitts_train.json", "pitts_database.json", "pitts_queries.json"):
        _set_json(raw, name, lambda d: d.update(
            {k: [v[0], v[1], addresses[k.split("/")[1][:6]]] for k, v in d.items() if k.split("/")[1][:6] in addresses}))


# (addresses by panorama, text of the error/warning, an example it must show as "address -> parsed street")
ADDRESS_FORMAT_CASES = {
    "bare_street_names": (
        {"000000": "Forbes Avenue", "000001": "Craig Street", "000002": "Penn Avenue", "001000": "Liberty Avenue"},
        "4 distinct streets for 4 distinct addresses", "'Craig Street' -> 'Craig Street'"),
    "one_street": (
        {"000000": "Forbes Avenue & Craig Street, Oakland", "000001": "Forbes Avenue & Atwood Street, Oakland",
         "000002": "Forbes Avenue & Bouquet Street, Oakland", "001000": "Forbes Avenue & Bigelow Boulevard, Oakland"},
        "all 4 distinct addresses parse to the same street", "'Forbes Avenue & Atwood Street, Oakland' -> 'Forbes Avenue'"),
}


@pytest.mark.parametrize("case", list(ADDRESS_FORMAT_CASES))
def test_pitts_address_format_is_checked(case, pitts_raw, tmp_path):
    addresses, why, example = ADDRESS_FORMAT_CASES[case]
    _readdress_pitts(pitts_raw, addresses)
    with pytest.raises(RawDataError, match=why) as err:
        build_pitts(pitts_raw, tmp_path / "strict", strict=True)
    assert example in str(err.value) and "SA-k" in str(err.value)
    assert not (tmp_path / "strict" / "card.json").exists()
    with pytest.warns(UserWarning, match=why) as caught:
        ds = read_dataset(build_pitts(pitts_raw, tmp_path / "lenient"))
    assert [str(w.message) for w in caught if "address format" in str(w.message)] == ds.card["warnings"]
    assert len(ds.card["warnings"]) == 1 and example in ds.card["warnings"][0]
    assert ds.card["streets"] == (4 if case == "bare_street_names" else 1) and ds.card["addresses"] == 4


@pytest.mark.parametrize("case", list(ADDRESS_FORMAT_CASES))
def test_sf_address_format_is_checked(case, sf, tmp_path):
    raw, ann = sf
    _, why, _ = ADDRESS_FORMAT_CASES[case]
    streets = {"bare_street_names": ["Market Street", "Mission Street", "Pine Street", "Kearny Street"],
               "one_street": [f"Market Street & {n} Street, SoMa" for n in ("1st", "2nd", "3rd", "4th")]}[case]
    by_pano = dict(zip(SF_PANOS, streets))
    for f in ann.glob("sf_base_*.json"):
        data = json.loads(f.read_text())
        (f).write_text(json.dumps({k: [v[0], v[1], next(a for p, a in by_pano.items() if p in k)]
                                   for k, v in data.items()}))
    with pytest.raises(RawDataError, match=why):
        build_sf(raw, tmp_path / "strict", annotations=ann, strict=True)
    with pytest.warns(UserWarning, match=why):
        card = read_dataset(build_sf(raw, tmp_path / "lenient", annotations=ann)).card
    assert len(card["warnings"]) == 1 and why in card["warnings"][0]


def test_address_format_needs_two_addresses():
    one = pd.DataFrame({"address": ["Grant Street"] * 3, "street": ["Grant Street"] * 3})
    assert address_format_problem(one) is None
    good = pd.DataFrame({"address": ["A St & B St", "A St & C St", "D St"], "street": ["A St", "A St", "D St"]})
    assert address_format_problem(good) is None
    assert "same street" in address_format_problem(good.assign(street="A St"))
    assert "SA-k would equal SSA-k" in address_format_problem(good.assign(street=good["address"]))


# ---------------------------------------------------------------------------------------------------------
# SF-IAL fixture

TO_UTM10 = Transformer.from_crs(4326, 32610, always_xy=True)
# pano id -> (lat, lon, folder under processed/, annotation file, key style, address)
SF_PANOS = {
    "Pano1aaaaaaaaaaaaaaaaa": (37.7750, -122.4190, "train/37.77", "sf_base_train.json", "rel", "Market Street & 8th Street, SoMa"),
    "Pano2bbbbbbbbbbbbbbbbb": (37.7760, -122.4175, "train/37.77", "sf_base_train.json", "rel", "Market Street & 7th Street, SoMa"),
    "Pano3ccccccccccccccccc": (37.7800, -122.4100, "test/database", "sf_base_database.json", "name", "Mission Street, SoMa"),
    "Pano4ddddddddddddddddd": (37.7900, -122.4000, "test/queries", "sf_base_queries.json", "prefixed", "Pine Street & Kearny Street"),
}
SF_HEADINGS = (0, 210)


def sf_name(pano: str, lat: float, lon: float, heading: int, lat_in_name: float | None = None) -> str:
    e, n = TO_UTM10.transform(lon, lat)
    shown = lat if lat_in_name is None else lat_in_name
    return f"@{e:010.2f}@{n:010.2f}@10@S@{shown:09.5f}@{lon:010.5f}@{pano}@@{heading}@@@@201311@@.jpg"


def make_sf(tmp: Path) -> tuple[Path, Path]:
    raw, ann = tmp / "sf_xl", tmp / "annotations"
    files: dict[str, dict] = {}
    for pano, (lat, lon, folder, file, style, address) in SF_PANOS.items():
        for heading in SF_HEADINGS:
            rel = f"{folder}/{sf_name(pano, lat, lon, heading)}"
            write_jpeg(raw / "processed" / rel, heading % 200)
            key = {"rel": rel, "name": rel.rsplit("/", 1)[-1], "prefixed": f"processed/{rel}"}[style]
            files.setdefault(file, {})[key] = [f"A street view, heading {heading}", f"Near {address}.", address]
    # A file of the other variant in the same folder must be ignored for variant="base".
    files["sf_large_train.json"] = {"train/37.77/@missing.jpg": ["c", "s", "Other Street"]}
    ann.mkdir()
    for name, data in files.items():
        (ann / name).write_text(json.dumps(data))
    return raw, ann


@pytest.fixture
def sf(tmp_path):
    return make_sf(tmp_path)


def build_sf(raw, out, **kw):
    return build_sf_ial(out_dir=out, name="sf-ial-base", raw_dir=raw, progress=False, **kw)


def test_parse_sfxl_name_real_example():
    f = parse_sfxl_name("@0544388.51@4172758.25@10@S@037.70098@-122.49646@kPnABhWJ1kA61eMNPLs1vQ@@210@@@@201606@@.jpg")
    assert (f["easting"], f["northing"], f["epsg"], f["location_id"]) == (544388.51, 4172758.25, 32610, "kPnABhWJ1kA61eMNPLs1vQ")
    assert f["heading"] == 210.0 and np.isnan(f["pitch"])
    # The UTM fields and the lat/lon fields of this real name agree under EPSG:32610 ("S" is a northern band).
    lon, lat = Transformer.from_crs(32610, 4326, always_xy=True).transform(544388.51, 4172758.25)
    assert (lat, lon) == (pytest.approx(37.70098, abs=2e-5), pytest.approx(-122.49646, abs=2e-5))
    assert parse_sfxl_name("@0334000.00@6252000.00@56@H@-33.86000@151.21000@p@@90@5@@@@@.jpg")["epsg"] == 32756
    assert parse_sfxl_name("@0334000.00@6252000.00@56@H@@@p@@@@@@@@.jpg")["epsg"] == 32756  # band H: south
    with pytest.raises(ValueError):
        parse_sfxl_name("IMG_0001.jpg")


@pytest.mark.parametrize(
    "stem, split",
    [("sf_base_train", "train"), ("sf_base_database", "val"), ("sf_base_queries", "test"), ("pitts_database", "val"),
     ("val_queries", "val"), ("test_database", "test"), ("sf_base_extra", None), ("train_test", None)],
)
def test_split_from_file_name(stem, split):
    assert split_from_file_name(stem) == split


def test_sf_annotated_table(sf, tmp_path):
    raw, ann = sf
    ds = read_dataset(build_sf(raw, tmp_path / "out", annotations=ann, strict=True))
    df = ds.samples
    assert len(df) == 8 and ds.card["images"] == {"train": 4, "val": 2, "test": 2}
    assert ds.card["skipped"] == {} and ds.card["warnings"] == []
    assert ds.card["captions"].startswith("AddressCLIP annotation files")
    assert ds.card["split_mapping"]["files"] == {
        "sf_base_database.json": "val", "sf_base_queries.json": "test", "sf_base_train.json": "train"}
    assert set(df["epsg"]) == {32610}
    for pano, (lat, lon, folder, file, _, address) in SF_PANOS.items():
        rows = df[df["location_id"] == pano]
        assert len(rows) == 2 and set(rows["split"]) == {{"sf_base_train.json": "train",
                                                         "sf_base_database.json": "val",
                                                         "sf_base_queries.json": "test"}[file]}
        e, n = TO_UTM10.transform(lon, lat)
        assert np.allclose(rows["easting"], round(e, 2)) and np.allclose(rows["northing"], round(n, 2))
        assert np.allclose(rows["lat"], lat, atol=1e-6) and np.allclose(rows["lon"], lon, atol=1e-6)
        assert sorted(rows["heading"]) == list(map(float, SF_HEADINGS))
        assert set(rows["address"]) == {address}
        assert all(r.startswith(f"images/{folder}/@") for r in rows["image"])
    row = df[df["location_id"] == "Pano4ddddddddddddddddd"].iloc[0]
    assert (row["street"], row["neighbourhood"]) == ("Pine Street", "")
    row = df[df["location_id"] == "Pano1aaaaaaaaaaaaaaaaa"].iloc[0]
    assert (row["street"], row["neighbourhood"]) == ("Market Street", "SoMa")
    assert row["caption"].startswith("A street view, heading")
    for image in df["image"]:
        Image.open(ds.root / image).verify()


def test_sf_unannotated_images_are_counted_but_not_fatal(sf, tmp_path):
    raw, ann = sf
    write_jpeg(raw / "processed/train/37.77" / sf_name("Pano9zzzzzzzzzzzzzzzzz", 37.77, -122.43, 90))
    card = read_dataset(build_sf(raw, tmp_path / "out", annotations=ann, strict=True)).card
    assert card["skipped"]["image_without_annotation"]["count"] == 1
    assert "Pano9" in card["skipped"]["image_without_annotation"]["examples"][0]


def _sf_add_image(raw, ann, file, rel):
    write_jpeg(raw / "processed" / rel)
    data = json.loads((ann / file).read_text())
    data[rel] = ["caption", "sentence", "Extra Street, SoMa"]
    (ann / file).write_text(json.dumps(data))


def _sf_first(raw):
    return sorted((raw / "processed/train/37.77").iterdir())[0]


SF_BAD_CASES = {
    "unparseable_name": (
        lambda raw, ann: _sf_add_image(raw, ann, "sf_base_train.json", "train/37.77/IMG_0001.jpg"),
        {"unparseable_file_name": 1}, "IMG_0001.jpg"),
    "corrupt_jpeg": (lambda raw, ann: _sf_first(raw).write_bytes(b"\xff\xd8 broken"), {"corrupt_image": 1}, "Pano1"),
    "entry_without_image": (
        lambda raw, ann: (ann / "sf_base_train.json").write_text(json.dumps(
            {**json.loads((ann / "sf_base_train.json").read_text()), "train/37.77/@gone@.jpg": ["c", "s", "A St"]})),
        {"annotation_without_image": 1}, "@gone@.jpg"),
    "malformed_json": (lambda raw, ann: (ann / "sf_base_queries.json").write_text("[1, 2"),
                       {"malformed_annotation_file": 1, "image_without_annotation": 2}, "sf_base_queries.json"),
    "unknown_split_file": (lambda raw, ann: (ann / "sf_base_extra.json").write_text("{}"),
                           {"unknown_split_file": 1}, "sf_base_extra.json"),
    "inconsistent_coordinates": (
        lambda raw, ann: _sf_add_image(raw, ann, "sf_base_train.json",
                                       "train/37.77/" + sf_name("PanoXoff", 37.77, -122.43, 0, lat_in_name=37.78)),
        {"inconsistent_coordinates": 1}, "PanoXoff"),
    "outside_area": (
        lambda raw, ann: _sf_add_image(raw, ann, "sf_base_train.json",
                                       "train/37.77/" + sf_name("PanoFar", 37.40, -122.10, 0)),
        {"outside_area": 1}, "PanoFar"),
}


@pytest.mark.parametrize("case", list(SF_BAD_CASES))
def test_sf_bad_input_is_counted_or_raised(case, sf, tmp_path):
    raw, ann = sf
    mutate, expected, name = SF_BAD_CASES[case]
    mutate(raw, ann)
    card = read_dataset(build_sf(raw, tmp_path / "out", annotations=ann)).card
    assert {r: v["count"] for r, v in card["skipped"].items()} == expected
    assert any(name in e for e in card["skipped"][next(iter(expected))]["examples"])
    with pytest.raises(RawDataError, match=name.replace(".", r"\.")):
        build_sf(raw, tmp_path / "strict", annotations=ann, strict=True)


def test_sf_missing_inputs(tmp_path, sf):
    with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*processed"):
        build_sf(tmp_path / "nowhere", tmp_path / "out", annotations=tmp_path)
    raw, ann = sf
    with pytest.raises(ValueError, match="annotations=.*osm="):
        build_sf(raw, tmp_path / "out")
    with pytest.raises(ValueError, match="subset_bbox"):
        build_sf(raw, tmp_path / "out", osm="sf.osm.pbf")
    with pytest.raises(FileNotFoundError, match="no_such.json"):
        build_sf(raw, tmp_path / "out", annotations=tmp_path / "no_such.json")
    # Annotations at the default place (raw/annotations) are found without being named.
    ann.rename(raw / "annotations")
    assert len(read_dataset(build_sf(raw, tmp_path / "out")).samples) == 8


def _fake_partition(monkeypatch, calls):
    import geopandas as gpd
    from shapely.geometry import LineString

    osm = types.ModuleType("addressclip.datasets.osm")
    osm.load_osm = lambda path: calls.setdefault("osm", path) and "streets"
    part = types.ModuleType("addressclip.datasets.partition")

    def assign_addresses(points, streets):
        calls["crs"], calls["n"] = points.crs.to_epsg(), len(points)
        # West of lon -122.414 (between panoramas 2 and 3): Market Street; panorama 4 gets no address; panorama
        # 3's heading-210 crop gets a second Mission Street sub-street (so streets < addresses, as in real data).
        split_x = TO_UTM10.transform(-122.414, 37.78)[0]
        address = np.where(points.geometry.x < split_x, "Market Street & 8th Street, SoMa",
                           np.where(points["rel"].str.contains("@210@"), "Mission Street & 4th Street",
                                    "Mission Street & 3rd Street"))
        address = pd.Series(address, index=points.index).mask(points["location_id"] == "Pano4ddddddddddddddddd", "")
        segments = gpd.GeoDataFrame({"address": ["Market Street & 8th Street, SoMa"], "street": ["Market Street"]},
                                    geometry=[LineString([(550000, 4180000), (550400, 4180300)])], crs="EPSG:32610")
        return pd.DataFrame({"address": address}), segments

    part.assign_addresses = assign_addresses
    monkeypatch.setitem(sys.modules, "addressclip.datasets.osm", osm)
    monkeypatch.setitem(sys.modules, "addressclip.datasets.partition", part)


def test_sf_osm_path_uses_partition_and_hash_split(sf, tmp_path, monkeypatch):
    raw, _ = sf
    calls: dict = {}
    _fake_partition(monkeypatch, calls)
    with pytest.warns(UserWarning, match="captions: none") as caught:
        out = build_sf_ial(out_dir=tmp_path / "out", name="sf-ial-large", variant="large", raw_dir=raw,
                           osm="sf.osm.pbf", progress=False)
    ds = read_dataset(out)
    # no photo captioner given: no captions, and the card and a warning say so (the address format is fine)
    assert ds.card["captions"] == "none"
    assert ds.card["warnings"] == [str(w.message) for w in caught] and "caption loss" in ds.card["warnings"][0]
    assert calls == {"osm": "sf.osm.pbf", "crs": 32610, "n": 8}
    assert len(ds.samples) == 6 and ds.card["skipped"]["no_address"]["count"] == 2
    assert ds.samples.groupby("location_id")["split"].nunique().max() == 1
    expected = hash_split(ds.samples["location_id"], (0.8, 0.1, 0.1))
    assert list(ds.samples["split"]) == list(expected)
    assert set(ds.samples["caption"]) == {""}
    assert ds.segments is not None and len(ds.segments) == 1
    assert ds.card["streets"] == 2 and ds.card["addresses"] == 3
    street = ds.samples.set_index("location_id").loc["Pano3ccccccccccccccccc", "street"]
    assert set(np.atleast_1d(street)) == {"Mission Street"}


class MeanColourCaptioner:
    """A stand-in for a photo captioner (BLIP): describes the pixels it is given, nothing else."""

    name = "mean-colour test captioner"

    def __init__(self):
        self.infos = []

    def __call__(self, image, info):
        self.infos.append(info)
        r, g, b = (int(round(v)) for v in np.asarray(image, dtype=float).reshape(-1, 3).mean(0))
        return f"A street view of a scene whose average colour is red {r}, green {g} and blue {b}."


def test_sf_osm_path_captions_with_a_photo_captioner(sf, tmp_path, monkeypatch):
    raw, _ = sf
    _fake_partition(monkeypatch, {})
    captioner = MeanColourCaptioner()
    ds = read_dataset(build_sf_ial(out_dir=tmp_path / "out", name="sf-ial-large", variant="large", raw_dir=raw,
                                   osm="sf.osm.pbf", progress=False, strict=True, captioner=captioner))
    assert ds.card["captions"] == "mean-colour test captioner" and ds.card["warnings"] == []
    df = ds.samples
    assert len(df) == 6 and (df["caption"].str.len() > 0).all() and captioner.infos == [{}] * 6
    # each caption is the captioner's output for that very image (write_jpeg colours depend on the heading)
    for image, caption in zip(df["image"], df["caption"]):
        assert caption == captioner(Image.open(ds.root / image).convert("RGB"), {})
    assert df["caption"].nunique() == 2  # headings 0 and 210 -> two colours


def test_sf_osm_path_refuses_the_template_captioner(sf, tmp_path, monkeypatch):
    from addressclip.datasets.captions import TemplateCaptioner

    raw, _ = sf
    _fake_partition(monkeypatch, {})
    with pytest.raises(ValueError, match="TemplateCaptioner.*metadata"):
        build_sf_ial(out_dir=tmp_path / "out", name="sf-ial-large", variant="large", raw_dir=raw,
                     osm="sf.osm.pbf", progress=False, captioner=TemplateCaptioner())


def test_sf_osm_path_without_partition_module_says_so(sf, tmp_path, monkeypatch):
    raw, _ = sf
    monkeypatch.setitem(sys.modules, "addressclip.datasets.partition", None)
    with pytest.raises(ImportError, match=r"assign_addresses.*annotations="):
        build_sf_ial(out_dir=tmp_path / "out", name="sf-ial-large", variant="large", raw_dir=raw,
                     osm="sf.osm.pbf", progress=False)


def test_hash_split_is_deterministic_and_proportional():
    ids = pd.Series([f"pano{i}" for i in range(3000)])
    a, b = hash_split(ids), hash_split(ids.sample(frac=1, random_state=0).sort_index())
    assert list(a) == list(b)
    share = pd.Series(a).value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.8, abs=0.03) and share["test"] == pytest.approx(0.1, abs=0.02)
    assert set(hash_split(pd.Series(["x", "x", "y"]))[:2]) <= {"train", "val", "test"}


@pytest.mark.filterwarnings("ignore:address format")  # one panorama per street by construction: streets == addresses
def test_sf_osm_path_with_real_partition_on_bundled_extract(tmp_path):
    """End to end through the real load_osm + assign_addresses, with SF-XL-style names placed on Helsinki streets."""
    from addressclip.datasets.osm import load_osm

    city = load_osm("helsinki")
    to_lonlat = Transformer.from_crs(city.epsg, 4326, always_xy=True)
    streets = city.streets.drop_duplicates("name").head(6)
    raw = tmp_path / "sf_xl"
    for i, line in enumerate(streets.geometry):
        p = line.interpolate(0.5, normalized=True)
        lon, lat = to_lonlat.transform(p.x, p.y)
        for heading in SF_HEADINGS:
            name = f"@{p.x:010.2f}@{p.y:010.2f}@35@V@{lat:09.5f}@{lon:010.5f}@HelPano{i}@@{heading}@@@@201906@@.jpg"
            write_jpeg(raw / "processed/train" / name)
    with pytest.warns(UserWarning, match="captions: none"):
        ds = read_dataset(build_sf_ial(out_dir=tmp_path / "out", name="sf-ial-large", variant="large", raw_dir=raw,
                                       osm="helsinki", area=(24.90, 60.15, 25.00, 60.20), progress=False))
    assert ds.card["captions"] == "none"
    df = ds.samples
    assert len(df) == 12 and set(df["epsg"]) == {city.epsg} and ds.card["skipped"] == {}
    assert set(df["street"]) <= set(city.street_names)
    assert all(a.startswith(s) for a, s in zip(df["address"], df["street"]))
    assert df.groupby("location_id")["split"].nunique().max() == 1
    assert ds.segments is not None and set(df["address"]) <= set(ds.segments["address"])


def test_sf_subset_bbox_selects_without_error(sf, tmp_path, monkeypatch):
    raw, _ = sf
    _fake_partition(monkeypatch, {})
    west_of_pano3 = (-122.45, 37.70, -122.414, 37.80)
    with pytest.warns(UserWarning, match="captions: none"):
        ds = read_dataset(build_sf_ial(out_dir=tmp_path / "out", name="sf-ial-base", variant="base", raw_dir=raw,
                                       osm="sf.osm.pbf", subset_bbox=west_of_pano3, strict=True, progress=False))
    assert set(ds.samples["location_id"]) == {"Pano1aaaaaaaaaaaaaaaaa", "Pano2bbbbbbbbbbbbbbbbb"}
    assert ds.card["skipped"]["outside_subset_bbox"]["count"] == 4
    with pytest.raises(RawDataError, match="subset_bbox"):
        build_sf_ial(out_dir=tmp_path / "none", name="sf-ial-base", raw_dir=raw, osm="x", subset_bbox=(0, 0, 1, 1),
                     progress=False)
