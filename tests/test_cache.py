"""The one cache module: whole files or none, checksums that catch damage, one policy for a damaged cache."""
import json
import os

import pytest
import torch

from addressclip import cache


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_round_trip_and_digest_is_content_not_identity(tmp_path):
    payload = {"a": torch.arange(10, dtype=torch.float32), "b": {"c": [1, "x"]}, "n": 3}
    cache.save(tmp_path / "p.pt", payload)
    back = cache.load(tmp_path / "p.pt")
    assert torch.equal(back["a"], payload["a"]) and back["b"] == payload["b"] and back["n"] == 3
    assert cache.digest(payload) == cache.digest({"n": 3, "b": {"c": [1, "x"]}, "a": torch.arange(10.0)})
    assert cache.digest(torch.zeros(2)) != cache.digest(torch.zeros(2, dtype=torch.float64))  # dtype counts
    assert cache.digest(torch.zeros(4)) != cache.digest(torch.zeros(2, 2))  # shape counts
    assert cache.digest("ab", "c") != cache.digest("a", "bc")  # parts are delimited


def test_every_flipped_tensor_byte_and_truncation_is_caught(tmp_path):
    path = tmp_path / "p.pt"
    cache.save(path, {"x": torch.randn(256, generator=torch.Generator().manual_seed(0))})
    good = path.read_bytes()
    data_at = good.index(cache.load(path)["x"].numpy().tobytes()[:64])  # where the tensor's bytes sit
    caught = 0
    for offset in range(data_at, data_at + 1024, 37):  # spread over the tensor data
        path.write_bytes(good)
        _flip_byte(path, offset)
        with pytest.raises(cache.DamagedFile):
            cache.load(path)
        caught += 1
    assert caught > 20
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(cache.DamagedFile, match="cannot be read"):
        cache.load(path)


def test_load_or_compute_sets_damage_aside_and_recomputes(tmp_path):
    path, calls = tmp_path / "c.pt", []

    def compute():
        calls.append(1)
        return {"v": torch.ones(3)}

    first, hit = cache.load_or_compute(path, compute)
    assert not hit and path.exists() and len(calls) == 1
    again, hit = cache.load_or_compute(path, compute)
    assert hit and len(calls) == 1 and torch.equal(again["v"], first["v"])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(cache.DamagedCacheWarning, match="moved aside"):
        value, hit = cache.load_or_compute(path, compute)
    assert not hit and len(calls) == 2 and torch.equal(value["v"], torch.ones(3))
    assert (tmp_path / "c.pt.damaged").exists() and cache.load(path)  # the fresh copy is whole
    # a whole file that does not hold what was asked for is not used either
    with pytest.warns(cache.DamagedCacheWarning):
        value, hit = cache.load_or_compute(path, lambda: {"v": torch.ones(4)}, valid=lambda p: len(p["v"]) == 4)
    assert not hit and len(value["v"]) == 4


def test_unwritable_folder_keeps_the_result_in_memory(tmp_path, caplog, monkeypatch):
    def refuse(tmp):
        raise PermissionError(13, "Permission denied", str(tmp))

    monkeypatch.setattr(cache.torch, "save", lambda obj, f: refuse(f))  # as on a read-only folder (root ignores chmod)
    value, hit = cache.load_or_compute(tmp_path / "c.pt", lambda: {"v": torch.zeros(1)})
    assert not hit and torch.equal(value["v"], torch.zeros(1)) and "stays in memory" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_no_temporary_and_no_half_file(tmp_path):
    target = tmp_path / "out.json"
    cache.write_json(target, {"a": 1})

    def fails(tmp):
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.atomic_write(target, fails)
    assert json.loads(target.read_text()) == {"a": 1}  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # and no temporary left behind


def test_temporary_names_are_unique_per_call(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(cache.os, "replace", lambda src, dst: seen.append(src.name) or os.rename(src, dst))
    cache.write_text(tmp_path / "x", "1")
    cache.write_text(tmp_path / "x", "2")
    assert len(set(seen)) == 2 and all(str(os.getpid()) in name for name in seen)


def test_damaged_json_result_is_recomputed(tmp_path):
    path = tmp_path / "row.json"
    path.write_text('{"SSA-1": 4')  # cut short
    with pytest.warns(cache.DamagedCacheWarning):
        row, hit = cache.load_or_compute_json(path, lambda: {"SSA-1": 42.0})
    assert not hit and row == {"SSA-1": 42.0} and cache.load_json_checked(path) == row
    assert cache.load_or_compute_json(path, lambda: pytest.fail("must be read"))[0] == row
    # a file that parses but was changed (a flipped digit) is damaged too: JSON results carry a checksum
    path.write_text(path.read_text().replace("42.0", "43.0"))
    with pytest.warns(cache.DamagedCacheWarning, match="do not match the checksum"):
        assert cache.load_or_compute_json(path, lambda: {"SSA-1": 42.0}) == ({"SSA-1": 42.0}, False)
    path.write_text(json.dumps({"SSA-1": 41.0}))  # written before results carried checksums: read as it is
    assert cache.load_or_compute_json(path, lambda: pytest.fail("must be read"))[0] == {"SSA-1": 41.0}


def test_checkpoints_written_before_checksums_still_load(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}, "spec": {"backbone": "x"}}, tmp_path / "old.pt")
    assert torch.equal(cache.load(tmp_path / "old.pt")["model"]["w"], torch.ones(2))


def test_files_other_tools_read_are_sealed_in_a_sha256sums_manifest(tmp_path):
    import subprocess

    (tmp_path / "metrics.json").write_text('{"SSA-1": 21.4}')
    (tmp_path / "other.csv").write_text("a,b\n")
    cache.seal(tmp_path, ["metrics.json", "missing.parquet"])
    cache.seal(tmp_path, ["other.csv"])  # later seals keep earlier entries
    assert cache.verify(tmp_path / "metrics.json") and cache.verify(tmp_path / "other.csv")
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True).returncode == 0
    (tmp_path / "metrics.json").write_text('{"SSA-1": 91.4}')  # one digit changed
    with pytest.raises(cache.DamagedFile, match="metrics.json is damaged"):
        cache.verify(tmp_path / "metrics.json")
    (tmp_path / "unlisted.txt").write_text("x")
    assert cache.verify(tmp_path / "unlisted.txt")  # not listed: not checked (files written before manifests)
