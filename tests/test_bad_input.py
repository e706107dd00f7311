"""Bad input: what happens. Every row of the README's table "Bad input: what happens" is a case here (`ROWS`), and
`test_the_readme_table_is_this_list` keeps the two the same list, row for row (print the table to paste with
``python tests/test_bad_input.py``).

Each case goes through the entry point a user meets: `addressclip ...` (``main([...])``: a user error returns 2
and prints one line, ``addressclip <command>: error: <message>``), a notebook's own cells as papermill runs them
(the failing cell shows one line), or the Python call the notebooks make. Fixtures are made as the real files are:
NetVLAD ``.mat`` files with scipy.io.savemat, AddressCLIP JSON and SF-XL '@' names as released (the makers of
tests/test_real_builders.py), images with Pillow (16-bit PNG in mode I;16, CMYK JPEG as Pillow writes it),
checkpoints with torch.save, OSM XML as an editor saves it.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from addressclip import cache
from addressclip.cli import main
from addressclip.data import ADDRESS_TEMPLATE, open_image
from addressclip.datasets import load_dataset
from addressclip.paths import REPO_ROOT
from addressclip.predict import gallery_key
from notebook_runs import first_cells
from test_osm import BUILDING, NODES, write_osm
from test_real_builders import PITTS_VIEWS, make_pitts, make_sf, pitts_rel, write_jpeg

# (name, input, what the user sees, exit code / behaviour): the README table, row for row
ROWS = [
    ("train-unknown-dataset", "`addressclip train --dataset atlantis`",
     "`addressclip train: error: unknown dataset 'atlantis'; valid: helsinki-synth, helsinki-synth-tiny, …, "
     "sf-ial-large or a built dataset folder`", "exit 2, before anything is loaded"),
    ("train-unknown-backbone", "`addressclip train --backbone vit-huge-9000`",
     "`… error: unknown backbone 'vit-huge-9000'; valid: effnet-lite0-minilm or an open_clip architecture "
     "(e.g. ViT-B-16-quickgelu)`", "exit 2, before anything is loaded"),
    ("train-negative-batch-size", "`addressclip train --batch-size -5`",
     "`… error: batch_size must be at least 1, got -5`", "exit 2, before anything is loaded"),
    ("train-epochs-not-a-number", "`addressclip train --epochs ten`",
     "`… error: argument --epochs: must be an integer, got 'ten' (see addressclip train --help)`", "exit 2"),
    ("train-too-many-blocks", "`addressclip train --train-image last:99`",
     "`… error: train_image 'last:99' asks for the last 99 blocks, but backbone effnet-lite0-minilm's image tower "
     "has 7; valid: all, none, proj, last:0 .. last:7` (the counts come from the architecture's definition)",
     "exit 2, before any data or weights are loaded"),
    ("train-debug", "`addressclip train --batch-size -5 --debug`",
     "the traceback, then the same one line (`ADDRESSCLIP_DEBUG=1` does the same, also in notebooks)", "exit 2"),
    ("config-wrong-type", "`TrainConfig.from_dict({\"epochs\": \"ten\"})` (Python, and what the notebooks call)",
     "`UserError: epochs must be an integer, got 'ten'`: every field is checked against its annotation",
     "raises `UserError` (a `ValueError`)"),
    ("notebook-epochs-ten", "`papermill notebooks/02_train.ipynb out.ipynb -p epochs ten`",
     "the failing cell shows one line, `UserError: epochs must be an integer or None, got 'ten'`, and papermill's "
     "report ends with that line (after papermill's own traceback)", "the run fails (papermill exits 1); nothing trained"),
    ("notebook-unknown-parameter", "`papermill notebooks/02_train.ipynb out.ipynb -p epoch 3`",
     "`UserError: unknown notebook parameters ['epoch']; valid: profile, dataset, backbone, …`", "the run fails"),
    ("notebook-unknown-profile", "`papermill notebooks/02_train.ipynb out.ipynb -p profile fast`",
     "`UserError: unknown profile 'fast'; valid: smoke, demo, paper`", "the run fails"),
    ("notebook-unknown-dataset", "`papermill notebooks/03_evaluate.ipynb out.ipynb -p dataset atlantis`",
     "`ValueError: unknown dataset 'atlantis'; valid names: helsinki-synth, … (or a path to a built dataset folder)`",
     "the run fails"),
    ("notebook-unknown-experiment", "`papermill notebooks/04_ablations.ipynb out.ipynb -y \"experiments: [lossess]\"`",
     "`UserError: unknown experiments ['lossess']; valid: losses, geography_form, …` (baselines likewise)",
     "the run fails before any dataset is built or model trained"),
    ("build-unknown-dataset", "`addressclip build atlantis`",
     "`addressclip build: error: unknown dataset 'atlantis'; valid names: …; or build your own city under this name "
     "with osm=<OSM extract> …`", "exit 2, nothing written"),
    ("evaluate-k-zero", "`addressclip evaluate <run> --dataset helsinki-synth-tiny -k 0`",
     "`addressclip evaluate: error: -k must be at least 1, got 0`", "exit 2 at once: no dataset or model loaded"),
    ("evaluate-unknown-split", "`addressclip evaluate <run> --dataset helsinki-synth-tiny --split dev`",
     "`… error: argument --split: invalid choice: 'dev' (choose from 'train', 'val', 'test') …`", "exit 2"),
    ("device-unavailable", "`addressclip evaluate <run> --dataset helsinki-synth-tiny --device cuda` without CUDA",
     "`… error: device 'cuda' requested but CUDA is not available; valid here: auto, cpu`",
     "exit 2 (the test is skipped where CUDA exists)"),
    ("dataset-card-half-written", "a dataset folder whose `card.json` was cut short, e.g. "
     "`addressclip evaluate <run> --dataset data/mycity`",
     "`… error: data/mycity/card.json is not valid JSON (Expecting …): the build was interrupted or the file was "
     "changed since; rebuild it (addressclip build mycity --overwrite, …)`", "exit 2"),
    ("predict-missing-checkpoint", "`addressclip predict --checkpoint nowhere photos/`",
     "`addressclip predict: error: no run 'nowhere' (looked for nowhere/model.pt and …/outputs/runs/nowhere/model.pt)`",
     "exit 2"),
    ("predict-unsafe-checkpoint", "`--checkpoint evil.pt`: a `torch.save` of a dict that holds a Python object",
     "`… error: checkpoint evil.pt holds pickled Python objects (e.g. object), not only tensors and plain values; it "
     "is not loaded, since unpickling can run code: …`; never a hint to load it with `weights_only=False`",
     "exit 2; nothing unpickled"),
    ("predict-truncated-checkpoint", "`--checkpoint <run>` whose `model.pt` was cut short (an interrupted copy)",
     "`… error: checkpoint <run>/model.pt is truncated or damaged (not a complete PyTorch file); copy it again or "
     "retrain`", "exit 2"),
    ("predict-unknown-dataset", "`addressclip predict --checkpoint <run> --dataset atlantis photos/`",
     "`… error: unknown dataset 'atlantis'; valid names: helsinki-synth, …`", "exit 2, before the model is loaded"),
    ("candidates-empty", "`--addresses empty.txt`, a file of blank lines",
     "`… error: candidate address file empty.txt is empty (expected one address per line)`",
     "exit 2, before the model is loaded"),
    ("candidates-duplicates", "`--addresses streets.txt` listing an address twice",
     "each address ranked once (the first kept); the summary line counts distinct candidates", "exit 0"),
    ("image-16-bit", "a 16-bit greyscale PNG (mode `I;16`)",
     "predicted; its 0..65535 range is rescaled to 0..255 (not clipped to white)", "exit 0"),
    ("image-cmyk", "a CMYK JPEG as Pillow writes it", "predicted, in its RGB colours", "exit 0"),
    ("image-alpha", "PNGs in RGBA, LA, and P with a transparent palette entry",
     "predicted; transparency is composited over white", "exit 0"),
    ("image-huge", "a 12000×9000 JPEG (108 MP: above Pillow's 89.5 MP decompression-bomb warning limit, below its "
     "179 MP error limit)", "predicted, decoded at 1/8 scale (1500×1125); one line "
     "`addressclip predict: warning: DecompressionBombWarning: Image size (108000000 pixels) exceeds limit of "
     "89478485 pixels, …`", "exit 0"),
    ("image-decompression-bomb", "a 20000×10000 PNG (200 MP: above Pillow's error limit)",
     "`skipped …/bomb.png: DecompressionBombError: Image size (200000000 pixels) exceeds limit of 178956970 pixels, …`; "
     "the output file lists it with that reason", "skipped, the rest predicted: exit 0 (1 when no image was predicted)"),
    ("image-corrupt-jpeg", "a JPEG cut short after its headers (an interrupted copy)",
     "`skipped …/corrupt.jpg: OSError: image file is truncated …`; listed in the output file",
     "skipped, the rest predicted: exit 0 (1 when no image was predicted)"),
    ("image-zero-byte", "a zero-byte `.jpg`", "`skipped …/empty.jpg: UnidentifiedImageError: cannot identify image "
     "file …`; listed in the output file", "skipped, the rest predicted: exit 0 (1 when no image was predicted)"),
    ("image-tiny", "a 1×1 PNG", "predicted, with `addressclip predict: warning: …/tiny.png is 1x1 px, smaller than 16 px "
     "on a side: its prediction is unlikely to be meaningful` (Python: a `SmallImageWarning`, `frame.attrs[\"small\"]`)",
     "exit 0"),
    ("cache-damaged", "a candidate-embedding cache file (`gallery_cache/gallery-….pt`) cut short",
     "`addressclip predict: warning: DamagedCacheWarning: …/gallery-….pt cannot be read (…); moved aside to "
     "gallery-….pt.damaged and recomputed`", "predictions as usual, exit 0; the damaged file is kept aside, never read"),
    ("pitts-mat-without-dbstruct", "`addressclip build pitts-ial --raw-dir raw` with a `pitts250k_val.mat` that "
     "holds no `dbStruct`", "the summary line `…; skipped 4: malformed_mat_file 1, no_coordinates 3`; the card lists "
     "each reason with examples; `--strict`: `addressclip build: error: malformed_mat_file: …: pitts250k_val.mat: "
     "ValueError: no variable 'dbStruct' (found ['something']) …`", "built without that file's images, exit 0; "
     "`--strict`: exit 2"),
    ("pitts-mat-mismatched-lengths", "a NetVLAD `.mat` whose `utmDb` has fewer columns than `dbImageFns` has names",
     "as above, the reason `utmDb has shape (2, 2), expected (2, 3) to match dbImageFns`",
     "built without that file's images, exit 0; `--strict`: exit 2"),
    ("sfxl-too-few-fields", "an SF-XL image named `@0544388.51@4172758.25@10@S.jpg` (5 '@' fields)",
     "counted in the card as `unparseable_file_name` (`… (5 '@' fields, expected at least 10)`); `--strict`: "
     "`addressclip build: error: unparseable_file_name: file name does not follow the dataset's naming convention: …`",
     "built without it, exit 0; `--strict`: exit 2"),
    ("annotation-escapes-raw", "an annotation key `../outside/<file>.jpg` that points out of the raw folder",
     "never read: keys only match files under the raw folder (by path, else by a unique file name); unmatched, it is "
     "counted as `annotation_without_image`", "built without it, exit 0; `--strict`: exit 2"),
    ("osm-no-named-streets", "`addressclip build mycity --osm nonames.osm`, an extract whose streets have no names",
     "`addressclip build: error: OSM extract '…/nonames.osm' has no named streets (…); found 3 highway ways "
     "(…), 0 of them named, …`", "exit 2, nothing written"),
]

HEADER = ("| case | input | what the user sees | exit code / behaviour |", "|---|---|---|---|")


def table_lines() -> list[str]:
    return [*HEADER, *(f"| `{name}` | {given} | {sees} | {outcome} |" for name, given, sees, outcome in ROWS)]


def readme_table_lines() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Bad input: what happens\n", 1)
    assert len(section) == 2, "README.md has no section '## Bad input: what happens'"
    body = section[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("|")]


def test_the_readme_table_is_this_list():
    names = [r[0] for r in ROWS]
    assert len(names) == len(set(names)), "case names must be unique"
    readme = readme_table_lines()
    in_readme = [m.group(1) for line in readme if (m := re.match(r"\| `([^`]+)` \|", line))]
    assert set(in_readme) - set(names) == set(), "README rows with no test case"
    assert set(names) - set(in_readme) == set(), "test cases missing from the README table"
    assert readme == table_lines(), "README table differs from ROWS: paste `python tests/test_bad_input.py`"
    assert set(CHECKS) == set(names), "every row needs exactly one check"
    assert f"runs every row below ({len(ROWS)})" in " ".join((REPO_ROOT / "README.md").read_text().split())


# ------------------------------------------------------------------------------------------------- helpers
def run_cli(*argv) -> tuple[int, str, str]:
    """`addressclip ARGV` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_line_error(result: tuple[int, str, str], command: str, *fragments: str) -> str:
    """The run returned 2 and printed exactly one line, ``addressclip <command>: error: ...``, holding `fragments`."""
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    assert lines[0].startswith(f"addressclip {command}: error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def must_not_load(monkeypatch) -> None:
    """Fail the test if the dataset, the model or training is touched."""
    def refuse(*args, **kwargs):
        raise AssertionError("loaded something before the configuration was checked")

    for target in ("addressclip.datasets.registry.load_dataset", "addressclip.datasets.load_dataset",
                   "addressclip.train.train", "addressclip.model.create_model", "addressclip.inference.load_model"):
        monkeypatch.setattr(target, refuse)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_PROGRESS", "0")
    monkeypatch.delenv("ADDRESSCLIP_DEBUG", raising=False)


# ------------------------------------------------------------------------------------------------- training
def check_train_unknown_dataset(monkeypatch):
    must_not_load(monkeypatch)
    one_line_error(run_cli("train", "--dataset", "atlantis"), "train", "unknown dataset 'atlantis'; valid: helsinki-synth")


def check_train_unknown_backbone(monkeypatch, tiny_dataset):
    must_not_load(monkeypatch)
    one_line_error(run_cli("train", "--dataset", tiny_dataset, "--backbone", "vit-huge-9000"), "train",
                   "unknown backbone 'vit-huge-9000'; valid: effnet-lite0-minilm or an open_clip architecture")


def check_train_negative_batch_size(monkeypatch, tiny_dataset):
    must_not_load(monkeypatch)
    one_line_error(run_cli("train", "--dataset", tiny_dataset, "--batch-size", "-5"), "train",
                   "batch_size must be at least 1, got -5")


def check_train_epochs_not_a_number(monkeypatch):
    must_not_load(monkeypatch)
    one_line_error(run_cli("train", "--epochs", "ten"), "train", "argument --epochs: must be an integer, got 'ten'")


def check_train_too_many_blocks(monkeypatch, tiny_dataset):
    from addressclip.model import tower_blocks

    counts = tower_blocks("effnet-lite0-minilm")  # what the architecture says, before any weights are read
    assert counts == {"image": 7, "text": 6}  # timm efficientnet_lite0's 7 stages, MiniLM-L6's 6 layers
    must_not_load(monkeypatch)
    one_line_error(run_cli("train", "--dataset", tiny_dataset, "--train-image", "last:99"), "train",
                   "train_image 'last:99' asks for the last 99 blocks, but backbone effnet-lite0-minilm's image tower "
                   "has 7; valid: all, none, proj, last:0 .. last:7")
    one_line_error(run_cli("train", "--dataset", tiny_dataset, "--train-text", "last:7"), "train",
                   "train_text 'last:7' asks for the last 7 blocks, but backbone effnet-lite0-minilm's text tower has 6")


def check_train_debug(monkeypatch, tiny_dataset):
    must_not_load(monkeypatch)
    code, _, err = run_cli("train", "--dataset", tiny_dataset, "--batch-size", "-5", "--debug")
    assert code == 2 and err.startswith("Traceback (most recent call last):")
    assert err.strip().splitlines()[-1] == "addressclip train: error: batch_size must be at least 1, got -5"


def check_config_wrong_type(tiny_dataset):
    from addressclip.config import TrainConfig
    from addressclip.errors import UserError

    with pytest.raises(UserError, match=r"^epochs must be an integer, got 'ten'$"):
        TrainConfig.from_dict({"dataset": str(tiny_dataset), "epochs": "ten"})
    with pytest.raises(ValueError, match=r"^augment must be True or False, got 'yes'$"):
        TrainConfig.from_dict({"dataset": str(tiny_dataset), "augment": "yes"})
    with pytest.raises(ValueError, match=r"^extra_datasets must be a list of strings, got 'kotka-synth'$"):
        TrainConfig.from_dict({"dataset": str(tiny_dataset), "extra_datasets": "kotka-synth"})
    assert TrainConfig.from_dict({"dataset": tiny_dataset, "lr": 1}).dataset == str(tiny_dataset)  # a Path; an int lr


# ------------------------------------------------------------------------------------------------ notebooks
def run_cells(notebook: str, capsys, **given: str):
    """`first_cells` for a notebook that must fail there: (the failing cell's result, what it printed)."""
    _, result, printed = first_cells(notebook, capsys, **given)
    if result.success:
        raise AssertionError(f"{notebook} with {given} did not fail")
    return result, printed


def one_line_cell_error(printed: str, line: str) -> None:
    lines = [x for x in printed.splitlines() if x.strip()]
    assert lines == [line], printed


def check_notebook_epochs_ten(tmp_path):
    """The real thing: papermill, the notebook's kernel."""
    import nbformat
    import papermill

    out = tmp_path / "02_train.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failed:
        papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "02_train.ipynb"), str(out),
                                   parameters={"epochs": "ten"}, kernel_name="python3", progress_bar=False,
                                   cwd=str(REPO_ROOT / "notebooks"))
    line = "UserError: epochs must be an integer or None, got 'ten'"
    assert failed.value.traceback == [line] and str(failed.value).rstrip().endswith(line)
    errors = [o for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert [e.traceback for e in errors] == [[line]]


def check_notebook_unknown_parameter(capsys):
    result, printed = run_cells("02_train.ipynb", capsys, epoch="3")
    one_line_cell_error(printed, "UserError: unknown notebook parameters ['epoch']; valid: profile, dataset, backbone, "
                                 "pretrained, align_dataset, align_epochs, epochs, batch_size, lr, lr_min, warmup_steps, "
                                 "train_image, train_text, image_size, image_resize_mode, train_splits, augment, w_address, "
                                 "w_caption, w_geography, geography_form, label_aware, seed, device, run_name, "
                                 "expect_learning")


def check_notebook_unknown_profile(capsys):
    result, printed = run_cells("02_train.ipynb", capsys, profile="fast")
    one_line_cell_error(printed, "UserError: unknown profile 'fast'; valid: smoke, demo, paper")


def check_notebook_unknown_dataset(capsys):
    result, printed = run_cells("03_evaluate.ipynb", capsys, dataset="atlantis")
    assert len(printed.strip().splitlines()) == 1, printed
    assert printed.startswith("ValueError: unknown dataset 'atlantis'; valid names: helsinki-synth")


def check_notebook_unknown_experiment(capsys):
    from addressclip.ablations import EXPERIMENTS

    result, printed = run_cells("04_ablations.ipynb", capsys, experiments=["lossess"])
    one_line_cell_error(printed, f"UserError: unknown experiments ['lossess']; valid: {', '.join(EXPERIMENTS)}")


# ------------------------------------------------------------------------------------------- build, evaluate
def check_build_unknown_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path))
    one_line_error(run_cli("build", "atlantis"), "build", "unknown dataset 'atlantis'; valid names: helsinki-synth")
    assert not (tmp_path / "atlantis").exists()


