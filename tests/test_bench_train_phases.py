"""bench/bench_train_phases.py at smoke scale: 02_train's two runs from nothing, every phase timed and none counted
twice, and a folder that would be reused refused."""
from __future__ import annotations

import json

import pytest
from bench_scripts import load

bench = load("bench_train_phases")


def test_times_both_runs_phase_by_phase(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path / "data"))  # its own tiny cities: no other test's folder
    monkeypatch.setenv("ADDRESSCLIP_OUTPUTS", str(tmp_path / "elsewhere"))  # replaced by --outputs (and restored)
    report = bench.main(["--profile", "smoke", "--outputs", str(tmp_path / "out"), "--json", str(tmp_path / "p.json")])
    assert json.loads((tmp_path / "p.json").read_text()) == report
    assert [run["dataset"] for run in report["runs"]] == ["kotka-synth-tiny", "helsinki-synth-tiny"]  # alignment first
    for run in report["runs"]:
        assert run["frozen text trunk"] > 0 and run["frozen image layers"] > 0 and run["epochs"] > 0
        assert run["distinct texts"] > 0
        assert run["image check"] > 0 and run["rest"] >= 0  # rest = the run less the others: none counted twice
    assert report["runs"][1]["evaluation"] > 0 and report["runs"][0]["evaluation"] == 0  # alignment never evaluates
    assert {p.name for p in (tmp_path / "out" / "runs").iterdir() if p.is_dir()} == {run["run"] for run in report["runs"]}
    assert sum(run["total"] for run in report["runs"]) <= report["seconds"] + 0.05
    assert not (tmp_path / "elsewhere").exists()  # everything went to --outputs
    out = capsys.readouterr().out
    assert "02_train's training cell, profile smoke, from nothing" in out and "distinct texts" in out


def test_refuses_a_folder_with_something_in_it(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit):
        bench.main(["--outputs", str(tmp_path)])
    assert "is not empty: give a new folder" in capsys.readouterr().err
