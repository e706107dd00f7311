"""Reliability of training: unreadable images are skipped and reported (or stop a strict run), one process trains a
run at a time and a dead one never leaves it locked, results.jsonl holds exactly one row per checkpointed epoch."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from addressclip import cache, image_check
from addressclip.config import TrainConfig
from addressclip.runs import Run, RunLockedError, RunLockWarning, load_checkpoint, read_jsonl
from addressclip.train import train
from workers import given_cores

REPO = Path(__file__).resolve().parents[1]


def _cfg(dataset, tmp_path, **kw):
    base = dict(dataset=str(dataset), epochs=2, batch_size=8, lr=1e-3, train_image="last:1", train_text="proj",
                runs_dir=str(tmp_path / "runs"), progress=False, num_workers=0, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def damaged_dataset(tiny_dataset, tmp_path):
    """The tiny dataset with two training images gone bad (one deleted, one cut short) and one test image
    overwritten with text."""
    root = tmp_path / "damaged"
    shutil.copytree(tiny_dataset, root)
    (root / "images" / "0-0-0_0.jpg").unlink()
    cut = root / "images" / "1-1-0_1.jpg"
    cut.write_bytes(cut.read_bytes()[:300])
    (root / "images" / "2-2-3_0.jpg").write_text("not an image")
    return root


def test_unreadable_images_are_skipped_counted_and_reported(damaged_dataset, tmp_path):
    with pytest.warns(image_check.SkippedImagesWarning, match="skipped 3 unreadable image.*0-0-0_0.jpg"):
        folder = train(_cfg(damaged_dataset, tmp_path, run_name="skips"))
    run = Run(folder)
    record = run.skipped_images
    assert set(record["datasets"][str(damaged_dataset)]) == {"images/0-0-0_0.jpg", "images/1-1-0_1.jpg", "images/2-2-3_0.jpg"}
    assert record["skipped_training_rows"] == {str(damaged_dataset): 2} and record["check"][str(damaged_dataset)]["images"] == 72
    assert run.params["skipped_images"] == {str(damaged_dataset): 3}
    metrics = run.metrics
    assert metrics["skipped_images"] == 1 and metrics["images"] == 17 and metrics["skipped_train_images"] == 2
    assert len(run.predictions()) == 17 and "images/2-2-3_0.jpg" not in set(run.predictions()["image"])
    assert run.params["steps_per_epoch"] == (36 - 2) // 8
    # the check is paid once per dataset: a second run reads it from the cache
    with pytest.warns(image_check.SkippedImagesWarning):
        again = Run(train(_cfg(damaged_dataset, tmp_path, run_name="again", epochs=1, eval_every=0, final_split=None)))
    assert again.skipped_images["check"][str(damaged_dataset)]["from_cache"]
    assert len(list((tmp_path / "features").glob("checked-*.pt"))) == 1
    # ... and the same bad images give the same run, interrupted or not
    partial = _cfg(damaged_dataset, tmp_path, run_name="resumed", stop_after_epochs=1)
    with pytest.warns(image_check.SkippedImagesWarning):
        train(partial)
        resumed = Run(train(partial.replace(stop_after_epochs=None)))
    a, b = load_checkpoint(run.folder)["model"], load_checkpoint(resumed.folder)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in run.metrics.items() if "seconds" not in k and k not in ("images_per_s", "run")} == \
        {k: v for k, v in resumed.metrics.items() if "seconds" not in k and k not in ("images_per_s", "run")}



def test_the_check_finds_the_same_bad_images_in_worker_processes(damaged_dataset):
    """Decoding in DataLoader worker processes (the check's default with several cores) finds what one process finds."""
    images = sorted(str(p.relative_to(damaged_dataset)) for p in (damaged_dataset / "images").iterdir())
    images.append("images/never-there.jpg")
    alone = image_check.decode_failures(damaged_dataset, images, 64, num_workers=0)
    assert set(alone) == {"images/1-1-0_1.jpg", "images/2-2-3_0.jpg", "images/never-there.jpg"}
    with given_cores():  # a test worker's share may be one core
        assert image_check.decode_failures(damaged_dataset, images, 64, num_workers=2) == alone

def test_strict_images_stops_naming_the_first_bad_files(damaged_dataset, tmp_path):
    with pytest.raises(image_check.BadImagesError, match="3 unreadable image.*images/0-0-0_0.jpg.*FileNotFoundError"
                                                         ".*images/1-1-0_1.jpg.*strict_images=False"):
        train(_cfg(damaged_dataset, tmp_path, run_name="strict", strict_images=True))
    assert not (tmp_path / "runs" / "strict" / "checkpoints").exists()


def test_an_image_lost_during_training_is_left_out_not_fatal(tiny_dataset, tmp_path, monkeypatch):
    """An image deleted after the check (here: a check that saw it whole) is dropped from its batch and recorded."""
    root = tmp_path / "vanishing"
    shutil.copytree(tiny_dataset, root)
    monkeypatch.setattr(image_check, "unreadable_images", lambda ds, *a, **k: ({}, {"images": len(ds.samples)}))
    (root / "images" / "0-1-0_1.jpg").unlink()
    with pytest.warns(image_check.SkippedImagesWarning, match="0-1-0_1.jpg"):
        folder = train(_cfg(root, tmp_path, run_name="lost", epochs=1, cache_frozen_image=False))
    record = Run(folder).skipped_images
    assert record["during_training"][0]["image"] == "images/0-1-0_1.jpg" and Run(folder).finished
    assert "images/0-1-0_1.jpg" in record["datasets"][str(root)]  # and left out when the run resumes


def test_a_run_is_trained_by_one_process_and_a_dead_holder_is_taken_over(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset, tmp_path, run_name="locked", epochs=1)
    run = Run.of(cfg)
    with run.lock():
        with pytest.raises(RunLockedError, match="already being trained by this process"):
            train(cfg)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from addressclip.runs import Run\n"
         "with Run(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(120)", str(run.folder)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        with pytest.raises(RunLockedError, match=f"run locked .*being trained by process {holder.pid} on "):
            train(cfg)
        assert time.perf_counter() - start < 5  # refused before anything is loaded
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads(run.lock_path.read_text())["pid"] == holder.pid  # the killed process left its lock file
    with pytest.warns(RunLockWarning, match=f"took over the lock left by process {holder.pid}.*no longer running"):
        folder = train(cfg)
    assert Run(folder).finished and not run.lock_path.exists()  # released when training ends


def test_results_hold_one_row_per_checkpointed_epoch(tiny_dataset, tmp_path):
    straight = Run(train(_cfg(tiny_dataset, tmp_path, run_name="straight", epochs=3)))
    partial = _cfg(tiny_dataset, tmp_path, run_name="tampered", epochs=3, stop_after_epochs=1)
    run = Run(train(partial))
    row = read_jsonl(run.results_path)[0]
    # a duplicated row, a row beyond the checkpoint and a line cut short (as older versions could leave)
    run.results_path.write_text("".join(json.dumps(r) + "\n" for r in (row, row, {**row, "epoch": 2})) + '{"epoch": 3, "lo')
    train(partial)  # resumes from epoch 1, trains epoch 2
    assert [r["epoch"] for r in read_jsonl(run.results_path)] == [1, 2]
    # killed after the checkpoint, before its row: the checkpoint carries the row
    run.results_path.write_text(json.dumps(row) + "\n")
    # a checkpoint written before checkpoints carried their rows: rows beyond its epoch are dropped
    state = cache.load(run.last_path)
    legacy = {k: v for k, v in state.items() if k != "results"}
    train(partial.replace(stop_after_epochs=None))
    rows_a, rows_b = read_jsonl(straight.results_path), read_jsonl(run.results_path)
    timing = {"epoch_seconds", "images_per_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows_a] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rows_b]
    a, b = load_checkpoint(straight.folder)["model"], load_checkpoint(run.folder)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not run.previous_path.exists()  # kept only while the run trains
    old = Run(tmp_path / "runs" / "legacy")
    shutil.copytree(run.folder, old.folder)
    (old.folder / "metrics.json").unlink()
    cache.save(old.last_path, legacy)  # epoch 2, no rows inside
    old.results_path.write_text("".join(json.dumps(r) + "\n" for r in rows_b + rows_b[:1]))
    train(partial.replace(run_name="legacy", stop_after_epochs=None, epochs=3))
    assert [r["epoch"] for r in read_jsonl(old.results_path)] == [1, 2, 3]
