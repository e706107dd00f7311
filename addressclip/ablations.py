"""The paper's ablations and baseline comparison, run from one place and read back from run folders.

An experiment is a list of variants; a variant is a label and the changes it makes to a base training
configuration (or to the dataset's labels). Every variant runs once per seed through `train()`, which reuses
finished runs, so a report can be re-rendered without retraining and an interrupted sweep continues.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .comparisons import compare, decode_hits, encode_hits, hits_from_predictions
from .config import TrainConfig
from .errors import NotApplicable

METRICS = ("SSA-1", "SSA-5", "SA-1", "SA-5", "median_m")


@dataclass(frozen=True)
class Variant:
    label: str
    changes: dict[str, Any]
    labels: str = "partition"              # dataset labels: partition (as built) | street
    junction_merge_m: float | None = None  # redo the partition at this distance


EXPERIMENTS: dict[str, list[Variant]] = {
    # the paper's loss table (Table 4): which terms are on
    "losses": [
        Variant("address", {"w_caption": 0.0, "w_geography": 0.0}),
        Variant("caption", {"w_address": 0.0, "w_geography": 0.0}),
        Variant("address+caption", {"w_geography": 0.0}),
        Variant("address+geography", {"w_caption": 0.0}),
        Variant("address+caption+geography", {}),
    ],
    "geography_form": [Variant("similarity", {}), Variant("literal", {"geography_form": "literal"})],
    "geo_weight": [Variant(f"w_geography={w:g}", {"w_geography": w}) for w in (0.0, 0.4, 0.8, 1.6)],
    "caption_weight": [Variant(f"w_caption={w:g}", {"w_caption": w}) for w in (0.0, 0.1, 0.2, 0.5)],
    "address_weight": [Variant(f"w_address={w:g}", {"w_address": w}) for w in (0.5, 1.0, 2.0)],
    "label_aware": [Variant("plain InfoNCE", {}), Variant("label-aware", {"label_aware": True})],
    "caption_text": [Variant("caption+address", {}), Variant("caption alone", {"caption_text": "caption"})],
    "labels": [Variant("sub-street partition", {}), Variant("whole street", {}, labels="street")]
    + [Variant(f"partition, merge {m:g} m", {}, junction_merge_m=m) for m in (15.0, 60.0)],
    # which towers train; "both" is the main model's own setting (every layer of both in the paper profile)
    "towers": [Variant("image only", {"train_text": "none"}), Variant("text only", {"train_image": "none"}),
               Variant("both", {})],
    "coverage": [Variant(f"{f:.1%} of locations", {"fraction_locations": f}) for f in (0.125, 0.25, 0.5, 1.0)],
    "multi_city": [Variant("single city", {}), Variant("joint with a second city", {"extra_datasets": "@second_city"})],
    # the loss table's two ends with the image trunk frozen (projections only): do the auxiliary losses need an
    # image tower that can change? (the geography loss acts on image-image similarity)
    "losses_frozen_image": [Variant("address, image trunk frozen", {"w_caption": 0.0, "w_geography": 0.0, "train_image": "proj"}),
                            Variant("address+caption+geography, image trunk frozen", {"train_image": "proj"})],
}

# Comparisons that explain the loss table when AddressCLIP does not beat the address loss alone: each
# auxiliary loss on its own, the geography loss's sign, label-aware positives, and the frozen image trunk.
# (variant, against), both (experiment, variant label) of EXPERIMENTS. (Label experiments change the classes,
# so their SSA is not comparable and they are not here.)
INVESTIGATION: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "all three vs address": (("losses", "address+caption+geography"), ("losses", "address")),
    "caption loss added": (("losses", "address+caption"), ("losses", "address")),
    "geography loss added": (("losses", "address+geography"), ("losses", "address")),
    "geography: literal vs similarity form": (("geography_form", "literal"), ("geography_form", "similarity")),
    "label-aware vs plain address loss": (("label_aware", "label-aware"), ("label_aware", "plain InfoNCE")),
    "all three vs address, image trunk frozen": (("losses_frozen_image", "address+caption+geography, image trunk frozen"),
                                                 ("losses_frozen_image", "address, image trunk frozen")),
}

# The paper's SSA-1 / SA-1 (%) from its tables, for side-by-side comparison (ViT-B/16 on real photos).
PAPER_METHODS = pd.DataFrame(
    [("zero-shot", 0.85, 1.28, 1.25, 2.80), ("address only (fine-tuned CLIP)", 77.66, 80.86, 83.66, 85.76),
     ("CoOp", 67.91, 71.19, 77.77, 79.90), ("CoCoOp", 69.04, 73.28, 79.19, 81.15), ("MaPLe", 72.98, 76.04, 81.46, 83.69),
     ("AddressCLIP", 80.39, 82.62, 86.32, 87.44)],
    columns=["method", "Pitts-IAL SSA-1", "Pitts-IAL SA-1", "SF-IAL-Base SSA-1", "SF-IAL-Base SA-1"],
)
PAPER_LOSSES = pd.DataFrame(
    [("address", 77.66, 83.66), ("caption", 69.27, 75.85), ("address+caption", 79.20, 84.86),
     ("address+geography", 79.27, 85.54), ("address+caption+geography", 80.39, 86.32)],
    columns=["variant", "Pitts-IAL SSA-1", "SF-IAL-Base SSA-1"],
)


def setting_suffix(changes: dict[str, Any]) -> str:
    """What a sweep changed from its profile's (``-epochs6``; a list by a digest of it), for the names of its tables
    and figures: another setting's never replace the profile's, which `bench/demo_tables.py` and the reports' index
    read. "" for the profile's own sweep."""
    from .cache import digest

    return "".join(f"-{key}-{digest(value, length=8)}" if isinstance(value, (list, tuple, dict)) else f"-{key}{value}"
                   for key, value in changes.items())


