import os
import sys
from pathlib import Path


def share_cores_among_workers() -> None:
    """Under pytest-xdist (`make test` runs 2 workers), give each worker its own share of this process's cores,
    before torch or numpy start their thread pools: a worker then computes with as many threads as it has cores,
    and so do the notebook kernels and subprocesses it starts (they inherit the mask). Two workers each running
    2 threads on 2 cores would contend: small operations were measured up to 8x slower so (threads.py)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count or not hasattr(os, "sched_setaffinity"):
        return
    cores, index, count = sorted(os.sched_getaffinity(0)), int(worker.removeprefix("gw")), int(count)
    share = cores[index::count] or [cores[index % len(cores)]]
    os.sched_setaffinity(0, share)
    if "torch" in sys.modules:  # its pool was sized before the mask changed
        sys.modules["torch"].set_num_threads(len(share))


share_cores_among_workers()

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fixtures import make_tiny_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="session")
def default_model():
    from addressclip.model import create_model

    return create_model(train_image="last:2", train_text="last:1")



@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs pytest-xdist: each test file stays on one worker, so a module's fixtures (the paper rehearsal,
    the own-city journey) are built once, and the notebooks all stay on one, in order (03 and 05 read the run that
    02 trains). pytest-xdist's own ``--dist loadgroup`` would say so with marks, but it cannot rename pytest 9.2's
    node ids, so its groups are lost."""
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "notebooks" if file.startswith("notebooks/") else file

    return NotebooksTogether(config, log)
