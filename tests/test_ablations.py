import zlib

import numpy as np
import pandas as pd
import pytest

from addressclip import ablations, profiles, report
from addressclip.comparisons import encode_hits
from addressclip.config import TrainConfig
from addressclip.datasets.format import read_dataset
from addressclip.datasets.variants import label_variant, variant_name
from addressclip.errors import NotApplicable


def _runs():
    return pd.DataFrame({
        "experiment": ["losses"] * 6, "variant": ["a", "a", "a", "b", "b", "b"], "seed": [0, 1, 2] * 2,
        "SSA-1": [10.0, 12.0, 14.0, 20.0, 20.0, 20.0], "SSA-5": [1.0] * 6, "SA-1": [1.0] * 6, "SA-5": [1.0] * 6,
        "median_m": [5.0] * 6,
    })


def test_summary_mean_std():
    s = ablations.summarise(_runs())
    assert s.loc[("losses", "a"), "SSA-1"] == pytest.approx(12.0)
    assert s.loc[("losses", "a"), "SSA-1 std"] == pytest.approx(2.0)
    assert list(s.index.get_level_values("variant")) == ["a", "b"]
    assert report.ablation_table(s).loc[("losses", "a"), "SSA-1"] == "12.00 ± 2.00"


def _hits(rate: float, n: int = 400, seed: int = 0) -> str:
    return encode_hits(np.random.default_rng(seed).random(n) < rate)


def test_investigation_names_real_variants_and_gives_paired_verdicts():
    labels = {(e, v.label) for e, variants in ablations.EXPERIMENTS.items() for v in variants}
    for variant, against in ablations.INVESTIGATION.values():
        assert variant in labels and against in labels
    rates = {("losses", "address"): 0.3, ("losses", "address+caption+geography"): 0.6, ("losses", "address+geography"): 0.3,
             ("geography_form", "literal"): 0.05, ("geography_form", "similarity"): 0.6}
    runs = pd.DataFrame([{"experiment": e, "variant": v, "seed": s, "SSA-1": 100 * r,
                          "test_hits": _hits(r, seed=zlib.crc32(f"{e}/{v}/{s}".encode()) % 1000)}  # hash() varies by process
                         for (e, v), r in rates.items() for s in (0, 1, 2)])
    table = ablations.investigate(runs)
    # only the comparisons these runs allow
    assert list(table.index) == ["all three vs address", "geography loss added", "geography: literal vs similarity form"]
    assert table.loc["all three vs address", "difference"] == pytest.approx(30, abs=6)
    assert table.loc["all three vs address", "verdict"].startswith("better")
    assert table.loc["geography loss added", "verdict"].startswith("no difference shown")
    assert table.loc["geography: literal vs similarity form", "verdict"].startswith("worse")
    assert (table["ci_low"] <= table["difference"]).all() and (table["difference"] <= table["ci_high"]).all()
    missing = ablations.investigate(runs.assign(test_hits=None))
    assert missing["verdict"].str.startswith("cannot be judged").all()


def test_ordering_agreement():
    paper = pd.Series({"x": 1.0, "y": 2.0, "z": 3.0})
    assert ablations.ordering_agreement(pd.Series({"x": 5.0, "y": 6.0, "z": 7.0}), paper) == 1.0
    assert ablations.ordering_agreement(pd.Series({"x": 7.0, "y": 6.0, "z": 5.0}), paper) == 0.0
    assert np.isnan(ablations.ordering_agreement(pd.Series({"q": 1.0}), paper))


