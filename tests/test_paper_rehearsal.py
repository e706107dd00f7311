"""The paper's path end to end on CPU, as a user with the real files would run it: real-format raw data
(Pittsburgh-250k folders + NetVLAD .mat + AddressCLIP JSON; SF-XL '@' names + annotations) -> 01 -> 02 with
`profile paper` and an OpenAI-format TorchScript weights file -> 03 -> 04 with `profile paper`, every experiment
and every baseline -> 05. Only sizes are scaled down (a 2-layer ViT-B/16-shaped CLIP, 60 photos, 1-2 epochs,
batch 4, one seed); the code path is the paper profile's."""
from __future__ import annotations

import json

import pandas as pd
import papermill
import pytest

from addressclip import ablations
from addressclip.baselines import BASELINES
from openai_archive import make_openai_archive
from paper_fixtures import make_pitts_raw, make_sf_raw
from notebook_runs import project_folders, run_notebook

ARCH = "ViT-Tiny-16-quickgelu"
SMALL = {"backbone": ARCH, "batch_size": 4}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    with project_folders(root):
        weights = make_openai_archive(ARCH, root / "ViT-Tiny-16.pt")
        pitts, sf = make_pitts_raw(root / "data/raw/pitts250k"), make_sf_raw(root / "data/raw/sf_xl")
        executed = root / "executed"
        executed.mkdir()
        times = {
            "01 pitts-ial": run_notebook("01_build_dataset", executed, dataset="pitts-ial", raw_dir=str(pitts), strict=True),
            "01 sf-ial-base": run_notebook("01_build_dataset", executed, dataset="sf-ial-base", raw_dir=str(sf), strict=True),
            "02 paper": run_notebook("02_train", executed, profile="paper", dataset="pitts-ial", pretrained=str(weights),
                                     epochs=2, run_name="paper-rehearsal", expect_learning=False, **SMALL),
            "03": run_notebook("03_evaluate", executed, run="paper-rehearsal", dataset="pitts-ial"),
            "04 paper": run_notebook("04_ablations", executed, profile="paper", dataset="pitts-ial", pretrained=str(weights),
                                     epochs=1, seeds=[0], second_city="sf-ial-base", **SMALL),
            "05": run_notebook("05_visualise", executed, run="paper-rehearsal", dataset="pitts-ial"),
        }
        print("rehearsal wall times (s):", {k: round(v, 1) for k, v in times.items()})
        yield root, weights


def test_paper_profile_trains_the_clip_file_it_was_given(rehearsal):
    root, weights = rehearsal
    run = root / "outputs/runs/paper-rehearsal"
    params = json.loads((run / "params.json").read_text())["config"]
    assert params["backbone"] == ARCH and params["pretrained"] == str(weights) and params["init_checkpoint"] is None
    assert (params["train_image"], params["train_text"], params["image_size"]) == ("all", "all", 224)
    assert (params["lr"], params["lr_min"], params["beta2"], params["warmup_steps"]) == (2.4e-5, 2.4e-8, 0.98, 0)
    assert (params["augment"], params["train_splits"], params["image_resize_mode"]) == (False, "train", "shortest")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["images"] == 12 and metrics["candidates"] == 6
    assert not list((root / "outputs/runs").glob("align-*"))  # no alignment stage for a CLIP backbone


def test_every_experiment_and_baseline_has_a_value_or_a_reason(rehearsal):
    root, _ = rehearsal
    # the rehearsal's smaller sweep (1 epoch, 1 seed) names its tables after what it changed from the profile's
    found = {kind: sorted((root / "outputs/tables").glob(f"{kind}-paper-pitts-ial-*.csv")) for kind in ("ablation-runs", "methods")}
    assert [len(f) for f in found.values()] == [1, 1] and not list((root / "outputs/tables").glob("*-paper-pitts-ial.csv"))
    runs, methods = (pd.read_csv(f[0]).fillna({"notes": ""}) for f in found.values())
    for table in (runs, methods):
        assert (table["SSA-1"].notna() | table["notes"].str.startswith("not applicable")).all()
    assert set(runs["experiment"]) == set(ablations.EXPERIMENTS)
    # labels: redoing the partition needs an OSM extract of Pittsburgh, which the rehearsal does not pass
    merge = runs[runs["variant"].str.startswith("partition, merge")]
    assert len(merge) == 2 and merge["notes"].str.contains("pass osm=").all()
    assert runs.loc[runs["variant"] == "whole street", "SSA-1"].notna().all()
    assert set(BASELINES) <= set(methods["variant"])
    ran = set(methods.loc[methods["SSA-1"].notna(), "variant"])
    assert {"zero-shot", "coop", "cocoop", "maple", "two-stage-retrieval", "AddressCLIP"} <= ran  # MaPLe on ViT
    assert runs.loc[runs["variant"] == "joint with a second city", "SSA-1"].notna().all()  # with sf-ial-base


def test_paper_profile_without_weights_stops_and_says_which_file(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="profile 'paper' needs CLIP weights.*ViT-B-16.pt"):
        run_notebook("02_train", tmp_path, profile="paper", dataset="pitts-ial")
