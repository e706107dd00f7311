"""AddressLocator and `addressclip predict`: any image, any candidate list, cached galleries, clear errors."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from addressclip.cli import main
from addressclip.datasets import load_dataset
from addressclip.evaluate import evaluate
from addressclip.data import to_rgb
from addressclip.cache import DamagedCacheWarning
from addressclip.inference import topk
from addressclip.predict import (AddressLocator, SmallImageWarning, UnreadableImageWarning, gallery_key, read_candidates,
                                 to_long, to_records)
from addressclip.runs import save_checkpoint


@pytest.fixture(scope="module")
def run_dir(tiny_dataset, default_model, tmp_path_factory):
    """A run folder holding a model.pt in train.py's format (untrained weights are enough to test plumbing)."""
    folder = tmp_path_factory.mktemp("runs") / "tiny-run"
    save_checkpoint(folder / "model.pt", {"model": default_model.clip.state_dict(), "spec": default_model.spec.to_dict(),
                                          "config": {"dataset": str(tiny_dataset)}})
    return folder


@pytest.fixture(scope="module")
def locator(run_dir, tiny_dataset):
    return AddressLocator.from_checkpoint(run_dir, dataset=str(tiny_dataset), device="cpu")


@pytest.fixture(scope="module")
def image_folder(tiny_dataset, tmp_path_factory):
    """Two dataset images, odd sizes and modes, and three files that are not images at all."""
    folder = tmp_path_factory.mktemp("photos")
    ds = load_dataset(str(tiny_dataset))
    for name in ds.split("test")["image"][:2]:
        (folder / name.split("/")[-1]).write_bytes((tiny_dataset / name).read_bytes())
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (211, 37, 4), dtype=np.uint8), "RGBA").save(folder / "tall_rgba.png")
    Image.fromarray(rng.integers(0, 255, (17, 300), dtype=np.uint8), "L").save(folder / "wide_grey.png")
    Image.fromarray(rng.integers(0, 65535, (40, 50), dtype=np.uint16)).save(folder / "deep_16bit.png")
    (folder / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(folder / "sub" / "nested.webp")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image, and not an image extension: ignored when walking a folder")
    return folder


READABLE = {"tall_rgba.png", "wide_grey.png", "deep_16bit.png", "nested.webp"}
UNREADABLE = {"corrupt.jpg", "empty.png"}


def _names(paths):
    return {str(p).rsplit("/", 1)[-1] for p in paths}


@pytest.fixture(scope="module")
def folder_frame(locator, image_folder):
    with pytest.warns(UnreadableImageWarning, match="skipped 2 unreadable"):
        return locator.predict(image_folder, k=3)


def test_folder_with_bad_and_odd_images(locator, image_folder, folder_frame):
    frame = folder_frame
    assert _names(frame.attrs["skipped"]) == UNREADABLE
    assert len(frame) == 2 + len(READABLE) and READABLE <= _names(frame["image"])
    assert "notes.txt" not in _names(frame["image"]) | _names(frame.attrs["skipped"])
    for ranked, scores in zip(frame["topk"], frame["scores"]):
        assert len(ranked) == 3 and set(ranked) <= set(locator.candidates) and scores == sorted(scores, reverse=True)
    assert (frame["address"] == frame["topk"].str[0]).all()
    # an explicitly named unreadable file is reported too, and the good one still predicted
    with pytest.warns(UnreadableImageWarning):
        frame = locator.predict([image_folder / "corrupt.jpg", image_folder / "wide_grey.png",
                                 image_folder / "missing.jpg"], k=2)
    assert list(_names(frame["image"])) == ["wide_grey.png"]
    assert _names(frame.attrs["skipped"]) == {"corrupt.jpg", "missing.jpg"}


def test_image_modes_become_rgb_sensibly():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent: must become the white background, not red
    assert np.asarray(to_rgb(Image.fromarray(rgba, "RGBA"))).min() == 255
    deep = Image.fromarray(np.array([[1000, 2000], [3000, 4000]], np.uint16))
    out = np.asarray(to_rgb(deep))
    assert out.shape == (2, 2, 3) and out.min() == 0 and out.max() == 255  # rescaled, not clipped to white


def test_tiny_images_are_predicted_with_a_warning(locator, image_folder):
    tiny = Image.new("RGB", (1, 1), (90, 90, 90))
    with pytest.warns(SmallImageWarning, match=r"1 image\(s\) smaller than 16 px on a side.*<image 0> \(1x1\)"):
        frame = locator.predict([tiny, image_folder / "wide_grey.png"], k=2)  # 17 px high: not small
    assert len(frame) == 2 and frame.attrs["small"] == {"<image 0>": "1x1"}


def test_pil_images_and_paths_rank_the_same(locator, tiny_dataset):
    path = tiny_dataset / load_dataset(str(tiny_dataset)).split("test")["image"][0]
    with Image.open(path) as im:
        pil = im.copy()
    a, b = locator.predict([path], k=4), locator.predict([pil], k=4, records=True)
    assert b[0]["image"] == "<image 0>" and [p["address"] for p in b[0]["predictions"]] == a["topk"][0]
    assert np.allclose([p["score"] for p in b[0]["predictions"]], a["scores"][0], atol=1e-5)


def test_predictions_match_evaluate(locator, tiny_dataset):
    ds = load_dataset(str(tiny_dataset))
    result = evaluate(locator.model, ds, "test", k=5, num_workers=0)
    frame = locator.predict([ds.root / p for p in ds.split("test")["image"]], k=5)
    assert frame["address"].tolist() == result.predictions["pred"].tolist()
    assert np.allclose(np.stack(frame["scores"]), np.stack(result.predictions["scores"]), atol=1e-5)


def test_chunked_topk_equals_full_topk():
    g = torch.Generator().manual_seed(0)
    queries, gallery = torch.randn(37, 16, generator=g), torch.randn(1000, 16, generator=g)
    full_s, full_i = (queries @ gallery.T).topk(7, dim=1)
    s, i = topk(queries, gallery, 7, query_chunk=8, gallery_chunk=64)
    assert torch.equal(i, full_i) and torch.allclose(s, full_s)
    s, i = topk(queries, gallery[:5], 50, gallery_chunk=2)  # k above the gallery size is capped
    assert i.shape == (37, 5) and torch.equal(i, (queries @ gallery[:5].T).topk(5, dim=1).indices)


def test_open_vocabulary_candidates(locator, run_dir, tmp_path):
    loc = AddressLocator(locator.model, checkpoint=run_dir / "model.pt", cache_dir=tmp_path / "cache")
    loc.set_candidates(["Bulevardi & Annankatu", "Forbes Avenue & Craig Street"])
    frame = loc.predict(run_dir.parent, k=5)  # no images there: an empty table, not an error
    assert frame.empty
    image = Image.fromarray(np.full((50, 80, 3), 128, np.uint8))
    frame = loc.predict(image, k=10)  # k above the candidate count: every candidate, once
    assert sorted(frame["topk"][0]) == ["Bulevardi & Annankatu", "Forbes Avenue & Craig Street"]
    listing = tmp_path / "streets.txt"
    listing.write_text("  Mannerheimintie & Kaivokatu \n\nEsplanadi & Unioninkatu\nMannerheimintie & Kaivokatu\n")
    assert read_candidates(listing) == ["Mannerheimintie & Kaivokatu", "Esplanadi & Unioninkatu"]
    loc.set_candidates(listing)
    assert set(loc.predict(image, k=2)["topk"][0]) == {"Mannerheimintie & Kaivokatu", "Esplanadi & Unioninkatu"}


def test_gallery_cache_hit_reuses_the_file_and_changes_miss(locator, run_dir, tmp_path, monkeypatch):
    loc = AddressLocator(locator.model, checkpoint=run_dir / "model.pt", cache_dir=tmp_path / "cache")
    loc.set_candidates(["A street & B street", "C street"])
    first = loc.gallery_info
    assert not first.from_cache and first.path.exists() and first.path.parent == tmp_path / "cache"
    stamp, gallery = first.path.stat().st_mtime_ns, loc.gallery.clone()

    def refuse(*args, **kwargs):
        raise AssertionError("a cache hit must not encode texts")

    monkeypatch.setattr("addressclip.predict.encode_texts", refuse)
    hit = loc.set_candidates(["A street & B street", "C street"])
    assert hit.from_cache and hit.path == first.path and first.path.stat().st_mtime_ns == stamp
    assert torch.equal(loc.gallery, gallery)
    monkeypatch.undo()
    changed = loc.set_candidates(["A street & B street", "C street", "D street"])
    assert not changed.from_cache and changed.path != first.path and changed.path.exists()
    loc.template = "Address: {address}"
    assert not loc.set_candidates(["A street & B street", "C street"]).from_cache  # the template is part of the key
    loc.template = "{address}"
    first.path.write_bytes(b"truncated")  # a damaged cache file is reported, set aside and recomputed, never trusted
    with pytest.warns(DamagedCacheWarning, match="moved aside"):
        again = loc.set_candidates(["A street & B street", "C street"])
    assert not again.from_cache and torch.allclose(loc.gallery, gallery, atol=1e-6)
    assert gallery_key("ckpt-a", ["x"], "{address}") != gallery_key("ckpt-b", ["x"], "{address}")
    assert len(list((tmp_path / "cache").glob("*.tmp"))) == 0


def test_default_cache_lives_next_to_the_checkpoint(locator, run_dir):
    assert locator.gallery_info.path.parent == run_dir / "gallery_cache"


def test_cli_end_to_end(run_dir, image_folder, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(run_dir), "-k", "3", str(image_folder), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "wide_grey.png" in captured.out and "  1. " in captured.out
    assert "skipped" in captured.err and "corrupt.jpg" in captured.err
    table = pd.read_csv(out)
    good = table[table["error"].isna()]
    assert len(good) == 3 * (2 + len(READABLE)) and set(good["rank"]) == {1, 2, 3}
    assert _names(table.loc[table["error"].notna(), "image"]) == UNREADABLE
    # open vocabulary from a file, JSON output, k above the number of candidates
    listing = tmp_path / "new_streets.txt"
    listing.write_text("Bulevardi & Annankatu\nFredrikinkatu & Lönnrotinkatu\n")
    out = tmp_path / "pred.json"
    assert main(["predict", "--checkpoint", str(run_dir / "model.pt"), "--addresses", str(listing), "-k", "9",
                 "--quiet", str(image_folder / "wide_grey.png"), str(image_folder / "empty.png"), "-o", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [len(r.get("predictions", [])) for r in records] == [2, 0] and "error" in records[1]
    assert {p["address"] for p in records[0]["predictions"]} == {"Bulevardi & Annankatu", "Fredrikinkatu & Lönnrotinkatu"}
    assert capsys.readouterr().out == ""  # --quiet


def test_clear_errors(run_dir, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no run"):
        AddressLocator.from_checkpoint(tmp_path / "nowhere")
    assert main(["predict", "--checkpoint", str(tmp_path / "nowhere"), str(tmp_path)]) == 2
    assert "no run" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run_dir), "--dataset", "atlantis-synth", str(tmp_path)]) == 2
    assert "unknown dataset 'atlantis-synth'" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run_dir), "--addresses", str(tmp_path / "none.txt"), str(tmp_path)]) == 2
    assert "no candidate address file" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run_dir), "-k", "0", str(tmp_path)]) == 2
    assert "-k must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="empty"):
        read_candidates(["", "   "])


def test_records_and_long_tables(folder_frame):
    records = to_records(folder_frame)
    assert [len(r["predictions"]) for r in records[: len(folder_frame)]] == [3] * len(folder_frame)
    assert _names(r["image"] for r in records[len(folder_frame):]) == UNREADABLE
    assert all("error" in r for r in records[len(folder_frame):])
    long = to_long(folder_frame)
    assert list(long.columns) == ["image", "rank", "address", "score", "lat", "lon", "distance_m", "photo_lat", "photo_lon"]
    assert len(long) == 3 * len(folder_frame)
    # every address of a dataset has a place (its sub-street); these images carry no EXIF GPS: no distance
    assert long["lat"].notna().all() and long["distance_m"].isna().all() and long["photo_lat"].isna().all()
    assert long.groupby("image")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
