"""Crash safety, by real signals: `addressclip train` (and a rendered dataset build) SIGKILLed at many moments and
run again ends exactly as a run never interrupted; and every kind of file we write, with a bit flipped, is caught
when read back (an error, or a warning and a recompute), never read as a silently different value.

Run with ``-s`` to see the kill points and the bit-flip counts.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from addressclip import cache, runs
from addressclip.runs import Run

REPO = Path(__file__).resolve().parents[1]
TIMINGS = {"eval_seconds", "gallery_seconds", "images_per_s", "epoch_seconds"}


def _env(data: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "ADDRESSCLIP_DATA": str(data), "ADDRESSCLIP_PROGRESS": "0"}


def _train_cmd(dataset: Path, runs_dir: Path) -> list[str]:
    return [sys.executable, "-m", "addressclip.cli", "train", "--dataset", str(dataset), "--epochs", "3",
            "--batch-size", "8", "--lr", "1e-3", "--train-image", "last:1", "--train-text", "proj", "--seed", "3",
            "--num-workers", "0", "--device", "cpu", "--progress", "false", "--runs-dir", str(runs_dir), "--run-name", "r"]


def _temporaries(folder: Path, prefix: str) -> set[str]:
    """Names of `cache.atomic_write` temporaries of files named `prefix`* in `folder`."""
    try:
        return {n for n in os.listdir(folder) if n.startswith("." + prefix) and ".tmp" in n}
    except FileNotFoundError:
        return set()


def _run(cmd: list[str], env: dict, log: Path, hit=None, past=None, delay: float = 0.0, timeout: float = 300) -> str:
    """Run `cmd`; with `hit`, SIGKILL its process group the moment hit() is true ("hit"), or when past() is
    (the moment was missed: "late"). Returns what happened: "hit", "late" or "finished"."""
    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)
        end = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < end:
            how = None if hit is None else "hit" if hit() else "late" if past is not None and past() else None
            if how is not None:
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return how
            time.sleep(0.0005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{' '.join(cmd[:6])} did not finish in {timeout} s; see {log}")
    assert proc.returncode == 0, f"{' '.join(cmd[:6])} failed ({proc.returncode}): {log.read_text()[-3000:]}"
    return "finished"


def _check_on_disk(run: Run, features: Path, reference: list[dict]) -> None:
    """After a kill: every whole file reads back and verifies; results.jsonl holds each epoch at most once, none
    beyond the checkpoints, each equal to the uninterrupted run's row."""
    for path in [*run.folder.glob("*.pt"), *run.folder.glob("checkpoints/*.pt"), *features.glob("*.pt")]:
        if not path.name.startswith("."):  # temporaries (a partial one is what a kill mid-write leaves) are never read
            cache.load(path)  # raises DamagedFile for a partial or damaged file
    epochs = [cache.load(p)["epoch"] for p in (run.last_path, run.previous_path) if p.exists()]
    rows = runs.read_jsonl(run.results_path)  # every line parses: never a partial line
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) <= max(epochs, default=0)
    for row, ref in zip(rows, reference):
        assert {k: v for k, v in row.items() if k not in TIMINGS} == {k: v for k, v in ref.items() if k not in TIMINGS}


@pytest.fixture(scope="module")
def reference(tiny_dataset, tmp_path_factory) -> Run:
    """The uninterrupted run, by the same command."""
    root = tmp_path_factory.mktemp("reference")
    run = Run(root / "runs" / "r")
    assert _run(_train_cmd(tiny_dataset, run.folder.parent), _env(root), root / "log.txt") == "finished"
    return run


