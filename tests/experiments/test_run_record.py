"""Each (loss, seed) run is a hand-made fit, paired by seed; the runs table reads its best epoch."""

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torchmetrics
from experiment_helpers import mlp, small_digits, two_losses
from torch import nn

from kerastorch import KerasModel
from kerastorch.experiments import compare_losses, per_class_report
from kerastorch.experiments.run_record import best_epoch


def hand_made_run(loss_fn, seed, train, val, epochs, **fit_kwargs):
    """The script compare_losses promises to equal: start under the seed, copy, re-seed, fit."""
    torch.manual_seed(seed)
    initial = copy.deepcopy(mlp().state_dict())
    net = mlp()
    net.load_state_dict(initial)
    model = KerasModel(net, loss_fn, optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=10)})
    torch.manual_seed(seed)
    history = model.fit(train, val, epochs=epochs, batch_size=32, quiet=True, ckpt_path=None,
                        **fit_kwargs)
    outputs, labels = model.predict(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*val), batch_size=32), with_labels=True)
    return history, per_class_report(outputs, labels, loss_fn=loss_fn)


def rows(frame, loss, seed):
    picked = frame[(frame["loss"] == loss) & (frame["seed"] == seed)]
    return picked.drop(columns=["loss", "seed"]).reset_index(drop=True)


def test_each_run_is_bit_identical_to_a_fit_set_up_by_hand():
    train, val = small_digits()
    losses = two_losses()
    result = compare_losses(mlp, losses, train, val, epochs=4, seeds=[3, 8],
                            metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                       num_classes=10)},
                            monitor="val_acc", mode="max", patience=1)
    assert result.seeds == [3, 8] and result.losses == ["ce", "smooth"]
    assert list(result.history.columns) == ["loss", "seed", "epoch", "train_loss", "train_acc",
                                            "lr", "val_loss", "val_acc"]
    assert list(result.report.columns) == ["loss", "seed", "class", "precision", "recall", "f1",
                                           "support"]
    for loss, seed in [("smooth", 8), ("ce", 3)]:
        history, report = hand_made_run(losses[loss], seed, train, val, epochs=4,
                                        monitor="val_acc", mode="max", patience=1)
        pd.testing.assert_frame_equal(rows(result.history, loss, seed), history)
        pd.testing.assert_frame_equal(rows(result.report, loss, seed), report)
        # the runs table: the epoch fit restored (the first best val_acc) and its row
        run = result.runs.set_index(["loss", "seed"]).loc[(loss, seed)]
        first_best = int(history.loc[history["val_acc"].idxmax(), "epoch"])
        assert run["best_epoch"] == first_best and run["epochs_run"] == len(history)
        best_row = history[history["epoch"] == first_best].iloc[0]
        for column in ("train_loss", "train_acc", "lr", "val_loss", "val_acc"):
            assert run[column] == best_row[column]
    assert list(result.runs.columns) == ["loss", "seed", "best_epoch", "epochs_run",
                                         "train_loss", "train_acc", "lr", "val_loss", "val_acc"]
    assert result.runs[["loss", "seed"]].values.tolist() == [["ce", 3], ["ce", 8],
                                                              ["smooth", 3], ["smooth", 8]]


def test_seeds_as_a_count_or_a_list_name_the_same_runs():
    train, val = small_digits()
    loss = {"ce": nn.CrossEntropyLoss()}
    counted = compare_losses(mlp, loss, train, val, epochs=1, seed=4, seeds=2)
    listed = compare_losses(mlp, loss, train, val, epochs=1, seeds=[np.int64(5)])
    assert counted.seeds == [4, 5] and counted.history["seed"].tolist() == [4, 5]
    assert listed.seeds == [5] and type(listed.runs["seed"].tolist()[0]) is int
    pd.testing.assert_frame_equal(rows(counted.history, "ce", 5), rows(listed.history, "ce", 5))
    # different seeds: different starts
    assert counted.history.loc[0, "train_loss"] != counted.history.loc[1, "train_loss"]


