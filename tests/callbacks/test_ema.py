"""EMA: the average equals a hand-computed EMA, validation sees it, resume stays exact."""

import pytest
import torch
from conftest import loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback
from kerastorch.callbacks.ema import EMA


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def make_model(net):
    return KerasModel(net, nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(net.parameters(),
                                                                           lr=0.2))


class StepWeights(Callback):
    """The net's parameters at fit start and after each synchronised step."""

    def on_fit_begin(self, logs=None):
        self.weights = [self._copy()]

    def on_train_batch_end(self, step, logs=None):
        if self.model.accelerator.sync_gradients:
            self.weights.append(self._copy())

    def _copy(self):
        return {n: p.detach().clone() for n, p in self.model.unwrapped_net.named_parameters()}


def hand_ema(weights, decay, start_step=0, update_every=1):
    """The textbook EMA in float64, and torch.lerp's in the weights' dtype."""
    exact = {n: w.double() for n, w in weights[0].items()}
    same = {n: w.clone() for n, w in weights[0].items()}
    for step, w in enumerate(weights[1:], start=1):
        if step <= start_step:
            exact = {n: v.double() for n, v in w.items()}
            same = {n: v.clone() for n, v in w.items()}
        elif (step - start_step) % update_every == 0:
            exact = {n: decay * exact[n] + (1 - decay) * w[n].double() for n in w}
            same = {n: torch.lerp(same[n], w[n], 1 - decay) for n in w}
    return exact, same


@pytest.mark.parametrize("kwargs, accumulation", [
    ({"decay": 0.9}, 1),
    ({"decay": 0.8, "start_step": 3, "update_every": 2}, 1),
    ({"decay": 0.9}, 2),
])
def test_average_equals_the_hand_computed_ema_over_the_same_steps(kwargs, accumulation):
    x, y = make_classification(n=80)
    ema, rec = EMA(**kwargs, validate_with_ema=False), StepWeights()
    make_model(mlp()).fit(loader(x, y, 8), epochs=2, ckpt_path=None, patience=None, quiet=True,
                          gradient_accumulation_steps=accumulation, callbacks=[ema, rec])
    assert ema.optimizer_steps == len(rec.weights) - 1 == 20 // accumulation
    exact, same = hand_ema(rec.weights, kwargs["decay"], kwargs.get("start_step", 0),
                           kwargs.get("update_every", 1))
    for name, average in ema.averaged.items():
        assert average.dtype == torch.float32
        torch.testing.assert_close(average.double(), exact[name], rtol=0, atol=1e-6)
        assert torch.equal(average, same[name]), name  # the same op: bit for bit
        assert not torch.equal(average, rec.weights[-1][name])  # an average, not the weights


class EpochRecords(Callback):
    """After EMA's on_epoch_end: the training weights (swapped back) and the average."""

    def __init__(self, ema):
        self.ema, self.train, self.averages, self.during_val = ema, {}, {}, {}

    def on_val_end(self, epoch, logs=None):
        self.during_val[epoch] = {n: p.detach().clone()
                                  for n, p in self.model.unwrapped_net.named_parameters()}

    def on_epoch_end(self, epoch, logs=None):
        self.train[epoch] = {n: p.detach().clone()
                             for n, p in self.model.unwrapped_net.named_parameters()}
        self.averages[epoch] = {n: a.clone() for n, a in self.ema.averaged.items()}


def test_validation_loss_is_evaluate_on_the_averaged_weights_and_fit_ends_with_the_best(
        tmp_path):
    x, y = make_classification(n=96, seed=1)
    xv, yv = make_classification(n=40, seed=2)
    net = mlp()
    model = make_model(net)
    ema = EMA(decay=0.9)
    rec = EpochRecords(ema)
    ckpt = tmp_path / "best.pt"
    history = model.fit(loader(x, y, 8), loader(xv, yv, 8), epochs=3, ckpt_path=str(ckpt),
                        patience=None, quiet=True, callbacks=[ema, rec])
    best = int(history["epoch"][history["val_loss"].idxmin()])
    # the net ends with the best epoch's averaged weights; the checkpoint file holds them
    for name, param in net.named_parameters():
        assert torch.equal(param, rec.averages[best][name])
    saved = torch.load(ckpt, weights_only=True)
    assert all(torch.equal(saved[n], rec.averages[best][n]) for n in rec.averages[best])
    for epoch in (1, 2, 3):
        val_loss = history["val_loss"][epoch - 1]
        # validation ran on the average, and the training weights came back afterwards
        assert rec.during_val[epoch].keys() == rec.averages[epoch].keys()
        assert all(torch.equal(rec.during_val[epoch][n], rec.averages[epoch][n])
                   for n in rec.averages[epoch])
        with torch.no_grad():
            for name, param in net.named_parameters():
                param.copy_(rec.averages[epoch][name])
        assert model.evaluate(loader(xv, yv, 8), quiet=True)["val_loss"] == pytest.approx(
            val_loss, rel=1e-12)
        with torch.no_grad():
            for name, param in net.named_parameters():
                param.copy_(rec.train[epoch][name])
        assert abs(model.evaluate(loader(xv, yv, 8), quiet=True)["val_loss"] - val_loss) > 1e-4


