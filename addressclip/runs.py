"""Run folders: parameters, code version, per-epoch results, final metrics and checkpoints.

    outputs/runs/<run>/
      params.json        the configuration, seed, code version, library versions
      results.jsonl      one JSON line per epoch (train losses, images/s, validation metrics)
      metrics.json       final test metrics (present only when the run finished)
      per_address.csv    test accuracy per address
      predictions.parquet
      skipped_images.json  images left out because they cannot be read (`image_check`)
      checkpoints/last.pt  training state after the last finished epoch (for resume): trained weights, buffers,
                         optimizer, every epoch's row; the frozen weights only as a digest (`train.resume_state`)
      checkpoints/previous.pt  the one before it (kept while the run trains, in case last.pt is damaged)
      model.pt           final weights + model spec (for evaluation and prediction)
      train.lock         present while a process trains the run (`Run.lock`)
      SHA256SUMS         checksums of metrics.json, per_address.csv, predictions.parquet (`sha256sum -c SHA256SUMS`)

`Run` owns the folder: training writes through it, everything else reads through it. Checkpoints hold only
tensors and plain values, carry a checksum and are read with ``weights_only=True`` (`cache.save` / `cache.load`):
loading never executes pickled code and never uses a damaged file. Every file is written under a temporary name
and renamed, so an interrupted write never leaves a half file; results.jsonl is rewritten whole after each
checkpoint from the rows the checkpoint carries, so it never holds a row the checkpoint does not (nor two for one
epoch). One process trains a run at a time: `Run.lock` holds an OS lock that dies with its process.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from . import cache, threads
from .errors import UserError
from .paths import REPO_ROOT

log = logging.getLogger(__name__)


class RunLockedError(UserError):
    """Another process is training this run."""


class DamagedRunFile(UserError):
    """A finished run's result file whose bytes differ from the checksum written with it."""


class RunLockWarning(UserWarning):
    """A lock left by a process that is no longer running was taken over."""


class DamagedCheckpointWarning(UserWarning):
    """A training checkpoint could not be read; training resumes from an earlier one or starts afresh."""