def test_within_a_seed_every_loss_starts_alike_and_make_net_is_called_in_order():
    train, val = small_digits()
    nets = []

    def build():
        nets.append(mlp())
        return nets[-1]

    history, report = compare_losses(build, {"a": nn.CrossEntropyLoss(),
                                             "b": nn.CrossEntropyLoss()},
                                     train, val, epochs=2, seeds=2)
    assert len(nets) == 2 + 4  # one start per seed, then one net per run (seed 0 first)
    for seed in (0, 1):
        pd.testing.assert_frame_equal(rows(history, "a", seed), rows(history, "b", seed))
        pd.testing.assert_frame_equal(rows(report, "a", seed), rows(report, "b", seed))
    # the runs' nets keep the weights fit restored, as the examples read them
    assert not torch.equal(nets[2][0].weight, nets[0][0].weight)


def make_net_never_called():
    raise AssertionError("make_net ran: the argument check came after the training began")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(losses={}), TypeError, "losses must be a non-empty dict"),
    (dict(losses={"ce": "cross-entropy"}), TypeError, "losses must map str names"),
    (dict(make_net=3), TypeError, "make_net must be a callable"),
    (dict(seeds=0), ValueError, "seeds must be an int >= 1"),
    (dict(seeds=[1, 1]), ValueError, "seeds must not repeat"),
    (dict(seeds=[1, "2"]), TypeError, "seeds must be an int >= 1 or a non-empty list"),
    (dict(seeds=[]), TypeError, "seeds must be an int >= 1 or a non-empty list"),
    (dict(seeds=[1, 2], seed=5), ValueError, "pass either seeds as a list or seed"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
    (dict(workers=0), ValueError, "workers must be an int >= 1"),
    (dict(workers="2"), TypeError, "workers must be an int >= 1"),
    (dict(workers=True), TypeError, "workers must be an int >= 1"),
    (dict(epochs=0), ValueError, "epochs must be an int >= 1"),
    (dict(batch_size=0), ValueError, "batch_size must be an int >= 1"),
    (dict(baseline="mse"), ValueError, r"baseline must be one of the losses \['ce', 'smooth'\]"),
    (dict(quiet="yes"), TypeError, "quiet"),
    (dict(log_dir=3), TypeError, "log_dir"),
    (dict(metrics_dict=["acc"]), TypeError, "metrics_dict must be None or a dict"),
    (dict(optimizer_fn="adam"), TypeError, "optimizer_fn must be None or"),
    (dict(resume=True), ValueError, "compare_losses does not take resume="),
    (dict(state_path="s.pt"), ValueError, "compare_losses does not take state_path="),
    (dict(patiense=2), TypeError, "unexpected keyword argument 'patiense'"),
    (dict(val_data=None), ValueError, "val_data is required"),
    (dict(train_data=(torch.zeros(3, 64), torch.zeros(2))), ValueError, "train_data is an"),
    (dict(workers=2, ckpt_path="best.pt"), ValueError, "ckpt_path must be None with workers"),
])
def test_bad_arguments_fail_before_any_training(kwargs, error, match):
    train, val = small_digits()
    arguments = dict(make_net=make_net_never_called, losses=two_losses(), train_data=train,
                     val_data=val)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        compare_losses(arguments.pop("make_net"), arguments.pop("losses"),
                       arguments.pop("train_data"), arguments.pop("val_data"), **arguments)


def test_best_epoch_follows_the_checkpoint_rule():
    frame = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [1.0, math.nan, 0.5, 0.5],
                          "val_loss": [0.9, 0.1, 0.4, 0.4], "val_acc": [0.2, 0.9, 0.5, 0.6]})
    assert best_epoch(frame, "val_loss", "min") == 3  # epoch 2 has a NaN loss: never best
    assert best_epoch(frame, "val_acc", "max") == 4
    nothing = frame.assign(val_loss=math.nan)
    assert best_epoch(nothing, "val_loss", "min") == 4  # nothing restored: the last epoch
