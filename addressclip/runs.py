"""Run folders: parameters, code version, per-epoch results, final metrics and checkpoints.

    outputs/runs/<run>/
      params.json        the configuration, seed, code version, library versions
      results.jsonl      one JSON line per epoch (train losses, images/s, validation metrics)
      metrics.json       final test metrics (present only when the run finished)
      per_address.csv    test accuracy per address
      predictions.parquet
      checkpoints/last.pt  full training state after the last finished epoch (for resume)
      model.pt           final weights + model spec (for evaluation and prediction)

Checkpoints hold only tensors and plain values and are read with ``weights_only=True``: loading never
executes pickled code. Every file is written to a temporary name and renamed, so an interrupted write
never leaves a half file.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from .paths import REPO_ROOT


def code_version() -> str:
    """`git describe` of the checkout (with -dirty), else the package version."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import version

    return f"addressclip-{version('addressclip')}"


def environment() -> dict[str, str]:
    import open_clip

    return {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
            "platform": platform.platform()}


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def append_jsonl(path: Path, obj: Any) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, sort_keys=True, default=str) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if path.is_dir():  # a run folder
        path = path / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated or foreign files
        raise RuntimeError(f"cannot read checkpoint {path}: {exc}") from exc


def finished_runs(runs_dir: str | Path | None = None, dataset: str | None = None) -> list[Path]:
    """Finished runs (with metrics.json), newest first, optionally only those trained on `dataset`."""
    from .paths import runs_root

    root = Path(runs_dir) if runs_dir else runs_root()
    found = []
    for metrics in root.glob("*/metrics.json"):
        params = metrics.parent / "params.json"
        if dataset is not None and params.exists():
            if json.loads(params.read_text())["config"].get("dataset") != dataset:
                continue
        found.append(metrics.parent)
    return sorted(found, key=lambda p: (p / "metrics.json").stat().st_mtime, reverse=True)


def resolve_run(run: str | None, dataset: str | None = None) -> Path:
    """A run folder from a name under outputs/runs, a path, or None (the newest finished run on `dataset`)."""
    from .paths import runs_root

    if run is None:
        found = [r for r in finished_runs(dataset=dataset) if (r / "model.pt").exists()]
        if not found:
            raise FileNotFoundError(f"no finished run on dataset {dataset!r} under {runs_root()}; train one with 02_train.ipynb")
        return found[0]
    for candidate in (Path(run), runs_root() / run):
        if (candidate / "model.pt").exists() or candidate.suffix == ".pt" and candidate.exists():
            return candidate
    raise FileNotFoundError(f"no run {run!r} (looked for {run}/model.pt and {runs_root() / run}/model.pt)")
