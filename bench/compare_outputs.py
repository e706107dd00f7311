"""Are two `make demo` outputs the same? Compares, bit for bit, everything the demo measures except time:

- the main run (`runs/demo`) and the alignment run: metrics.json, every epoch of results.jsonl, predictions.parquet;
- every ablation run, matched by (experiment, variant, seed) through `tables/ablation-runs-*.csv` (run folder
  names may differ between code versions: they carry a digest of the configuration);
- every baseline, matched by (method, seed): its saved result (metrics, chosen hyperparameters, per-image hits).

Timings (seconds, images/s, query_ms), code versions and run names are not compared. Exit status 1 on any difference.

    .venv/bin/python bench/compare_outputs.py /path/to/before/outputs outputs
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from addressclip.cache import load_json_checked

NOT_COMPARED = {"eval_seconds", "gallery_seconds", "images_per_s", "epoch_seconds", "seconds", "query_ms",
                "code_version", "run", "threads"}
RENAMED = {"geo_form": "geography_form"}  # experiment names before a rename -> after


def _strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in NOT_COMPARED}


def _jsonl(path: Path) -> list[dict]:
    return [_strip(json.loads(line)) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def compare_run(a: Path, b: Path, label: str, problems: list[str]) -> None:
    ma, mb = (_strip(json.loads((d / "metrics.json").read_text())) for d in (a, b))
    if ma != mb:
        keys = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
        problems.append(f"{label}: metrics differ in {keys}: {[(ma.get(k), mb.get(k)) for k in keys][:4]}")
    if _jsonl(a / "results.jsonl") != _jsonl(b / "results.jsonl"):
        problems.append(f"{label}: per-epoch results differ")
    pa, pb = a / "predictions.parquet", b / "predictions.parquet"
    if pa.exists() or pb.exists():
        fa, fb = pd.read_parquet(pa), pd.read_parquet(pb)
        if not fa.drop(columns=["topk", "scores"]).equals(fb.drop(columns=["topk", "scores"])) or \
                [list(x) for x in fa["scores"]] != [list(x) for x in fb["scores"]] or \
                [list(x) for x in fa["topk"]] != [list(x) for x in fb["topk"]]:
            problems.append(f"{label}: predictions differ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    a, b = args.before, args.after
    problems: list[str] = []
    compared = 0

    compare_run(a / "runs" / "demo", b / "runs" / "demo", "main run", problems)
    aligned = [sorted((root / "runs").glob("align-*")) for root in (a, b)]
    if [len(x) for x in aligned] != [1, 1]:
        problems.append(f"expected one alignment run in each, found {[len(x) for x in aligned]}")
    else:
        compare_run(aligned[0][0], aligned[1][0], "alignment run", problems)
    compared += 2

    # paired by name: a sweep other than the profile's writes tables of its own name (04's `suffix`)
    tables = [{t.name: t for t in (root / "tables").glob("ablation-runs-*.csv")} for root in (a, b)]
    for name in sorted(set(tables[0]) ^ set(tables[1])):
        problems.append(f"tables/{name}: only in {'before' if name in tables[0] else 'after'}")
    for ta, tb in ((tables[0][n], tables[1][n]) for n in sorted(set(tables[0]) & set(tables[1]))):
        ra, rb = pd.read_csv(ta), pd.read_csv(tb)
        ra["experiment"], rb["experiment"] = ra["experiment"].replace(RENAMED), rb["experiment"].replace(RENAMED)
        key = ["experiment", "variant", "seed"]
        joined = ra.merge(rb, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
        for _, row in joined.iterrows():
            label = " / ".join(str(row[k]) for k in key)
            if row["_merge"] != "both":
                problems.append(f"{label}: only in {'before' if row['_merge'] == 'left_only' else 'after'}")
            elif isinstance(row["run_a"], str):
                compare_run(a / "runs" / row["run_a"], b / "runs" / row["run_b"], label, problems)
                compared += 1

    baselines = []
    for root in (a, b):
        found = {}
        for path in (root / "baselines").glob("*.json"):
            if path.name.startswith("addressclip-gallery-"):  # AddressCLIP's gallery size and query time: timings
                continue
            row = load_json_checked(path)  # as the baselines write them: the row inside a checksum
            found[(row["method"], row["seed"])] = _strip(row)
        baselines.append(found)
    for key in sorted(set(baselines[0]) | set(baselines[1])):
        x, y = baselines[0].get(key), baselines[1].get(key)
        if x != y:
            diff = sorted(k for k in set(x or {}) | set(y or {}) if (x or {}).get(k) != (y or {}).get(k))
            problems.append(f"baseline {key}: differs in {diff}")
        compared += 1

    for line in problems:
        print("DIFFERENT:", line)
    print(f"{compared} runs and baseline results compared; {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
