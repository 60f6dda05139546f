"""ReduceLROnPlateau: Keras's counting, torch's scheduler underneath, tables of scores."""

import logging
import math

import pytest
import torch
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback
from kerastorch.callbacks.reduce_lr import ReduceLROnPlateau

NAN = float("nan")


class Epoch(Callback):
    """Tells the scripted score which epoch is running (also in a resumed fit)."""

    def __init__(self, box):
        self.box = box

    def on_epoch_begin(self, epoch, logs=None):
        self.box["epoch"] = epoch


def scored_fit(table, callbacks=(), *, epochs=None, lr_scheduler=None, optimizer_lr=1.0,
               net=None, **fit_kwargs):
    """Fit where val_score (and train_score) of epoch e is table[e - 1]; return (df, model)."""
    torch.manual_seed(0)
    x, y = make_classification(n=16)
    net = net or TinyNet()
    box = {"epoch": 0}

    def score(preds, labels):
        return torch.tensor(table[box["epoch"] - 1], dtype=torch.float64)

    optimizer = torch.optim.SGD(net.parameters(), lr=optimizer_lr)
    if lr_scheduler is not None:
        lr_scheduler = lr_scheduler(optimizer)
    model = KerasModel(net, nn.CrossEntropyLoss(), metrics_dict={"score": score},
                       optimizer=optimizer, lr_scheduler=lr_scheduler)
    fit_kwargs = {"ckpt_path": None, "patience": None, "quiet": True, "monitor": "val_score",
                  **fit_kwargs}
    df = model.fit(loader(x, y, 8), loader(x, y, 8), epochs=epochs or len(table),
                   callbacks=[Epoch(box), *callbacks], **fit_kwargs)
    return df, model


@pytest.mark.parametrize("settings, table, lrs, final", [
    # Keras's counting: the patience-th epoch without improvement reduces (after it)
    ({"patience": 2}, [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7],
     [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5], 0.25),
    # patience 0 and 1 alike: every epoch without improvement reduces
    ({"patience": 0}, [1.0, 1.0, 0.5, 0.6], [1, 1, 0.5, 0.5], 0.25),
    ({"patience": 1}, [1.0, 1.0, 0.5, 0.6], [1, 1, 0.5, 0.5], 0.25),
    # min_delta is absolute: 0.95 is not 0.1 better than 1.0
    ({"patience": 1, "min_delta": 0.1}, [1.0, 0.95, 0.7, 0.65], [1, 1, 0.5, 0.5], 0.25),
    # NaN never improves, and never becomes the best to beat
    ({"patience": 2}, [1.0, NAN, NAN, 0.9], [1, 1, 1, 0.5], 0.5),
    ({"patience": 2}, [1.0, NAN, 0.99], [1, 1, 1], 1.0),
    # Keras's cooldown=2 ignores one epoch after a reduction (cooldown=1 none)
    ({"patience": 1, "cooldown": 2}, [1.0, 1.0, 1.0, 1.0, 1.0], [1, 1, 0.5, 0.5, 0.25], 0.25),
    ({"patience": 1, "cooldown": 1}, [1.0, 1.0, 1.0, 1.0], [1, 1, 0.5, 0.25], 0.125),
    # min_lr bounds the rate
    ({"patience": 0, "min_lr": 0.3}, [1.0, 1.0, 1.0, 1.0], [1, 1, 0.5, 0.3], 0.3),
    # mode="max" (and "auto" reads higher_is_better, or "acc" in the name)
    ({"patience": 1, "mode": "max"}, [0.5, 0.4, 0.6, 0.6], [1, 1, 0.5, 0.5], 0.25),
])
def test_reduces_at_the_epochs_keras_does(settings, table, lrs, final):
    cb = ReduceLROnPlateau("val_score", factor=0.5, **{"mode": "min", **settings})
    df, model = scored_fit(table, [cb])
    assert df["lr"].tolist() == pytest.approx(lrs)
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(final)
    # each reduction shows in the lr column from the next epoch on
    changed = [e for e in range(2, len(lrs) + 1) if lrs[e - 1] != lrs[e - 2]]
    assert [e + 1 for e, _, _ in cb.reductions if e < len(lrs)] == changed


@pytest.mark.parametrize("patience, cooldown, min_delta, mode", [
    (3, 0, 1e-4, "min"), (2, 2, 0.05, "min"), (1, 3, 0.0, "max"), (0, 0, 0.1, "max"),
])
def test_the_lr_sequence_is_torch_schedulers_with_the_translated_settings(
        patience, cooldown, min_delta, mode):
    table = [0.5, 0.45, 0.47, 0.46, NAN, 0.2, 0.3, 0.25, 0.21, 0.4, 0.1, 0.1, 0.12, 0.5]
    cb = ReduceLROnPlateau("val_score", factor=0.5, patience=patience, mode=mode,
                           min_delta=min_delta, cooldown=cooldown, min_lr=0.01)
    ours, _ = scored_fit(table, [cb])
    settings = cb.torch_settings()
    assert settings == {"mode": mode, "factor": 0.5, "patience": max(patience - 1, 0),
                        "threshold": min_delta, "threshold_mode": "abs",
                        "cooldown": max(cooldown - 1, 0), "min_lr": 0.01, "eps": 0.0}
    theirs, _ = scored_fit(table, lr_scheduler=lambda opt: torch.optim.lr_scheduler
                           .ReduceLROnPlateau(opt, **settings), mode=mode)
    assert ours["lr"].tolist() == theirs["lr"].tolist()
    assert len(set(ours["lr"])) > 1  # the table does reduce


