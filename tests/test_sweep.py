"""Sweeps run jobs side by side in single-threaded worker processes, in job order, with the jobs' warnings and
errors brought back."""
import os
import time
import warnings
from pathlib import Path

import pytest
import torch

from addressclip import sweep, threads
from addressclip.errors import UserError
from workers import given_cores


def job_report(job, offset=0):
    if job == "fail":
        raise ValueError("job 'fail' failed")
    if job == 2:
        warnings.warn("job 2 says so", UserWarning)
    return {"job": job + offset, "threads": torch.get_num_threads(), "pid": os.getpid(), "cores": threads.process_cores()}


def test_side_by_side_in_job_order_single_threaded_with_warnings():
    done = []
    with given_cores(), pytest.warns(UserWarning, match="job 2 says so"):  # spawned jobs would start with every core's thread
        results = sweep.run_all(job_report, [0, 1, 2, 3], shared=(10,), processes=2,
                                done=lambda job, result: done.append(job))
    assert [r["job"] for r in results] == [10, 11, 12, 13]
    assert {r["threads"] for r in results} == {1} and os.getpid() not in {r["pid"] for r in results}
    assert sorted(done) == [0, 1, 2, 3]


def quick_or_wait(job, folder):
    """"quick" returns at once; "slow" waits until the sweep has reported "quick" (the marker its `done` writes)."""
    marker = Path(folder) / "quick-reported"
    deadline = time.monotonic() + 60
    while job == "slow" and not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return job == "quick" or marker.exists()


def test_each_job_is_reported_when_it_finishes_not_when_the_sweep_does(tmp_path):
    # the slow job can only end well once the quick one has been reported: it could not if `done` waited for the
    # whole sweep (then it times out and returns False); one worker running both, quick first, also passes
    results = sweep.run_all(quick_or_wait, ["quick", "slow"], shared=(str(tmp_path),), processes=2,
                            done=lambda job, _: job == "quick" and (tmp_path / "quick-reported").touch())
    assert results == [True, True]


def test_one_process_runs_here_with_one_thread_and_restores_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # not 1, whatever this test worker's cores: the restore must show
    try:
        results = sweep.run_all(job_report, [0, 1], processes=1)
        assert {r["pid"] for r in results} == {os.getpid()} and {r["threads"] for r in results} == {1}
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_failing_job_stops_the_sweep_with_its_error():
    with pytest.raises(ValueError, match="job 'fail' failed"):
        sweep.run_all(job_report, [0, "fail", 1], processes=2)
    with pytest.raises(ValueError, match="job 'fail' failed"):
        sweep.run_all(job_report, ["fail"], processes=1)


def test_processes_setting(monkeypatch):
    monkeypatch.delenv(threads.PROCESSES_ENV, raising=False)
    assert threads.sweep_processes(100) == threads.cores() and threads.sweep_processes(1) == 1
    monkeypatch.setattr(threads, "cores", lambda: 4)  # one per core, never more than the jobs
    assert threads.sweep_processes(100) == 4 and threads.sweep_processes(3) == 3
    monkeypatch.setenv(threads.PROCESSES_ENV, "3")
    assert threads.sweep_processes(100) == 3 and threads.sweep_processes(2) == 2
    monkeypatch.setenv(threads.PROCESSES_ENV, "two")
    with pytest.raises(UserError, match="ADDRESSCLIP_PROCESSES must be a whole number >= 1, got 'two'"):
        threads.sweep_processes(4)


def test_gpu_jobs_run_one_after_another_here_with_every_thread(monkeypatch):
    """Side by side, GPU jobs would each hold a model and batches in the one GPU's memory (the paper profile's
    ViT-B/16 fine-tunes: out of memory), and one thread each would starve their image decoding."""
    monkeypatch.delenv(threads.PROCESSES_ENV, raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 16)
    assert threads.sweep_processes(40, "cuda") == 1 and threads.sweep_processes(40, torch.device("cuda", 1)) == 1
    assert threads.sweep_processes(40, "cpu") == 16
    monkeypatch.setenv(threads.PROCESSES_ENV, "2")  # the user's setting still wins
    assert threads.sweep_processes(40, "cuda") == 2
    monkeypatch.delenv(threads.PROCESSES_ENV)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        results = sweep.run_all(job_report, [0, 1], device="cuda")  # the jobs here compute nothing on the device
        assert {r["pid"] for r in results} == {os.getpid()} and {r["threads"] for r in results} == {3}
        assert {r["cores"] for r in results} == {16}  # and each job's image loaders may use every core
    finally:
        torch.set_num_threads(before)