def check_evaluate_k_zero(monkeypatch, run_dir):
    must_not_load(monkeypatch)
    one_line_error(run_cli("evaluate", run_dir, "--dataset", "helsinki-synth-tiny", "-k", "0"), "evaluate",
                   "-k must be at least 1, got 0")


def check_evaluate_unknown_split(monkeypatch, run_dir):
    must_not_load(monkeypatch)
    one_line_error(run_cli("evaluate", run_dir, "--dataset", "helsinki-synth-tiny", "--split", "dev"), "evaluate",
                   "argument --split: invalid choice: 'dev'", "'train', 'val', 'test'")


def check_device_unavailable(monkeypatch, run_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    must_not_load(monkeypatch)
    one_line_error(run_cli("evaluate", run_dir, "--dataset", "helsinki-synth-tiny", "--device", "cuda"), "evaluate",
                   "device 'cuda' requested but CUDA is not available; valid here: auto, cpu")


def check_dataset_card_half_written(tmp_path, tiny_dataset, run_dir, monkeypatch):
    folder = tmp_path / "mycity"
    folder.mkdir()
    shutil.copy(tiny_dataset / "samples.parquet", folder)
    card = (tiny_dataset / "card.json").read_text()
    (folder / "card.json").write_text(card[: len(card) // 2])
    monkeypatch.setattr("addressclip.inference.load_model", lambda *a, **k: pytest.fail("model loaded first"))
    one_line_error(run_cli("evaluate", run_dir, "--dataset", folder), "evaluate",
                   f"{folder / 'card.json'} is not valid JSON (", "the build was interrupted",
                   "addressclip build mycity --overwrite")


# ------------------------------------------------------------------------------------------------ predict
def check_predict_missing_checkpoint(tmp_path):
    one_line_error(run_cli("predict", "--checkpoint", "nowhere", tmp_path), "predict",
                   "no run 'nowhere' (looked for nowhere/model.pt and")


def check_predict_unsafe_checkpoint(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "spec": {}, "payload": object()}, evil)  # arbitrary objects need pickle
    line = one_line_error(run_cli("predict", "--checkpoint", evil, tmp_path), "predict",
                          f"checkpoint {evil} holds pickled Python objects (e.g. object)", "it is not loaded")
    assert "weights_only" not in line


def check_predict_truncated_checkpoint(tmp_path, run_dir):
    broken = tmp_path / "broken-run"
    broken.mkdir()
    data = (run_dir / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 2])
    one_line_error(run_cli("predict", "--checkpoint", broken, tmp_path), "predict",
                   f"checkpoint {broken / 'model.pt'} is truncated or damaged (not a complete PyTorch file)")


def check_predict_unknown_dataset(tmp_path, run_dir, monkeypatch):
    monkeypatch.setattr("addressclip.predict.load_model", lambda *a, **k: pytest.fail("model loaded first"))
    one_line_error(run_cli("predict", "--checkpoint", run_dir, "--dataset", "atlantis", tmp_path), "predict",
                   "unknown dataset 'atlantis'; valid names: helsinki-synth")


def check_candidates_empty(tmp_path, run_dir, monkeypatch):
    listing = tmp_path / "empty.txt"
    listing.write_text("\n   \n\n")
    monkeypatch.setattr("addressclip.predict.load_model", lambda *a, **k: pytest.fail("model loaded first"))
    one_line_error(run_cli("predict", "--checkpoint", run_dir, "--addresses", listing, tmp_path), "predict",
                   f"candidate address file {listing} is empty (expected one address per line)")


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory, tiny_dataset) -> Path:
    """A folder of one ordinary photo and every odd image the table lists, made with Pillow."""
    folder = tmp_path_factory.mktemp("odd_images")
    first = load_dataset(str(tiny_dataset)).split("test")["image"].iloc[0]
    shutil.copy(tiny_dataset / first, folder / "photo.jpg")
    ramp = np.linspace(1000, 60000, 40 * 50).reshape(40, 50).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "deep16.png")
    Image.new("RGB", (64, 48), (200, 30, 30)).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: white once composited
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.dstack([np.full((48, 64), 30, np.uint8), np.zeros((48, 64), np.uint8)]), "LA").save(folder / "la.png")
    palette = Image.new("P", (64, 48), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(folder / "p_transparent.png", transparency=0)
    Image.new("RGB", (12000, 9000), (120, 130, 140)).save(folder / "huge.jpg", quality=80)
    Image.new("1", (20000, 10000), 0).save(folder / "bomb.png")
    noise = Image.effect_noise((128, 96), 60).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG")
    data = buffer.getvalue()
    (folder / "corrupt.jpg").write_bytes(data[: data.index(b"\xff\xda") + 300])  # scan data cut short
    (folder / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (1, 1), (90, 90, 90)).save(folder / "tiny.png")
    return folder


@pytest.fixture(scope="module")
def predicted(odd_images, run_dir, tiny_dataset, tmp_path_factory):
    """One `addressclip predict` over the odd images, with a candidate file that repeats an address and a damaged
    cache file for that list: (status, stdout, stderr, JSON records by file name, candidates)."""
    work = tmp_path_factory.mktemp("predict")
    addresses = load_dataset(str(tiny_dataset)).addresses
    listing = work / "streets.txt"
    listing.write_text("\n".join([*addresses, addresses[0], "  " + addresses[1] + "  "]) + "\n")
    key = gallery_key(cache.file_digest(run_dir / "model.pt"), addresses, ADDRESS_TEMPLATE)
    damaged = run_dir / "gallery_cache" / f"gallery-{key}.pt"
    cache.save(damaged, {"embeddings": torch.zeros(len(addresses), 256)})
    damaged.write_bytes(damaged.read_bytes()[:200])  # cut short, as a full disk or a killed copy leaves it
    out = work / "predictions.json"
    code, stdout, stderr = run_cli("predict", "--checkpoint", run_dir, "--addresses", listing, "-k", "3",
                                   "--device", "cpu", odd_images, "-o", out)
    records = {Path(r["image"]).name: r for r in json.loads(out.read_text())}
    return code, stdout, stderr, records, addresses, damaged


def _predicted_ok(predicted, *names):
    code, _, stderr, records, addresses, _ = predicted
    assert code == 0 and "Traceback" not in stderr
    for name in names:
        ranked = [p["address"] for p in records[name]["predictions"]]
        assert len(ranked) == 3 and set(ranked) <= set(addresses), (name, records[name])


def check_candidates_duplicates(predicted):
    code, _, stderr, records, addresses, _ = predicted
    _predicted_ok(predicted, "photo.jpg")
    assert f"{len(addresses)} candidate addresses" in stderr  # the repeats were dropped
    for record in records.values():
        ranked = [p["address"] for p in record.get("predictions", [])]
        assert len(ranked) == len(set(ranked))


def check_image_16_bit(predicted, odd_images):
    assert Image.open(odd_images / "deep16.png").mode == "I;16"
    _predicted_ok(predicted, "deep16.png")
    grey = np.asarray(open_image(odd_images / "deep16.png"))
    assert grey.shape == (40, 50, 3) and grey.min() == 0 and grey.max() == 255


def check_image_cmyk(predicted, odd_images):
    assert Image.open(odd_images / "cmyk.jpg").mode == "CMYK"
    _predicted_ok(predicted, "cmyk.jpg")
    r, g, b = np.asarray(open_image(odd_images / "cmyk.jpg")).reshape(-1, 3).mean(axis=0)
    assert r > 170 and g < 70 and b < 70  # still red


def check_image_alpha(predicted, odd_images):
    _predicted_ok(predicted, "rgba.png", "la.png", "p_transparent.png")
    assert Image.open(odd_images / "p_transparent.png").info.get("transparency") == 0
    for name in ("rgba.png", "la.png", "p_transparent.png"):
        assert np.asarray(open_image(odd_images / name)).min() == 255, name  # transparent over white


def check_image_huge(predicted, odd_images):
    _, _, stderr, *_ = predicted
    _predicted_ok(predicted, "huge.jpg")
    with pytest.warns(Image.DecompressionBombWarning):
        assert Image.open(odd_images / "huge.jpg").size == (12000, 9000)
    assert ("addressclip predict: warning: DecompressionBombWarning: Image size (108000000 pixels) exceeds limit of "
            "89478485 pixels") in stderr
    with pytest.warns(Image.DecompressionBombWarning):
        assert open_image(odd_images / "huge.jpg", size_hint=128).size == (1500, 1125)


def _skipped(predicted, name: str, reason: str) -> None:
    code, _, stderr, records, *_ = predicted
    assert code == 0 and records[name]["error"].startswith(reason)
    lines = [line for line in stderr.splitlines() if line.startswith("skipped ") and f"/{name}: " in line]
    assert len(lines) == 1 and reason in lines[0], stderr


def check_image_decompression_bomb(predicted):
    _skipped(predicted, "bomb.png", "DecompressionBombError: Image size (200000000 pixels) exceeds limit of 178956970")


def check_image_corrupt_jpeg(predicted):
    _skipped(predicted, "corrupt.jpg", "OSError: image file is truncated")


def check_image_zero_byte(predicted):
    _skipped(predicted, "empty.jpg", "UnidentifiedImageError: cannot identify image file")


def check_image_tiny(predicted, odd_images):
    _, _, stderr, *_ = predicted
    _predicted_ok(predicted, "tiny.png")
    assert (f"addressclip predict: warning: {odd_images / 'tiny.png'} is 1x1 px, smaller than 16 px on a side: its "
            "prediction is unlikely to be meaningful") in stderr.splitlines()
    from addressclip.predict import small_images  # what AddressLocator.predict warns about (SmallImageWarning)

    assert small_images([odd_images / "tiny.png", odd_images / "photo.jpg"]) == {str(odd_images / "tiny.png"): "1x1"}


def check_cache_damaged(predicted):
    _, _, stderr, _, _, damaged = predicted
    _predicted_ok(predicted, "photo.jpg")
    line = next(x for x in stderr.splitlines() if "DamagedCacheWarning" in x)
    assert line.startswith(f"addressclip predict: warning: DamagedCacheWarning: {damaged} cannot be read (")
    assert line.endswith(f"moved aside to {damaged.name}.damaged and recomputed")
    assert damaged.with_name(damaged.name + ".damaged").exists() and cache.load(damaged)["embeddings"].shape[0] == 9


# ------------------------------------------------------------------------------------------------ raw data
def _build(*argv) -> tuple[tuple[int, str, str], dict | None]:
    result = run_cli("build", *argv)
    folder = Path(result[1].strip().splitlines()[-1]) if result[0] == 0 else None
    return result, json.loads((folder / "card.json").read_text()) if folder else None


def _raw_case(monkeypatch, tmp_path, name: str, raw: Path, reason: str, example: str, strict_text: str):
    """Build `name` from `raw` twice: skipping (the card counts `reason`, with `example`) and --strict (one line)."""
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path / "data"))
    (code, _, err), card = _build(name, "--raw-dir", raw)
    assert code == 0 and "Traceback" not in err, err
    assert reason in card["skipped"] and any(example in e for e in card["skipped"][reason]["examples"])
    assert f"{reason} {card['skipped'][reason]['count']}" in err.splitlines()[-1]  # the summary line
    one_line_error(run_cli("build", name, "--raw-dir", raw, "--strict", "--overwrite"), "build", strict_text)
    return card


