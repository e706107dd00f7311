"""Each notebook is kept as a pair (notebooks/jupytext.toml): `NN_name.ipynb`, committed without outputs, and
`NN_name.py` in jupytext's percent format. Either file may be edited; `make sync-notebooks` brings the other in line.
These tests fail when a pair disagrees on its cells (type, source, tags) or a committed notebook carries outputs.
"""
from __future__ import annotations

import json
import shutil
from itertools import zip_longest
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
SCRIPTS = sorted(p for p in FOLDER.glob("*.py") if p.name != "conftest.py")
FIX = "run `make sync-notebooks`, the newer file of each pair wins"


def cells(path: Path) -> list[tuple[str, str, list[str]]]:
    nb = jupytext.read(path)
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def disagreements(notebook: Path, script: Path) -> list[str]:
    """What differs between a notebook and its percent-format pair: cell types, sources, tags, kernelspec."""
    a, b = cells(notebook), cells(script)
    found = [f"{notebook.name} has {len(a)} cells, {script.name} {len(b)}"] if len(a) != len(b) else []
    for i, (x, y) in enumerate(zip(a, b)):
        for what, u, v in zip(("type", "source", "tags"), x, y):
            if u != v and what == "source":
                lines = enumerate(zip_longest(u.splitlines(), v.splitlines()), 1)
                n, u, v = next(((n, s, t) for n, (s, t) in lines if s != t), ("end", u[-40:], v[-40:]))
                found.append(f"cell {i} source, line {n}: {u!r:.150} vs {v!r:.150}")
            elif u != v:
                found.append(f"cell {i} {what}: {u!r} vs {v!r}")
    kernels = [jupytext.read(p).metadata.get("kernelspec", {}).get("name") for p in (notebook, script)]
    if kernels != ["python3", "python3"]:
        found.append(f"kernelspec names {kernels}, expected python3 on both sides")
    return found


def dirt(notebook: Path) -> list[str]:
    """Outputs and execution counts in a committed notebook (read as stored, not through jupytext)."""
    stored = json.loads(notebook.read_text())
    return [f"cell {i}: outputs or execution_count" for i, c in enumerate(stored["cells"])
            if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def test_every_notebook_has_its_pair():
    assert NOTEBOOKS
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in SCRIPTS], f"unpaired files in notebooks/; {FIX}"
    config = FOLDER / "jupytext.toml"
    assert 'formats = "ipynb,py:percent"' in config.read_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_pair_agrees(notebook):
    script = notebook.with_suffix(".py")
    assert script.exists(), f"{script.name} is missing; {FIX}"
    found = disagreements(notebook, script)
    assert not found, f"{notebook.name} and {script.name} disagree; {FIX}:\n" + "\n".join(found)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(notebook):
    found = dirt(notebook)
    assert not found, f"{notebook.name}: clear outputs before committing:\n" + "\n".join(found)


def test_the_checks_catch_a_real_disagreement(tmp_path):
    """Scratch copies of one pair, each side edited in turn: every edit must be reported."""
    source = NOTEBOOKS[0]
    notebook, script = tmp_path / source.name, tmp_path / f"{source.stem}.py"
    shutil.copy(source, notebook)
    shutil.copy(source.with_suffix(".py"), script)
    assert disagreements(notebook, script) == [] and dirt(notebook) == []
    text = script.read_text()

    # a source line changed in the script
    script.write_text(text.replace("import ", "import  ", 1))
    assert any(" source, line " in d for d in disagreements(notebook, script))
    # the parameters tag dropped from the script
    script.write_text(text.replace('# %% tags=["parameters"]', "# %%", 1))
    assert any(" tags: " in d for d in disagreements(notebook, script))
    # a cell added to the script
    script.write_text(text + "\n# %%\nprint('new')\n")
    assert any("cells" in d for d in disagreements(notebook, script))
    script.write_text(text)

    # a code cell turned into markdown in the notebook, then outputs left in it
    stored = json.loads(notebook.read_text())
    code = next(c for c in stored["cells"] if c["cell_type"] == "code")
    code["cell_type"] = "markdown"
    del code["outputs"], code["execution_count"]
    notebook.write_text(json.dumps(stored))
    assert any(" type: " in d for d in disagreements(notebook, script))
    code["cell_type"] = "code"
    code["execution_count"] = 1
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    notebook.write_text(json.dumps(stored))
    assert disagreements(notebook, script) == [] and dirt(notebook)
