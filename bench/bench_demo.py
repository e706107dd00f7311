"""`make demo` from a fresh clone, timed per stage, with how many cores were busy in each (issue 13's benchmark).

    python3 bench/bench_demo.py                                  # HEAD of this checkout, cloned to /tmp/bench-demo
    python3 bench/bench_demo.py --commit 088467b --dir /tmp/demo-088467b --json outputs/bench_demo-088467b.json

Needs only Python and git (it builds the clone's environment itself, as a new user's `make demo` does). Every output
line of `make demo` is echoed and saved, stamped with the seconds since the start, to <dir>.log. A stage runs from
the line that starts it (`make env`'s first command; a notebook's papermill command, which the Makefile echoes) to
the line that ends it (`touch .venv/.installed`; "<copy>.ipynb: done in N s", or, from a Makefile that runs the
notebooks one after the other without saying so, the next stage's start); the reports run from `jupyter nbconvert`
to the end. Busy cores come from /proc/stat (Linux), read every second: user, system and interrupt
time over the stage, summed over CPUs; the hypervisor's steal time is printed beside them. Notebooks that run side
by side overlap, so their seconds add up to more than the total. The summary names the CPU and the widest vector
extension it reports (AVX-512 or AVX2): hosts that report one model name differ in it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import threading
import time
from pathlib import Path

# a notebook's papermill command, after any VAR=value it starts with (its environment)
START = re.compile(r"^(?P<env>(?:\w+=\S*\s+)*)\S*papermill .*? notebooks/\S+\.ipynb (?P<copy>\S+\.ipynb)")
DONE = re.compile(r"^(\S+\.ipynb): done in \d+ s$")
REPORTS = re.compile(r"^\S*jupyter nbconvert ")


def cpu_times() -> tuple[float, float, float] | None:
    """(busy, total, steal) jiffies of all CPUs so far, or None without /proc/stat."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, sum(fields), steal


def vector_width(cpuinfo: str) -> str | None:
    """The widest x86 vector extension the CPU reports ("AVX-512", "AVX2"), or None (none of them, or not x86). Hosts
    that report one model name differ in it ("AMD EPYC" with and without AVX-512), and so do the numerics of ATen's
    kernels and the speed of its matrix products (README, "Speed")."""
    flags = set(next(iter(re.findall(r"^flags[ \t]*:[ \t]*(.*)$", cpuinfo, flags=re.M)), "").split())
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:  # what ATen's AVX512 kernels need
        return "AVX-512"
    return "AVX2" if "avx2" in flags else None


def cpu_vectors() -> str | None:
    try:
        return vector_width(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def cpu_name() -> str:
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), flags=re.M)
        return names[0] if names else platform.processor()
    except OSError:
        return platform.processor()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent), help="repository to clone")
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--dir", default="/tmp/bench-demo", help="the fresh clone (must not exist)")
    parser.add_argument("--json", default=None, help="also write the stages and totals here")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    if folder.exists():
        parser.error(f"--dir {folder} exists: give a new folder (the benchmark is of a fresh clone)")
    subprocess.run(["git", "clone", "--quiet", args.repo, str(folder)], check=True)
    subprocess.run(["git", "checkout", "--quiet", args.commit], cwd=folder, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, check=True, capture_output=True,
                            text=True).stdout.strip()

    samples: list[tuple[float, tuple[float, float, float]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            times = cpu_times()
            if times is not None:
                samples.append((time.monotonic(), times))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.monotonic()
    sampler.start()
    marks: dict[str, list[float]] = {}  # stage -> [start, end]
    with open(f"{folder}.log", "w") as log, subprocess.Popen(["make", "demo"], cwd=folder, stdout=subprocess.PIPE,
                                                            stderr=subprocess.STDOUT, text=True, bufsize=1) as make:
        for line in make.stdout:
            now = time.monotonic() - t0
            stamped = f"{now:8.1f} {line.rstrip()}"
            print(stamped, flush=True)
            log.write(stamped + "\n")
            text = line.strip()
            if "environment" not in marks and ("-m venv" in text or "pip install" in text):
                marks["environment"] = [now, now]
            elif text.startswith("touch ") and text.endswith(".installed"):
                marks.setdefault("environment", [0.0, now])[1] = now
            elif (m := START.match(text)):
                marks[Path(m["copy"]).stem] = [now, now]
            elif (m := DONE.match(text)):
                marks.setdefault(Path(m.group(1)).stem, [now, now])[1] = now
            elif REPORTS.match(text):
                marks["reports"] = [now, now]
    total = time.monotonic() - t0
    stop.set()
    sampler.join()
    starts = sorted(start for start, _ in marks.values()) + [total]
    for span in marks.values():  # a stage that never said it ended: until the next one started
        if span[1] == span[0]:
            span[1] = min(t for t in starts if t > span[0])
    marks["in all"] = [0.0, total]

    def busy(start: float, end: float) -> tuple[float | None, float | None]:
        inside = [(t, c) for t, c in samples if t0 + start - 0.5 <= t <= t0 + end + 0.5]
        if len(inside) < 2:
            return None, None
        (_, a), (_, b) = inside[0], inside[-1]
        cores, total_j = os.cpu_count() or 1, b[1] - a[1]
        return (round(cores * (b[0] - a[0]) / total_j, 2), round(cores * (b[2] - a[2]) / total_j, 2)) if total_j else (None, None)

    stages = []
    for stage, (start, end) in marks.items():
        cores, steal = busy(start, end)
        stages.append({"stage": stage, "start_s": round(start, 1), "seconds": round(end - start, 1),
                       "busy_cores": cores, "steal_cores": steal})
    result = {"commit": commit, "cpu": cpu_name(), "cpu_vectors": cpu_vectors(), "cores": os.cpu_count(),
              "exit_status": make.returncode, "stages": stages, "log": f"{folder}.log"}
    vectors = f"{result['cpu_vectors']}, " if result["cpu_vectors"] else ""
    print(f"\nmake demo at {commit} on {result['cpu']} ({vectors}{result['cores']} cores), exit status {make.returncode}")
    print("| stage | starts at (s) | seconds | busy cores | steal |\n|---|---|---|---|---|")
    for s in stages:
        print(f"| {s['stage']} | {s['start_s']} | {s['seconds']} | {s['busy_cores']} | {s['steal_cores']} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    raise SystemExit(main()["exit_status"])