def check_pitts_mat_without_dbstruct(tmp_path, monkeypatch):
    raw = make_pitts(tmp_path / "raw")
    scipy.io.savemat(raw / "pitts250k_val.mat", {"something": np.zeros(3)})
    card = _raw_case(monkeypatch, tmp_path, "pitts-ial", raw, "malformed_mat_file", "no variable 'dbStruct'",
                     "malformed_mat_file: NetVLAD .mat file unreadable or without a usable dbStruct: pitts250k_val.mat: "
                     "ValueError: no variable 'dbStruct' (found ['something'])")
    assert {r: v["count"] for r, v in card["skipped"].items()} == {"malformed_mat_file": 1, "no_coordinates": 3}


def check_pitts_mat_mismatched_lengths(tmp_path, monkeypatch):
    raw = make_pitts(tmp_path / "raw")
    place, views = "000001", PITTS_VIEWS  # pitts250k_val.mat lists one panorama: 3 views
    cell = np.empty((len(views), 1), dtype=object)
    cell[:, 0] = [pitts_rel(place, pitch, yaw) for pitch, yaw in views]
    utm = np.array([[584560.0] * (len(views) - 1), [4477010.0] * (len(views) - 1)])  # one column short
    scipy.io.savemat(raw / "pitts250k_val.mat", {"dbStruct": {"whichSet": "val", "dbImageFns": cell, "utmDb": utm,
                                                              "numImages": float(len(views))}})
    _raw_case(monkeypatch, tmp_path, "pitts-ial", raw, "malformed_mat_file",
              "utmDb has shape (2, 2), expected (2, 3) to match dbImageFns", "utmDb has shape (2, 2), expected (2, 3)")