def test_epochs_without_validation_keep_the_training_weights():
    x, y = make_classification(n=48)
    ema = EMA(decay=0.9)
    rec = EpochRecords(ema)
    seen = {}

    class NetAtEpochEnd(Callback):  # placed before EMA: sees what ModelCheckpoint sees
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = {n: p.detach().clone()
                           for n, p in self.model.unwrapped_net.named_parameters()}

    make_model(mlp()).fit(loader(x, y, 8), loader(x, y, 8), epochs=2, validation_freq=2,
                          ckpt_path=None, patience=None, quiet=True,
                          callbacks=[NetAtEpochEnd(), ema, rec])
    assert list(rec.during_val) == [2]
    assert all(torch.equal(seen[1][n], rec.train[1][n]) for n in seen[1])  # no swap
    assert all(torch.equal(seen[2][n], rec.averages[2][n]) for n in seen[2])  # swapped
    assert not ema.swapped


class InterruptInValidation(Callback):
    def __init__(self, epoch):
        self.epoch, self.current, self.train_weights = epoch, None, None

    def on_val_begin(self, epoch, logs=None):  # placed before EMA: the training weights
        self.current = epoch
        self.train_weights = {n: p.detach().clone()
                              for n, p in self.model.unwrapped_net.named_parameters()}

    def on_val_batch_end(self, step, logs=None):
        if self.current == self.epoch:
            raise KeyboardInterrupt


def test_ctrl_c_in_the_first_validation_puts_the_training_weights_back():
    x, y = make_classification(n=48)
    net, ema = mlp(), EMA(decay=0.9)
    stop = InterruptInValidation(1)
    with pytest.warns(UserWarning, match="interrupted during epoch 1"):
        make_model(net).fit(loader(x, y, 8), loader(x, y, 8), epochs=3, ckpt_path=None,
                            quiet=True, callbacks=[stop, ema])
    assert not ema.swapped
    for name, param in net.named_parameters():  # nothing best yet: the training weights
        assert torch.equal(param, stop.train_weights[name])
        assert not torch.equal(param, ema.averaged[name])


def test_ctrl_c_in_a_later_validation_keeps_the_restored_best():
    x, y = make_classification(n=48)
    net, ema = mlp(), EMA(decay=0.9)
    stop, rec = InterruptInValidation(2), EpochRecords(ema)
    with pytest.warns(UserWarning, match="interrupted during epoch 2"):
        make_model(net).fit(loader(x, y, 8), loader(x, y, 8), epochs=3, ckpt_path=None,
                            quiet=True, callbacks=[stop, ema, rec])
    for name, param in net.named_parameters():  # epoch 1's averaged weights, restored
        assert torch.equal(param, rec.averages[1][name])


def fit_run(tmp_path, epochs, resume=False, net=None):
    x, y = make_classification(n=64, seed=3)
    xv, yv = make_classification(n=32, seed=4)
    net = net or mlp(seed=5)
    ema = EMA(decay=0.8, start_step=2)
    history = make_model(net).fit((x, y), (xv, yv), epochs=epochs, batch_size=8,
                                  ckpt_path=str(tmp_path / "best.pt"), patience=None,
                                  quiet=True, resume=resume, callbacks=[ema])
    return history, net, ema


def test_resume_continues_the_average_exactly(tmp_path):
    straight_history, straight_net, straight_ema = fit_run(tmp_path / "a", 4)
    fit_run(tmp_path / "b", 2)
    history, net, ema = fit_run(tmp_path / "b", 4, resume=True, net=mlp(seed=6))
    assert history.equals(straight_history)
    assert ema.optimizer_steps == straight_ema.optimizer_steps == 32
    for name, param in net.named_parameters():
        assert torch.equal(param, straight_net.state_dict()[name])
        assert torch.equal(ema.averaged[name], straight_ema.averaged[name])


def test_the_state_holds_the_average_on_the_cpu():
    x, y = make_classification(n=16)
    ema = EMA(decay=0.5, validate_with_ema=False)
    make_model(mlp()).fit(loader(x, y, 8), epochs=1, ckpt_path=None, quiet=True,
                          callbacks=[ema])
    state = ema.state_dict()
    assert state["optimizer_steps"] == 2
    assert all(t.device.type == "cpu" for t in state["averaged"].values())
    state["averaged"]["0.weight"].add_(1.0)  # a copy, not the live average
    assert not torch.equal(state["averaged"]["0.weight"], ema.averaged["0.weight"])
    with pytest.raises(ValueError, match="same parameters frozen"):
        ema.load_state_dict({"optimizer_steps": 0, "averaged": {"other": torch.zeros(1)}})


def test_frozen_parameters_are_not_averaged_and_copy_to_loads_the_average():
    x, y = make_classification(n=16)
    net = mlp()
    net[0].requires_grad_(False)
    ema = EMA(decay=0.5)
    make_model(net).fit(loader(x, y, 8), epochs=1, ckpt_path=None, quiet=True,
                        callbacks=[ema])
    assert sorted(ema.averaged) == ["2.bias", "2.weight"]
    other = mlp(seed=9)
    ema.copy_to(other)
    assert torch.equal(other[2].weight, ema.averaged["2.weight"])
    with pytest.raises(ValueError, match="has no parameters"):
        ema.copy_to(nn.Linear(4, 3))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"decay": 1.0}, ValueError, r"decay must be in \[0, 1\)"),
    ({"decay": "0.9"}, TypeError, "decay must be a float"),
    ({"update_every": 0}, ValueError, "update_every must be >= 1"),
    ({"start_step": 1.5}, TypeError, "start_step must be an int"),
    ({"validate_with_ema": "yes"}, TypeError, "validate_with_ema must be True or False"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        EMA(**kwargs)