def test_variant_configs(tiny_dataset):
    base = TrainConfig(dataset=str(tiny_dataset), epochs=1)
    losses = {v.label: ablations.variant_config(base, v, seed=1) for v in ablations.EXPERIMENTS["losses"]}
    assert losses["address"].w_caption == 0 and losses["address"].w_geography == 0 and losses["address"].seed == 1
    assert losses["caption"].w_address == 0
    # the full model and the defaults of other experiments are the same run (reused, not trained twice)
    same = ablations.variant_config(base, ablations.EXPERIMENTS["geography_form"][0], seed=1)
    assert same.digest() == losses["address+caption+geography"].digest()
    multi = ablations.EXPERIMENTS["multi_city"][1]
    assert ablations.variant_config(base, multi, 0, second_city="kotka-synth-tiny").extra_datasets == ["kotka-synth-tiny"]
    with pytest.raises(NotApplicable, match="second city.*pass second_city"):
        ablations.variant_config(base, multi, 0)
    # "both" towers is the main model itself (the same run), whatever the profile trains
    both = ablations.variant_config(base, ablations.EXPERIMENTS["towers"][2], seed=1)
    assert both.digest() == losses["address+caption+geography"].digest()
    # a dataset that records no OSM city cannot be re-partitioned without an extract: a reason, not a crash
    merge = next(v for v in ablations.EXPERIMENTS["labels"] if v.junction_merge_m)
    with pytest.raises(NotApplicable, match="OSM extract.*pass osm="):
        ablations.variant_config(base, merge, 0)
    with pytest.raises(ValueError, match="unknown experiments"):
        ablations.run_experiments(base, ["loss"], [0])


def test_partition_of_a_real_city_redone_from_an_osm_extract(tiny_dataset, tmp_path):
    """A dataset whose card names no OSM city (as real data) is re-partitioned from the extract passed as `osm`.
    The fixture's locations are moved onto real central-Helsinki streets (points along the extract's named streets,
    as a camera on the road would be), and the bundled Helsinki extract is that city's map."""
    from addressclip.datasets.format import write_dataset
    from addressclip.datasets.osm import load_osm

    city = load_osm("helsinki")
    base = read_dataset(tiny_dataset)
    streets = city.streets.to_crs(epsg=int(base.samples["epsg"].iloc[0]))
    streets = streets[streets.length > 150].reset_index(drop=True)
    locations = sorted(base.samples["location_id"].unique())
    points = {loc: streets.geometry[i % len(streets)].interpolate(0.2 + 0.6 * (i % 7) / 7, normalized=True)
              for i, loc in enumerate(locations)}
    samples = base.samples.assign(easting=[points[l].x for l in base.samples["location_id"]],
                                  northing=[points[l].y for l in base.samples["location_id"]])
    real = write_dataset(tmp_path / "real", samples, {"name": "real", "synthetic": False}, None)
    out = label_variant(str(real), "partition", 30.0, out_dir=tmp_path / "v", osm="helsinki")
    ds = read_dataset(out)
    assert ds.card["osm"] == "helsinki" and ds.card["junction_merge_m"] == 30.0
    assert len(ds.samples) + ds.card["images_without_address"] == len(base.samples) and len(ds.samples) > 0
    # addresses now come from the real streets of the extract, not from the fixture's made-up labels
    assert set(ds.samples["street"]) <= set(city.street_names)
    assert ds.samples["address"].nunique() > 1 and ds.segments is not None
    with pytest.raises(NotApplicable, match="pass osm="):
        label_variant(str(real), "partition", 15.0, out_dir=tmp_path / "w")


def test_street_label_variant(tiny_dataset, tmp_path):
    out = label_variant(str(tiny_dataset), "street", out_dir=tmp_path / "v")
    ds, base = read_dataset(out), read_dataset(tiny_dataset)
    assert (ds.samples["address"] == ds.samples["street"]).all()
    assert ds.samples["address"].nunique() == base.samples["street"].nunique()
    assert set(ds.segments["address"]) == set(base.samples["street"])
    assert (out / "images" / base.samples["image"].iloc[0].split("/", 1)[1]).exists()
    assert variant_name("x", "partition", 15.0) == "x@merge15m"
    with pytest.raises(ValueError, match="valid: street, partition"):
        variant_name("x", "streets")


