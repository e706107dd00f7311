"""`make demo` runs its notebooks as a graph (Makefile), two at a time where they are independent: each notebook must
come after every notebook whose outputs it reads, and every command must be one the notebooks accept. Who reads
what is derived from the commands' parameters: a dataset from the `01` that builds it, a run from the `02` that
names it, and the alignment run from `02` (which trains it; `04` would otherwise train it at the same time)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from addressclip import profiles
from addressclip.paths import REPO_ROOT
from test_readme import VENV_BIN, check_papermill

MAKEFILE = (REPO_ROOT / "Makefile").read_text()
RULE = re.compile(r"^(demo-[\w-]+):([^\n=]*)\n(?:\t\$\(call notebook,(\w+),([\w-]+),([^,)]*))?", flags=re.M)


def demo_graph() -> tuple[dict[str, set[str]], dict[str, tuple[str, dict[str, str]]], dict[str, str]]:
    """({target: its prerequisites}, {target: (notebook, its -p parameters)}, {target: its executed copy's name})
    of the demo's rules."""
    prerequisites, notebooks, copies = {}, {}, {}
    for target, needs, notebook, copy, params in RULE.findall(MAKEFILE):
        prerequisites[target] = set(needs.split())
        if notebook:
            argv = shlex.split(params)
            notebooks[target] = (notebook, {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "-p"})
            copies[target] = copy
    return prerequisites, notebooks, copies


def ancestors(target: str, prerequisites: dict[str, set[str]]) -> set[str]:
    found, todo = set(), list(prerequisites[target])
    while todo:
        t = todo.pop()
        if t not in found:
            found.add(t)
            todo += prerequisites.get(t, ())
    return found


def datasets_read(notebook: str, params: dict[str, str]) -> set[str]:
    if notebook.startswith("01_"):
        return set()
    p = profiles.resolve(params["profile"]) if "profile" in params else {}
    named = [params.get("dataset", p.get("dataset"))]
    if notebook in ("02_train", "04_ablations"):
        named += [p.get("align_dataset")]
    if notebook == "04_ablations":
        named += [p.get("second_city")]
    return {d for d in named if d}


def test_every_notebook_runs_after_the_notebooks_whose_outputs_it_reads():
    prerequisites, notebooks, _ = demo_graph()
    assert {nb for nb, _ in notebooks.values()} == {p.stem for p in (REPO_ROOT / "notebooks").glob("*.ipynb")}
    builds = {params["dataset"]: t for t, (nb, params) in notebooks.items() if nb == "01_build_dataset"}
    trains = {params["run_name"]: t for t, (nb, params) in notebooks.items() if nb == "02_train"}
    for target, (notebook, params) in notebooks.items():
        before = ancestors(target, prerequisites)
        for dataset in datasets_read(notebook, params):
            assert builds[dataset] in before, f"{target} reads {dataset} before {builds[dataset]} has built it"
        if "run" in params:
            assert trains[params["run"]] in before, f"{target} reads run {params['run']} before it is trained"
        if notebook == "04_ablations":  # it starts from the alignment run that 02_train trains
            assert set(trains.values()) <= before
    assert set(notebooks) <= ancestors("demo-notebooks", prerequisites)  # `make demo` runs them all, then the reports
    assert re.search(r"^demo: env\n(\t.*\n)*\t\$\(MAKE\) .*-j\$\(DEMO_JOBS\) demo-notebooks\n\t\$\(MAKE\) .*reports$",
                     MAKEFILE, flags=re.M)


def make(*args: str, **env: str) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    return subprocess.run(["make", "--no-print-directory", *args, f"VENV={VENV_BIN.parent}", *(f"{k}={v}" for k, v in env.items())],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})  # only what make sets


def test_the_demo_commands_are_ones_the_notebooks_accept():
    dry = make("-n", "demo-notebooks")
    assert dry.returncode == 0, dry.stderr
    commands = [c.replace("'\\''", "'") for c in re.findall(r"^echo '(.*?)'; start=", dry.stdout, flags=re.M)]
    assert len(commands) == len(demo_graph()[1])
    copies = []
    for command in commands:
        argv = shlex.split(command)
        while "=" in argv[0]:  # an environment assignment before papermill (05's one thread beside 04's sweep)
            argv.pop(0)
        assert Path(argv[0]) == VENV_BIN / "papermill" and argv[1:4] == ["--log-level", "WARNING", "--no-progress-bar"]
        check_papermill([argv[0], *argv[4:]])
        copies.append(argv[5])
    assert len(set(copies)) == len(copies), "two notebooks would write the same executed copy"


def test_make_runs_the_graph_two_at_a_time_in_order_and_stops_on_a_failure(tmp_path):
    """With a stand-in for papermill that logs when each notebook starts and ends (and fails for 04): two run at
    once, each starts after its prerequisites have ended, and make reports the failure with papermill's status."""
    log, stub = tmp_path / "log", tmp_path / "papermill"
    stub.write_text(f"""#!/bin/sh
echo "start $3" >> {log}
sleep 0.5
echo "end $3" >> {log}
case "$2" in *04_ablations*) exit 3;; esac
""")
    stub.chmod(0o755)
    done = make("-j2", "demo-notebooks", PAPERMILL=str(stub))
    assert done.returncode != 0 and "04_ablations.ipynb: failed after" in done.stdout, done.stdout + done.stderr
    assert "03_evaluate.ipynb: done in" in done.stdout and "03_evaluate.ipynb: failed" not in done.stdout
    events = [line.split() for line in log.read_text().splitlines()]
    when = {(what, Path(copy).stem): i for i, (what, copy) in enumerate(events)}
    prerequisites, _, copies = demo_graph()
    for target, copy in copies.items():
        if ("start", copy) not in when:  # not started: an earlier notebook failed
            continue
        for need in prerequisites[target] & set(copies):
            assert when[("end", copies[need])] < when[("start", copy)], f"{target} started before {need} ended"
    running, most = 0, 0
    for what, _ in events:
        running += 1 if what == "start" else -1
        most = max(most, running)
    assert most == 2  # the two datasets side by side (and 05 beside 04)


@pytest.mark.parametrize("jobs", ["2", "1"])
def test_05_computes_with_one_thread_beside_the_sweep_and_with_every_core_alone(tmp_path, jobs):
    """05 runs beside 04, whose sweep holds every core with a one-thread process: 05 gets OMP_NUM_THREADS=1 (torch,
    numpy's BLAS and scikit-learn read it at start); no other notebook does, nor 05 when the notebooks run one at a
    time (DEMO_JOBS=1)."""
    log, stub = tmp_path / "log", tmp_path / "papermill"
    stub.write_text(f"""#!/bin/sh
echo "$3 ${{OMP_NUM_THREADS:-unset}}" >> {log}
""")
    stub.chmod(0o755)
    done = make(f"-j{jobs}", "demo-notebooks", PAPERMILL=str(stub), DEMO_JOBS=jobs)
    assert done.returncode == 0, done.stdout + done.stderr
    threads = dict(line.split() for line in log.read_text().splitlines())
    _, _, copies = demo_graph()
    assert {Path(c).stem for c in threads} == set(copies.values())
    expected = {copy: ("1" if target == "demo-05" and jobs != "1" else "unset") for target, copy in copies.items()}
    assert {Path(c).stem: n for c, n in threads.items()} == expected
