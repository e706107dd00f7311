"""Report tables as a paper prints them, computed from the numbers."""
import json

import numpy as np
import pandas as pd

from addressclip import ablations, report
from addressclip.comparisons import encode_hits


def _table():
    rng = np.random.default_rng(0)
    rows = []
    for method, rate, seeds in (("AddressCLIP", 0.6, 3), ("address loss only", 0.5, 3), ("coop", 0.1, 3), ("zero-shot", 0.01, 1)):
        for s in range(seeds):
            hits = rng.random(300) < rate
            rows.append({"variant": method, "seed": s, "SSA-1": 100 * hits.mean(), "SSA-5": 90.0, "SA-1": 70.0,
                         "SA-5": 95.0, "median_m": 123.4, "storage_bytes": 184320.0 if method == "AddressCLIP" else 5.8e6,
                         "query_ms": 0.3412, "notes": "", "test_hits": encode_hits(hits), "deterministic": seeds == 1})
    rows.append({"variant": "maple", "seed": 0, "notes": "not applicable: MaPLe couples text prompts into a transformer "
                 "image tower; this backbone's image tower is a CNN", "deterministic": False})
    table = pd.DataFrame(rows)
    comparison = ablations.summarise(table.assign(experiment="m"), metrics=ablations.METHOD_METRICS).loc["m"]
    comparison["deterministic"] = table.groupby("variant", sort=False)["deterministic"].any()
    return table, comparison.sort_values("SSA-1", ascending=False)


def test_method_table_reads_like_a_paper():
    table, comparison = _table()
    shown = report.method_table(comparison, ablations.PAPER_METHODS)
    assert list(shown.index[:2]) == ["AddressCLIP", "Fine-tuned, address loss only"]
    row = shown.loc["AddressCLIP"]
    assert row["SSA-1"].count("±") == 1 and len(row["SSA-1"].split(" ± ")[0].split(".")[1]) == 2
    assert row["storage"] == "184 KB" and shown.loc["CoOp", "storage"] == "5.8 MB" and row["query"] == "0.341 ms" and report.duration(0.000962) == "0.962 µs"
    assert row["paper Pitts-IAL SSA-1"] == "80.39" and shown.loc["CoOp", "paper Pitts-IAL SSA-1"] == "67.91"
    assert shown.loc["Zero-shot CLIP", "seeds"] == "1 (deterministic)" and "±" not in shown.loc["Zero-shot CLIP", "SSA-1"]
    assert shown.loc["MaPLe", "SSA-1"] == "—" and shown.loc["MaPLe", "notes"].endswith("is a CNN")  # the whole reason
    assert report.best_rows(comparison)["SSA-1"] == "AddressCLIP"
    html = report.styled(shown, report.best_rows(comparison)).to_html()
    assert "font-weight: bold" in html and "is a CNN" in html and "standard deviation over seeds" in html


def test_findings_follow_from_the_numbers():
    table, comparison = _table()
    checks = ablations.method_checks(table)
    assert list(zip(checks["A"], checks["B"])) == [("AddressCLIP", "address loss only"), ("address loss only", "coop"),
                                                   ("AddressCLIP", "coop")]
    lines = report.findings(comparison, checks, pd.DataFrame(columns=ablations.COMPARISON_COLUMNS), "tiny")
    assert lines[0].startswith("Best SSA-1 on tiny: AddressCLIP")
    assert any(l.startswith("AddressCLIP vs CoOp") and "better" in l for l in lines)
    assert any(l.startswith("MaPLe did not run: not applicable") for l in lines)
    shown = report.comparison_table(checks)
    assert shown.loc["AddressCLIP vs CoOp", "verdict"].startswith("better")
    assert shown.loc["AddressCLIP vs CoOp", "95% interval"].startswith("[+")


def test_index_page_links_reports_and_headline_numbers(tmp_path):
    reports, outputs = tmp_path / "reports", tmp_path / "outputs"
    reports.mkdir()
    (reports / "02_train.html").write_text("<html></html>")
    (outputs / "runs" / "demo").mkdir(parents=True)
    (outputs / "runs" / "demo" / "metrics.json").write_text(json.dumps({"SSA-1": 21.4, "SSA-5": 44.8, "SA-1": 30.24,
                                                                      "SA-5": 53.3, "images": 1584, "candidates": 180}))
    (outputs / "tables").mkdir()
    table, _ = _table()
    table.drop(columns="test_hits").to_csv(outputs / "tables" / "methods-demo-x.csv", index=False)
    page = report.write_index(reports, outputs).read_text()
    assert 'href="02_train.html"' in page and "<td>21.40</td>" in page and "1584 test images" in page
    assert "AddressCLIP" in page and "standard deviation over seeds" in page


def test_run_findings():
    lines = report.run_findings({"SSA-1": 21.4, "SSA-5": 44.8, "SA-1": 30.24, "SA-5": 53.3, "images": 1584,
                                 "candidates": 180, "median_m": 231.2, "within_25m": 28.0, "split": "test"})
    assert lines[0] == ("Test SSA-1 21.40 % (SSA-5 44.80, SA-1 30.24, SA-5 53.30) on 1584 test images, ranking 180 "
                        "candidate addresses: chance SSA-1 is 0.56 %.")
    assert "231 m; 28.0 % within 25 m" in lines[1]


def test_loss_table_has_paper_numbers_to_two_decimals():
    summary = ablations.summarise(pd.DataFrame({"experiment": ["losses"] * 2, "variant": ["address", "caption"],
                                                "seed": [0, 0], **{m: [20.8, 4.9] for m in ablations.METRICS}}))
    table = report.loss_table(summary, ablations.PAPER_LOSSES)
    assert table.loc["address", "paper Pitts-IAL SSA-1"] == "77.66" and table.loc["address", "ours SSA-1"] == "20.80"
    assert table.loc["address+geography", "ours SSA-1"] == "—"
