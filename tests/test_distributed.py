"""2 gloo processes on halves of a global batch against 1 process on all of it (tests/dist_check.py).

Equal wherever nothing stochastic runs: eval mode, and train mode of a model without dropout (the built-in
open_clip CLIP architecture, the paper's; a small one here). With dropout active (the offline MiniLM text tower
trained in train mode: p = 0.1), the masks depend on the process layout, so the losses differ; the same model
with every dropout probability set to 0 is equal again, so dropout is the only cause.
"""
import pytest
import torch
import torch.multiprocessing as mp

import dist_check

MINILM_TRAIN = {"train_image": "last:1", "train_text": "all", "mode": "train"}
CONFIGS = [
    dist_check.EVAL_LAST1,
    # OpenAI CLIP's architecture family (no dropout layers), every layer trained, train mode
    {"name": "clip-arch-train", "backbone": "ViT-S-32-alt", "image_size": 64, "train_image": "all",
     "train_text": "all", "mode": "train"},
    {"name": "minilm-dropout", **MINILM_TRAIN},
    {"name": "minilm-no-dropout", **MINILM_TRAIN, "no_dropout": True},
]


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    dist_check.step(0, 1, str(tiny_dataset), str(out), configs=CONFIGS)
    # one spawn for every configuration: process start-up dominates on CPU
    mp.spawn(dist_check.step, args=(2, str(tiny_dataset), str(out), str(out / "init"), CONFIGS), nprocs=2, join=True)
    return {c["name"]: dist_check.compare(str(out), c["name"]) for c in CONFIGS}, out


def _assert_equal(out, name):
    one = torch.load(out / f"{name}-1-0.pt")
    for rank in (0, 1):
        two = torch.load(out / f"{name}-2-{rank}.pt")
        assert set(two["losses"]) == {"address_loss", "caption_loss", "geo_loss"}
        for k, v in one["losses"].items():
            assert torch.allclose(two["losses"][k], v, atol=1e-5), (name, k, float(two["losses"][k]), float(v))
        assert len(two["grads"]) == len(one["grads"])
        for g2, g1 in zip(two["grads"], one["grads"]):
            assert torch.allclose(g2, g1, atol=1e-5, rtol=1e-4), name


def test_two_processes_equal_one_process_on_the_global_batch(runs):
    """Features, address ids and coordinates gathered across 2 gloo processes give the single-process loss
    and, after gradient averaging, the single-process gradients (eval mode, last block of each tower trained)."""
    _assert_equal(runs[1], "eval-last1")


def test_equal_in_train_mode_without_dropout_clip_architecture(runs):
    """The paper's path: open_clip's CLIP (ViT image tower, built-in text transformer) has no dropout, so a
    train-mode step with every layer trained is exact."""
    result, out = runs
    assert result["clip-arch-train"]["active_dropout"] == 0
    _assert_equal(out, "clip-arch-train")


def test_dropout_is_the_only_cause_of_a_difference(runs):
    """MiniLM text tower trained in train mode: dropout (p = 0.1) is active and the losses differ between
    layouts; with dropout probability 0 the same model is equal again."""
    result, out = runs
    on, off = result["minilm-dropout"], result["minilm-no-dropout"]
    assert on["active_dropout"] > 0 and off["active_dropout"] == 0
    assert on["loss_abs"] > 1e-3, on  # masks differ with the layout: not equal
    _assert_equal(out, "minilm-no-dropout")


def test_torchrun_trains_and_overwrites_a_run(tiny_dataset, tmp_path):
    """The README's `torchrun ... -m addressclip.cli train`, end to end on 2 gloo ranks: it trains and evaluates,
    and `--overwrite true` on the finished run trains it again. Before the barrier after the main rank empties the
    folder, the other rank could still see the old run finished and return while the main rank trained alone and
    waited for it in a collective."""
    import json
    import os
    import subprocess
    import sys

    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "addressclip.cli", "train", "--dataset", str(tiny_dataset), "--runs-dir", str(runs),
            "--run-name", "dist", "--epochs", "1", "--batch-size", "8", "--train-image", "last:1",
            "--train-text", "proj", "--device", "cpu", "--eval-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ADDRESSCLIP_PROGRESS": "0"}
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = runs / "dist" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    rows = (runs / "dist" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "val_SSA-1" in json.loads(rows[0]), rows
    again = subprocess.run(argv + ["--overwrite", "true"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics.stat().st_mtime_ns > before  # trained again, not reused
    assert len((runs / "dist" / "results.jsonl").read_text().splitlines()) == 1
