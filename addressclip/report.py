"""Report tables and findings as a paper prints them, computed from the numbers (never written by hand).

- one row per method, ``mean ± std`` over seeds to two decimals, units people read (KB / MB, ms, m);
- the paper's numbers beside ours in the same table; the best value of each accuracy column in bold;
- methods that did not run keep their row, with the reason instead of numbers;
- comparisons carry a paired bootstrap interval (`addressclip.comparisons`), and the verdict follows from it.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

ACCURACY = ("SSA-1", "SSA-5", "SA-1", "SA-5")
METHOD_NAMES = {
    "zero-shot": "Zero-shot CLIP", "linear-probe": "Linear probe", "clip-adapter": "CLIP-Adapter",
    "tip-adapter": "Tip-Adapter", "tip-adapter-f": "Tip-Adapter-F", "coop": "CoOp", "cocoop": "CoCoOp",
    "maple": "MaPLe", "two-stage-retrieval": "Two-stage: retrieval, then geocoding",
    "two-stage-geoclip": "Two-stage: GeoCLIP-style, then geocoding",
    "address loss only": "Fine-tuned, address loss only", "AddressCLIP": "AddressCLIP",
}
# our method -> the row of the paper's comparison table (ablations.PAPER_METHODS)
PAPER_ROW = {"zero-shot": "zero-shot", "address loss only": "address only (fine-tuned CLIP)", "coop": "CoOp",
             "cocoop": "CoCoOp", "maple": "MaPLe", "AddressCLIP": "AddressCLIP"}
STD_NOTE = "± is the standard deviation over seeds; accuracies in %."


def mean_std(mean: float, std: float, seeds: int, deterministic: bool = False) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.2f}" if deterministic or seeds < 2 else f"{mean:.2f} ± {std:.2f}"


def size(n: float) -> str:
    if not np.isfinite(n):
        return "—"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def duration(ms: float) -> str:
    if not np.isfinite(ms):
        return "—"
    return f"{ms:.3g} ms" if ms >= 0.1 else f"{1000 * ms:.3g} µs"


def seeds_text(seeds: int, deterministic: bool) -> str:
    return "1 (deterministic)" if deterministic else str(int(seeds))


def method_table(comparison: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """`ablations.compare_methods`' summary as a paper table, the paper's Pitts-IAL and SF-IAL-Base SSA-1 / SA-1
    beside ours (blank where the paper has no such row)."""
    paper = paper.set_index("method")
    rows = []
    for method, r in comparison.iterrows():
        det = bool(r.get("deterministic", False))
        row = {"method": METHOD_NAMES.get(method, method)}
        row.update({m: mean_std(r[m], r[f"{m} std"], r["seeds"], det) for m in ACCURACY})
        row["median distance"] = f"{r['median_m']:.0f} m" if np.isfinite(r["median_m"]) else "—"
        row["storage"] = size(r["storage_bytes"])
        row["query"] = duration(r["query_ms"])
        row["seeds"] = seeds_text(r["seeds"], det) if np.isfinite(r["SSA-1"]) else "—"
        ref = PAPER_ROW.get(method)
        for column in ("Pitts-IAL SSA-1", "Pitts-IAL SA-1", "SF-IAL-Base SSA-1"):
            row[f"paper {column}"] = f"{paper.loc[ref, column]:.2f}" if ref in paper.index else ""
        row["notes"] = r.get("notes", "") if not np.isfinite(r["SSA-1"]) else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def best_rows(comparison: pd.DataFrame, columns=ACCURACY) -> dict[str, str]:
    """Column -> display name of the method with the best (highest) mean."""
    out = {}
    for m in columns:
        values = comparison[m].dropna()
        if len(values):
            out[m] = METHOD_NAMES.get(values.idxmax(), values.idxmax())
    return out


def styled(table: pd.DataFrame, best: dict[str, str] | None = None, caption: str = STD_NOTE):
    """A pandas Styler: best value of each column in bold, long reasons wrapped instead of cut off."""
    def bold(column: pd.Series) -> list[str]:
        winner = (best or {}).get(column.name)
        return ["font-weight: bold" if winner is not None and index == winner else "" for index in column.index]

    return (table.style.apply(bold).set_caption(caption)
            .set_properties(subset=[c for c in table.columns if c == "notes"], **{"white-space": "normal", "max-width": "32em"}))


def ablation_table(summary: pd.DataFrame, metrics=("SSA-1", "SSA-5", "SA-1", "SA-5")) -> pd.DataFrame:
    """`ablations.summarise` output, one row per (experiment, variant), mean ± std, reasons for variants that
    did not run."""
    out = pd.DataFrame(index=summary.index)
    for m in metrics:
        out[m] = [mean_std(a, b, s) for a, b, s in zip(summary[m], summary[f"{m} std"], summary["seeds"])]
    out["seeds"] = summary["seeds"].astype(int)
    if "notes" in summary:
        out["notes"] = summary["notes"]
    return out


def loss_table(summary: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's loss table (SSA-1, %) with ours beside it, one row per variant."""
    ours = summary.loc["losses"]
    table = paper.set_index("variant").rename(columns=lambda c: f"paper {c}").map(lambda v: f"{v:.2f}")
    table.insert(0, "ours SSA-1", [mean_std(ours.loc[v, "SSA-1"], ours.loc[v, "SSA-1 std"], ours.loc[v, "seeds"])
                                   if v in ours.index else "—" for v in table.index])
    return table