def variant_config(base: TrainConfig, variant: Variant, seed: int, second_city: str | None = None,
                   osm: str | None = None) -> TrainConfig:
    """The training configuration of one variant and seed; raises NotApplicable (with what would make it run)
    where the setting lacks what the variant needs."""
    changes = dict(variant.changes)
    if changes.get("extra_datasets") == "@second_city":
        if not second_city:
            raise NotApplicable("joint training needs a second city's dataset (pass second_city=<dataset>)")
        changes["extra_datasets"] = [second_city]
    dataset = base.dataset
    if variant.labels != "partition" or variant.junction_merge_m is not None:
        from .datasets.variants import label_variant

        dataset = str(label_variant(base.dataset, variant.labels, variant.junction_merge_m, osm=osm))
    return base.replace(seed=seed, dataset=dataset, run_name=None, **changes)


def run_experiments(base: TrainConfig, experiments: list[str], seeds: list[int], second_city: str | None = None,
                    osm: str | None = None, log=print) -> pd.DataFrame:
    """Train (or reuse) every variant x seed; one row per run with its metrics, or with `notes` saying why the
    variant cannot run in this setting. The runs to train are independent: they run side by side (`sweep`), one
    process per core with one thread each, so their numbers do not depend on the machine's core count."""
    from . import sweep

    planned, jobs = _plan_experiments(base, experiments, seeds, second_city, osm)
    sweep.run_all(_train_job, jobs, done=lambda job, result: log(f"{job[0]}: {result}"), device=_device_of(base))
    return _experiment_rows(planned)


def _plan_experiments(base: TrainConfig, experiments: list[str], seeds: list[int], second_city: str | None,
                      osm: str | None) -> tuple[list, list]:
    """(every variant x seed with its config or the reason it does not apply, the runs still to train as sweep jobs
    (what it is, config): a run shared by two experiments trains once)."""
    from .runs import Run

    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiments {unknown}; valid: {', '.join(EXPERIMENTS)}")
    planned = []  # (experiment, variant, seed, config or the reason it does not apply)
    for experiment in experiments:
        for variant in EXPERIMENTS[experiment]:
            for seed in seeds:
                try:
                    planned.append((experiment, variant, seed, variant_config(base, variant, seed, second_city, osm)))
                except NotApplicable as exc:
                    planned.append((experiment, variant, seed, exc))
    to_train = {}  # run name -> (what it is, config)
    for experiment, variant, seed, cfg in planned:
        run = Run.of(cfg) if isinstance(cfg, TrainConfig) else None
        if run is not None and not run.finished:
            to_train.setdefault(run.name, (f"{experiment} / {variant.label} / seed {seed}", cfg))
    return planned, list(to_train.values())


def _experiment_rows(planned: list) -> pd.DataFrame:
    from .runs import Run

    rows = []
    for experiment, variant, seed, cfg in planned:
        if not isinstance(cfg, TrainConfig):
            rows.append({"experiment": experiment, "variant": variant.label, "seed": seed, "run": None,
                         **{m: np.nan for m in METRICS}, "notes": f"not applicable: {cfg}"})
            continue
        run = Run.of(cfg)
        metrics = run.metrics
        hits = (encode_hits(hits_from_predictions(run.predictions(columns=["address", "pred"])))
                if run.predictions_path.exists() else None)
        rows.append({"experiment": experiment, "variant": variant.label, "seed": seed, "run": run.name,
                     **{m: metrics.get(m, np.nan) for m in METRICS}, "notes": "", "test_hits": hits})
    return pd.DataFrame(rows)


