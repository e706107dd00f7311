"""bench/bench_gpu.py runs end to end on CPU (small open_clip ViT, 64 px) and writes the fields it promises.
The GPU figures themselves need a GPU: see the module docstring of bench_gpu.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_runs_on_cpu_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    # one thread: the CPU is shared, and oversubscribed intra-op threads make a step 10-20x slower
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--device", "cpu", "--backbone", "ViT-S-32-alt",
         "--image-size", "64", "--batch-size", "4", "--steps", "2", "--warmup", "1", "--rows", "64",
         "--addresses", "10", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NOT GPU figures" in proc.stdout
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["is_gpu"] is False and report["amp_bf16"] is False
    assert report["backbone"] == "ViT-S-32-alt" and report["image_size"] == 64
    assert report["batch_size"] == 4 and report["images_per_s"] > 0 and report["step_ms"] > 0
    assert report["peak_memory_bytes"] is None  # GPU memory only; CPU reports peak_rss_gib instead
    assert report["peak_rss_gib"] > 0
    assert report["loss_weights"] == {"address": 1.0, "caption": 0.2, "geography": 0.8}
    assert report["parameters"]["trainable"] == report["parameters"]["total"]  # every layer trained
    assert report["optimizer"]["betas"] == [0.9, 0.98]
    (result,) = report["results"]
    assert result["timed_steps"] == 2 and result["warmup_steps"] == 1
    assert set(result["last_losses"]) == {"address_loss", "caption_loss", "geo_loss", "loss"}