def test_profiles_resolve_and_validate():
    p = profiles.resolve("smoke", epochs=9)
    assert p["epochs"] == 9 and p["dataset"] == "helsinki-synth-tiny"
    assert "experiments" not in profiles.training_values(p)
    TrainConfig.from_dict(profiles.training_values(p))
    with pytest.raises(ValueError, match="valid: smoke, demo, paper"):
        profiles.resolve("fast")
    for name, profile in profiles.PROFILES.items():
        assert set(profile["experiments"]) <= set(ablations.EXPERIMENTS), name
    # CI's smoke run executes every experiment end to end; the paper profile lists them all
    assert set(profiles.PROFILES["smoke"]["experiments"]) == set(ablations.EXPERIMENTS)
    assert set(profiles.PROFILES["paper"]["experiments"]) == set(ablations.EXPERIMENTS)


def test_seed_free_baselines_run_once(tmp_path):
    from test_adapters import cluster_bank

    from addressclip.baselines import seed_free

    bank = cluster_bank()
    logged = []
    table = ablations.run_baselines(["zero-shot", "linear-probe"], bank, None, [0, 1, 2], tmp_path, log=logged.append)
    assert len(table) == 6 and len(logged) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    for name, part in table.groupby("method"):
        assert part["seed"].tolist() == [0, 1, 2] and part["SSA-1"].nunique() == 1
        assert part["reused_from_seed"].tolist()[1:] == [0, 0]
    # a second call reads seed 0's file and still gives every seed a row
    again = ablations.run_baselines(["zero-shot"], bank, None, [0, 1], tmp_path, log=logged.append)
    assert again["seed"].tolist() == [0, 1] and len(logged) == 2
    # the claim itself: two seeds give the same metrics for every seed-free baseline
    from addressclip.baselines import BASELINES, get_baseline

    for name in [b for b in BASELINES if seed_free(b)]:
        first, second = (get_baseline(name)(bank, None, seed=s).summary() for s in (0, 1))
        assert {m: first[m] for m in ablations.METRICS} == {m: second[m] for m in ablations.METRICS}, name
    assert seed_free("tip-adapter") and not seed_free("tip-adapter", {"shots": 4})
    assert not seed_free("coop") and not seed_free("tip-adapter-f")


def test_baselines_start_slowest_first_and_come_back_in_the_profiles_order(tmp_path, monkeypatch):
    """The sweep gets the slow methods first, CoOp before tip-adapter-f (a late CoOp seed left one core working
    alone for minutes), yet the table keeps the order the baselines were asked for."""
    from test_adapters import cluster_bank

    from addressclip import sweep

    submitted = []

    def fake_run_all(function, jobs, shared=(), done=None, processes=None, device="cpu"):
        submitted.extend((name, seed) for name, seed, *_ in jobs)
        return [{"method": name, "seed": seed, "SSA-1": 1.0, "seconds": 0.0} for name, seed, *_ in jobs]

    monkeypatch.setattr(sweep, "run_all", fake_run_all)
    names = ["zero-shot", "tip-adapter-f", "clip-adapter", "coop", "linear-probe"]
    table = ablations.run_baselines(names, cluster_bank(), None, [0, 1], tmp_path, log=lambda _: None)
    assert [name for name, _ in submitted] == ["coop", "coop", "linear-probe", "tip-adapter-f", "tip-adapter-f",
                                               "zero-shot", "clip-adapter", "clip-adapter"]
    assert list(dict.fromkeys(table["method"])) == names


