"""lr_find, one-cycle and warm-up schedules sized to the fit, and seed_everything."""

import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from kerastorch import KerasModel, seed_everything
from kerastorch.callbacks import Callback
from kerastorch.lr_finder import smoothed, steepest
from kerastorch.schedules import one_cycle, warmup_cosine


class LrRecorder(Callback):
    """The lr each optimizer step used (read before the step's scheduler update)."""

    def __init__(self):
        self.lrs = []

    def on_train_batch_begin(self, step, logs=None):
        self.lrs.append(self.model.optimizer.param_groups[0]["lr"])


def _classification(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x[:, 0] - x[:, 1] > 0).long()


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))


# -- schedules ------------------------------------------------------------------------

def test_one_cycle_is_torchs_onecycle_sized_to_epochs_steps_and_accumulation():
    x, y = _classification()  # 96 samples, batch 10: 10 batches, 5 optimizer steps (accum 2)
    net = _net()
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    rec = LrRecorder()
    model.fit((x, y), epochs=3, batch_size=10, gradient_accumulation_steps=2,
              lr_scheduler=one_cycle(0.5), callbacks=[rec], ckpt_path=None, quiet=True)
    assert model.lr_scheduler.total_steps == 3 * 5
    # the reference: torch's OneCycleLR over the same 15 steps
    ref_opt = torch.optim.SGD(_net().parameters(), lr=0.1, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.5, total_steps=15,
                                              pct_start=0.25)
    expected = []
    for _ in range(15):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    # the lr a batch starts with; accumulation micro-batches share their step's lr
    per_step = rec.lrs[0::2]
    assert per_step == pytest.approx(expected, rel=1e-12)
    assert 0.49 < max(expected) <= 0.5  # the peak falls between two steps


def test_warmup_cosine_rises_linearly_then_decays_to_the_final_factor():
    x, y = _classification(n=40)
    net = _net()
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.2),
                       lr_scheduler=warmup_cosine(warmup=4, final_factor=0.1))
    rec = LrRecorder()
    model.fit((x, y), epochs=2, batch_size=4, callbacks=[rec], ckpt_path=None, quiet=True)
    lrs = np.array(rec.lrs)  # 20 optimizer steps
    assert len(lrs) == 20
    assert lrs[:5] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert np.all(np.diff(lrs[4:]) <= 1e-12)  # non-increasing after the warm-up
    assert lrs[-1] == pytest.approx(0.02)  # final_factor * lr at the last step
    mid = 4 + (19 - 4) / 2  # half-way through the decay: cos(pi/2) = 0
    assert np.interp(mid, np.arange(20), lrs) == pytest.approx(0.2 * (0.1 + 0.9 * 0.5))


def test_a_schedule_resumes_exactly(tmp_path):
    x, y = _classification()
    kwargs = dict(batch_size=16, patience=None, quiet=True)

    def model():
        net = _net()
        return KerasModel(net, nn.CrossEntropyLoss(),
                          optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
                          lr_scheduler=one_cycle(0.3))

    straight = model()
    torch.manual_seed(1)
    expected = straight.fit((x, y), epochs=4, ckpt_path=str(tmp_path / "a"), **kwargs)
    first = model()
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="training interrupted"):
        first.fit((x, y), epochs=4, ckpt_path=str(tmp_path / "b"), **kwargs,
                  callbacks=[_StopAfter(2)])
    resumed = model()
    history = resumed.fit((x, y), epochs=4, ckpt_path=str(tmp_path / "b"), resume=True,
                          **kwargs)
    pd.testing.assert_frame_equal(history, expected)
    for a, b in zip(straight.net.parameters(), resumed.net.parameters()):
        assert torch.equal(a, b)


class _StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epochs:
            raise KeyboardInterrupt  # as Ctrl-C at the end of epoch 2


