"""Helpers the notebooks call, so that notebooks stay thin (no definitions in them)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import USER_ERRORS, UserError, check_type, debug_enabled, one_line

PARAMETER_TYPES = (str, int, float, bool, type(None), list, dict, tuple)
NOTEBOOK_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
CHECKED = "_addressclip_parameters_checked"  # set in the notebook's globals once unknown names were looked for


def check_parameters(namespace: dict[str, Any], declared: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return the declared parameters, after showing user errors as one line (`show_user_errors`) and checking
    them: names that papermill injected but the notebook does not declare are refused (papermill itself only
    warns on a misspelt `-p` name), and each value must fit the annotation of the parameters cell (papermill
    passes ``-p epochs ten`` as the string 'ten'). Imported constants (UPPER_CASE) are not parameters.

    Unknown names are looked for only on the first call in a namespace (papermill always starts a fresh kernel):
    run again in the same kernel (Jupyter's "Run All" twice), the notebook's own variables are there too."""
    show_user_errors()
    if not namespace.get(CHECKED):
        found = {k: v for k, v in namespace.items() if not k.startswith("_") and not k.isupper()
                 and k not in NOTEBOOK_NAMES and isinstance(v, PARAMETER_TYPES)}
        unknown = sorted(set(found) - set(declared))
        if unknown:
            raise UserError(f"unknown notebook parameters {unknown}; valid: {', '.join(declared)}")
        namespace[CHECKED] = True
    annotations = namespace.get("__annotations__", {})
    for name in declared:
        if name in annotations:
            check_type(name, namespace[name], annotations[name])
    return {k: namespace[k] for k in declared}


def check_names(kind: str, names, valid) -> None:
    """Refuse names that are not among `valid` (e.g. experiments or baselines), listing the valid ones."""
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise UserError(f"unknown {kind} {unknown}; valid: {', '.join(valid)}")


def check_not_empty(values: dict[str, Any], names: list[str] | tuple[str, ...]) -> None:
    """Refuse an empty list among `names` (e.g. ``-y "seeds: []"``): nothing would run, and what is computed
    from the runs needs at least one."""
    for name in names:
        if values[name] is not None and len(values[name]) == 0:
            raise UserError(f"{name} must list at least one, got {values[name]!r}; None: the profile's")


def show_user_errors() -> None:
    """In IPython (a notebook, papermill's kernel): show user errors (`errors.USER_ERRORS`) raised by a cell as one
    line, ``<ErrorType>: <message>``, instead of a traceback. The cell still fails, so papermill still stops and
    reports that line; ``ADDRESSCLIP_DEBUG=1`` keeps the traceback, and ``%tb`` shows it after the fact."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc(USER_ERRORS, _one_line_error)


def _one_line_error(shell, etype, value, tb, tb_offset=None):
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # for %tb and %debug
    if debug_enabled():
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None
    stb = [f"{etype.__name__}: {one_line(value)}"]
    shell._showtraceback(etype, value, stb)  # the kernel sends it as the cell's error (ename, evalue, traceback)
    return stb


def show_json(path: str | Path, decimals: int = 2) -> pd.DataFrame:
    """A metrics file as a one-column table, numbers rounded for reading (the file keeps full precision)."""
    data = json.loads(Path(path).read_text())
    shown = {k: round(v, decimals) if isinstance(v, float) else v for k, v in data.items()}
    return pd.DataFrame({"value": shown}).rename_axis("metric")
