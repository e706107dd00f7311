"""bench/compare_outputs.py: two demos' outputs compared run by run, the ablation tables paired by name."""
import json
from pathlib import Path

import pandas as pd

from addressclip.cache import load_or_compute_json
from bench_scripts import load

compare_outputs = load("compare_outputs")


def fake_outputs(root: Path, ssa: float, extra_table: bool = False) -> Path:
    """A demo's outputs as compare_outputs reads them: the main and alignment runs, one ablation run in the
    profile's table, and (`extra_table`) a table of another sweep (04 with -p epochs 6) beside it."""
    for name, value in (("demo", 20.0), ("align-x", 0.0), ("train-r1", ssa), ("train-r6", 30.0)):
        (root / "runs" / name).mkdir(parents=True)
        (root / "runs" / name / "metrics.json").write_text(json.dumps({"SSA-1": value, "eval_seconds": ssa}))
    (root / "tables").mkdir()
    row = {"experiment": "losses", "variant": "address", "seed": 0, "run": "train-r1"}
    pd.DataFrame([row]).to_csv(root / "tables" / "ablation-runs-demo-h.csv", index=False)
    if extra_table:
        pd.DataFrame([{**row, "run": "train-r6"}]).to_csv(root / "tables" / "ablation-runs-demo-h-epochs6.csv", index=False)
    (root / "baselines").mkdir()
    # as ablations' baselines store them (a checksummed row), beside AddressCLIP's gallery timing
    load_or_compute_json(root / "baselines" / "tip-adapter-seed0.json", lambda: {"method": "tip-adapter", "seed": 0, "SSA-1": 10.0})
    load_or_compute_json(root / "baselines" / "addressclip-gallery-abc-k5.json", lambda: {"query_ms": ssa})
    return root


def test_same_outputs_pass_and_a_difference_or_a_lone_table_fails(tmp_path, capsys):
    a = fake_outputs(tmp_path / "a", 11.0)
    assert compare_outputs.main([str(a), str(fake_outputs(tmp_path / "b", 11.0))]) == 0
    assert compare_outputs.main([str(a), str(fake_outputs(tmp_path / "c", 12.0))]) == 1
    assert "losses / address / 0: metrics differ in ['SSA-1']" in capsys.readouterr().out
    # a table only one side has is named, and the profile's tables are still paired with each other (sorted by
    # position, the profile's table once met the other sweep's)
    assert compare_outputs.main([str(a), str(fake_outputs(tmp_path / "d", 11.0, extra_table=True))]) == 1
    out = capsys.readouterr().out
    assert "tables/ablation-runs-demo-h-epochs6.csv: only in after" in out and out.count("DIFFERENT") == 1