def test_training_killed_anywhere_resumes_to_the_same_run(tiny_dataset, reference, tmp_path):
    env = _env(tmp_path)
    log = tmp_path / "log.txt"
    ref_rows = runs.read_jsonl(reference.results_path)

    run = Run(tmp_path / "killed" / "runs" / "r")
    features, checkpoints = run.folder.parent.parent / "features", run.folder / "checkpoints"
    cmd = _train_cmd(tiny_dataset, run.folder.parent)

    def new_temporary(folder, prefix):
        before = _temporaries(folder, prefix)
        return lambda: bool(_temporaries(folder, prefix) - before)

    def new_file(folder, pattern):
        before = set(folder.glob(pattern))
        return lambda: bool(set(folder.glob(pattern)) - before)

    def rows_at_least(n):
        return lambda: run.results_path.exists() and len(run.results_path.read_text().splitlines()) >= n

    # (kill point, moment to kill at, moment after it: kill anyway if it was missed, delay after the moment)
    points = [
        ("mid-cache: frozen image layers of the training rows being written",
         lambda: new_temporary(features, "image-"), lambda: new_file(features, "image-*.pt"), 0.0),
        ("mid-checkpoint: epoch 1 being written, no earlier checkpoint",
         lambda: new_temporary(checkpoints, "last."), lambda: rows_at_least(1), 0.0),
        ("mid-batch: 0.3 s into epoch 2 (after the first results row)", lambda: rows_at_least(1), None, 0.3),
        ("mid-checkpoint: epoch 2 being written, epoch 1 rotated to previous.pt",
         lambda: new_temporary(checkpoints, "last."), lambda: rows_at_least(2), 0.0),
        ("mid-write of model.pt after the last epoch",
         lambda: new_temporary(run.folder, "model."), lambda: lambda: run.model_path.exists(), 0.0),
        ("mid-cache: frozen image layers of the test rows (final evaluation) being written",
         lambda: new_temporary(features, "image-"), lambda: lambda: run.metrics_path.exists(), 0.0),
    ]
    report = []
    for name, hit, past, delay in points:
        how = _run(cmd, env, log, hit(), past() if past else None, delay)
        report.append((name, how))
        if how == "finished":
            break
        _check_on_disk(run, features, ref_rows)
    assert _run(cmd, env, log) == "finished"  # the same command again, to the end

    print("\nkill points (then resumed with the same command):")
    for name, how in report:
        print(f"  {how:8s} {name}")
    a, b = reference.metrics, run.metrics
    assert {k: v for k, v in a.items() if k not in TIMINGS} == {k: v for k, v in b.items() if k not in TIMINGS}
    wa, wb = runs.load_checkpoint(reference.folder)["model"], runs.load_checkpoint(run.folder)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    la, lb = cache.load(reference.last_path), cache.load(run.last_path)
    assert all(torch.equal(la["model"][k], lb["model"][k]) for k in la["model"]) and la["epoch"] == lb["epoch"] == 3
    assert pd.read_parquet(reference.predictions_path).equals(pd.read_parquet(run.predictions_path))
    _check_on_disk(run, features, ref_rows)
    assert len(runs.read_jsonl(run.results_path)) == 3
    leftovers = [p.name for p in (*run.folder.iterdir(), *(run.folder / "checkpoints").iterdir()) if ".tmp" in p.name]
    assert not leftovers and not run.previous_path.exists() and not run.lock_path.exists()
    kills = [how for _, how in report if how != "finished"]
    print(f"  {len(kills)} kills ({kills.count('hit')} at the moment aimed at), {len(kills)} resumes; the run equals "
          "the uninterrupted one (metrics, predictions, results rows, model.pt and last.pt weights)")
    assert len(kills) == len(points) and kills.count("hit") >= 4


