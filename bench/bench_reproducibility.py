"""Is a CPU run reproducible, and what changes its numbers? Trains the same small configuration in fresh
processes that differ only in how the CPU computes: the same settings twice, ATen's vector kernels limited to
AVX2 (as on a CPU without AVX-512), and one intra-op thread instead of two. Prints test SSA-1 and the final
training loss of each, so the README can say how closely numbers reproduce from one machine to another.

    .venv/bin/python bench/bench_reproducibility.py --dataset helsinki-synth-tiny --epochs 4
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "default": {},
    "default, again": {},
    "ATen kernels limited to AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "1 intra-op thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="helsinki-synth-tiny")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in VARIANTS.items():
            runs = Path(tmp) / name.replace(" ", "_").replace(",", "") / "runs"
            cmd = [sys.executable, "-m", "addressclip.cli", "train", "--dataset", args.dataset, "--epochs", str(args.epochs),
                   "--batch-size", "32", "--lr", "1e-3", "--train-image", "last:1", "--train-text", "proj",
                   "--runs-dir", str(runs), "--run-name", "r", "--progress", "false", "--num-workers", "0"]
            subprocess.run(cmd, check=True, env={**os.environ, **env}, capture_output=True)
            metrics = json.loads((runs / "r" / "metrics.json").read_text())
            last = [json.loads(line) for line in (runs / "r" / "results.jsonl").read_text().splitlines()][-1]
            results[name] = {"SSA-1": metrics["SSA-1"], "final train loss": last["loss"], **env}
            print(f"{name:32s} SSA-1 {metrics['SSA-1']:7.3f}   final train loss {last['loss']:.8f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
