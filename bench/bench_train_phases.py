"""Where `02_train`'s time goes: its training cell for a profile (the alignment pre-training run, then the AddressCLIP
run), from nothing, in a scratch outputs folder, timed by phase (issue 13: find where the time goes first).

    .venv/bin/python bench/bench_train_phases.py --profile demo --outputs /tmp/train-phases --json outputs/train_phases.json

The phases, per run, are the calls `addressclip.train` makes, each timed where it is called:
- the image check (`image_check.unreadable_images`: every image decoded once per dataset, then remembered);
- the frozen text trunk over every distinct training text and candidate address (`frozen_layers.text_outputs`);
- the frozen image layers over the training images, and over the val and test images for evaluation
  (`frozen_layers.image_outputs`: computed on the first call for a split, read back from disk on the next ones);
- the epochs (their `epoch_seconds` in results.jsonl: the steps, without validation);
- the evaluations (`evaluate`: every epoch's validation and the final test, from the cached frozen outputs);
- the rest: building the model, the datasets' tables, checkpoints and the run's files.
The process computes with torch's default threads, as the notebook does under papermill. Nothing is reused: the
outputs folder must be new (the datasets are built first if they are missing, untimed).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

PHASES = ("image check", "frozen text trunk", "frozen image layers", "epochs", "evaluation", "rest")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo", help="02_train's profile (smoke, demo; paper needs weights)")
    parser.add_argument("--outputs", required=True, help="a new folder for the runs and their caches")
    parser.add_argument("--json", default=None, help="also write the phases here")
    args = parser.parse_args(argv)
    outputs = Path(args.outputs)
    if outputs.exists() and any(outputs.iterdir()):
        parser.error(f"--outputs {outputs} is not empty: give a new folder (nothing may be reused)")
    os.environ["ADDRESSCLIP_OUTPUTS"] = str(outputs.resolve())  # read at each call (paths.outputs_root)

    import torch

    from addressclip import image_check, profiles
    from addressclip import train as training
    from addressclip.config import TrainConfig
    from addressclip.datasets import build_embedded
    from addressclip.runs import Run, cpu_model

    values = profiles.resolve(args.profile)
    cfg = TrainConfig.from_dict({**profiles.training_values(values), "progress": False})
    build_embedded(cfg.dataset, values["align_dataset"])

    seconds: dict[str, dict[str, float]] = {}  # run folder -> phase -> seconds
    current: list[dict[str, float]] = []  # the phases of the run being trained

    def timed(phase: str, function):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return function(*a, **kw)
            finally:
                current[-1][phase] += time.perf_counter() - start
        return wrapper

    def counting_texts(function):
        def wrapper(model, texts_given, **kw):
            current[-1]["texts"] = len(set(texts_given))
            return function(model, texts_given, **kw)
        return wrapper

    def one_run(function):
        def wrapper(run_cfg, run, device, info):
            current.append(defaultdict(float))
            start = time.perf_counter()
            try:
                return function(run_cfg, run, device, info)
            finally:
                phases = current.pop()
                phases["total"] = time.perf_counter() - start
                seconds[str(run.folder)] = phases
        return wrapper

    patched = {(image_check, "unreadable_images"): timed("image check", image_check.unreadable_images),
               (training, "text_outputs"): timed("frozen text trunk", counting_texts(training.text_outputs)),
               (training, "image_outputs"): timed("frozen image layers", training.image_outputs),
               (training, "evaluate"): timed("evaluation", training.evaluate),
               (training, "_train"): one_run(training._train)}
    originals = {key: getattr(*key) for key in patched}
    for (module, name), function in patched.items():
        setattr(module, name, function)
    start = time.perf_counter()
    try:
        training.train(training.aligned_start(cfg, values["align_dataset"], values["align_epochs"]))
    finally:
        for (module, name), function in originals.items():
            setattr(module, name, function)
    total = time.perf_counter() - start

    print(f"02_train's training cell, profile {args.profile}, from nothing, {torch.get_num_threads()} intra-op threads, "
          f"{cpu_model()}: {total:.1f} s")
    report = {"profile": args.profile, "threads": torch.get_num_threads(), "cpu": cpu_model(), "seconds": round(total, 2),
              "runs": []}
    for folder, phases in seconds.items():
        run = Run(folder)
        results, dataset = run.results(), run.params["config"]["dataset"]
        phases["epochs"] = float(results["epoch_seconds"].sum())
        phases["rest"] = phases["total"] - sum(phases[p] for p in PHASES if p != "rest")
        name = f"{run.name} ({dataset}, {len(results)} epochs)"
        print(f"  {name}: {phases['total']:.1f} s")
        for phase in PHASES:
            extra = f", {phases['texts']:.0f} distinct texts" if phase == "frozen text trunk" and "texts" in phases else ""
            print(f"    {phase:<20} {phases[phase]:7.1f} s  {100 * phases[phase] / total:5.1f}% of the cell{extra}")
        report["runs"].append({"run": run.name, "dataset": dataset,
                               "distinct texts": int(phases["texts"]) if "texts" in phases else None,
                               **{p: round(phases[p], 2) for p in (*PHASES, "total")}})
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
