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
