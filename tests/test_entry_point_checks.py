"""Checks at the entry points (notebooks, CLI, the Python calls they make) that refuse a bad combination before any
work, or that keep working where a metric does not exist: each case runs the notebook's own cells as papermill
would (`first_cells`), or the function the notebook and the CLI share."""
from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from addressclip import notebook
from addressclip.config import TrainConfig
from addressclip.errors import UserError
from addressclip.paths import REPO_ROOT
from addressclip.runs import OtherDatasetWarning, Run, check_trained_on
from fixtures import make_tiny_dataset
from notebook_runs import first_cells, project_folders
from test_bad_input import one_line_cell_error, one_line_error, run_cells, run_cli


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_PROGRESS", "0")
    monkeypatch.delenv("ADDRESSCLIP_DEBUG", raising=False)


@pytest.fixture
def folders(tmp_path):
    with project_folders(tmp_path) as root:
        yield root


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "other")


def code_cell(name: str, text: str) -> str:
    """The source of the notebook's first code cell that holds `text`."""
    nb = nbformat.read(REPO_ROOT / "notebooks" / name, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code" and text in c.source)


# ------------------------------------------------------------------- 01: registry datasets are built as registered
def test_01_refuses_shaping_a_registry_dataset(capsys, folders, monkeypatch):
    monkeypatch.setattr("addressclip.datasets.build_dataset", lambda *a, **k: pytest.fail("built"))
    _, printed = run_cells("01_build_dataset.ipynb", capsys, dataset="helsinki-synth", image_size="64")
    one_line_cell_error(printed, "UserError: image_size shape your own city; registry dataset 'helsinki-synth' is built "
                                 "as registered (the -tiny names are the small versions)")
    _, printed = run_cells("01_build_dataset.ipynb", capsys, dataset="helsinki-synth", city_scale="tiny", max_locations="9")
    assert printed.startswith("UserError: city_scale, max_locations shape your own city")
    for given in ({"dataset": "helsinki-synth"}, {"dataset": "mycity", "osm": "mycity.osm.pbf", "image_size": "64"}):
        assert first_cells("01_build_dataset.ipynb", capsys, **given)[1].success, given
    # the CLI makes the same check (one function)
    one_line_error(run_cli("build", "helsinki-synth", "--image-size", "64"), "build",
                   "--image-size shape your own city; registry dataset 'helsinki-synth' is built as registered")


# ------------------------------------------------------------------- SSA-5 / SA-5 exist only with k >= 5 candidates
def test_run_findings_without_top5():
    from addressclip.report import run_findings

    lines = run_findings({"SSA-1": 50.0, "SA-1": 75.0, "images": 8, "candidates": 4, "split": "test"})
    assert lines == ["Test SSA-1 50.00 % (SA-1 75.00) on 8 test images, ranking 4 candidate addresses: chance SSA-1 "
                     "is 25.00 %."]


def test_03_evaluates_with_k_below_5(capsys, folders, run_dir, tiny_dataset):
    shell, result, printed = first_cells("03_evaluate.ipynb", capsys, cells=2, run=str(run_dir),
                                         dataset=str(tiny_dataset), k="3", device="cpu")
    assert result.success, printed
    m = shell.user_ns["m"]
    assert "SSA-5" not in m and "SA-5" not in m and m["SSA-1"] <= m["SA-1"]


def test_02_test_metrics_cell_with_fewer_than_5_candidates(tmp_path):
    source = code_cell("02_train.ipynb", "chance = ")
    path = tmp_path / "metrics.json"

    def run(metrics):
        path.write_text(json.dumps(metrics))
        exec(source, {"metrics": metrics, "expect_learning": True, "notebook": notebook,
                      "run": SimpleNamespace(metrics_path=path)})

    run({"SSA-1": 50.0, "SA-1": 75.0, "candidates": 4, "images": 8})  # no SSA-5: 4 candidates
    run({"SSA-1": 20.0, "SSA-5": 60.0, "SA-1": 40.0, "SA-5": 80.0, "candidates": 20, "images": 8})
    with pytest.raises(AssertionError, match=re.escape("SSA-1 20.0% is not above chance (25.0%)")):
        run({"SSA-1": 20.0, "SA-1": 75.0, "candidates": 4, "images": 8})
    with pytest.raises(AssertionError, match=re.escape("SSA-5 20.0% is not above chance (25.0%)")):
        run({"SSA-1": 10.0, "SSA-5": 20.0, "SA-1": 40.0, "SA-5": 80.0, "candidates": 20, "images": 8})


# ------------------------------------------------------------------- re-running a notebook in the same kernel
def test_check_parameters_twice_in_one_namespace():
    namespace = {"__annotations__": {"epochs": "Optional[int]"}, "epochs": 3}
    assert notebook.check_parameters(namespace, ["epochs"]) == {"epochs": 3}
    namespace.update(given={"epochs": 3}, p={}, chance=0.5, epochs=4)  # what the notebook's cells left ("Run All")
    assert notebook.check_parameters(namespace, ["epochs"]) == {"epochs": 4}
    namespace["epochs"] = "ten"
    with pytest.raises(UserError, match="epochs must be an integer or None, got 'ten'"):
        notebook.check_parameters(namespace, ["epochs"])  # the values are still checked on every call
    with pytest.raises(UserError, match=r"unknown notebook parameters \['epoch'\]"):
        notebook.check_parameters({"epochs": 3, "epoch": 3}, ["epochs"])  # a fresh kernel: unknown names refused


def test_02_twice_in_one_shell(capsys):
    shell, result, printed = first_cells("02_train.ipynb", capsys)
    assert result.success, printed
    main = sys.modules["__main__"]
    try:  # "Run All" again: the parameters cell, then the check, with `given` and `p` left from the first run
        for text in ("profile: str", "from pathlib"):
            result = shell.run_cell(code_cell("02_train.ipynb", text), store_history=False)
    finally:
        sys.modules["__main__"] = main
    assert result.success, capsys.readouterr().out


# ------------------------------------------------------------------- a run on the dataset it was trained on
def test_check_trained_on_names_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_trained_on({"dataset": "helsinki-synth"}, str(tmp_path / "helsinki-synth"), "r")
        check_trained_on({"dataset": "data/mycity"}, "mycity", "r")
        check_trained_on({"dataset": "/x/hatfield", "extra_datasets": ["kotka-synth"]}, "kotka-synth", "r")
        check_trained_on({}, "helsinki-synth", "r")  # a checkpoint that does not say: nothing to warn about
    with pytest.warns(OtherDatasetWarning, match=re.escape("run r was trained on dataset 'helsinki-synth', not "
                                                           "'helsinki-synth-tiny'")):
        check_trained_on({"dataset": "helsinki-synth"}, "helsinki-synth-tiny", "r")


@pytest.mark.parametrize("name", ["03_evaluate.ipynb", "05_visualise.ipynb"])
def test_notebook_warns_of_a_run_on_another_dataset(name, capsys, folders, run_dir, tiny_dataset, other_dataset):
    """Evaluating a run on another dataset is allowed (another city, photos of the city a rendered run learned) but
    said: the 05 example once left out -p dataset and showed the demo run on the tiny dataset."""
    with pytest.warns(OtherDatasetWarning, match=re.escape(f"run {run_dir} was trained on dataset {str(tiny_dataset)!r}, "
                                                           f"not {str(other_dataset)!r}")):
        _, result, printed = first_cells(name, capsys, run=str(run_dir), dataset=str(other_dataset), device="cpu")
    assert result.success, printed


def test_example_commands_name_the_dataset_of_the_run():
    for name in ("03_evaluate.py", "05_visualise.py"):
        commands = [line for line in (REPO_ROOT / "notebooks" / name).read_text().splitlines()
                    if "papermill" in line and " -p run " in line]
        assert commands and all(" -p dataset " in c for c in commands), commands


# ------------------------------------------------------------------- 02: the main dataset before the alignment run
def test_02_checks_the_dataset_before_alignment(capsys, folders, monkeypatch):
    monkeypatch.setattr("addressclip.datasets.build_embedded", lambda *names: None)  # the synthetic ones: not needed
    aligned = []
    monkeypatch.setattr("addressclip.train.aligned_start", lambda *a, **k: aligned.append(a) or 1 / 0)
    _, result, printed = first_cells("02_train.ipynb", capsys, cells=3, dataset="pitts-ial")
    assert not result.success and not aligned, printed
    assert len(printed.strip().splitlines()) == 1 and "pitts-ial" in printed and "build" in printed, printed


# ------------------------------------------------------------------- 04: an empty list runs nothing
@pytest.mark.parametrize("name", ["experiments", "seeds"])
def test_04_refuses_an_empty_list(name, capsys, folders):
    _, printed = run_cells("04_ablations.ipynb", capsys, **{name: []})
    one_line_cell_error(printed, f"UserError: {name} must list at least one, got []; None: the profile's")


# ------------------------------------------------------------------- a run name used for other settings
def test_identity_error_says_what_works_from_each_entry_point(tiny_dataset, tmp_path):
    from addressclip.cli import build_parser

    cfg = TrainConfig(dataset=str(tiny_dataset), runs_dir=str(tmp_path), run_name="mine")
    run = Run.of(cfg)
    run.write_params({"config": cfg.identity()})
    with pytest.raises(UserError, match="other settings") as refused:
        run.check_identity(cfg.replace(epochs=3))
    for hint in ("02_train: -p run_name NAME", "addressclip train: --run-name NAME", "addressclip train: --overwrite true",
                 "overwrite=True"):
        assert hint in str(refused.value)
    args = vars(build_parser().parse_args(["train", "--run-name", "x", "--overwrite", "true"]))  # what it offers works
    assert args["run_name"] == "x" and args["overwrite"] is True
    assert "overwrite" not in code_cell("02_train.ipynb", "profile: str")  # 02_train has no such parameter


# ------------------------------------------------------------------- devices
def test_resolve_device_refuses_unknown_names(monkeypatch):
    from addressclip.inference import resolve_device

    for bad in ("gpu", "cuda:x", "CPU"):
        with pytest.raises(UserError, match=re.escape(f"unknown device {bad!r}; valid: auto, cpu, cuda, cuda:N")):
            resolve_device(bad)
    assert resolve_device("cpu") == "cpu" and resolve_device("auto") in ("cpu", "cuda")
    monkeypatch.setattr("addressclip.inference.load_model", lambda *a, **k: pytest.fail("model loaded first"))
    one_line_error(run_cli("evaluate", "somerun", "--dataset", "helsinki-synth-tiny", "--device", "gpu"), "evaluate",
                   "unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N")
