"""Helpers the notebooks call, so that notebooks stay thin (no definitions in them)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

PARAMETER_TYPES = (str, int, float, bool, type(None), list, dict, tuple)
NOTEBOOK_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def check_parameters(namespace: dict[str, Any], declared: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return the declared parameters; refuse names that papermill injected but the notebook does not declare
    (papermill itself only warns on a misspelt `-p` name). Imported constants (UPPER_CASE) are not parameters."""
    found = {k: v for k, v in namespace.items()
             if not k.startswith("_") and not k.isupper() and k not in NOTEBOOK_NAMES and isinstance(v, PARAMETER_TYPES)}
    unknown = sorted(set(found) - set(declared))
    if unknown:
        raise ValueError(f"unknown notebook parameters {unknown}; valid: {', '.join(declared)}")
    return {k: namespace[k] for k in declared}


def show_json(path: str | Path, decimals: int = 2) -> pd.DataFrame:
    """A metrics file as a one-column table, numbers rounded for reading (the file keeps full precision)."""
    data = json.loads(Path(path).read_text())
    shown = {k: round(v, decimals) if isinstance(v, float) else v for k, v in data.items()}
    return pd.DataFrame({"value": shown}).rename_axis("metric")
