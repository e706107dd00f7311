"""The README's demo tables, read from a `make demo` outputs folder; with a second folder, the ablation table of
both side by side (what a change of the sweep's setting, e.g. its epochs, did to each variant's accuracy).

    .venv/bin/python bench/demo_tables.py outputs
    .venv/bin/python bench/demo_tables.py <before>/outputs <after>/outputs    # SSA-1 and SA-1, before vs after
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

PROFILE, DATASET = "demo", "helsinki-synth"


def ablations(outputs: Path) -> pd.DataFrame:
    runs = pd.read_csv(outputs / "tables" / f"ablation-runs-{PROFILE}-{DATASET}.csv")
    g = runs.groupby(["experiment", "variant"], sort=False)[["SSA-1", "SA-1"]]
    return g.mean().join(g.std(ddof=1).add_suffix(" std")).join(g.size().rename("seeds"))


def methods(outputs: Path) -> pd.DataFrame:
    table = pd.read_csv(outputs / "tables" / f"methods-{PROFILE}-{DATASET}.csv")
    g = table[table["SSA-1"].notna()].groupby("variant", sort=False)[["SSA-1", "SA-1"]]
    return g.mean().join(g.std(ddof=1).add_suffix(" std")).join(g.size().rename("seeds")).sort_values("SSA-1", ascending=False)


def cell(row, metric: str) -> str:
    return f"{row[metric]:.2f}" if row["seeds"] == 1 or pd.isna(row[f"{metric} std"]) else f"{row[metric]:.2f} ± {row[f'{metric} std']:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outputs", type=Path)
    ap.add_argument("after", type=Path, nargs="?")
    args = ap.parse_args(argv)
    if args.after is None:
        metrics = json.loads((args.outputs / "runs" / "demo" / "metrics.json").read_text())
        print(f"main run (02_train, run 'demo'): SSA-1 {metrics['SSA-1']:.2f}, SA-1 {metrics['SA-1']:.2f}\n")
        print("| experiment / variant | SSA-1 | SA-1 |\n|---|---|---|")
        for (experiment, variant), row in ablations(args.outputs).iterrows():
            print(f"| {experiment} / {variant} | {cell(row, 'SSA-1')} | {cell(row, 'SA-1')} |")
        print("\n| method | SSA-1 | SA-1 |\n|---|---|---|")
        for variant, row in methods(args.outputs).iterrows():
            print(f"| {variant} | {cell(row, 'SSA-1')} | {cell(row, 'SA-1')} |")
        return 0
    before, after = ablations(args.outputs), ablations(args.after)
    print("| experiment / variant | SSA-1 before | SSA-1 after | difference | SA-1 before | SA-1 after |\n|---|---|---|---|---|---|")
    for key in before.index.intersection(after.index):
        b, a = before.loc[key], after.loc[key]
        print(f"| {key[0]} / {key[1]} | {cell(b, 'SSA-1')} | {cell(a, 'SSA-1')} | {a['SSA-1'] - b['SSA-1']:+.2f} | "
              f"{cell(b, 'SA-1')} | {cell(a, 'SA-1')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
