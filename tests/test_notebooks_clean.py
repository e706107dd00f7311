"""Notebooks are committed without outputs, run on kernel `python3`, have a `parameters` cell, and stay thin."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:3] == ["01_build_dataset.ipynb", "02_train.ipynb", "03_evaluate.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_thin(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "strip outputs before committing"
        src = "".join(cell["source"])
        assert not re.search(r"^\s*(def|class)\s", src, re.M), "define functions in the package, not in notebooks"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    for line in "".join(params[0]["source"]).splitlines():
        if line.strip():
            assert re.match(r"^\w+: [^=]+ = .+  # .+", line), f"parameter without type or comment: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill documents (--help-notebook) only parameters its parser reads: e.g. `str | None` is not read."""
    papermill = pytest.importorskip("papermill")
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    names = [line.split(":")[0] for line in "".join(cell["source"]).splitlines() if line.strip()]
    assert list(papermill.inspect_notebook(str(path))) == names
