"""CPU threads and worker processes: every setting chosen here, and nowhere else.

- One run in one process (training, evaluation, prediction): torch's intra-op threads = the cores this process
  may use (`cores`), torch's own default, made explicit so that a run records what it used.
- A sweep of independent runs (the ablation variants and seeds, the baselines): one process per core, each with
  one intra-op thread (`sweep_processes`, `single_threaded`). The operations of a small model are too small to
  split well across threads: on 2 cores, 2 single-threaded runs side by side finish well before the same 2 runs
  one after the other with 2 threads each (bench/bench_threads.py). A sweep's numbers then also do not depend on
  the machine's core count: its runs always sum in the order of one thread.
- ``ADDRESSCLIP_PROCESSES`` sets the processes of a sweep (1: one after another in this process, still with one
  intra-op thread each on a CPU, so the numbers are the same).
- A sweep whose jobs compute on a GPU (the paper profile's ablations) runs them one after another in this process,
  with every core: side by side, each process would hold a model, its optimizer and its batches in the one GPU's
  memory (a ViT-B/16 fine-tune at batch 256 takes tens of GB), and a job's images are decoded by the cores
  (`loader_workers`), which one thread each would starve. ``ADDRESSCLIP_PROCESSES`` still overrides.
- A process beside a sweep (`make demo` runs 05 beside 04's) computes with one thread: the Makefile starts it with
  ``OMP_NUM_THREADS=1``. With a thread per core, its threads spin-wait for cores the sweep holds, and slow the
  sweep too: beside it (bench/bench_last_phase.py), 05 took 127.8 s with 2 threads and 48.6 s with one, and the
  CoOp seeds training beside 05 105-112 s and 77 s.
- Reading images for a model (training, evaluation, prediction, features: `loader_workers`, `loader_options`):
  on a CPU, no DataLoader worker: the images are decoded in the process itself, between the encoder's batches,
  and the encoder keeps every core as its intra-op threads. The encoder saturates the cores, so a decoding worker
  cannot overlap with it: it takes a core from the encoder's threads while they wait for each other. Measured on
  2 cores (helsinki-synth test, 1,584 images, the offline default model, bench/bench_eval.py, medians of 5 runs
  on one day): evaluation at 0.75-0.87x the bare image encoder with 0 workers, 0.70x with 1 and 0.76x with 2:
  workers buy nothing here, and without them no process starts and no batch crosses shared memory. On CUDA the
  encoder runs on the GPU and the cores are free to decode: one worker per core but one (which the main process
  keeps, to pin batches and launch the GPU's work), batches in pinned memory. A decode-only pass (`image_check`)
  has nothing to overlap with: one worker per core. "Cores" are the process's own (`process_cores`): one in a
  sweep's job, the node's divided among torchrun's local ranks; never more workers than batches.
  ``ADDRESSCLIP_WORKERS`` or an explicit ``num_workers`` overrides. Each DataLoader serves one pass, so its workers
  are not kept (``persistent_workers`` would only hold processes between passes), and prefetching stays at torch's
  2 batches a worker.
  Without augmentation the worker count never changes a number; with ``augment=True`` each worker draws its own
  random crops, so the count is part of what made a run's numbers (recorded in its params), and a run resumed
  with another count goes on with other crops.
"""
from __future__ import annotations

import contextlib
import os

PROCESSES_ENV = "ADDRESSCLIP_PROCESSES"
WORKERS_ENV = "ADDRESSCLIP_WORKERS"


def cores() -> int:
    """CPU cores this process may use: its affinity mask (a container's or taskset's limit), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _env_count(name: str, least: int) -> int | None:
    """The whole number in environment variable `name` (None if unset); a `UserError` below `least`."""
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        wanted = int(value)
    except ValueError:
        wanted = least - 1
    if wanted < least:
        from .errors import UserError

        raise UserError(f"{name} must be a whole number >= {least}, got {value!r}")
    return wanted


def sweep_processes(jobs: int, device="cpu") -> int:
    """Processes for a sweep of `jobs` independent runs on `device`: one per core on a CPU, one on CUDA (see the
    module's docstring); ``ADDRESSCLIP_PROCESSES`` overrides. Never more than there are jobs."""
    wanted = _env_count(PROCESSES_ENV, 1)
    if wanted is None:
        wanted = 1 if is_cuda(device) else cores()
    return max(1, min(wanted, jobs))


def is_cuda(device) -> bool:
    return str(device).startswith("cuda")


_share: int | None = None  # cores this process was given by a sweep (`single_threaded`, `intra_op_threads`)


def process_cores() -> int:
    """The cores this process may use for itself: 1 in a sweep's job (its other processes hold the rest), the
    node's cores shared among torchrun's local ranks (``LOCAL_WORLD_SIZE``), otherwise `cores`."""
    if _share is not None:
        return _share
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    return max(1, cores() // max(1, local))


def loader_workers(device, decode_only: bool = False, batches: int | None = None) -> int:
    """DataLoader worker processes that decode images for a model on `device` (see the module's docstring), from
    the process's own cores (`process_cores`): on a CPU none; on CUDA all but one; for a decode-only pass all of
    them (none when that is one). Never more than the `batches` to read. ``ADDRESSCLIP_WORKERS`` overrides."""
    wanted = _env_count(WORKERS_ENV, 0)
    if wanted is None:
        own = process_cores()
        if decode_only:
            wanted = own if own > 1 else 0
        else:
            wanted = own - 1 if is_cuda(device) else 0
    return wanted if batches is None else min(wanted, batches)


def loader_options(device, num_workers: int | None = None, decode_only: bool = False,
                   batches: int | None = None) -> dict:
    """DataLoader keyword arguments for reading images to a model on `device`: ``num_workers`` (None:
    `loader_workers`) and ``pin_memory`` (on CUDA, so that a batch copies to the GPU asynchronously)."""
    workers = loader_workers(device, decode_only, batches) if num_workers is None else num_workers
    return {"num_workers": workers, "pin_memory": is_cuda(device)}


def single_threaded() -> None:
    """Make this process compute with one thread (a sweep's worker process): torch's intra-op threads, and the
    BLAS and OpenMP pools numpy and scikit-learn use (the linear probe's solver), which torch's setting does not
    reach: left alone they start a thread per core and crowd the sweep's other processes."""
    import threadpoolctl
    import torch

    global _share
    torch.set_num_threads(1)
    threadpoolctl.threadpool_limits(1)
    _share = 1  # nor DataLoader workers from cores the sweep's other processes use


@contextlib.contextmanager
def intra_op_threads(n: int):
    """torch's intra-op threads, and numpy's and scikit-learn's thread pools, set to `n` inside the block, restored
    after it."""
    import threadpoolctl
    import torch

    global _share
    before, share_before = torch.get_num_threads(), _share
    torch.set_num_threads(n)
    _share = n
    try:
        with threadpoolctl.threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
        _share = share_before
