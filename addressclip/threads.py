"""CPU threads and worker processes: every setting chosen here, and nowhere else.

- One run in one process (training, evaluation, prediction): torch's intra-op threads = the cores this process
  may use (`cores`), torch's own default, made explicit so that a run records what it used.
- A sweep of independent runs (the ablation variants and seeds, the baselines): one process per core, each with
  one intra-op thread (`sweep_processes`, `single_threaded`). The operations of a small model are too small to
  split well across threads: on 2 cores, 2 single-threaded runs side by side finish well before the same 2 runs
  one after the other with 2 threads each (bench/bench_threads.py). A sweep's numbers then also do not depend on
  the machine's core count: its runs always sum in the order of one thread.
- ``ADDRESSCLIP_PROCESSES`` sets the processes of a sweep (1: one after another in this process, still with one
  intra-op thread each, so the numbers are the same).
"""
from __future__ import annotations

import contextlib
import os

PROCESSES_ENV = "ADDRESSCLIP_PROCESSES"


def cores() -> int:
    """CPU cores this process may use: its affinity mask (a container's or taskset's limit), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sweep_processes(jobs: int) -> int:
    """Processes for a sweep of `jobs` independent runs: one per core (``ADDRESSCLIP_PROCESSES`` overrides), never
    more than there are jobs."""
    value = os.environ.get(PROCESSES_ENV)
    if value is not None:
        try:
            wanted = int(value)
        except ValueError:
            wanted = 0
        if wanted < 1:
            from .errors import UserError

            raise UserError(f"{PROCESSES_ENV} must be a whole number >= 1, got {value!r}")
    else:
        wanted = cores()
    return max(1, min(wanted, jobs))


def single_threaded() -> None:
    """Make this process compute with one thread (a sweep's worker process): torch's intra-op threads, and the
    BLAS and OpenMP pools numpy and scikit-learn use (the linear probe's solver), which torch's setting does not
    reach: left alone they start a thread per core and crowd the sweep's other processes."""
    import threadpoolctl
    import torch

    torch.set_num_threads(1)
    threadpoolctl.threadpool_limits(1)


@contextlib.contextmanager
def intra_op_threads(n: int):
    """torch's intra-op threads, and numpy's and scikit-learn's thread pools, set to `n` inside the block, restored
    after it."""
    import threadpoolctl
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpoolctl.threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