def test_epochs_without_validation_are_skipped():
    # validated epochs 2, 4, 6 score 1.0: 4 and 6 do not improve, so patience=2 reduces
    # after 6; counting the NaN placeholders of 1, 3, 5 would reduce after 4
    table = [NAN, 1.0, NAN, 1.0, NAN, 1.0, NAN]
    cb = ReduceLROnPlateau("val_score", factor=0.5, patience=2, mode="min")
    df, _ = scored_fit(table, [cb], validation_freq=2, monitor="train_loss")
    assert df["lr"].tolist() == [1, 1, 1, 1, 1, 1, 0.5]
    assert math.isnan(df["val_score"][0]) and cb.reductions == [(6, 1.0, 0.5)]
    # a train_ column is computed every epoch: its NaNs count (after 4 and after 6)
    cb = ReduceLROnPlateau("train_score", factor=0.5, patience=2, mode="min")
    df, _ = scored_fit(table, [cb], validation_freq=2, monitor="train_loss")
    assert df["lr"].tolist() == [1, 1, 1, 1, 0.5, 0.5, 0.25]


def test_resume_reduces_at_the_same_epochs(tmp_path):
    table = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5, 0.6, 0.7, 0.8]  # mode "auto": "min" (a plain function metric)

    def run(folder, splits):
        net = TinyNet()
        for i, epochs in enumerate(splits):
            cb = ReduceLROnPlateau("val_score", factor=0.5, patience=2, cooldown=2)
            df, _ = scored_fit(table, [cb], epochs=epochs, net=net, resume=i > 0,
                               state_path=str(tmp_path / f"{folder}.state.pt"))
        return df, cb

    straight, straight_cb = run("straight", [10])
    resumed, resumed_cb = run("resumed", [5, 10])  # stops inside the cooldown
    # reduced after 4; 5 is in the cooldown; 6 and 8 do not improve on 7; reduced after 9
    assert straight["lr"].tolist() == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert resumed["lr"].tolist() == straight["lr"].tolist()
    assert resumed_cb.reductions == straight_cb.reductions == [(4, 1.0, 0.5), (9, 0.5, 0.25)]
    assert resumed_cb.state_dict()["scheduler"] == straight_cb.state_dict()["scheduler"]
    assert resumed_cb.state_key == "ReduceLROnPlateau[val_score]"


def test_auto_mode_and_reuse_across_fits():
    class Score(nn.Module):
        higher_is_better = True

    model_type = type("M", (), {"optimizer": torch.optim.SGD([nn.Parameter(torch.zeros(1))],
                                                             lr=1.0)})
    for monitor, metrics, expected in [("val_acc", {}, "max"), ("val_loss", {}, "min"),
                                       ("val_score", {"score": Score()}, "max"),
                                       ("val_f1", {}, "min")]:
        cb = ReduceLROnPlateau(monitor)
        model = model_type()
        model.metrics_dict = metrics
        cb.set_model(model)
        cb.on_fit_begin()
        assert cb.resolved_mode == expected == cb.scheduler.mode
    # reuse: a second fit counts afresh but keeps the optimizer's (reduced) rate
    cb = ReduceLROnPlateau("val_score", factor=0.5, patience=1, mode="min")
    scored_fit([1.0, 1.0], [cb])
    assert cb.reductions == [(2, 1.0, 0.5)]
    scored_fit([1.0, 0.5], [cb])
    assert cb.reductions == []


def test_verbose_logs_at_warning(caplog):
    cb = ReduceLROnPlateau("val_score", factor=0.5, patience=1, mode="min", verbose=1)
    with caplog.at_level(logging.INFO, logger="kerastorch"):
        scored_fit([1.0, 1.0, 0.5], [cb])
    (record,) = [r for r in caplog.records if "ReduceLROnPlateau" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "epoch 2: ReduceLROnPlateau reduced the learning rate from 1.0 to 0.5")


def test_misuse_errors():
    for kwargs, error, message in [
        ({"factor": 1.0}, ValueError, "factor must be >= 0 and < 1"),
        ({"factor": -0.1}, ValueError, "factor must be >= 0 and < 1"),
        ({"factor": "0.1"}, TypeError, "factor must be a number; received str"),
        ({"patience": -1}, ValueError, "patience must be an int >= 0; received -1"),
        ({"patience": 2.0}, TypeError, "patience must be an int >= 0; received float"),
        ({"cooldown": True}, TypeError, "cooldown must be an int"),
        ({"mode": "up"}, ValueError, "mode must be one of 'auto', 'min', 'max'; received 'up'"),
        ({"min_delta": -1e-3}, ValueError, "min_delta must be >= 0"),
        ({"min_lr": NAN}, ValueError, "min_lr must be a number; received nan"),
        ({"verbose": 2}, ValueError, "verbose must be 0 or 1"),
        ({"monitor": 3}, TypeError, "monitor must be a str"),
    ]:
        with pytest.raises(error, match=message):
            ReduceLROnPlateau(**kwargs)
    cb = ReduceLROnPlateau()
    cb.set_model(type("NoOptimizer", (), {"optimizer": None})())
    with pytest.raises(TypeError, match="needs model.optimizer, a torch optimizer; the model "
                                        r"\(NoOptimizer\) has NoneType"):
        cb.on_fit_begin()
    with pytest.raises(ValueError, match=r"monitors 'val_acc', which is not in the logs; "
                                         r"available: \['epoch', 'lr', 'train_loss'"):
        scored_fit([1.0], [ReduceLROnPlateau("val_acc")])