def _train_job(job: tuple[str, TrainConfig]) -> str:
    """One sweep job: train a run; what to log of it."""
    from .train import train

    start = time.perf_counter()
    folder = train(job[1])
    return f"{Path(folder).name} ({time.perf_counter() - start:.0f} s)"


def summarise(runs: pd.DataFrame, by=("experiment", "variant"), metrics=METRICS) -> pd.DataFrame:
    """Mean and standard deviation over seeds, variants in the order they were run."""
    order = {v: i for i, v in enumerate(dict.fromkeys(map(tuple, runs[list(by)].to_numpy())))}
    g = runs.groupby(list(by), sort=False)[list(metrics)]
    std = g.std(ddof=1).fillna(0.0).add_suffix(" std")
    table = g.mean().join(std).join(g.size().rename("seeds"))
    if "notes" in runs:  # why a variant did not run (the same for each of its seeds)
        notes = runs.assign(notes=runs["notes"].fillna("").astype(str)).groupby(list(by), sort=False)["notes"]
        table = table.join(notes.agg(lambda n: "; ".join(dict.fromkeys(x for x in n if x))))
    table["_order"] = [order[k] for k in table.index]
    return table.sort_values("_order").drop(columns="_order")


# started first in a sweep, in this order (the slowest first): CoOp's 3 seeds were 307 of the demo's 432 s of
# baseline jobs at a091d4e on an AMD EPYC host (one core each)
SLOW_BASELINES = ("cocoop", "coop", "maple", "linear-probe", "tip-adapter-f")
PROMPT_BASELINES = ("cocoop", "coop", "maple")  # each longer than an ablation run of the demo: ahead of the runs
METHOD_METRICS = ("SSA-1", "SSA-5", "SA-1", "SA-5", "median_m", "storage_bytes", "query_ms")
BASELINE_RESULTS_VERSION = 2  # 2: results carry per-image test hits for paired comparisons
COMPARISON_COLUMNS = ["A", "B", "difference", "ci_low", "ci_high", "seeds", "images", "verdict"]
PROMPT_METHODS = ("coop", "cocoop", "maple")


