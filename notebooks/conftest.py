from pathlib import Path

import pytest

# notebooks/*.py are the jupytext pairs of the notebooks (percent format), not test modules: pytest must never import
# (and so run) them, not even with --doctest-modules or wider python_files. nbval collects the .ipynb files.
collect_ignore_glob = ["*.py"]


def pytest_collection_modifyitems(items):
    """The notebooks run in order on one pytest-xdist worker (`make test`: ``--dist loadgroup``): 03 and 05 read the
    run that 02 trains, and each notebook's cells share one kernel."""
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here:
            item.add_marker(pytest.mark.xdist_group("notebooks"))
