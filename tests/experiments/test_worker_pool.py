"""workers=N trains the runs in processes and gives the sequential experiment's numbers."""

import pandas as pd
import pytest
import torch
from experiment_helpers import InterruptRun, mlp, small_digits, two_losses
from torch import nn

from kerastorch.experiments import compare_losses
from kerastorch.experiments.worker_pool import start_method

pytestmark = pytest.mark.skipif(start_method() != "fork",
                                reason="the tests pass lambdas and callbacks, which need fork")


def assert_same(a, b):
    for name in ("history", "report", "runs"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_two_workers_equal_one_under_one_thread():
    assert torch.get_num_threads() == 1  # tests/conftest.py; thread counts change last bits
    train, val = small_digits()
    make = lambda: mlp()  # noqa: E731 -- a lambda reaches forked workers
    sequential = compare_losses(make, two_losses(), train, val, epochs=3, seeds=2, patience=1)
    parallel = compare_losses(make, two_losses(), train, val, epochs=3, seeds=2, patience=1,
                              workers=2)
    assert_same(sequential, parallel)


class BadLoss(nn.Module):
    def forward(self, y_pred, y_true):
        raise ValueError("this loss fails in its worker")


def test_an_error_in_a_worker_is_raised_here():
    train, val = small_digits()
    with pytest.raises(ValueError, match="this loss fails in its worker"):
        compare_losses(mlp, {"ce": nn.CrossEntropyLoss(), "bad": BadLoss()}, train, val,
                       epochs=1, seeds=2, workers=2)


def test_an_interrupted_worker_stops_the_experiment_and_finished_runs_are_kept(tmp_path):
    train, val = small_digits()
    losses = two_losses()
    with pytest.raises(KeyboardInterrupt,
                       match="interrupted in a worker process; the finished runs are kept"):
        compare_losses(mlp, losses, train, val, epochs=2, seeds=2, workers=2,
                       log_dir=tmp_path, callbacks=[InterruptRun(losses["smooth"])])
    assert (tmp_path / "experiment.json").exists() and not (tmp_path / "runs.csv").exists()
    kept = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert not any(name.startswith("smooth") for name in kept)  # never a partial run
    resumed = compare_losses(mlp, losses, train, val, epochs=2, seeds=2, workers=2,
                             log_dir=tmp_path)
    whole = compare_losses(mlp, losses, train, val, epochs=2, seeds=2)
    assert_same(resumed, whole)


def test_without_fork_what_does_not_pickle_is_named_before_training(monkeypatch):
    from kerastorch.experiments import worker_pool

    monkeypatch.setattr(worker_pool, "start_method", lambda: "spawn")
    train, val = small_digits()
    with pytest.raises(TypeError, match="workers > 1 starts processes by 'spawn'.*no lambdas"):
        compare_losses(lambda: mlp(), two_losses(), train, val, epochs=1, workers=2)


def test_one_missing_run_still_trains_in_a_worker(tmp_path, monkeypatch):
    from kerastorch.experiments import worker_pool

    train, val = small_digits()
    compare_losses(mlp, {"ce": nn.CrossEntropyLoss()}, train, val, epochs=1, workers=2,
                   log_dir=tmp_path)
    pools = []
    get_context = worker_pool.multiprocessing.get_context
    monkeypatch.setattr(worker_pool.multiprocessing, "get_context",
                        lambda method: pools.append(method) or get_context(method))
    for path in (tmp_path / "runs").iterdir():
        path.unlink()
    compare_losses(mlp, {"ce": nn.CrossEntropyLoss()}, train, val, epochs=1, workers=2,
                   log_dir=tmp_path)
    assert pools == ["fork"]  # one thread, like the runs it joins
