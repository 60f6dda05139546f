"""EarlyStopping alone and with fit's checkpoint: scripted-metric tables, baselines, reuse."""

import math

import pytest
import torch
from conftest import (EpochWeights, ScriptedMetric, ScriptedScore, TinyNet, loader,
                      make_classification)
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import EarlyStopping, ModelCheckpoint
from kerastorch.files import load_state_dict_file

NAN = float("nan")


def _fit_scripted(values, tmp_path, *, mode="max", patience=2, epochs=None, metric_cls=None,
                  **fit_kwargs):
    from kerastorch.callbacks import Callback

    class Tag(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.net.tag.fill_(epoch)

    x, y = make_classification(n=16)
    metric_cls = metric_cls or (ScriptedScore if mode == "max" else ScriptedMetric)
    net = EpochWeights()
    model = KerasModel(net, nn.CrossEntropyLoss(), metrics_dict={"score": metric_cls(values)})
    df = model.fit(loader(x, y), loader(x, y), epochs=epochs or len(values),
                   monitor="val_score", mode=mode, patience=patience,
                   ckpt_path=str(tmp_path / "best.pt"), quiet=True, callbacks=[Tag()],
                   **fit_kwargs)
    return model, df


@pytest.mark.parametrize(
    "values, mode, patience, epochs_run, best_epoch",
    [
        # improving every epoch: patience=0 must not stop it
        ([0.1, 0.2, 0.3, 0.4, 0.5], "max", 0, 5, 5),
        # patience=0 stops at the first epoch without improvement
        ([0.1, 0.2, 0.2, 0.4, 0.5], "max", 0, 3, 2),
        # patience=2: two epochs without improvement after the best stop the run
        ([0.5, 0.4, 0.45, 0.9, 0.9], "max", 2, 3, 1),
        ([0.5, 0.6, 0.55, 0.58, 0.7, 0.8], "max", 2, 4, 2),
        # mode min
        ([3.0, 2.0, 2.5, 1.0, 1.5, 1.6], "min", 2, 6, 4),
        # NaN is never best and counts as no improvement
        ([0.5, NAN, NAN, 0.9], "max", 2, 3, 1),
        ([NAN, 0.3, 0.2], "max", 5, 3, 2),
    ],
)
def test_early_stopping_and_best_weights_table(tmp_path, values, mode, patience, epochs_run,
                                               best_epoch):
    model, df = _fit_scripted(values, tmp_path, mode=mode, patience=patience)
    assert len(df) == epochs_run
    # the net holds the best epoch's weights, and the checkpoint file holds the same
    assert model.net.tag.item() == best_epoch
    saved = load_state_dict_file(str(tmp_path / "best.pt"))
    assert saved["tag"].item() == best_epoch
    for key, value in model.net.state_dict().items():
        assert torch.equal(saved[key], value)


def test_all_nan_monitor_never_writes_a_best_checkpoint(tmp_path):
    model, df = _fit_scripted([NAN, NAN, NAN], tmp_path, patience=5)
    assert len(df) == 3 and df["val_score"].isna().all()
    assert not (tmp_path / "best.pt").exists()
    assert model.net.tag.item() == 3  # nothing to restore: the last weights stay


def test_early_stopping_callback_min_delta_baseline_and_restore():
    class M:
        stop_training = False
        unwrapped_net = nn.Linear(1, 1)

    def run(values, **kwargs):
        es = EarlyStopping("val_loss", **kwargs)
        es.set_model(M())
        es.model.stop_training = False
        es.on_fit_begin()
        for epoch, v in enumerate(values, start=1):
            es.model.unwrapped_net.weight.data.fill_(epoch)
            es.on_epoch_end(epoch, {"val_loss": v})
            if es.model.stop_training:
                break
        es.on_fit_end()
        return es

    # improvements smaller than min_delta do not count
    es = run([1.0, 0.95, 0.92, 0.91], patience=2, min_delta=0.1)
    assert es.stopped_epoch == 3 and es.best == 1.0
    # a baseline that is never beaten stops after patience epochs; the best epoch is still
    # tracked among them and restored (Keras 3)
    es = run([0.9, 0.8, 0.7], patience=2, baseline=0.5, restore_best_weights=True)
    assert es.stopped_epoch == 2 and es.best == 0.8 and es.best_epoch == 2
    assert es.model.unwrapped_net.weight.item() == 2
    # beating the baseline resets the patience; improving without beating it does not
    es = run([0.9, 0.4, 0.45, 0.42, 0.41], patience=2, baseline=0.5)
    assert es.stopped_epoch == 4 and es.best == 0.4
    # restore_best_weights puts back the best epoch's weights
    es = run([0.9, 0.5, 0.7, 0.8], patience=2, restore_best_weights=True)
    assert es.stopped_epoch == 4 and es.model.unwrapped_net.weight.item() == 2
    # reuse: a second run starts from scratch
    es2 = EarlyStopping("val_loss", patience=1)
    for _ in range(2):
        es2.set_model(M())
        es2.model.stop_training = False
        es2.on_fit_begin()
        es2.on_epoch_end(1, {"val_loss": 1.0})
        assert es2.best == 1.0 and es2.wait == 0


def test_one_callback_instance_reused_across_fits(tmp_path):
    x, y = make_classification(n=16)
    es = EarlyStopping("val_score", patience=1, mode="max")
    ck = ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"), "val_score", "max")
    for _ in range(2):
        model = KerasModel(TinyNet(), nn.CrossEntropyLoss(),
                           metrics_dict={"score": ScriptedScore([0.1, 0.3, 0.2, 0.1])})
        df = model.fit(loader(x, y), loader(x, y), epochs=4, patience=None, ckpt_path=None,
                       monitor="val_score", mode="max", quiet=True, callbacks=[es, ck])
        assert len(df) == 3 and es.stopped_epoch == 3 and es.best == 0.3
        assert ck.best == 0.3 and ck.last_saved == str(tmp_path / "ep2.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep1.pt", "ep2.pt"]


def test_default_monitor_without_val_data_uses_train_loss(tmp_path):
    x, y = make_classification(n=32)
    net = TinyNet()
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(net.parameters(), 0.5))
    df = model.fit(loader(x, y, 8), epochs=4, ckpt_path=str(tmp_path / "c.pt"), quiet=True)
    assert len(df) == 4 and math.isfinite(df["train_loss"].min())
    assert (tmp_path / "c.pt").exists()
