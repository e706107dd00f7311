"""Running the project's notebooks as a user does: papermill, the notebook's own kernel, its folder as cwd."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import papermill
import pytest

from addressclip.paths import REPO_ROOT


def run_notebook(name: str, out_dir: Path, tag: str = "", **parameters) -> float:
    """Execute notebooks/<name>.ipynb with `parameters` into `out_dir`; returns the wall time in seconds."""
    start = time.perf_counter()
    papermill.execute_notebook(str(REPO_ROOT / "notebooks" / f"{name}.ipynb"), str(out_dir / f"{name}{tag}.ipynb"),
                               parameters=parameters, kernel_name="python3", progress_bar=False,
                               cwd=str(REPO_ROOT / "notebooks"))
    return time.perf_counter() - start


@contextlib.contextmanager
def project_folders(root: Path):
    """Datasets under root/data and runs, tables and reports under root/outputs, for this process and the notebook
    kernels it starts; restored afterwards."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ADDRESSCLIP_DATA", str(root / "data"))
    mp.setenv("ADDRESSCLIP_OUTPUTS", str(root / "outputs"))
    try:
        yield root
    finally:
        mp.undo()
