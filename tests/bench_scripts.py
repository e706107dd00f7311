"""The scripts under bench/ as modules, for their tests: bench/ is not a package, and a script may import another
(bench_last_phase reads make demo's lines with bench_demo's patterns)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def load(name: str):
    """bench/<name>.py as a module."""
    return importlib.import_module(name)
