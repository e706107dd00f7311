"""bench/bench_demo.py end to end on a stand-in repository whose `make demo` prints the lines the project's Makefile
prints (the environment's commands, each papermill command as it starts and "done in N s" as it ends, nbconvert), so
that the stages it reports can be checked against the sleeps that make them."""
import json
import shutil
import subprocess
import sys

import pytest

from addressclip.paths import REPO_ROOT

PM = ".venv/bin/papermill --log-level WARNING --no-progress-bar notebooks/{nb}.ipynb outputs/executed/{copy}.ipynb"


def stand_in(tmp_path, name: str, recipe: str):
    repo = tmp_path / f"{name}-repo"
    repo.mkdir()
    (repo / "Makefile").write_text("demo:\n" + recipe)
    for argv in (["init", "-q"], ["add", "Makefile"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *argv], cwd=repo, check=True)
    return repo


def bench(tmp_path, repo, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "bench_demo.py"), "--repo", str(repo),
                           "--dir", str(tmp_path / name), "--json", str(out)], capture_output=True, text=True, timeout=120)
    result = json.loads(out.read_text())
    assert done.returncode == result["exit_status"]
    assert "cpu_vectors" in result and result["cpu_vectors"] in ("AVX-512", "AVX2", None)
    assert "| stage | starts at (s) | seconds | busy cores | steal |" in done.stdout
    return {s["stage"]: s for s in result["stages"]}


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_stages_side_by_side_and_one_after_the_other(tmp_path):
    graph = stand_in(tmp_path, "graph", "".join([
        "\t@echo 'python3 -m venv .venv'; sleep 0.3; echo 'touch .venv/.installed'\n",
        f"\t@echo '{PM.format(nb='01_a', copy='01_a')}'; echo 'OMP_NUM_THREADS=1 {PM.format(nb='01_a', copy='01_b')}'; sleep 1; "
        "echo 'outputs/executed/01_a.ipynb: done in 1 s'; sleep 1; echo 'outputs/executed/01_b.ipynb: done in 2 s'\n",
        "\t@echo '.venv/bin/jupyter nbconvert --to html'; sleep 0.5\n"]))
    stages = bench(tmp_path, graph, "graph")
    assert list(stages) == ["environment", "01_a", "01_b", "reports", "in all"]
    assert stages["01_a"]["start_s"] == stages["01_b"]["start_s"]  # side by side
    assert stages["01_a"]["seconds"] == pytest.approx(1, abs=0.4) and stages["01_b"]["seconds"] == pytest.approx(2, abs=0.4)
    assert stages["reports"]["seconds"] == pytest.approx(0.5, abs=0.4)
    assert stages["in all"]["seconds"] >= stages["environment"]["seconds"] + 2 + 0.5
    # the Makefile before the graph said only when each notebook started: each runs until the next one starts
    serial = stand_in(tmp_path, "serial", "".join([
        f"\t@echo '{PM.format(nb='01_a', copy='01_a')}'; sleep 1\n",
        f"\t@echo '{PM.format(nb='02_b', copy='02_b')}'; sleep 0.5; exit 2\n"]))
    stages = bench(tmp_path, serial, "serial")
    assert stages["01_a"]["seconds"] == pytest.approx(1, abs=0.4) and stages["02_b"]["seconds"] == pytest.approx(0.5, abs=0.4)
    assert "reports" not in stages and "environment" not in stages


def test_names_the_widest_vector_extension_the_cpu_reports():
    from bench_scripts import load

    module = load("bench_demo")
    line = "processor\t: {n}\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 {extra} fma\n\n"
    avx512 = "avx avx2 avx512f avx512dq avx512bw avx512vl"
    assert module.vector_width("".join(line.format(n=n, extra=avx512) for n in range(2))) == "AVX-512"
    assert module.vector_width(line.format(n=0, extra="avx avx2 avx512f")) == "AVX2"  # too few for ATen's AVX512
    assert module.vector_width("flags\t\t:\nbugs\t\t: avx2\n") is None  # an empty flags line: not the next line
    assert module.vector_width(line.format(n=0, extra="avx avx2 sha_ni")) == "AVX2"
    assert module.vector_width(line.format(n=0, extra="avx")) is None
    assert module.vector_width("processor : 0\nFeatures : fp asimd\n") is None  # an Arm CPU: no x86 flags line
    assert module.cpu_vectors() in ("AVX-512", "AVX2", None)
