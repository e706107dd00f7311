"""Independent jobs (the ablation runs, the baselines) side by side: one process per core, one intra-op thread each
(`threads`). Results come back in job order and do not depend on how many processes ran them: on a CPU a job
computes with one thread whether it runs in a worker or, with one process, here. Jobs that compute on a GPU run one
after another here, with every core (`threads.sweep_processes`).

Workers are started with "spawn" (a fresh interpreter): forking a process whose torch thread pools already run can
hang. Warnings a job raises in a worker are raised again here, so a notebook still shows them.
"""
from __future__ import annotations

import contextlib
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from . import threads

_shared: tuple = ()  # a worker's copy of the arguments every job shares (a model, a feature bank)


def _start_worker(shared: tuple) -> None:
    global _shared
    threads.single_threaded()
    _shared = shared


def _call(function: Callable, job: Any, shared: tuple | None = None):
    """function(job, *shared), with the warnings it raised (message, category), to raise again in the parent."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        value = function(job, *(_shared if shared is None else shared))
    return value, [(str(w.message), w.category) for w in caught]


def run_all(function: Callable, jobs: Sequence, shared: tuple = (), done: Callable[[Any, Any], None] | None = None,
            processes: int | None = None, device="cpu") -> list:
    """``[function(job, *shared) for job in jobs]``, computed in `processes` worker processes (default
    `threads.sweep_processes` for the jobs' `device`), each job with one intra-op thread; on CUDA, one after
    another here, with the threads and loader workers of one process alone. `done(job, result)` is called as each job
    finishes (e.g. to log it). The first job to fail stops the sweep: jobs still waiting are cancelled (a job already
    handed to a worker process runs to its end first) and its exception is raised here; finished jobs have kept what
    they wrote."""
    jobs = list(jobs)
    n = processes or threads.sweep_processes(len(jobs), device)
    results: list = [None] * len(jobs)

    def keep(i: int, outcome) -> None:
        value, caught = outcome
        for message, category in caught:
            warnings.warn(message, category, stacklevel=3)
        results[i] = value
        if done is not None:
            done(jobs[i], value)

    if n <= 1:
        with contextlib.nullcontext() if threads.is_cuda(device) else threads.intra_op_threads(1):
            for i, job in enumerate(jobs):
                keep(i, _call(function, job, shared))
        return results
    import torch.multiprocessing  # its pickler passes tensors through shared memory, not copies

    context = torch.multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=context, initializer=_start_worker, initargs=(shared,)) as pool:
        pending = {pool.submit(_call, function, job): i for i, job in enumerate(jobs)}
        try:
            while pending:
                # each job as it finishes (FIRST_EXCEPTION would hold every result, and `done`, until the last)
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = pending.pop(future)
                    keep(i, future.result())  # raises the job's exception
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return results

