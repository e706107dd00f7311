import json

import pytest
import torch

from addressclip.config import TrainConfig
from addressclip.runs import load_checkpoint, read_jsonl
from addressclip.train import train


def _cfg(dataset, tmp_path, **kw):
    base = dict(dataset=str(dataset), epochs=3, batch_size=8, lr=1e-3, train_image="last:1", train_text="proj",
                runs_dir=str(tmp_path / "runs"), progress=False, num_workers=0, seed=3)
    return TrainConfig(**{**base, **kw})


def test_resume_ends_with_the_same_metrics(tiny_dataset, tmp_path):
    straight = train(_cfg(tiny_dataset, tmp_path, run_name="straight"))
    partial = _cfg(tiny_dataset, tmp_path, run_name="resumed", stop_after_epochs=1)
    folder = train(partial)
    assert not (folder / "metrics.json").exists() and len(read_jsonl(folder / "results.jsonl")) == 1
    resumed = train(partial.replace(stop_after_epochs=None))
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (straight, resumed))
    for key in ("SSA-1", "SSA-5", "SA-1", "SA-5", "median_m"):
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
    la, lb = (read_jsonl(d / "results.jsonl") for d in (straight, resumed))
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], rel=1e-5)
    wa, wb = (load_checkpoint(d)["model"] for d in (straight, resumed))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_epoch_checkpoints_keep_only_what_trains_and_resume_from_either_form(tiny_dataset, tmp_path):
    """last.pt leaves out the frozen weights (build_model gives them back), checked by their digest; a checkpoint
    holding every weight (written before) resumes the same, and one trained beside other frozen weights is not
    used: a warning, and the run starts afresh."""
    from addressclip import cache
    from addressclip.runs import DamagedCheckpointWarning, Run
    from addressclip.train import build_model, frozen_weights, restore

    straight = json.loads((train(_cfg(tiny_dataset, tmp_path, run_name="straight")) / "metrics.json").read_text())
    partial = _cfg(tiny_dataset, tmp_path, run_name="slim", stop_after_epochs=1)
    run = Run(train(partial))
    state = cache.load(run.last_path)
    model = build_model(partial, "cpu")
    frozen, trained = set(frozen_weights(model)), {n for n, p in model.clip.named_parameters() if p.requires_grad}
    assert frozen and trained and not frozen & set(state["model"]) and trained <= set(state["model"])
    digest = cache.digest(frozen_weights(model), length=24)
    assert restore(model, state, digest) == digest
    full = {k: v for k, v in state.items() if k != "frozen_digest"}  # the older form: every weight
    full["model"] = model.clip.state_dict()
    # an older checkpoint's own frozen weights are what the model holds after it: the checkpoints to come say so
    changed = {**full, "model": {**full["model"]}}
    name = next(iter(frozen))
    changed["model"][name] = changed["model"][name] + 1.0
    other_model = build_model(partial, "cpu")
    after = restore(other_model, changed, digest)
    assert after != digest and after == cache.digest(frozen_weights(other_model), length=24)
    from addressclip.errors import CheckpointError
    from addressclip.inference import load_model

    with pytest.raises(CheckpointError, match="resume checkpoint.*model.pt"):
        load_model(run.last_path)
    for name, checkpoint in (("full", full), ("other-frozen", {**state, "frozen_digest": "0" * 24})):
        other = Run(tmp_path / "runs" / name)
        other.folder.mkdir(parents=True)
        for item in ("params.json", "results.jsonl", "skipped_images.json"):
            (other.folder / item).write_bytes((run.folder / item).read_bytes())
        cache.save(other.last_path, checkpoint)
        resume = partial.replace(run_name=name, stop_after_epochs=None)
        if name == "other-frozen":
            with pytest.warns(DamagedCheckpointWarning, match="other frozen weights.*starts afresh"):
                train(resume)
        else:
            train(resume)
        metrics = json.loads((other.folder / "metrics.json").read_text())
        assert all(metrics[k] == pytest.approx(straight[k], abs=1e-9) for k in ("SSA-1", "SA-1", "median_m")), name


