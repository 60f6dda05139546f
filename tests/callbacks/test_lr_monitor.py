"""LearningRateMonitor: every param group's rate at the start of every epoch, as a table."""

import pytest
import torch
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import LearningRateMonitor


def _two_group_model(optimizer_cls=torch.optim.SGD, **group_kwargs):
    net = TinyNet()
    optimizer = optimizer_cls([{"params": [net.fc.weight]},
                               {"params": [net.fc.bias], "lr": 0.01, "name": "bias"}],
                              lr=0.1, **group_kwargs)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return KerasModel(net, nn.CrossEntropyLoss(), optimizer=optimizer, lr_scheduler=scheduler)


def test_records_each_group_per_epoch_and_matches_the_lr_column():
    x, y = make_classification(n=16)
    monitor = LearningRateMonitor()
    model = _two_group_model()
    df = model.fit(loader(x, y), epochs=3, ckpt_path=None, patience=None, quiet=True,
                   callbacks=[monitor])
    table = monitor.to_frame()
    assert table.to_dict("list") == {
        "epoch": [1, 2, 3],
        "lr_group0": pytest.approx([0.1, 0.05, 0.025]),
        "lr_bias": pytest.approx([0.01, 0.005, 0.0025]),
    }
    # the history's lr column is the first group's rate at the start of each epoch
    assert df["lr"].tolist() == table["lr_group0"].tolist()
    # the history keeps its own columns: the monitor writes only its own record
    assert list(df.columns) == ["epoch", "train_loss", "lr"]


def test_momentum_and_reuse_across_fits():
    x, y = make_classification(n=16)
    monitor = LearningRateMonitor(momentum=True)
    sgd = _two_group_model(torch.optim.SGD, momentum=0.9)
    sgd.fit(loader(x, y), epochs=2, ckpt_path=None, patience=None, quiet=True,
            callbacks=[monitor])
    assert monitor.to_frame()["momentum_group0"].tolist() == [0.9, 0.9]
    adam = _two_group_model(torch.optim.Adam, betas=(0.8, 0.99))
    adam.fit(loader(x, y), epochs=1, ckpt_path=None, patience=None, quiet=True,
             callbacks=[monitor])
    # the second fit starts a fresh record
    assert monitor.records == [{"epoch": 1, "lr_group0": 0.1, "momentum_group0": 0.8,
                                "lr_bias": 0.01, "momentum_bias": 0.8}]


def test_misuse():
    with pytest.raises(TypeError, match="momentum must be a bool; received str"):
        LearningRateMonitor(momentum="yes")
    monitor = LearningRateMonitor()
    monitor.set_model(object())
    with pytest.raises(ValueError, match="needs model.optimizer"):
        monitor.on_epoch_begin(1)


def test_an_epoch_resumed_inside_keeps_its_one_row_with_the_rates_it_began_with():
    model = _two_group_model()
    monitor = LearningRateMonitor()
    monitor.set_model(model)
    monitor.on_fit_begin()
    monitor.on_epoch_begin(1)
    saved = monitor.state_dict()  # a mid-epoch state of epoch 1
    model.optimizer.param_groups[0]["lr"] = 0.7  # a per-step schedule moved on meanwhile
    resumed = LearningRateMonitor()
    resumed.set_model(model)
    resumed.on_fit_begin()
    resumed.load_state_dict(saved)
    resumed.on_epoch_begin(1, {"resumed_batches": 3})
    resumed.on_epoch_begin(2)
    assert [r["epoch"] for r in resumed.records] == [1, 2]
    assert [r["lr_group0"] for r in resumed.records] == [0.1, 0.7]
