"""Run folders: parameters, code version, per-epoch results, final metrics and checkpoints.

    outputs/runs/<run>/
      params.json        the configuration, seed, code version, library versions
      results.jsonl      one JSON line per epoch (train losses, images/s, validation metrics)
      metrics.json       final test metrics (present only when the run finished)
      per_address.csv    test accuracy per address
      predictions.parquet
      checkpoints/last.pt  full training state after the last finished epoch (for resume)
      model.pt           final weights + model spec (for evaluation and prediction)

`Run` owns the folder: training writes through it, everything else reads through it. Checkpoints hold only
tensors and plain values, carry a checksum and are read with ``weights_only=True`` (`cache.save` / `cache.load`):
loading never executes pickled code and never uses a damaged file. Every file is written under a temporary name
and renamed, so an interrupted write never leaves a half file.
"""
from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import torch

from . import cache
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


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_checkpoint(path: Path, state: dict) -> None:
    """Weights and training state, written atomically with a checksum (`cache.save`)."""
    cache.save(path, state)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by `save_checkpoint` (a run folder means its model.pt), checksum verified."""
    path = Path(path)
    if path.is_dir():  # a run folder
        path = path / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return cache.load(path, map_location=map_location)
    except cache.DamagedFile as exc:
        raise RuntimeError(f"cannot read checkpoint: {exc}") from exc


RENAMED_OPTIONS = {"geo_form": "geography_form"}  # old name -> new, so runs recorded before a rename still match


class Run:
    """The owner of one run folder: its name, identity check, parameters, per-epoch results, checkpoints and
    final artefacts. Training writes through it; reports, notebooks and ablations read through it."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r})"

    # --- naming -----------------------------------------------------------------------------------
    @staticmethod
    def default_name(cfg) -> str:
        """`align-` or `train-`, the dataset's name and the digest of the settings that change the result."""
        stage = "align" if cfg.w_address == 0 and cfg.caption_text == "caption" else "train"
        return f"{stage}-{Path(cfg.dataset).name}-{cfg.digest()}"

    @classmethod
    def of(cls, cfg) -> "Run":
        """The folder of the run a `TrainConfig` describes: `run_name` (or the default name) under `runs_dir`."""
        from .paths import runs_root

        return cls(Path(cfg.runs_dir or runs_root()) / (cfg.run_name or cls.default_name(cfg)))

    @property
    def name(self) -> str:
        return self.folder.name

    # --- files --------------------------------------------------------------------------------------
    params_path = property(lambda self: self.folder / "params.json")
    results_path = property(lambda self: self.folder / "results.jsonl")
    metrics_path = property(lambda self: self.folder / "metrics.json")
    model_path = property(lambda self: self.folder / "model.pt")
    last_path = property(lambda self: self.folder / "checkpoints" / "last.pt")
    per_address_path = property(lambda self: self.folder / "per_address.csv")
    predictions_path = property(lambda self: self.folder / "predictions.parquet")
    tensorboard_dir = property(lambda self: self.folder / "tensorboard")
    figures_dir = property(lambda self: self.folder / "figures")

    def evaluation_path(self, dataset: str, split: str) -> Path:
        """Metrics of an evaluation after training (03_evaluate), one file per dataset and split."""
        return self.folder / f"eval-{dataset}-{split}.json"

    @property
    def finished(self) -> bool:
        return self.metrics_path.exists()

    # --- identity -----------------------------------------------------------------------------------
    def check_identity(self, cfg) -> None:
        """Refuse a folder that holds a run with other settings (the user picked a run_name already used)."""
        if not self.params_path.exists():
            return
        stored = {RENAMED_OPTIONS.get(k, k): v for k, v in self.params["config"].items()}
        diff = {k: (stored.get(k), v) for k, v in cfg.identity().items() if stored.get(k) != v}
        if diff:
            raise ValueError(
                f"run folder {self.folder} holds a run with other settings {diff} (stored, requested); "
                f"choose another run_name or pass overwrite=True"
            )

    def remove(self) -> None:
        import shutil

        if self.folder.exists():
            shutil.rmtree(self.folder)

    # --- writing (training) -------------------------------------------------------------------------
    def write_params(self, params: dict) -> None:
        cache.write_json(self.params_path, params)

    def append_result(self, record: dict) -> None:
        """One epoch's line of results.jsonl."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.results_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True, default=str) + "\n")

    def save_last(self, state: dict) -> None:
        save_checkpoint(self.last_path, state)

    def load_last(self, map_location: str | torch.device = "cpu") -> dict | None:
        """The state after the last finished epoch, or None when there is none to resume from."""
        return load_checkpoint(self.last_path, map_location) if self.last_path.exists() else None

    def save_model(self, state: dict) -> None:
        save_checkpoint(self.model_path, state)

    def write_evaluation(self, dataset: str, split: str, metrics: dict) -> Path:
        path = self.evaluation_path(dataset, split)
        cache.write_json(path, metrics)
        return path

    def finish(self, metrics: dict, per_address=None, predictions=None) -> None:
        """The final artefacts; metrics.json last, since its presence marks the run finished."""
        if per_address is not None:
            cache.atomic_write(self.per_address_path, lambda tmp: per_address.to_csv(tmp, index=False))
        if predictions is not None:
            cache.atomic_write(self.predictions_path, lambda tmp: predictions.to_parquet(tmp, index=False))
        cache.write_json(self.metrics_path, metrics)

    # --- reading ------------------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        return json.loads(self.params_path.read_text())

    @property
    def metrics(self) -> dict:
        return json.loads(self.metrics_path.read_text())

    def results(self):
        """results.jsonl as a table, one row per epoch."""
        import pandas as pd

        return pd.DataFrame(read_jsonl(self.results_path))

    def predictions(self, columns: list[str] | None = None):
        import pandas as pd

        return pd.read_parquet(self.predictions_path, columns=columns)

    def per_address(self):
        import pandas as pd

        return pd.read_csv(self.per_address_path)


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
