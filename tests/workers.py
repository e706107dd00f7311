"""How `make test` spreads the suite over pytest-xdist workers. Both conftest.py files (tests/ and notebooks/) import
this module first, so `pytest notebooks -n 2` gets it as well as `make test`.

- Each worker computes on its own share of the cores (Linux), set before torch or numpy size their thread pools; the
  notebook kernels and subprocesses a worker starts inherit it. Two workers each running 2 threads on 2 cores would
  contend (issue 13 measured small operations up to 8x slower so). Sweeps (04's runs and baselines) still run side
  by side in as many processes as the machine's cores would give them (``ADDRESSCLIP_PROCESSES``), so that path is
  tested as `make demo` runs it.
- With the default ``--dist load``, a test file's tests stay on one worker (a module's fixtures, such as the paper
  rehearsal's, are built once) and the notebooks all stay on one, in collection order: 03 and 05 read the run that 02
  trains. pytest-xdist's own ``--dist loadgroup`` would say this with marks, but it renames node ids in a way pytest
  9.2 no longer reads, and its groups are silently lost. Another ``--dist`` gets pytest-xdist's own scheduler.
"""
from __future__ import annotations

import contextlib
import os
import sys

import pytest

GIVEN_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []  # before share_cores


def share_cores() -> None:
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit()) or not GIVEN_CORES:
        return
    cores, count = GIVEN_CORES, int(count)
    index = int(worker[2:]) % count  # a worker restarted after a crash gets a new id
    share = cores[index::count] or [cores[index % len(cores)]]  # more workers than cores: some share one
    os.sched_setaffinity(0, share)
    os.environ.setdefault("ADDRESSCLIP_PROCESSES", str(len(cores)))  # addressclip.threads.PROCESSES_ENV
    if "torch" in sys.modules:  # its pool was sized before the mask changed
        sys.modules["torch"].set_num_threads(len(share))


share_cores()  # once per process, at the first import


@contextlib.contextmanager
def given_cores():
    """Inside the block this process has all the cores it was given before `share_cores` (for a test of what a
    process does with several cores); the worker's share again after it."""
    if not GIVEN_CORES:
        yield
        return
    share = os.sched_getaffinity(0)
    os.sched_setaffinity(0, GIVEN_CORES)
    try:
        yield
    finally:
        os.sched_setaffinity(0, share)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "notebooks" if file.startswith("notebooks/") else file

    return NotebooksTogether(config, log)
