"""Time and memory to build a synthetic dataset end to end (default: helsinki-synth, full city scale).

    .venv/bin/python bench/bench_build.py                      # helsinki-synth into a temp folder
    .venv/bin/python bench/bench_build.py --dataset kotka-synth-tiny --workers 1
    .venv/bin/python bench/bench_build.py --tracemalloc        # also the peak Python heap (slower)

Prints images built, wall time, images/s, peak RSS of this process and of its worker processes. The temp
folder is deleted afterwards unless --keep is given.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from addressclip.datasets import build_dataset, read_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="helsinki-synth", help="registry name of a synthetic dataset")
    ap.add_argument("--workers", type=int, default=None, help="render processes (default: the city scale's)")
    ap.add_argument("--tracemalloc", action="store_true", help="trace the peak Python heap of the main process")
    ap.add_argument("--keep", action="store_true", help="keep the built folder and print where it is")
    args = ap.parse_args(argv)

    out = Path(tempfile.mkdtemp(prefix="bench_build_")) / args.dataset
    if args.tracemalloc:
        tracemalloc.start()
    t0 = time.perf_counter()
    build_dataset(args.dataset, out_dir=out, overwrite=True, workers=args.workers, progress=False)
    wall = time.perf_counter() - t0
    heap_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    ds = read_dataset(out)
    n = len(ds.samples)
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest finished child (a render worker).
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    result = {
        "dataset": args.dataset, "images": n, "locations": int(ds.samples["location_id"].nunique()),
        "addresses": int(ds.samples["address"].nunique()), "streets": int(ds.samples["street"].nunique()),
        "workers": ds.card.get("workers"), "image_size": ds.card["build_parameters"]["image_size"],
        "wall_s": round(wall, 1), "images_per_s": round(n / wall, 1),
        "peak_rss_main_mib": round(self_rss), "peak_rss_worker_mib": round(child_rss),
        "peak_python_heap_mib": None if heap_peak is None else round(heap_peak / 2**20, 1),
        "disk_mib": round(disk, 1),
    }
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    print(json.dumps(result))
    if args.keep:
        print(f"kept: {out}")
    else:
        shutil.rmtree(out.parent, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
