"""KerasModel.fit/evaluate/predict: history contents, averaging, modes, precision, checkpoints."""

import numpy as np
import pandas as pd
import pytest
import torch
import torchmetrics
from conftest import TinyNet, loader, make_classification
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kerastorch import KerasModel


def _acc(classes=3):
    return torchmetrics.Accuracy(task="multiclass", num_classes=classes)


def test_history_columns_and_model_history(tmp_path):
    x, y = make_classification()
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss(), metrics_dict={"acc": _acc()})
    df = model.fit(loader(x, y), loader(x, y), epochs=3, ckpt_path=None, quiet=True)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["epoch", "train_loss", "train_acc", "lr", "val_loss", "val_acc"]
    assert df["epoch"].tolist() == [1, 2, 3]
    assert model.history is df
    assert all(isinstance(v, float) for v in df["train_loss"])
    df2 = model.fit(loader(x, y), epochs=2, ckpt_path=None, quiet=True)
    assert list(df2.columns) == ["epoch", "train_loss", "train_acc", "lr"]
    assert model.history is df2


def test_epoch_loss_is_sample_weighted_mean_not_mean_of_batch_means():
    # 10 samples in batches of 4, 4, 2; lr=0 keeps the weights fixed all epoch
    torch.manual_seed(0)
    x, y = torch.randn(10, 3), torch.randn(10, 1)
    net = nn.Linear(3, 1)
    model = KerasModel(net, nn.MSELoss(), optimizer=torch.optim.SGD(net.parameters(), lr=0.0))
    df = model.fit(loader(x, y, batch_size=4), loader(x, y, batch_size=4), epochs=1,
                   ckpt_path=None, quiet=True)
    with torch.no_grad():
        pred = net(x).double()
        full = ((pred - y.double()) ** 2).mean().item()
        batch_means = [((pred[i:i + 4] - y[i:i + 4].double()) ** 2).mean().item()
                       for i in (0, 4, 8)]
    assert df["train_loss"][0] == pytest.approx(full, rel=1e-6)
    assert df["val_loss"][0] == pytest.approx(full, rel=1e-6)
    # the naive average differs by much more than the tolerance, so the test can catch it
    assert abs(np.mean(batch_means) - full) > 1e-3


class CountingAccuracy(torchmetrics.classification.MulticlassAccuracy):
    counts = None

    def update(self, *args, **kwargs):
        self.counts["update"] += 1
        return super().update(*args, **kwargs)

    def forward(self, *args, **kwargs):
        self.counts["forward"] += 1
        return super().forward(*args, **kwargs)

    def compute(self):
        self.counts["compute"] += 1
        return super().compute()


def test_metrics_are_updated_per_step_computed_once_per_epoch_and_copied():
    counts = {"update": 0, "forward": 0, "compute": 0}
    CountingAccuracy.counts = counts  # a class attribute: shared by the trainer's copies
    metric = CountingAccuracy(num_classes=3, average="micro")
    x, y = make_classification(n=48)
    net = TinyNet()
    model = KerasModel(net, nn.CrossEntropyLoss(), metrics_dict={"acc": metric},
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.0))
    df1 = model.fit(loader(x, y, 16), loader(x, y, 16), epochs=2, ckpt_path=None, quiet=True)
    # 3 train + 3 val batches per epoch, one compute per stage per epoch
    assert counts == {"update": 12, "forward": 0, "compute": 4}
    assert metric.update_count == 0  # the user's object itself is never updated
    # the user's metric object is never updated; a second fit starts from fresh copies
    df2 = model.fit(loader(x, y, 16), loader(x, y, 16), epochs=1, ckpt_path=None, quiet=True)
    with torch.no_grad():
        expected = (net(x).argmax(1) == y).float().mean().item()
    for df in (df1, df2):
        assert df["train_acc"].tolist() == pytest.approx([expected] * len(df))
        assert df["val_acc"].tolist() == pytest.approx([expected] * len(df))


def test_plain_callable_metric_is_a_sample_weighted_mean():
    x, y = torch.randn(10, 3), torch.randn(10, 1)
    net = nn.Linear(3, 1)
    mae = lambda p, t: (p - t).abs().mean()  # noqa: E731
    model = KerasModel(net, nn.MSELoss(), metrics_dict={"mae": mae},
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.0))
    df = model.fit(loader(x, y, 4), epochs=1, ckpt_path=None, quiet=True)
    with torch.no_grad():
        assert df["train_mae"][0] == pytest.approx((net(x) - y).abs().mean().item(), rel=1e-6)


class ModeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.fc(x)


def test_validation_runs_in_eval_mode_without_grad_and_training_returns_to_train_mode():
    x, y = make_classification(n=32)
    net = ModeRecorder()
    model = KerasModel(net, nn.CrossEntropyLoss())
    model.fit(loader(x, y, 16), loader(x, y, 32), epochs=2, ckpt_path=None, quiet=True)
    # per epoch: 2 train batches, then 1 val batch
    assert net.seen == [(True, True), (True, True), (False, False)] * 2


def test_predict_returns_outputs_in_dataset_order_on_cpu_and_evaluate_matches_fit():
    x, y = make_classification(n=50)
    net = TinyNet()
    model = KerasModel(net, nn.CrossEntropyLoss(), metrics_dict={"acc": _acc()},
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.0))
    df = model.fit(loader(x, y, 16, shuffle=True), loader(x, y, 7), epochs=1, ckpt_path=None,
                   quiet=True)
    with torch.no_grad():
        expected = net(x)
    for data in (x, x.numpy(), (x, y), loader(x, y, 7), DataLoader(TensorDataset(x), 9)):
        out = model.predict(data)
        assert out.device.type == "cpu"
        torch.testing.assert_close(out, expected)
    logs = model.evaluate(loader(x, y, 13), quiet=True)
    assert set(logs) == {"val_loss", "val_acc"}
    assert logs["val_loss"] == pytest.approx(df["val_loss"][0], rel=1e-6)
    assert logs["val_acc"] == pytest.approx(df["val_acc"][0])


def test_xy_pairs_of_numpy_arrays_with_batch_size_and_shuffle_options():
    x, y = make_classification(n=40)
    xn, yn = x.double().numpy(), y.numpy()  # float64 as numpy gives it
    net = TinyNet()
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(net.parameters(), 0.0))
    df = model.fit((xn, yn), (xn, yn), epochs=1, batch_size=7, shuffle=False, ckpt_path=None,
                   quiet=True)
    assert model.train_steps == 6  # ceil(40 / 7)
    with torch.no_grad():
        full = nn.functional.cross_entropy(net(x), y).item()
    assert df["val_loss"][0] == pytest.approx(full, rel=1e-6)


def test_scheduler_per_epoch_and_lr_column_shows_the_rate_used():
    x, y = make_classification(n=32)
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=opt, lr_scheduler=sched)
    df = model.fit(loader(x, y, 8), epochs=3, ckpt_path=None, quiet=True, patience=None)
    assert df["lr"].tolist() == [1.0, 0.5, 0.25]
    assert opt.param_groups[0]["lr"] == 0.125


def test_per_step_scheduler_steps_once_per_optimizer_step():
    x, y = make_classification(n=32)
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=opt, lr_scheduler=sched,
                       lr_scheduler_interval="step")
    df = model.fit(loader(x, y, 8), epochs=2, ckpt_path=None, quiet=True,
                   gradient_accumulation_steps=2)
    # 4 batches per epoch, 2 optimizer steps per epoch with accumulation 2
    assert df["lr"].tolist() == [1.0, 0.25]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0625)


def test_reduce_lr_on_plateau_receives_the_monitored_value():
    from conftest import ScriptedScore

    x, y = make_classification(n=16)
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0, factor=0.1)
    metric = ScriptedScore([0.5, 0.6, 0.6, 0.7])
    model = KerasModel(net, nn.CrossEntropyLoss(), metrics_dict={"score": metric},
                       optimizer=opt, lr_scheduler=sched)
    df = model.fit(loader(x, y), loader(x, y), epochs=4, monitor="val_score", mode="max",
                   ckpt_path=None, quiet=True, patience=None)
    # the plateau at epoch 3 cuts the rate used in epoch 4; the loss alone would not
    assert df["lr"].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.1])


