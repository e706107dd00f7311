"""Running the project's notebooks as a user does: papermill, the notebook's own kernel, its folder as cwd."""
from __future__ import annotations

import contextlib
import sys
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


def first_cells(notebook: str, capsys, cells: int = 1, **given):
    """The notebook's parameters cell, the cell papermill injects for ``-p NAME VALUE`` (VALUE typed as papermill's
    command line types it) and the next `cells` cells, run in an IPython shell until one fails: (the shell, whose
    `user_ns` holds what they defined, the last cell's result, what they printed)."""
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell
    from papermill.cli import _resolve_type
    from papermill.translators import translate_parameters

    nb = nbformat.read(REPO_ROOT / "notebooks" / notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    i = next(k for k, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    typed = {k: _resolve_type(v) if isinstance(v, str) else v for k, v in given.items()}  # -p text, or -y YAML values
    injected = translate_parameters("python3", "python", typed, "Parameters")
    main = sys.modules["__main__"]  # IPython puts its own module there; multiprocessing's spawn (later tests) needs ours
    try:
        shell = InteractiveShell.instance()
        shell.reset(new_session=False)
        capsys.readouterr()
        for source in (code[i].source, injected, *(c.source for c in code[i + 1:i + 1 + cells])):
            result = shell.run_cell(source, store_history=False)
            if not result.success:
                break
    finally:
        sys.modules["__main__"] = main
    return shell, result, capsys.readouterr().out
