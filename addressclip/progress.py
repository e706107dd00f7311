"""When progress bars show: one policy for training, dataset builds and evaluation.

Asked for explicitly (True / False) wins. Otherwise bars show in interactive use (a terminal, or JupyterLab, where
tqdm.auto draws them as widgets) and stay off in headless runs: with ``ADDRESSCLIP_PROGRESS=0`` (what `make`
sets for the notebooks it executes, so executed copies and HTML reports carry no bar text) or under CI.
"""
from __future__ import annotations

import os


def enabled(requested: bool | None = None) -> bool:
    if requested is not None:
        return bool(requested)
    setting = os.environ.get("ADDRESSCLIP_PROGRESS")
    if setting is not None:
        return setting.strip().lower() not in ("0", "false", "no", "off", "")
    return not os.environ.get("CI")