def test_dataset_build_killed_midway_resumes_to_the_same_dataset(tmp_path):
    code = "from addressclip.datasets import build_dataset; build_dataset('kotka-synth-tiny')"
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    log = tmp_path / "log.txt"
    assert _run([sys.executable, "-c", code], _env(whole), log) == "finished"
    folder = killed / "kotka-synth-tiny"

    def some_images():
        images = folder / "images"
        return images.exists() and len(os.listdir(images)) >= 40 and not (folder / "card.json").exists()

    how = _run([sys.executable, "-c", code], _env(killed), log, hit=some_images, past=lambda: (folder / "card.json").exists())
    rendered = len(os.listdir(folder / "images"))
    assert how == "hit" and not (folder / "card.json").exists()
    assert _run([sys.executable, "-c", code], _env(killed), log) == "finished"
    a, b = whole / "kotka-synth-tiny", folder
    assert pd.read_parquet(a / "samples.parquet").equals(pd.read_parquet(b / "samples.parquet"))
    card_a, card_b = (json.loads((d / "card.json").read_text()) for d in (a, b))
    volatile = {"build_time_s", "images_reused_from_earlier_run"}
    assert {k: v for k, v in card_a.items() if k not in volatile} == {k: v for k, v in card_b.items() if k not in volatile}
    names = sorted(n for n in os.listdir(a / "images") if not n.startswith("."))
    leftovers = sorted(n for n in os.listdir(b / "images") if n.startswith("."))  # a partial image of the killed build
    assert names == sorted(n for n in os.listdir(b / "images") if not n.startswith("."))
    assert all((a / "images" / n).read_bytes() == (b / "images" / n).read_bytes() for n in names)
    assert set(pd.read_parquet(b / "samples.parquet")["image"]) == {f"images/{n}" for n in names}  # never a temporary
    print(f"\ndataset build killed with {rendered} of {len(names)} images rendered; resumed "
          f"({card_b['images_reused_from_earlier_run']} reused): the same table, card and image bytes; "
          f"{len(leftovers)} temporary file(s) of the killed build left in images/ (never read)")