def compare_methods(baseline_runs: pd.DataFrame, runs: pd.DataFrame, cost: dict[str, Any]
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison table: every baseline and the loss table's two ends (address loss only, AddressCLIP), one
    row per method and seed that ran (`table`; a deterministic baseline ran once) and summarised over seeds
    (`comparison`, with a `deterministic` flag). Methods that did not run keep a row with their reason in `notes`."""
    columns = ["variant", "seed", *METHOD_METRICS, "notes", "test_hits", "deterministic"]
    parts = []
    if len(baseline_runs):
        once = baseline_runs.get("reused_from_seed", pd.Series(np.nan, index=baseline_runs.index)).notna()
        ran = baseline_runs[~once]
        deterministic = ran["method"].isin(baseline_runs.loc[once, "method"])
        parts.append(ran.assign(variant=ran["method"], deterministic=deterministic).reindex(columns=columns))
    mine = runs[(runs["experiment"] == "losses") & runs["variant"].isin(["address", "address+caption+geography"])]
    if len(mine):
        mine = mine.assign(variant=mine["variant"].map({"address": "address loss only", "address+caption+geography": "AddressCLIP"}),
                           storage_bytes=cost.get("storage_bytes"), query_ms=cost.get("query_ms"), deterministic=False)
        parts.append(mine.reindex(columns=columns))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    table["notes"] = table["notes"].fillna("")
    table["deterministic"] = table["deterministic"].fillna(False).astype(bool)
    comparison = summarise(table.assign(experiment="methods"), metrics=METHOD_METRICS).loc["methods"]
    comparison["deterministic"] = table.groupby("variant", sort=False)["deterministic"].any()
    return table, comparison.sort_values("SSA-1", ascending=False)


def hits_of(rows: pd.DataFrame) -> np.ndarray | None:
    """[seeds, images] top-1 hits of one method's rows (seed order), or None when any row lacks them."""
    rows = rows.sort_values("seed")
    if not len(rows) or "test_hits" not in rows or rows["test_hits"].isna().any():
        return None
    return np.stack([decode_hits(h) for h in rows["test_hits"]])


def method_checks(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims checked on `compare_methods`' per-seed table with paired bootstrap intervals:
    AddressCLIP ahead of address-only fine-tuning, and both ahead of each prompt-learning baseline that ran."""
    ran = set(table.loc[table["SSA-1"].notna(), "variant"])
    pairs = []
    if {"AddressCLIP", "address loss only"} <= ran:
        pairs.append(("AddressCLIP", "address loss only"))
        for prompt in (m for m in PROMPT_METHODS if m in ran):
            pairs += [("address loss only", prompt), ("AddressCLIP", prompt)]
    rows = [compare(a, hits_of(table[table["variant"] == a]), b, hits_of(table[table["variant"] == b])) for a, b in pairs]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def starting_model(base: TrainConfig, device: str = "cpu"):
    """The model every variant and baseline starts from: the alignment run's weights (offline backbone), or the
    `pretrained` file itself (a CLIP backbone: zero-shot CLIP is then a real baseline)."""
    from .inference import load_model
    from .train import build_model

    return load_model(base.init_checkpoint, device=device) if base.init_checkpoint else build_model(base, device)


def investigate(runs: pd.DataFrame) -> pd.DataFrame:
    """The INVESTIGATION comparisons that `runs` (from `run_experiments`) allow, each a paired bootstrap
    interval of the SSA-1 difference over the same test images and seeds, with its verdict."""
    rows = []
    for question, (variant, against) in INVESTIGATION.items():
        a = runs[(runs["experiment"] == variant[0]) & (runs["variant"] == variant[1]) & runs["SSA-1"].notna()]
        b = runs[(runs["experiment"] == against[0]) & (runs["variant"] == against[1]) & runs["SSA-1"].notna()]
        if len(a) and len(b):
            rows.append({"question": question, **compare(variant[1], hits_of(a), against[1], hits_of(b))})
    return pd.DataFrame(rows, columns=["question", *COMPARISON_COLUMNS]).set_index("question")


def ordering_agreement(ours: pd.Series, paper: pd.Series) -> float:
    """Share of method pairs that both tables order the same way (1 = identical ordering)."""
    common = [k for k in ours.index if k in paper.index]
    pairs = [(a, b) for i, a in enumerate(common) for b in common[i + 1:]]
    if not pairs:
        return float("nan")
    return float(np.mean([np.sign(ours[a] - ours[b]) == np.sign(paper[a] - paper[b]) for a, b in pairs]))


def run_baselines(names: list[str], bank, model, seeds: list[int], out_dir: str | Path, options: dict | None = None,
                  log=print) -> pd.DataFrame:
    """Run (or reuse) each baseline per seed on a feature bank; results are saved as JSON in `out_dir`.
    `options` maps a baseline name to keyword arguments for it (e.g. fewer epochs on a CPU).
    A baseline that does not apply to the backbone gives a row with its reason and no numbers.
    The baselines still to run run side by side (`sweep`), one process per core with one thread each; their
    `query_ms` is then a one-thread time, as the `gallery_cost` they are compared with."""
    from . import sweep

    planned, stored, missing = _plan_baselines(names, bank, seeds, out_dir, options)
    stored.update(zip([job[3] for job in missing],
                      sweep.run_all(_baseline_job, missing, shared=(bank, model), done=lambda job, row: log(_baseline_line(row)),
                                    device=getattr(model, "device", "cpu"))))
    return _baseline_rows(planned, stored, seeds)


def run_experiments_and_baselines(base: TrainConfig, experiments: list[str], seeds: list[int], names: list[str], bank,
                                  model, out_dir: str | Path, options: dict | None = None, second_city: str | None = None,
                                  osm: str | None = None, log=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`run_experiments` and `run_baselines` (the same rows) in one sweep, so that no core waits at the end of the
    runs for the baselines to start: the slowest baselines (prompt learning) first, then the training runs, then the
    other baselines, slowest first; the processes then finish close together. As in `sweep.run_all`, the first job
    to fail stops the sweep (jobs not yet started are cancelled); the runs and results already finished are kept
    and reused by the next call."""
    from . import sweep

    planned_runs, train_jobs = _plan_experiments(base, experiments, seeds, second_city, osm)
    planned, stored, missing = _plan_baselines(names, bank, seeds, out_dir, options)
    first = [job for job in missing if job[0] in PROMPT_BASELINES]
    jobs = ([("baseline", job) for job in first] + [("train", job) for job in train_jobs]
            + [("baseline", job) for job in missing if job[0] not in PROMPT_BASELINES])

    def done(job, result) -> None:
        if job[0] == "train":
            log(f"{job[1][0]}: {result}")
        else:
            stored[job[1][3]] = result
            log(_baseline_line(result))

    sweep.run_all(_sweep_job, jobs, shared=(bank, model), done=done, device=_device_of(base))
    return _experiment_rows(planned_runs), _baseline_rows(planned, stored, seeds)


def _device_of(base: TrainConfig) -> str:
    """Where the sweep's training runs compute (`sweep.run_all` runs GPU jobs one after another)."""
    from .inference import resolve_device

    return resolve_device(base.device)


def _sweep_job(job: tuple, bank, model):
    kind, what = job
    return _train_job(what) if kind == "train" else _baseline_job(what, bank, model)


def _plan_baselines(names: list[str], bank, seeds: list[int], out_dir: str | Path, options: dict | None
                    ) -> tuple[list, dict, list]:
    """(every baseline x seed to report, their stored result rows (None: still to run), the jobs still to run,
    slowest first)."""
    from . import cache
    from .baselines import seed_free

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    planned = []  # (name, seed, options, result file, run once for every seed)
    for name in names:
        kwargs = (options or {}).get(name, {})
        tag = f"{cache.digest(json.dumps(kwargs, sort_keys=True), length=6)}-v{BASELINE_RESULTS_VERSION}"
        once = seed_free(name, kwargs)  # same result for every seed: run the first, reuse it for the others
        for seed in seeds[:1] if once else seeds:
            planned.append((name, seed, kwargs, out / f"{name}-seed{seed}-{bank.key}-{tag}.json", once))
    # the slowest first, so that the processes finish together rather than one waiting on a late long job
    # (the demo's sweep: 239 -> 218 s, simulated from its jobs' seconds, when CoOp moved ahead of tip-adapter-f)
    stored = {job[3]: _stored_row(job[3]) for job in planned}  # each result file read once
    slowness = {name: i for i, name in enumerate(SLOW_BASELINES)}
    missing = sorted((job for job in planned if stored[job[3]] is None), key=lambda job: slowness.get(job[0], len(slowness)))
    return planned, stored, missing


def _baseline_line(row: dict) -> str:
    ssa1 = row.get("SSA-1")
    return (f"baseline {row['method']} / seed {row['seed']}: " + (f"SSA-1 {ssa1:.2f}" if ssa1 is not None else "not applicable")
            + f" ({row['seconds']} s)")


def _baseline_rows(planned: list, stored: dict, seeds: list[int]) -> pd.DataFrame:
    rows = []
    for name, seed, kwargs, path, once in planned:
        row = stored[path]
        rows.append(row)
        if once:
            rows += [{**row, "seed": s, "seconds": 0.0, "reused_from_seed": seeds[0]} for s in seeds[1:]]
    return pd.DataFrame(rows)


def _stored_row(path: Path) -> dict | None:
    """A baseline's saved result row, or None where it is missing or damaged (then it runs again)."""
    from . import cache

    try:
        return cache.load_json_checked(path)
    except (FileNotFoundError, cache.DamagedFile):
        return None


def _baseline_job(job: tuple, bank, model) -> dict:
    """One sweep job: run a baseline for a seed and save its result row (JSON, checksummed); the row."""
    from . import cache
    from .baselines import get_baseline

    name, seed, kwargs, path, _ = job

    def compute():
        start = time.perf_counter()
        try:
            row = get_baseline(name)(bank, model, seed=seed, **kwargs).summary()
        except NotApplicable as exc:
            row = {"method": name, "notes": f"not applicable: {exc}"}
        row.update({"method": name, "seed": seed, "seconds": round(time.perf_counter() - start, 2), "options": kwargs})
        return row

    row, _ = cache.load_or_compute_json(path, compute)
    return row


def gallery_cost(bank, out: str | Path | None = None, k: int = 5, repeats: int = 3) -> dict[str, float]:
    """What AddressCLIP keeps to answer a query (the address-text gallery) and its per-query ranking time, timed
    with one intra-op thread as the baselines' (`run_baselines`). With `out` (the baselines' folder) it is stored
    there and read back later, as the baselines' results are: a re-run that reuses every run then reports the time
    measured with them, not one taken while other work shares the machine (`make demo` runs 05 beside 04)."""
    if out is not None:
        from . import cache

        value, _ = cache.load_or_compute_json(Path(out) / f"addressclip-gallery-{bank.key}-k{k}.json",
                                              lambda: gallery_cost(bank, None, k, repeats))
        return value
    from . import threads
    from .inference import timed_ranking, topk

    with threads.intra_op_threads(1):
        _, query_ms = timed_ranking(lambda feats, kk: topk(feats, bank.gallery, kk), bank.image["test"], k, repeats)
    return {"storage_bytes": int(bank.gallery.numel() * bank.gallery.element_size()),
            "query_ms": query_ms, "dtype": str(bank.gallery.dtype).replace("torch.", ""), "threads": 1}
