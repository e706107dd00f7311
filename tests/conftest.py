import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from workers import pytest_xdist_make_scheduler  # noqa: E402,F401  (first: it sets this worker's cores)

import pytest  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fixtures import make_tiny_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="session")
def default_model():
    from addressclip.model import create_model

    return create_model(train_image="last:2", train_text="last:1")


@pytest.fixture(scope="module")
def run_dir(tiny_dataset, default_model, tmp_path_factory) -> Path:
    """A run folder holding a model.pt as training writes it, trained on `tiny_dataset` (untrained weights: for
    tests of the plumbing around a run; a test file may define its own)."""
    from addressclip.runs import save_checkpoint

    folder = tmp_path_factory.mktemp("runs") / "tiny-run"
    save_checkpoint(folder / "model.pt", {"model": default_model.clip.state_dict(), "spec": default_model.spec.to_dict(),
                                          "config": {"dataset": str(tiny_dataset)}})
    return folder