def test_no_clipping_unless_max_grad_norm(monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def counting(*args, **kwargs):
        calls.append(kwargs.get("max_norm", args[1] if len(args) > 1 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", counting)
    x, y = make_classification(n=32)
    for max_grad_norm in (None, 1e-3):
        torch.manual_seed(0)
        net = TinyNet()
        before = [p.detach().clone() for p in net.parameters()]
        model = KerasModel(net, nn.CrossEntropyLoss(),
                           optimizer=torch.optim.SGD(net.parameters(), lr=1.0))
        model.fit(loader(x, y, 32), epochs=1, ckpt_path=None, quiet=True,
                  max_grad_norm=max_grad_norm)
        step = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(net.parameters(), before)))
        if max_grad_norm is None:
            assert calls == [] and step > 1e-2
        else:
            assert calls == [1e-3] and step.item() == pytest.approx(1e-3, rel=1e-3)


def test_gradient_accumulation_equals_one_large_batch():
    x, y = make_classification(n=16)
    weights = []
    for batch_size, accumulation in ((16, 1), (4, 4)):
        torch.manual_seed(0)
        net = TinyNet()
        model = KerasModel(net, nn.CrossEntropyLoss(),
                           optimizer=torch.optim.SGD(net.parameters(), lr=0.5))
        model.fit(loader(x, y, batch_size), epochs=3, ckpt_path=None, quiet=True,
                  gradient_accumulation_steps=accumulation)
        weights.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*weights):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


class DtypeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.dtypes = []

    def forward(self, x):
        out = self.fc(x)
        self.dtypes.append(out.dtype)
        return out


def test_later_fit_with_another_mixed_precision_on_the_same_process_works():
    x, y = make_classification(n=16)
    net = DtypeRecorder()
    model = KerasModel(net, nn.CrossEntropyLoss())
    seen = {}
    for precision in ("bf16", "no", "bf16", "fp16"):
        net.dtypes.clear()
        df = model.fit(loader(x, y), epochs=1, ckpt_path=None, quiet=True,
                       mixed_precision=precision)
        assert np.isfinite(df["train_loss"][0])
        seen.setdefault(precision, set()).update(net.dtypes)
    assert seen["bf16"] == {torch.bfloat16}
    assert seen["no"] == {torch.float32}
    assert seen["fp16"] == {torch.float32}  # fp16 autocast is CUDA-only; ignored on the CPU
    # after fit the net's own forward is back: no autocast leaks into plain use
    net.dtypes.clear()
    net(x)
    assert net.dtypes == [torch.float32]


def test_two_models_in_one_process_each_keep_their_precision():
    x, y = make_classification(n=16)
    a, b = DtypeRecorder(), DtypeRecorder()
    ma, mb = KerasModel(a, nn.CrossEntropyLoss()), KerasModel(b, nn.CrossEntropyLoss())
    ma.fit(loader(x, y), epochs=1, ckpt_path=None, quiet=True, mixed_precision="bf16")
    mb.fit(loader(x, y), epochs=1, ckpt_path=None, quiet=True, mixed_precision="no")
    a.dtypes.clear()
    ma.fit(loader(x, y), epochs=1, ckpt_path=None, quiet=True, mixed_precision="bf16")
    assert set(a.dtypes) == {torch.bfloat16}


def test_save_and_load_ckpt_round_trip_and_errors(tmp_path):
    x, y = make_classification(n=16)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    model.fit(loader(x, y), epochs=1, ckpt_path=None, quiet=True)
    path = tmp_path / "weights.pt"
    model.save_ckpt(str(path))
    other = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    other.load_ckpt(str(path))
    for p, q in zip(model.net.parameters(), other.net.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        other.load_ckpt(str(tmp_path / "missing.pt"))
    garbled = tmp_path / "garbled.pt"
    garbled.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="could not load checkpoint"):
        other.load_ckpt(str(garbled))


def test_evaluate_after_an_early_stopped_fit_sees_every_batch():
    from conftest import ScriptedScore

    x, y = make_classification(n=50)
    net = TinyNet()
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"score": ScriptedScore([0.5, 0.4, 0.3])})
    df = model.fit(loader(x, y, 8), loader(x, y, 8), epochs=3, patience=0, monitor="val_score",
                   mode="max", ckpt_path=None, quiet=True)
    assert len(df) == 2 and model.stop_training  # stopped early
    logs = model.evaluate(loader(x, y, 8), quiet=True)
    with torch.no_grad():
        assert logs["val_loss"] == pytest.approx(nn.functional.cross_entropy(net(x), y).item(),
                                                 rel=1e-6)