# ----------------------------------------------------------------------------------------------- bit flips
def _positions(size: int, n: int, seed: int) -> list[int]:
    """`n` byte offsets: a quarter in the first and last 4 KiB (headers, zip directory), the rest anywhere."""
    rng = np.random.default_rng(seed)
    edge = max(1, n // 4)
    head = rng.integers(0, min(size, 4096), edge)
    tail = rng.integers(max(0, size - 4096), size, edge)
    body = rng.integers(0, size, n - 2 * edge)
    return sorted({int(x) for x in (*head, *tail, *body)})


def _flip(path: Path, offset: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def _flip_all(path: Path, read, same, n: int, seed: int = 0) -> dict[str, int]:
    """Flip one bit at each of `n` offsets of `path` (restored after each) and read it back with `read`, which
    returns ("caught", None) or ("read", value); a value equal to the original (`same`) is harmless, else silent."""
    original = path.read_bytes()
    counts = {"flips": 0, "caught": 0, "harmless": 0, "silent": 0}
    rng = np.random.default_rng(seed + 1)
    for offset in _positions(len(original), n, seed):
        _flip(path, offset, int(rng.integers(0, 8)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                how, value = read()
            except Exception:  # noqa: BLE001 - an error is a caught flip
                how, value = "caught", None
        counts["flips"] += 1
        counts["caught" if how == "caught" else "harmless" if same(value) else "silent"] += 1
        for leftover in path.parent.glob(path.name + ".damaged"):
            leftover.unlink()
        path.write_bytes(original)
    return counts


def test_bit_flips_in_every_file_we_write_are_caught(tiny_dataset, reference, tmp_path):
    from addressclip.datasets import load_dataset
    from addressclip.features import feature_bank
    from addressclip.inference import load_model
    from addressclip.predict import AddressLocator

    run = Run(tmp_path / "runs" / "r")  # a copy of the reference run: flipped in place, restored after each flip
    shutil.copytree(reference.folder, run.folder)
    shutil.copytree(reference.folder.parent.parent / "features", tmp_path / "features")
    features = tmp_path / "features"
    model = load_model(run.folder)
    ds = load_dataset(tiny_dataset)
    feature_bank(model, ds, cache_dir=features, num_workers=0)
    locator = AddressLocator(model, checkpoint=run.model_path, cache_dir=tmp_path / "gallery")
    locator.set_candidates(ds.addresses)
    baseline = tmp_path / "baselines" / "row.json"
    row = {"method": "linear-probe", "seed": 0, "SSA-1": 44.44444444444444, "SA-1": 61.1, "median_m": 2.0, "notes": ""}
    cache.load_or_compute_json(baseline, lambda: row)
    shutil.copytree(tiny_dataset, tmp_path / "dataset")
    dataset = tmp_path / "dataset"

    def verified(path):
        want = cache.digest(cache.load(path))
        return lambda value: value is not None and cache.digest(value) == want

    def through_policy(path):  # what every cache reader does: load, or warn, set aside and recompute
        def read():
            value, from_disk = cache.load_or_compute(path, lambda: {"recomputed": True})
            return ("read", value) if from_disk else ("caught", None)
        return read

    def last_checkpoint():
        value = run.load_last()  # a damaged last.pt: a warning and a fall back (here: a fresh start)
        for aside in run.last_path.parent.glob("last.pt.damaged"):
            os.replace(aside, run.last_path)
        return ("read", value) if value is not None else ("caught", None)

    def model_checkpoint():
        return "read", runs.load_checkpoint(run.model_path)

    def baseline_row():
        value, from_disk = cache.load_or_compute_json(baseline, lambda: {"recomputed": True})
        return ("read", value) if from_disk else ("caught", None)

    metrics = run.metrics
    frame, card = load_dataset(dataset).samples, json.loads((dataset / "card.json").read_text())

    def dataset_read():
        return "read", load_dataset(dataset)

    def dataset_same(value):
        return value is not None and value.samples.equals(frame) and value.card == card

    image_cache = sorted(features.glob("image-*.pt"))[0]
    text_cache = sorted(features.glob("text-*.pt"))[0]
    bank = sorted(features.glob("bank-*.pt"))[0]
    checked = sorted(features.glob("checked-*.pt"))[0]
    gallery = sorted((tmp_path / "gallery").glob("gallery-*.pt"))[0]
    kinds = {
        "checkpoint last.pt": (run.last_path, last_checkpoint, verified(run.last_path), 12),
        "model.pt": (run.model_path, model_checkpoint, verified(run.model_path), 12),
        "frozen image cache": (image_cache, through_policy(image_cache), verified(image_cache), 40),
        "frozen text cache": (text_cache, through_policy(text_cache), verified(text_cache), 40),
        "feature bank": (bank, through_policy(bank), verified(bank), 40),
        "image check cache": (checked, through_policy(checked), verified(checked), 40),
        "prediction gallery": (gallery, through_policy(gallery), verified(gallery), 40),
        "baseline result JSON": (baseline, baseline_row, lambda v: v == row, 60),
        "run metrics.json": (run.metrics_path, lambda: ("read", run.metrics), lambda v: v == metrics, 60),
        "dataset samples.parquet": (dataset / "samples.parquet", dataset_read, dataset_same, 60),
        "dataset card.json": (dataset / "card.json", dataset_read, dataset_same, 60),
    }
    results = {name: _flip_all(path, read, same, n) for name, (path, read, same, n) in kinds.items()}
    print("\nbit flips (one bit, restored after each): caught = error or warning + recompute/fall back; harmless = "
          "read back equal; silent = read back different")
    for name, c in results.items():
        print(f"  {name:26s} {c['flips']:3d} flips: {c['caught']:3d} caught, {c['harmless']:3d} harmless, {c['silent']:3d} silent")
    assert all(c["silent"] == 0 for c in results.values()), results
    assert all(c["caught"] > 0 for c in results.values()), results  # the rest read back equal (zip padding, metadata)
    for name, (path, *_rest) in kinds.items():  # every flip was undone: the files are whole again
        if path.suffix == ".pt":
            cache.load(path)
        elif path.name == "row.json":
            cache.load_json_checked(path)
        else:  # files other tools read too: their checksums are in the folder's SHA256SUMS
            cache.verify(path)
