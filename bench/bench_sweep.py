"""Independent training runs (an ablation sweep) one after another with all cores' threads, against side by side
in one single-threaded process per core (`addressclip.sweep`, what `04_ablations` does).

Trains `--runs` seeds of the profile's ablation setting (its `ablation_overrides`, from the alignment run, on cached
frozen layers) each way, in fresh run folders under a scratch outputs folder; a first run, untimed, fills the
caches that every run reads. Prints seconds per run and in all, and the test SSA-1 of each run both ways (one
intra-op thread against several changes the order of floating-point sums, so the same seed may end slightly
differently).

    .venv/bin/python bench/bench_sweep.py --profile demo --runs 4
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--outputs", default=None, help="scratch outputs folder (default: a new temporary folder)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    os.environ["ADDRESSCLIP_OUTPUTS"] = args.outputs or tempfile.mkdtemp(prefix="bench-sweep-")

    from addressclip import ablations, profiles, sweep, threads
    from addressclip.config import TrainConfig
    from addressclip.datasets import build_embedded
    from addressclip.train import aligned_start, train

    p = profiles.resolve(args.profile)
    main_cfg = TrainConfig.from_dict({**profiles.training_values(p), "progress": False})
    build_embedded(main_cfg.dataset, p["align_dataset"])
    base = aligned_start(main_cfg.replace(eval_every=0, **p["ablation_overrides"]), p["align_dataset"], p["align_epochs"])
    train(base.replace(seed=100))  # untimed: fills the frozen-layer caches every run reads

    def ssa1(cfg: TrainConfig) -> float:
        from addressclip.runs import Run

        return Run.of(cfg).metrics["SSA-1"]

    serial = [base.replace(seed=200 + i, run_name=f"one-after-another-{i}", overwrite=True) for i in range(args.runs)]
    start = time.perf_counter()
    for cfg in serial:
        train(cfg)
    serial_s = time.perf_counter() - start
    side = [c.replace(run_name=f"side-by-side-{i}") for i, c in enumerate(serial)]  # the same runs, other folders
    start = time.perf_counter()
    sweep.run_all(ablations._train_job, [("", cfg) for cfg in side])
    side_s = time.perf_counter() - start

    out = {"profile": args.profile, "runs": args.runs, "cores": threads.cores(),
           "one after another": {"threads": torch.get_num_threads(), "seconds": round(serial_s, 1),
                                 "SSA-1": [ssa1(c) for c in serial]},
           "side by side": {"processes": threads.sweep_processes(args.runs), "threads": 1, "seconds": round(side_s, 1),
                            "SSA-1": [ssa1(c) for c in side]},
           "speed-up": round(serial_s / side_s, 2)}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
