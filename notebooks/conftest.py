import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from workers import pytest_xdist_make_scheduler  # noqa: E402,F401  (first: it sets this worker's cores)

# notebooks/*.py are the jupytext pairs of the notebooks (percent format), not test modules: pytest must never import
# (and so run) them, not even with --doctest-modules or wider python_files. nbval collects the .ipynb files.
collect_ignore_glob = ["*.py"]