def test_runs_and_baselines_share_one_sweep_slowest_first(tiny_dataset, tmp_path, monkeypatch):
    """One sweep: the prompt-learning baselines, then the variants' runs (each once, though two experiments share
    the main model), then the other baselines slowest first; a row for every variant x seed, and the baselines'
    rows in the order they were asked for."""
    from test_adapters import cluster_bank

    from addressclip import sweep

    submitted = []

    def fake_run_all(function, jobs, shared=(), done=None, processes=None, device="cpu"):
        results = []
        for job in jobs:
            kind, what = job
            submitted.append((kind, what[0] if kind == "baseline" else what[0].split(" / ")[:2]))
            result = "trained" if kind == "train" else {"method": what[0], "seed": what[1], "SSA-1": 1.0, "seconds": 0.0}
            done(job, result)
            results.append(result)
        return results

    monkeypatch.setattr(sweep, "run_all", fake_run_all)
    monkeypatch.setattr(ablations, "_experiment_rows", lambda planned: pd.DataFrame({"variant": [v.label for _, v, _, _ in planned]}))
    base = TrainConfig(dataset=str(tiny_dataset), epochs=1, runs_dir=str(tmp_path / "runs"))
    names = ["zero-shot", "tip-adapter-f", "coop"]
    runs, baselines = ablations.run_experiments_and_baselines(base, ["losses", "geography_form"], [0], names,
                                                              cluster_bank(), None, tmp_path / "b", log=lambda _: None)
    kinds = [kind for kind, _ in submitted]
    assert submitted[0] == ("baseline", "coop") and kinds.count("train") == 6  # 5 losses + literal; similarity is shared
    assert kinds == ["baseline"] + ["train"] * 6 + ["baseline", "baseline"]
    assert [what for kind, what in submitted if kind == "baseline"] == ["coop", "tip-adapter-f", "zero-shot"]
    assert len(runs) == 7  # every variant x seed gets its row
    assert list(dict.fromkeys(baselines["method"])) == names and (baselines["SSA-1"] == 1.0).all()


def test_gallery_cost_is_stored_with_the_baselines_and_read_back(tmp_path, monkeypatch):
    """04 times AddressCLIP's query once, with the runs and baselines it compares against; a re-run that reuses
    them reads that time back instead of timing again (`make demo` may then be running 05 beside it)."""
    from test_adapters import synthetic_bank

    from addressclip import inference

    rng = np.random.default_rng(0)
    bank = synthetic_bank({"test": rng.normal(size=(6, 4))}, {"test": [0, 1, 2, 0, 1, 2]}, rng.normal(size=(3, 4)))
    first = ablations.gallery_cost(bank, tmp_path)
    assert first["query_ms"] > 0 and first["storage_bytes"] == 3 * 4 * 4 and first["threads"] == 1
    assert len(list(tmp_path.glob(f"addressclip-gallery-{bank.key}-k5.json"))) == 1

    def timed_again(*args, **kwargs):
        raise AssertionError("timed again instead of read back")

    monkeypatch.setattr(inference, "timed_ranking", timed_again)
    assert ablations.gallery_cost(bank, tmp_path) == first
    with pytest.raises(AssertionError, match="timed again"):
        ablations.gallery_cost(bank)  # without a folder: timed each call


@pytest.mark.parametrize("given, variants, suffix", [({}, (2, 64), ""),
                                                      ({"epochs": "1", "batch_size": "32"}, (1, 32), "-epochs1-batch_size32")])
def test_04_epochs_and_batch_size_set_the_variants_only(given, variants, suffix, tmp_path, monkeypatch, capsys):
    """04's -p epochs and -p batch_size are every variant's; 02_train's setting, and with it the alignment run that every
    variant and baseline starts from, keeps the profile's (a batch size once reached it: -p batch_size 32 trained
    another alignment run, and every baseline moved with it). Such a sweep's tables and figures get names of their
    own: they once replaced the profile's, which bench/demo_tables.py and the reports' index then showed."""
    from notebook_runs import first_cells

    monkeypatch.setenv("ADDRESSCLIP_OUTPUTS", str(tmp_path))  # the cell makes its tables folder
    shell, result, printed = first_cells("04_ablations.ipynb", capsys, profile="demo", **given)
    assert result.success, printed
    main, base = shell.user_ns["main"], shell.user_ns["base"]
    assert main == TrainConfig.from_dict({**profiles.training_values(profiles.resolve("demo")), "progress": False})
    assert (base.epochs, base.batch_size) == variants
    assert shell.user_ns["suffix"] == suffix and shell.user_ns["figures"].name == f"04_figures{suffix}"


def test_setting_suffix_names_what_a_sweep_changed():
    assert ablations.setting_suffix({}) == ""
    assert ablations.setting_suffix({"epochs": 6}) == "-epochs6"
    losses = ablations.setting_suffix({"experiments": ["losses"]})
    assert losses.startswith("-experiments-") and len(losses) == len("-experiments-") + 8
    assert losses != ablations.setting_suffix({"experiments": ["losses", "label_aware"]})