def check_sfxl_too_few_fields(tmp_path, monkeypatch):
    raw, annotations = make_sf(tmp_path)
    annotations.rename(raw / "annotations")  # the default place
    rel = "train/37.77/@0544388.51@4172758.25@10@S.jpg"
    write_jpeg(raw / "processed" / rel)
    data = json.loads((raw / "annotations" / "sf_base_train.json").read_text())
    data[rel] = ["A street view", "Near Market Street.", "Market Street & 9th Street, SoMa"]
    (raw / "annotations" / "sf_base_train.json").write_text(json.dumps(data))
    _raw_case(monkeypatch, tmp_path, "sf-ial-base", raw, "unparseable_file_name", "(5 '@' fields, expected at least 10)",
              "unparseable_file_name: file name does not follow the dataset's naming convention: " + rel)


def check_annotation_escapes_raw(tmp_path, monkeypatch):
    raw, annotations = make_sf(tmp_path)
    annotations.rename(raw / "annotations")
    outside = tmp_path / "outside" / "@0551000.00@4180000.00@10@S@037.77000@-122.43000@PanoOut@@0@@@@201311@@.jpg"
    write_jpeg(outside)  # a real image, next to the raw folder: it must never be read
    key = f"../outside/{outside.name}"
    data = json.loads((raw / "annotations" / "sf_base_train.json").read_text())
    data[key] = ["A street view", "Near Valencia Street.", "Valencia Street, Mission"]
    (raw / "annotations" / "sf_base_train.json").write_text(json.dumps(data))
    card = _raw_case(monkeypatch, tmp_path, "sf-ial-base", raw, "annotation_without_image", outside.name,
                     "annotation_without_image: annotated image file not found: " + key)
    assert sum(card["images"].values()) == 8  # the fixture's own images, and not the one outside