@pytest.mark.parametrize("make, match", [
    (lambda: one_cycle(0), r"max_lr must be a finite number > 0"),
    (lambda: one_cycle(0.1, pct_start=1.0), r"pct_start must be a number in \[0, 1\)"),
    (lambda: one_cycle(0.1, anneal_strategy="exp"), r"anneal_strategy must be 'cos' or "),
    (lambda: warmup_cosine(warmup=-1), r"warmup must be an int >= 0"),
    (lambda: warmup_cosine(final_factor=2), r"final_factor must be in \[0, 1\]"),
])
def test_schedule_arguments_are_checked_when_made(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_more_warmup_than_steps_fails_before_any_weight_changes():
    x, y = _classification(n=20)
    net = _net()
    model = KerasModel(net, nn.CrossEntropyLoss(), lr_scheduler=warmup_cosine(warmup=50))
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(ValueError, match=r"warmup=50 is 50 steps, but the fit has only 4"):
        model.fit((x, y), epochs=2, batch_size=10, ckpt_path=None, quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


# -- lr_find ----------------------------------------------------------------------------

def _regression(n=512, d=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def test_lr_find_suggests_within_a_decade_below_the_known_good_lr():
    """Full-batch gradient descent on least squares: the loss's curvature is known
    exactly (the Hessian of the mean squared error is 2/n X^T X), so the good lr is
    1/lambda_max and everything above 2/lambda_max diverges."""
    x, y = _regression()
    torch.manual_seed(0)
    net = nn.Linear(8, 1)
    model = KerasModel(net, nn.MSELoss(), optimizer=torch.optim.SGD(net.parameters(), lr=0.01))
    result = model.lr_find((x, y), start_lr=1e-4, end_lr=10, num_steps=100, batch_size=len(x))
    lam_max = torch.linalg.eigvalsh(2 / len(x) * x.T @ x).max().item()
    good = 1 / lam_max
    assert good / 10 <= result.suggestion <= good
    assert result.suggestion < 2 / lam_max  # never in the diverging range
    history = result.history
    assert list(history.columns) == ["lr", "loss", "smoothed_loss"]
    assert history["lr"].iloc[0] == pytest.approx(1e-4)
    assert np.all(np.diff(np.log(history["lr"])) == pytest.approx(np.log(1e5) / 99))
    assert history["smoothed_loss"].to_numpy() == pytest.approx(
        smoothed(history["loss"], 0.98))
    fig = result.plot()
    assert fig.axes[0].get_xscale() == "log"


def test_lr_find_stops_when_the_loss_diverges():
    x, y = _regression()
    torch.manual_seed(0)
    net = nn.Linear(8, 1)
    model = KerasModel(net, nn.MSELoss(), optimizer=torch.optim.SGD(net.parameters(), lr=0.01))
    result = model.lr_find((x, y), start_lr=1e-3, end_lr=1e3, num_steps=200, batch_size=128,
                           smooth=0.5)
    history = result.history
    assert len(history) < 200
    last = history["smoothed_loss"].iloc[-1]
    assert not math.isfinite(last) or last > 4 * history["smoothed_loss"].iloc[:-1].min()


def test_lr_find_leaves_net_optimizer_scheduler_and_rng_exactly_as_before():
    x, y = _classification()
    net = _net()  # with dropout: the test draws random numbers
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=opt, lr_scheduler=sched)
    model.fit((x, y), epochs=2, ckpt_path=None, quiet=True)  # Adam has state now
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    opt_state = opt.state_dict()
    moments = {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in v.items()}
               for k, v in opt_state["state"].items()}
    groups = [dict(g) for g in opt_state["param_groups"]]
    sched_state = dict(sched.state_dict())
    torch_rng, np_rng, py_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    net.eval()

    result = model.lr_find((x, y), num_steps=30)
    assert len(result.history) > 5
    assert not net.training  # the mode it had
    for k, v in net.state_dict().items():
        assert torch.equal(v, weights[k]), k
    after = opt.state_dict()
    assert after["param_groups"] == groups
    for k, v in after["state"].items():
        for n, t in v.items():
            assert torch.equal(t, moments[k][n]) if torch.is_tensor(t) else t == moments[k][n]
    assert sched.state_dict() == sched_state
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert np.array_equal(np.random.get_state()[1], np_rng[1])
    assert random.getstate() == py_rng


def test_lr_find_restores_the_model_after_an_error_too():
    x, y = _classification()
    net = _net()
    model = KerasModel(net, lambda p, t: (_ for _ in ()).throw(RuntimeError("boom"))
                       if model.optimizer.param_groups[0]["lr"] > 1e-3
                       else nn.functional.cross_entropy(p, t))
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        model.lr_find((x, y), start_lr=1e-5, end_lr=1.0, num_steps=40)
    for k, v in net.state_dict().items():
        assert torch.equal(v, weights[k])
    assert model.optimizer.param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(start_lr=0), ValueError, r"start_lr must be a finite number > 0"),
    (dict(start_lr=1.0, end_lr=0.5), ValueError, r"end_lr must be greater than start_lr"),
    (dict(num_steps=3), ValueError, r"num_steps must be an int >= 5"),
    (dict(smooth=1.0), ValueError, r"smooth must be a number in \[0, 1\)"),
    (dict(diverge=1), ValueError, r"diverge must be None or a number > 1"),
    (dict(shuffle="yes"), TypeError, r"shuffle must be True or False"),
    (dict(epochs=3), TypeError, r"lr_find\(\) got an unexpected keyword argument 'epochs'"),
])
def test_lr_find_bad_arguments(kwargs, error, match):
    x, y = _classification()
    with pytest.raises(error, match=match):
        KerasModel(_net(), nn.CrossEntropyLoss()).lr_find((x, y), **kwargs)


