"""`Run` owns the run folder; `inference.load_model` takes a run name, a folder or a model.pt, and so do the
CLI's `evaluate` and `predict`."""
import json

import pytest
import torch

from addressclip.cache import load as cache_load, save as cache_save
from addressclip.cli import main
from addressclip.config import TrainConfig
from addressclip.inference import load_model
from addressclip.runs import Run
from addressclip.train import train


@pytest.fixture(scope="module")
def finished(tiny_dataset, tmp_path_factory):
    """A one-epoch run under a project outputs folder, as `02_train` leaves it."""
    outputs = tmp_path_factory.mktemp("outputs")
    cfg = TrainConfig(dataset=str(tiny_dataset), epochs=2, batch_size=8, train_image="last:1", train_text="proj",
                      runs_dir=str(outputs / "runs"), run_name="named", progress=False, num_workers=0)
    return Run(train(cfg)), cfg


def test_the_run_object_reads_what_training_wrote(finished):
    run, cfg = finished
    assert run.name == "named" and run.finished and run.folder == Run.of(cfg).folder
    assert run.metrics["run"] == "named" and {"SSA-1", "SA-1"} <= set(run.metrics)
    assert list(run.results()["epoch"]) == [1, 2]  # one row per epoch, each written once
    assert len(run.predictions()) == run.metrics["images"] and len(run.per_address())
    assert run.params["config"] == cfg.identity()
    assert run.load_last()["epoch"] == 2
    run.check_identity(cfg)
    with pytest.raises(ValueError, match="other settings.*epochs"):
        run.check_identity(cfg.replace(epochs=3))


def test_a_damaged_checkpoint_is_named_and_never_blocks_resuming(finished, tmp_path):
    from addressclip.runs import DamagedCheckpointWarning, load_checkpoint

    run, _ = finished
    copy = Run(tmp_path / "copy")
    copy.last_path.parent.mkdir(parents=True)
    data = bytearray(run.last_path.read_bytes())
    at = len(data) // 2
    data[at] ^= 0xFF
    copy.last_path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="cannot read checkpoint.*last.pt"):
        load_checkpoint(copy.last_path)  # read directly: refused, naming the file
    good = cache_load(run.last_path)
    cache_save(copy.previous_path, {**good, "epoch": 1})
    with pytest.warns(DamagedCheckpointWarning, match="last.pt.*damaged.*moved aside to last.pt.damaged.*resuming from previous.pt \\(epoch 1\\)"):
        assert copy.load_last()["epoch"] == 1  # to resume: the checkpoint before it
    assert (copy.folder / "checkpoints" / "last.pt.damaged").exists() and not copy.last_path.exists()
    copy.previous_path.write_bytes(copy.previous_path.read_bytes()[:1000])
    with pytest.warns(DamagedCheckpointWarning, match="previous.pt.*starts afresh"):
        assert copy.load_last() is None  # nothing whole is left: a fresh start, never an error


def test_one_loader_for_names_folders_and_files(finished, monkeypatch):
    run, _ = finished
    monkeypatch.setenv("ADDRESSCLIP_OUTPUTS", str(run.folder.parent.parent))
    by_name, by_folder, by_file = (load_model(x) for x in ("named", run.folder, run.model_path))
    for model in (by_name, by_folder, by_file):
        assert model.checkpoint == run.model_path and model.train_config == run.params["config"]
    a, b = by_name.clip.state_dict(), by_file.clip.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match="no run 'unnamed'"):
        load_model("unnamed")


def test_cli_evaluate_takes_a_run_name(finished, tiny_dataset, monkeypatch, capsys):
    run, _ = finished
    monkeypatch.setenv("ADDRESSCLIP_OUTPUTS", str(run.folder.parent.parent))
    assert main(["evaluate", "named", "--dataset", str(tiny_dataset), "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["SSA-1"] == pytest.approx(run.metrics["SSA-1"])  # the same model, the same ranking


def test_a_run_recorded_under_an_old_option_name_is_still_the_same_run(finished, tmp_path):
    run, cfg = finished
    old = Run(tmp_path / "old")
    params = run.params
    params["config"]["geo_form"] = params["config"].pop("geography_form")
    old.write_params(params)
    old.check_identity(cfg)  # not "other settings"