def test_previous_checkpoint_is_gone_before_the_run_counts_as_finished(tiny_dataset, tmp_path, monkeypatch):
    """A finished run (metrics.json) is reused as it is, so previous.pt must be gone before `finish` writes
    metrics.json: a kill between the two (seen once in CI's kill test) kept previous.pt for good."""
    from addressclip.runs import Run

    seen, finish, drop = [], Run.finish, Run.drop_previous

    def look(method, moment):
        def wrapped(self, *args, **kwargs):
            seen.append((moment, self.previous_path.exists()))
            return method(self, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(Run, "finish", look(finish, "finish"))
    monkeypatch.setattr(Run, "drop_previous", look(drop, "drop"))
    folder = train(_cfg(tiny_dataset, tmp_path, epochs=2, run_name="two"))
    assert seen == [("drop", True), ("finish", False)] and (folder / "metrics.json").exists()  # there was one to drop
    # a run finished by the old order (previous.pt kept): reusing it drops the file
    checkpoints = folder / "checkpoints"
    (checkpoints / "previous.pt").write_bytes((checkpoints / "last.pt").read_bytes())
    assert train(_cfg(tiny_dataset, tmp_path, epochs=2, run_name="two")) == folder
    assert not (checkpoints / "previous.pt").exists() and (checkpoints / "last.pt").exists()


def test_run_folder_records_how_it_was_made(tiny_dataset, tmp_path):
    folder = train(_cfg(tiny_dataset, tmp_path, epochs=1, run_name="one"))
    params = json.loads((folder / "params.json").read_text())
    assert params["config"]["seed"] == 3 and params["code_version"] and params["environment"]["torch"]
    assert params["environment"]["cpu"] and params["environment"]["cpu_capability"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"SSA-1", "SSA-5", "SA-1", "SA-5", "median_m", "within_25m"} <= set(metrics)
    assert (folder / "per_address.csv").exists() and (folder / "predictions.parquet").exists()
    # training curves for TensorBoard: per-step loss and learning rate, per-epoch losses and validation metrics
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "epoch/loss", "epoch/val_SSA-1"} <= tags
    results = read_jsonl(folder / "results.jsonl")
    assert events.Scalars("epoch/loss")[0].value == pytest.approx(results[0]["loss"], rel=1e-6)
    assert len(events.Scalars("train/loss")) == params["steps_per_epoch"]
    # a finished run is reused, a different configuration under the same name is refused
    assert train(_cfg(tiny_dataset, tmp_path, epochs=1, run_name="one")) == folder
    with pytest.raises(ValueError, match="other settings"):
        train(_cfg(tiny_dataset, tmp_path, epochs=2, run_name="one"))


def test_training_learns_the_fixture(tiny_dataset, tmp_path):
    folder = train(_cfg(tiny_dataset, tmp_path, epochs=6, train_image="last:3", run_name="learn"))
    records = read_jsonl(folder / "results.jsonl")
    assert records[-1]["address_loss"] < records[0]["address_loss"]
    assert json.loads((folder / "metrics.json").read_text())["SSA-1"] > 100 / 9 * 2  # well above chance (1 in 9)


def test_config_errors_name_the_bad_value_and_the_choices(tiny_dataset):
    with pytest.raises(ValueError, match="unknown dataset 'helsinki'.*helsinki-synth"):
        TrainConfig(dataset="helsinki")
    with pytest.raises(ValueError, match="unknown geography_form 'inverse'; valid: similarity, literal"):
        TrainConfig(dataset=str(tiny_dataset), geography_form="inverse")
    with pytest.raises(ValueError, match="unknown training options \\['epoch'\\]"):
        TrainConfig.from_dict({"dataset": str(tiny_dataset), "epoch": 3})
    with pytest.raises(ValueError, match="every loss weight is zero"):
        TrainConfig(dataset=str(tiny_dataset), w_address=0, w_caption=0, w_geography=0)
    with pytest.raises(ValueError, match="unknown backbone"):
        TrainConfig(dataset=str(tiny_dataset), backbone="vit-huge-9000")


def test_missing_dataset_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path))
    from addressclip.datasets import load_dataset

    with pytest.raises(FileNotFoundError, match="raw/pitts250k.*01_build_dataset"):
        load_dataset("pitts-ial")


def test_checkpoints_load_without_pickled_code(tiny_dataset, tmp_path):
    folder = train(_cfg(tiny_dataset, tmp_path, epochs=1, run_name="safe"))
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "spec": {}, "payload": object()}, evil)  # arbitrary objects need pickle
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        load_checkpoint(evil)
    assert set(load_checkpoint(folder)) == {"model", "spec", "config"}


def test_alignment_run_is_the_same_whatever_the_main_runs_data_and_loss_forms():
    """02's -p label_aware / geography_form / train_splits are the main run's: the alignment run every variant and
    baseline starts from keeps its identity (and so is reused, not trained again)."""
    from addressclip.train import alignment_config

    main = TrainConfig(dataset="helsinki-synth", epochs=8, batch_size=64)
    plain = alignment_config(main, "kotka-synth", 3)
    assert (plain.train_splits, plain.label_aware, plain.geography_form) == ("train", False, "similarity")
    for change in ({"label_aware": True}, {"geography_form": "literal"}, {"train_splits": "train+val"}):
        assert alignment_config(main.replace(**change), "kotka-synth", 3).digest() == plain.digest(), change