def comparison_table(checks: pd.DataFrame) -> pd.DataFrame:
    """Paired comparisons, readable: 'A vs B', the difference in points, its interval and the verdict."""
    rows = []
    for r in checks.to_dict("records"):
        known = np.isfinite(r["difference"])
        rows.append({
            "comparison": f"{METHOD_NAMES.get(r['A'], r['A'])} vs {METHOD_NAMES.get(r['B'], r['B'])}",
            "SSA-1 difference": f"{r['difference']:+.2f}" if known else "—",
            "95% interval": f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if known else "—",
            "seeds × test images": f"{r['seeds']} × {r['images']}" if known else "—",
            "verdict": r["verdict"],
        })
    columns = ["comparison", "SSA-1 difference", "95% interval", "seeds × test images", "verdict"]
    return pd.DataFrame(rows, columns=columns).set_index("comparison")


def findings(comparison: pd.DataFrame, checks: pd.DataFrame, why: pd.DataFrame, dataset: str) -> list[str]:
    """The key findings, in sentences, from the numbers below them in the report."""
    out = []
    ran = comparison[comparison["SSA-1"].notna()]
    if len(ran):
        top = ran["SSA-1"].idxmax()
        out.append(f"Best SSA-1 on {dataset}: {METHOD_NAMES.get(top, top)}, "
                   f"{mean_std(ran.loc[top, 'SSA-1'], ran.loc[top, 'SSA-1 std'], ran.loc[top, 'seeds'])} %.")
    for r in pd.concat([checks, why.reset_index(drop=True)], ignore_index=True).to_dict("records"):
        a, b = METHOD_NAMES.get(r["A"], r["A"]), METHOD_NAMES.get(r["B"], r["B"])
        if np.isfinite(r["difference"]):
            out.append(f"{a} vs {b}: {r['difference']:+.2f} points, 95% interval [{r['ci_low']:+.2f}, "
                       f"{r['ci_high']:+.2f}] — {r['verdict']}.")
        else:
            out.append(f"{a} vs {b}: {r['verdict']}.")
    not_run = comparison[comparison["SSA-1"].isna()]
    for method, r in not_run.iterrows():
        out.append(f"{METHOD_NAMES.get(method, method)} did not run: {(r.get('notes') or 'no result').rstrip('.')}.")
    return out


def run_findings(metrics: dict) -> list[str]:
    """A trained run's headline, from its metrics.json."""
    others = ", ".join(f"{k} {metrics[k]:.2f}" for k in ACCURACY[1:] if k in metrics)  # no -5 below k or 5 candidates
    out = [f"Test SSA-1 {metrics['SSA-1']:.2f} % ({others}) on {metrics['images']} {metrics.get('split', 'test')} "
           f"images, ranking {metrics['candidates']} candidate addresses: chance SSA-1 is {100 / metrics['candidates']:.2f} %."]
    if "median_m" in metrics:
        out.append(f"Median distance from an image to its predicted address ({metrics.get('distance_to', 'sub-street segments')}): "
                   f"{metrics['median_m']:.0f} m; {metrics.get('within_25m', float('nan')):.1f} % within 25 m.")
    return out


def findings_markdown(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def write_index(reports_dir: str | Path, outputs: str | Path) -> Path:
    """`reports_dir/index.html`: every HTML report there, with the headline numbers of the runs it can find
    (the main run's test metrics; the method table of each ablation report)."""
    reports_dir, outputs = Path(reports_dir), Path(outputs)
    items = "".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a></li>'
                    for p in sorted(reports_dir.glob("*.html")) if p.name != "index.html")
    parts = [f"<h1>addressclip reports</h1><ul>{items}</ul>"]
    for metrics in sorted((outputs / "runs").glob("*/metrics.json")):
        run = metrics.parent.name
        if run.startswith(("train-", "align-")):
            continue  # ablation variants and alignment runs: summarised in the ablation report
        m = json.loads(metrics.read_text())
        cells = "".join(f"<td>{m[k]:.2f}</td>" if isinstance(m.get(k), (int, float)) else "<td>—</td>" for k in ACCURACY)
        parts.append(f"<h2>run {html.escape(run)}</h2><table><tr>{''.join(f'<th>{k}</th>' for k in ACCURACY)}</tr>"
                     f"<tr>{cells}</tr></table><p>{m.get('images', '?')} {m.get('split', 'test')} images, "
                     f"{m.get('candidates', '?')} candidate addresses.</p>")
    for csv in sorted((outputs / "tables").glob("methods-*.csv")):
        table = pd.read_csv(csv)
        ran = table[table["SSA-1"].notna()].groupby("variant")["SSA-1"].agg(["mean", "std", "count"])
        ran = ran.sort_values("mean", ascending=False)
        rows = "".join(f"<tr><td>{html.escape(METHOD_NAMES.get(v, v))}</td><td>{mean_std(r['mean'], r['std'], r['count'])}</td></tr>"
                       for v, r in ran.iterrows())
        parts.append(f"<h2>{html.escape(csv.stem)}</h2><table><tr><th>method</th><th>SSA-1 (%)</th></tr>{rows}</table>")
    parts.append(f"<p>{html.escape(STD_NOTE)}</p>")
    path = reports_dir / "index.html"
    reports_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("<!doctype html><meta charset='utf-8'><title>addressclip reports</title>"
                    "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 10px}</style>"
                    + "".join(parts))
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .paths import outputs_root

    parser = argparse.ArgumentParser(prog="python -m addressclip.report", description="write outputs/reports/index.html")
    parser.add_argument("--reports", default=str(outputs_root() / "reports"))
    args = parser.parse_args(argv)
    print(write_index(args.reports, outputs_root()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
