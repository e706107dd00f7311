"""`make demo`'s last phase again, `04` with `05` beside it, in a clone where `make demo` has run (`bench_demo.py`'s
--dir): what `04` computed is deleted first (its ablation runs, baselines and feature bank, and the gallery cache
`05` writes), so that both compute it all again, with the Makefile's own commands (`make -j2 -o demo-03 demo-04
demo-05`: 01-03's outputs are kept). --beside-sweep sets the environment `05` starts with (the Makefile's
BESIDE_SWEEP; '' gives `05` torch's default of a thread per core, as before 1f70d9f). Run it in alternation with
each setting, one run at a time: the host's speed drifts, and the 21 ablation runs' own seconds, printed with the
result, say by how much.

    python3 bench/bench_last_phase.py --dir /tmp/bench-demo                    # as make demo runs the phase
    python3 bench/bench_last_phase.py --dir /tmp/bench-demo --beside-sweep ''  # 05 with a thread per core
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench_demo import DONE, START  # make demo's lines: a notebook starts, a notebook is done

JOB = re.compile(r"^(?:baseline (?P<baseline>[\w-]+) / seed (?P<bseed>\d+): .*\((?P<bsec>[\d.]+) s\)"
                 r"|(?P<experiment>\w+) / (?P<variant>[^/]+?) / seed (?P<seed>\d+): \S+ \((?P<sec>\d+) s\))$")
TABLE = "outputs/tables/ablation-runs-demo-helsinki-synth.csv"
# what would change the phase from the caller's environment: 05's threads, the graph's jobs, where outputs go
NOT_PASSED = ("OMP_NUM_THREADS", "DEMO_JOBS", "ADDRESSCLIP_OUTPUTS")


def forget_the_phase(clone: Path) -> int:
    """Delete what `04` computed and the gallery cache of `05`; returns the ablation runs deleted."""
    table = clone / TABLE
    if not (clone / "outputs/executed/04_ablations.ipynb").exists() or not table.exists():
        raise SystemExit(f"{clone} has no finished `make demo` (no outputs/executed/04_ablations.ipynb or {TABLE})")
    with open(table) as fh:  # variants that train the same configuration share a run: each run once
        runs = sorted({row["run"] for row in csv.DictReader(fh) if row.get("run")})
    for name in runs:
        shutil.rmtree(clone / "outputs/runs" / name, ignore_errors=True)
    shutil.rmtree(clone / "outputs/baselines", ignore_errors=True)
    shutil.rmtree(clone / "outputs/runs/demo/gallery_cache", ignore_errors=True)
    for bank in (clone / "outputs/features").glob("bank-*.pt"):
        bank.unlink()
    return len(runs)


def job_seconds(executed: Path) -> dict[str, float]:
    """{job: seconds} from the lines `04`'s sweep printed as each job ended."""
    found = {}
    for cell in json.loads(executed.read_text())["cells"]:
        for out in cell.get("outputs", []):
            for line in "".join(out.get("text", "")).splitlines():
                m = JOB.match(line.strip())
                if m and m["baseline"]:
                    found[f"{m['baseline']} seed {m['bseed']}"] = float(m["bsec"])
                elif m:
                    found[f"{m['experiment']}/{m['variant']} seed {m['seed']}"] = float(m["sec"])
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="a clone where `make demo` has run")
    parser.add_argument("--beside-sweep", default=None, help="environment of 05 (Makefile's BESIDE_SWEEP); default: the Makefile's")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    clone = Path(args.dir)
    if args.beside_sweep is not None and "$(BESIDE_SWEEP)" not in (clone / "Makefile").read_text():
        parser.error(f"--beside-sweep: {clone}'s Makefile has no BESIDE_SWEEP (a commit before 1f70d9f, where 05 "
                     "always has a thread per core); leave it out there")
    deleted = forget_the_phase(clone)
    command = ["make", "--no-print-directory", "-j2", "-o", "demo-03", "demo-04", "demo-05"]
    if args.beside_sweep is not None:
        command.append(f"BESIDE_SWEEP={args.beside_sweep}")
    t0 = time.monotonic()
    ended, env_05 = {}, None
    env = {k: v for k, v in os.environ.items() if k not in NOT_PASSED}
    with subprocess.Popen(command, cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as make:
        for line in make.stdout:
            print(f"{time.monotonic() - t0:8.1f} {line.rstrip()}", flush=True)
            if (m := DONE.match(line.strip())):
                ended[Path(m[1]).stem] = time.monotonic() - t0
            elif (m := START.match(line.strip())) and Path(m["copy"]).stem == "05_visualise":
                env_05 = m["env"].strip()
    if make.returncode:
        raise SystemExit(f"make exited with {make.returncode}")
    jobs = job_seconds(clone / "outputs/executed/04_ablations.ipynb")
    runs = [s for job, s in jobs.items() if "/" in job]  # "experiment/variant seed N": an ablation run
    if len(runs) != deleted:
        raise SystemExit(f"04 printed the seconds of {len(runs)} ablation runs, but {deleted} were deleted and trained "
                         "again: its log lines are not the ones this script reads (JOB)")
    result = {"05_environment": env_05, "ablation_runs_deleted": deleted,
              "05_s": round(ended["05_visualise"], 1) if "05_visualise" in ended else None,
              "phase_s": round(time.monotonic() - t0, 1), "runs_own_s": sum(runs),
              "coop_s": [s for job, s in sorted(jobs.items()) if job.startswith("coop ")]}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
