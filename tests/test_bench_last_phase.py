"""bench/bench_last_phase.py on a stand-in clone: a Makefile with make demo's last three targets (03 must not run
again) and the outputs a finished demo leaves. What 04 computed is deleted and nothing else, 05 starts with the
environment asked for, and the sweep's job seconds are read from 04's executed notebook."""
import json
import re
import shutil

import pytest

from bench_scripts import load
from test_demo_graph import make

bench_last_phase = load("bench_last_phase")

SWEEP_LINES = ["baseline coop / seed 0: SSA-1 1.64 (118.89 s)\n", "baseline maple / seed 0: not applicable (0.0 s)\n",
               "losses / address / seed 0: train-helsinki-synth-aaaa (19 s)\n",
               "label_aware / label-aware / seed 2: train-helsinki-synth-bbbb (22 s)\n"]


def finished_demo(tmp_path):
    clone = tmp_path / "clone"
    out = clone / "outputs"
    for folder in ("runs/demo/gallery_cache", "runs/align-kotka-synth-1", "runs/train-helsinki-synth-aaaa",
                   "runs/train-helsinki-synth-bbbb", "baselines", "features", "executed", "tables"):
        (out / folder).mkdir(parents=True)
    (out / "features/bank-helsinki-synth-1.pt").write_bytes(b"x")
    (out / "features/image-1.pt").write_bytes(b"x")
    (out / "baselines/coop-seed0.json").write_text("{}")
    (out / "tables/ablation-runs-demo-helsinki-synth.csv").write_text(
        "experiment,variant,seed,run,SSA-1\nlosses,address,0,train-helsinki-synth-aaaa,9.8\n"
        "label_aware,label-aware,2,train-helsinki-synth-bbbb,11.0\n"
        "label_aware,plain InfoNCE,0,train-helsinki-synth-aaaa,9.8\n")  # a run two variants share
    notebook = {"cells": [{"cell_type": "code", "outputs": [{"name": "stdout", "text": SWEEP_LINES}]}]}
    (out / "executed/04_ablations.ipynb").write_text(json.dumps(notebook))
    (clone / "Makefile").write_text("""BESIDE_SWEEP = OMP_NUM_THREADS=1
demo-03:
\ttouch ran-03
demo-04: demo-03
\t@echo start >> log; ls outputs/runs > runs-seen; sleep 0.5; echo end >> log
\t@echo 'outputs/executed/04_ablations.ipynb: done in 0 s'
demo-05: demo-03
\t@echo '$(BESIDE_SWEEP) .venv/bin/papermill --no-progress-bar notebooks/05_visualise.ipynb outputs/executed/05_visualise.ipynb'
\t@echo start >> log; sleep 0.5; echo end >> log; echo 'outputs/executed/05_visualise.ipynb: done in 0 s'
""")
    return clone


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("beside", [None, ""])
def test_the_phase_runs_again_from_what_01_to_03_left(tmp_path, beside):
    clone = finished_demo(tmp_path)
    result = bench_last_phase.main(["--dir", str(clone), "--json", str(tmp_path / "r.json")]
                                   + ([] if beside is None else ["--beside-sweep", beside]))
    assert not (clone / "ran-03").exists()  # 01-03's outputs are kept, not made again
    assert (clone / "runs-seen").read_text().split() == ["align-kotka-synth-1", "demo"]  # only 04's runs deleted
    assert not (clone / "outputs/runs/demo/gallery_cache").exists() and not any((clone / "outputs/baselines").glob("*"))
    assert [p.name for p in (clone / "outputs/features").iterdir()] == ["image-1.pt"]
    assert (clone / "log").read_text().split() == ["start", "start", "end", "end"]  # 04 and 05 side by side
    assert result["05_environment"] == ("OMP_NUM_THREADS=1" if beside is None else "")
    assert result["ablation_runs_deleted"] == 2 and result["runs_own_s"] == 19 + 22 and result["coop_s"] == [118.89]
    assert 0.5 <= result["phase_s"] < 1.0 + 0.5 and result == json.loads((tmp_path / "r.json").read_text())


def test_a_folder_without_a_finished_demo_or_a_setting_its_makefile_lacks_is_refused(tmp_path, capsys):
    (tmp_path / "Makefile").write_text("demo-05:\n\t$(call notebook,05,05,,$(BESIDE_SWEEP))\n")
    with pytest.raises(SystemExit, match="no finished `make demo`"):
        bench_last_phase.main(["--dir", str(tmp_path)])
    (tmp_path / "Makefile").write_text("demo-05:\n\t$(call notebook,05,05,)\n")  # a Makefile from before BESIDE_SWEEP
    with pytest.raises(SystemExit):
        bench_last_phase.main(["--dir", str(tmp_path), "--beside-sweep", ""])
    assert "has no BESIDE_SWEEP" in capsys.readouterr().err


def test_the_real_makefile_runs_only_04_and_05_and_05_with_the_setting_given():
    """What the bench asks of the project's own Makefile (a dry run): 01-03 kept, 05 started with BESIDE_SWEEP."""
    dry = make("-n", "-o", "demo-03", "demo-04", "demo-05", BESIDE_SWEEP="X=1")
    assert dry.returncode == 0, dry.stderr
    starts = re.findall(r"^echo '(.*?)'; start=", dry.stdout, flags=re.M)
    assert len(starts) == 2 and "notebooks/04_ablations.ipynb" in starts[0] and not starts[0].startswith("X=1")
    assert starts[1].startswith("X=1 ") and "notebooks/05_visualise.ipynb" in starts[1]