def test_steepest_skips_the_settling_start_and_needs_enough_points():
    lrs = np.geomspace(1e-4, 1, 50)
    losses = 1 / (1 + np.exp(4 * (np.log10(lrs) + 2)))  # a sigmoid falling fastest at 1e-2
    assert steepest(lrs, losses) == pytest.approx(1e-2, rel=0.25)
    # a loss that falls back after a spike past its minimum is not a suggestion
    spiked = np.concatenate([losses, [5.0, 4.0, 3.0, 2.0]])
    assert steepest(np.geomspace(1e-4, 10, 54), spiked) == pytest.approx(
        steepest(np.geomspace(1e-4, 10, 54)[:50], losses))
    assert steepest(lrs, losses[::-1]) is None  # rising from the start: nothing to suggest


# -- seed_everything --------------------------------------------------------------------

class _Noisy(Dataset):
    """Samples drawn from python's, numpy's and torch's RNG (in the worker process)."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.tensor([random.random(), float(np.random.rand()), torch.rand(1).item()])


def test_seed_everything_makes_data_workers_repeatable():
    def draw():
        seed_everything(123)
        loader = DataLoader(_Noisy(), batch_size=4, shuffle=True, num_workers=2)
        return torch.cat(list(loader))

    first, second = draw(), draw()
    assert torch.equal(first, second)
    seed_everything(124)
    assert not torch.equal(first, torch.cat(list(DataLoader(_Noisy(), batch_size=4,
                                                            shuffle=True, num_workers=2))))


def test_two_runs_with_the_same_seed_give_identical_histories():
    x, y = _classification()

    def run():
        seed_everything(5)
        net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
        model = KerasModel(net, nn.CrossEntropyLoss())
        history = model.fit(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True),
                            epochs=3, ckpt_path=None, quiet=True, fast_data=False)
        return history, [p.detach().clone() for p in net.parameters()]

    (h1, w1), (h2, w2) = run(), run()
    pd.testing.assert_frame_equal(h1, h2)
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))


def test_seed_everything_deterministic_switches_torch_to_deterministic_kernels():
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        assert seed_everything(1, deterministic=True) == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


@pytest.mark.parametrize("seed, deterministic, error", [
    ("1", False, TypeError), (1.5, False, TypeError), (-1, False, ValueError),
    (2 ** 32, False, ValueError), (1, "yes", TypeError)])
def test_seed_everything_bad_arguments(seed, deterministic, error):
    with pytest.raises(error, match="seed|deterministic"):
        seed_everything(seed, deterministic=deterministic)
