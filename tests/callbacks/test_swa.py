"""SWA: the same average, learning rates and BatchNorm statistics as torch's own SWA loop."""

import copy

import pytest
import torch
from conftest import loader, make_classification
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback
from kerastorch.callbacks.swa import SWA

X, Y = make_classification(n=64, seed=1)
XV, YV = make_classification(n=40, seed=2)


def net_of(batch_norm, seed=0):
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(8)] if batch_norm else []
    return nn.Sequential(nn.Linear(4, 8), *norm, nn.ReLU(), nn.Linear(8, 3))


def make_model(net):
    return KerasModel(net, nn.CrossEntropyLoss(),
                      optimizer=torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.5))


def hand_loop(batch_norm, epochs, swa_start, swa_lr, anneal_epochs=2, bn_each_epoch=False):
    """torch's SWA recipe, written out: per epoch the lr used, the net's state, the average's
    state and (from swa_start) its validation loss."""
    net = net_of(batch_norm)
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.5)
    swa_model = AveragedModel(net)
    swa_scheduler = SWALR(opt, swa_lr, anneal_epochs=anneal_epochs) if swa_lr else None
    lrs, states, averages, val_losses = [], [], [], {}
    for epoch in range(1, epochs + 1):
        lrs.append(opt.param_groups[0]["lr"])
        net.train()
        for xb, yb in loader(X, Y, 8):
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
            opt.zero_grad()
        if epoch >= swa_start:
            swa_model.update_parameters(net)
            if bn_each_epoch:
                update_bn(loader(X, Y, 16), swa_model)
                with torch.no_grad():
                    swa_model.eval()
                    val_losses[epoch] = nn.functional.cross_entropy(swa_model(XV), YV).item()
            if swa_scheduler is not None:
                swa_scheduler.step()
        states.append(copy.deepcopy(net.state_dict()))
        averages.append(copy.deepcopy(swa_model.state_dict()))
    return lrs, states, averages, val_losses, swa_model


class Records(Callback):
    """After SWA's on_epoch_end: the net's state (training weights) and the average's."""

    def __init__(self, swa):
        self.swa, self.states, self.averages = swa, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(copy.deepcopy(self.model.unwrapped_net.state_dict()))
        self.averages.append(copy.deepcopy(self.swa.averaged_model.state_dict()))


def assert_states_close(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_average_and_learning_rates_equal_torchs_swa_loop():
    lrs, states, averages, _, _ = hand_loop(False, epochs=6, swa_start=3, swa_lr=0.05)
    swa = SWA(swa_start=3, swa_lr=0.05, anneal_epochs=2, validate_with_swa=False)
    rec = Records(swa)
    history = make_model(net_of(False)).fit(loader(X, Y, 8), epochs=6, ckpt_path=None,
                                            patience=None, quiet=True, callbacks=[swa, rec])
    assert history["lr"].tolist() == pytest.approx(lrs, rel=1e-12)
    assert lrs[:3] == [0.2] * 3 and lrs[-1] == pytest.approx(0.05)  # annealed to swa_lr
    for epoch in range(6):
        assert_states_close(rec.states[epoch], states[epoch])
        assert_states_close(rec.averages[epoch], averages[epoch])
    assert int(swa.averaged_model.n_averaged) == 4  # epochs 3, 4, 5, 6
    assert not torch.equal(swa.averaged_model.module[0].weight, rec.states[-1]["0.weight"])


def test_batch_norm_validation_uses_the_average_with_its_own_statistics():
    lrs, states, averages, val_losses, _ = hand_loop(True, epochs=4, swa_start=2, swa_lr=None,
                                                     bn_each_epoch=True)
    swa = SWA(swa_start=2, bn_loader=loader(X, Y, 16))
    rec = Records(swa)
    history = make_model(net_of(True)).fit(loader(X, Y, 8), loader(XV, YV, 40), epochs=4,
                                           ckpt_path=None, patience=None, quiet=True,
                                           callbacks=[swa, rec])
    assert history["lr"].tolist() == lrs == [0.2] * 4
    for epoch in range(4):
        # the net trains on with its own weights and running statistics
        assert_states_close(rec.states[epoch], states[epoch])
        assert_states_close(rec.averages[epoch], averages[epoch])
    for epoch, val_loss in val_losses.items():
        assert history["val_loss"][epoch - 1] == pytest.approx(val_loss, rel=1e-6)
    # epoch 1 validated the training weights (nothing averaged yet)
    assert history["val_loss"][0] != pytest.approx(history["val_loss"][1], rel=1e-3)


def test_batch_norm_statistics_are_recomputed_when_fit_ends():
    *_, hand_swa = hand_loop(True, epochs=3, swa_start=2, swa_lr=None)
    update_bn(loader(X, Y, 16), hand_swa)
    swa = SWA(swa_start=2, bn_loader=loader(X, Y, 16), validate_with_swa=False)
    make_model(net_of(True)).fit(loader(X, Y, 8), epochs=3, ckpt_path=None, quiet=True,
                                 callbacks=[swa])
    assert_states_close(swa.averaged_model.state_dict(), hand_swa.state_dict())
    other = net_of(True, seed=7)
    swa.copy_to(other)
    assert_states_close(other.state_dict(), hand_swa.module.state_dict())


def test_batch_norm_without_bn_loader_warns():
    with pytest.warns(UserWarning, match="no bn_loader"):
        make_model(net_of(True)).fit(loader(X, Y, 8), epochs=1, ckpt_path=None, quiet=True,
                                     callbacks=[SWA(swa_start=1)])


def fit_run(tmp_path, epochs, resume=False, seed=0):
    torch.manual_seed(seed)
    net = net_of(True, seed=seed)
    swa = SWA(swa_start=2, swa_lr=0.05, anneal_epochs=2, bn_loader=loader(X, Y, 16))
    history = make_model(net).fit((X, Y), (XV, YV), epochs=epochs, batch_size=8,
                                  ckpt_path=str(tmp_path / "best.pt"), patience=None,
                                  quiet=True, resume=resume, callbacks=[swa])
    return history, net, swa


def test_resume_continues_the_average_and_the_schedule_exactly(tmp_path):
    straight_history, straight_net, straight_swa = fit_run(tmp_path / "a", 4)
    fit_run(tmp_path / "b", 2)
    history, net, swa = fit_run(tmp_path / "b", 4, resume=True, seed=3)
    assert history.equals(straight_history)
    assert history["lr"].iloc[-1] < history["lr"].iloc[0]  # SWALR's schedule continued
    for key, value in straight_net.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    for key, value in straight_swa.averaged_model.state_dict().items():
        assert torch.equal(swa.averaged_model.state_dict()[key], value), key


@pytest.mark.parametrize("kwargs, error, match", [
    ({"swa_start": 0}, ValueError, "swa_start must be >= 1"),
    ({"swa_start": 2.0}, TypeError, "swa_start must be an int"),
    ({"swa_start": 1, "swa_lr": -1.0}, ValueError, "swa_lr must be"),
    ({"swa_start": 1, "anneal_strategy": "step"}, ValueError, "'cos' or 'linear'"),
    ({"swa_start": 1, "validate_with_swa": 1}, TypeError, "validate_with_swa must be"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SWA(**kwargs)


def test_copy_to_before_any_average_is_an_error():
    with pytest.raises(ValueError, match="nothing averaged yet"):
        SWA(swa_start=3).copy_to(net_of(False))