_HELD_LOCKS: dict[str, int] = {}  # lock path -> file descriptor, for the locks this process holds
_TEMPORARY = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.tmp(\.[^.]*)?$")  # cache.atomic_write's temporary names


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
    """What computed a run besides its code and settings. The CPU model and the vector instructions ATen's kernels
    use matter: floating-point sums taken in another order move a trained model's numbers (README, "How closely
    these numbers reproduce"), and this project's machines are not always the same CPU."""
    import open_clip

    env = {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
           "platform": platform.platform(), "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "cores": str(threads.cores())}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _lock_fd(fd: int, run: "Run") -> bool:
    """Take an exclusive OS lock on `fd` without waiting: False if another process holds it."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): the lock file's pid decides, on this host only
        return _lock_by_pid(fd)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except (BlockingIOError, PermissionError):
        return False
    except OSError as exc:  # a file system without locks
        log.warning("run %s: %s does not support locks (%s); judging the lock by its pid", run.name, run.lock_path, exc)
        return _lock_by_pid(fd)


def _lock_by_pid(fd: int) -> bool:
    holder = _read_lock_info(fd)
    if not holder or holder.get("host") != socket.gethostname() or holder.get("pid") == os.getpid():
        return True
    return not pid_alive(int(holder.get("pid", 0)))


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lock_info(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else {}
    except (OSError, json.JSONDecodeError):
        return {"pid": "?", "host": "?", "started": "?"}


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
    previous_path = property(lambda self: self.folder / "checkpoints" / "previous.pt")
    lock_path = property(lambda self: self.folder / "train.lock")
    skipped_images_path = property(lambda self: self.folder / "skipped_images.json")
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
            raise UserError(  # what works from each entry point: 02_train has a run_name but no overwrite
                f"run folder {self.folder} holds a run with other settings {diff} (stored, requested); choose another "
                f"run name (02_train: -p run_name NAME; addressclip train: --run-name NAME; Python: run_name=) or "
                f"replace that run (delete the folder; addressclip train: --overwrite true; Python: overwrite=True)"
            )

    def remove(self) -> None:
        """Delete the run's files (all but the lock, which the caller holds)."""
        import shutil

        if not self.folder.exists():
            return
        for entry in self.folder.iterdir():
            if entry == self.lock_path:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # --- the lock -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Hold the run's lock while the block runs: a second process (or a second call in this one) that
        trains the same run gets a `RunLockedError` naming the run and the process holding it. The lock is an OS
        record lock on ``train.lock`` (`fcntl.lockf`), released by the kernel when its process ends however it
        ends, so a killed process never leaves the run locked: its leftover file is taken over with a
        `RunLockWarning` naming the dead process. The file records pid, host, start time and command."""
        key = str(self.lock_path.resolve())
        if key in _HELD_LOCKS:
            raise RunLockedError(f"run {self.name} ({self.folder}) is already being trained by this process (pid {os.getpid()})")
        fd, previous = self._acquire()
        _HELD_LOCKS[key] = fd
        try:
            if previous:
                warnings.warn(f"run {self.name}: took over the lock left by process {previous.get('pid')} on "
                              f"{previous.get('host')} (started {previous.get('started')}), which is no longer running",
                              RunLockWarning, stacklevel=3)
            self.remove_temporaries()  # we are the only writer: what is left is from a killed process
            yield self
        finally:
            del _HELD_LOCKS[key]
            with contextlib.suppress(OSError):
                self.lock_path.unlink()  # before closing: a waiting opener then sees a new inode and retries
            os.close(fd)
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only if empty: a call that stopped before writing anything leaves nothing

    def _acquire(self) -> tuple[int, dict]:
        """(open descriptor of the locked file, what the previous holder recorded: {} if it released cleanly)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _lock_fd(fd, self):
                    holder = _read_lock_info(fd)
                    raise RunLockedError(
                        f"run {self.name} ({self.folder}) is being trained by process {holder.get('pid', '?')} on "
                        f"{holder.get('host', '?')} since {holder.get('started', '?')} ({holder.get('command', '')}); "
                        f"wait for it to finish, stop it, or choose another run_name")
                if os.path.exists(self.lock_path) and os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino:
                    previous = _read_lock_info(fd)
                    info = {"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:300]}
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
                    os.fsync(fd)
                    return fd, previous
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the holder released and removed the file meanwhile: lock the new one
        raise RunLockedError(f"run {self.name}: could not take the lock {self.lock_path}")

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files (`cache.atomic_write`) a killed process left in the run folder; only the
        process holding the lock writes here, so none of them is being written."""
        removed = []
        for folder in (self.folder, self.folder / "checkpoints"):
            if folder.is_dir():
                for entry in folder.iterdir():
                    if _TEMPORARY.match(entry.name) and entry.is_file():
                        entry.unlink()
                        removed.append(entry)
        if removed:
            log.warning("run %s: removed %d temporary file(s) left by an interrupted process: %s", self.name,
                        len(removed), ", ".join(p.name for p in removed))
        return removed

    # --- writing (training) -------------------------------------------------------------------------
    def write_params(self, params: dict) -> None:
        cache.write_json(self.params_path, params)

    def write_results(self, records: list[dict]) -> None:
        """results.jsonl, whole: one line per finished epoch (the rows the last checkpoint carries)."""
        if not records:
            with contextlib.suppress(FileNotFoundError):
                self.results_path.unlink()
            return
        cache.write_text(self.results_path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records))

    def append_result(self, record: dict) -> None:
        """One more epoch's line of results.jsonl (the file rewritten whole)."""
        self.write_results(read_jsonl(self.results_path) + [record])

    def save_last(self, state: dict) -> None:
        """The state after an epoch; the checkpoint it replaces is kept as previous.pt (renamed, so at every
        moment a whole checkpoint of the last or the epoch before exists)."""
        if self.last_path.exists():
            os.replace(self.last_path, self.previous_path)
        save_checkpoint(self.last_path, state)

    def load_last(self, map_location: str | torch.device = "cpu", move_aside: bool = True) -> dict | None:
        """The state after the last finished epoch, or None when there is none to resume from. A damaged
        last.pt is moved aside (``last.pt.damaged``; not by torchrun's other ranks: `move_aside` False) with a
        `DamagedCheckpointWarning` naming it, and the run resumes from previous.pt, or starts afresh if that is
        missing or damaged too; never an error."""
        problems = []
        for path in (self.last_path, self.previous_path):
            if not path.exists():
                continue
            try:
                state = cache.load(path, map_location=map_location)
                if not isinstance(state.get("epoch"), int) or "model" not in state:
                    raise cache.DamagedFile(f"{path} is not a training checkpoint (keys {sorted(state)[:6]})")
            except cache.DamagedFile as exc:
                aside = path.with_name(path.name + ".damaged")
                if move_aside:
                    with contextlib.suppress(OSError):
                        os.replace(path, aside)
                problems.append(f"{exc}" + (f" (moved aside to {aside.name})" if move_aside else ""))
                continue
            if problems or path == self.previous_path:
                why = "; ".join(problems) or f"{self.last_path.name} is missing (a write was interrupted)"
                warnings.warn(f"run {self.name}: {why}; resuming from {path.name} (epoch {state['epoch']})",
                              DamagedCheckpointWarning, stacklevel=2)
            return state
        if problems:
            warnings.warn(f"run {self.name}: {'; '.join(problems)}; no whole checkpoint is left, so training starts "
                          f"afresh", DamagedCheckpointWarning, stacklevel=2)
        return None

    def drop_previous(self) -> None:
        """The checkpoint before last is needed only while the run trains."""
        with contextlib.suppress(FileNotFoundError):
            self.previous_path.unlink()

    def save_model(self, state: dict) -> None:
        save_checkpoint(self.model_path, state)

    def write_evaluation(self, dataset: str, split: str, metrics: dict) -> Path:
        path = self.evaluation_path(dataset, split)
        cache.unseal(self.folder, [path.name])
        cache.write_json(path, metrics)
        cache.seal(self.folder, [path.name])
        return path

    def finish(self, metrics: dict, per_address=None, predictions=None) -> None:
        """The final artefacts; metrics.json last, since its presence marks the run finished."""
        sealed = [self.metrics_path.name, self.per_address_path.name, self.predictions_path.name]
        cache.unseal(self.folder, sealed)
        if per_address is not None:
            cache.atomic_write(self.per_address_path, lambda tmp: per_address.to_csv(tmp, index=False))
        if predictions is not None:
            cache.atomic_write(self.predictions_path, lambda tmp: predictions.to_parquet(tmp, index=False))
        cache.write_json(self.metrics_path, metrics)
        # their checksums (SHA256SUMS): these files are read back by reports and ablations, and by other tools
        cache.seal(self.folder, sealed)

    # --- reading ------------------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        return json.loads(self.params_path.read_text())

    @property
    def metrics(self) -> dict:
        return json.loads(self._verified(self.metrics_path).read_text())

    @property
    def skipped_images(self) -> dict:
        """skipped_images.json ({} when absent or unreadable)."""
        try:
            return json.loads(self.skipped_images_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return {}

    def results(self):
        """results.jsonl as a table, one row per epoch."""
        import pandas as pd

        return pd.DataFrame(read_jsonl(self.results_path))

    def predictions(self, columns: list[str] | None = None):
        import pandas as pd

        return pd.read_parquet(self._verified(self.predictions_path), columns=columns)

    def per_address(self):
        import pandas as pd

        return pd.read_csv(self._verified(self.per_address_path))

    def _verified(self, path: Path) -> Path:
        """`path`, checked against the run's SHA256SUMS; a damaged file is an error naming it, never a result."""
        try:
            return cache.verify(path)
        except cache.DamagedFile as exc:
            raise DamagedRunFile(f"run {self.name}: {exc}; restore the file or retrain the run (overwrite=True)") from None


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


class OtherDatasetWarning(UserWarning):
    """A run evaluated or shown on a dataset it was not trained on."""


def check_trained_on(config: dict, dataset: str | Path, run: str | Path) -> None:
    """Warn when `run` is evaluated or shown on a dataset it was not trained on (its config's `dataset` or
    `extra_datasets`): legitimate (another city, your photos of the city a rendered run learned), but easy to do by
    mistake, e.g. a run name without its dataset, which then defaults to the tiny one. Datasets are compared by
    folder name, so a registry name, its folder and data/<name> are the same dataset."""
    def key(name) -> str:
        path = Path(str(name))
        return (path.resolve() if path.exists() else path).name

    trained = [d for d in [config.get("dataset"), *(config.get("extra_datasets") or [])] if d]
    if trained and key(dataset) not in {key(d) for d in trained}:
        warnings.warn(f"run {run} was trained on dataset {trained[0]!r}, not {str(dataset)!r}: its numbers here "
                      f"rank {str(dataset)!r}'s addresses; pass dataset {trained[0]} for the dataset it learned",
                      OtherDatasetWarning, stacklevel=2)


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
