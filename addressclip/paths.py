"""Where things live on disk: one place, so notebooks (run from notebooks/) and scripts agree."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Folder holding built datasets (`<root>/<name>/`) and raw downloads (`<root>/raw/`).

    Set ``ADDRESSCLIP_DATA`` to put it elsewhere (e.g. a big disk); default ``<repo>/data``.
    """
    return Path(os.environ.get("ADDRESSCLIP_DATA", REPO_ROOT / "data")).expanduser().resolve()


def outputs_root() -> Path:
    """Folder for runs, executed notebooks and reports; ``ADDRESSCLIP_OUTPUTS`` overrides ``<repo>/outputs``."""
    return Path(os.environ.get("ADDRESSCLIP_OUTPUTS", REPO_ROOT / "outputs")).expanduser().resolve()


def runs_root() -> Path:
    return outputs_root() / "runs"


def features_root(runs_dir: str | Path | None = None) -> Path:
    """Cached features (`cache`, `frozen_layers`, `features`): beside the runs folder, so a custom `runs_dir`
    keeps its caches with it; by default ``outputs/features``."""
    return Path(runs_dir).parent / "features" if runs_dir else outputs_root() / "features"