def check_osm_no_named_streets(tmp_path, monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_DATA", str(tmp_path / "data"))
    streets = """
  <way id="100" version="1"><nd ref="1"/><nd ref="5"/><nd ref="2"/><tag k="highway" v="residential"/></way>
  <way id="101" version="1"><nd ref="3"/><nd ref="5"/><nd ref="4"/><tag k="highway" v="tertiary"/></way>
  <way id="102" version="1"><nd ref="3"/><nd ref="2"/><tag k="highway" v="footway"/></way>
"""
    extract = write_osm(tmp_path / "nonames.osm", NODES + streets + BUILDING)
    one_line_error(run_cli("build", "mycity", "--osm", extract), "build",
                   f"OSM extract {str(extract)!r} has no named streets", "found 3 highway ways", "0 of them named")
    assert not (tmp_path / "data" / "mycity").exists()


CHECKS = {name.replace("check_", "").replace("_", "-"): f for name, f in dict(globals()).items()
          if name.startswith("check_") and callable(f)}


@pytest.mark.parametrize("case", [r[0] for r in ROWS])
def test_bad_input(case, request):
    check = CHECKS[case]
    check(**{p: request.getfixturevalue(p) for p in inspect.signature(check).parameters})


if __name__ == "__main__":
    sys.stdout.write("\n".join(table_lines()) + "\n")
