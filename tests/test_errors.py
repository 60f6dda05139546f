"""Bad input gets a TypeError/ValueError naming expected and received, before the first batch."""

import pytest
import torch
import torchmetrics
from conftest import TinyNet, loader, make_classification
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kerastorch import KerasModel


class CountingNet(TinyNet):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


@pytest.fixture
def data():
    x, y = make_classification(n=16)
    return loader(x, y, 8)


def _model(**kwargs):
    CountingNet.calls = 0
    return KerasModel(CountingNet(), nn.CrossEntropyLoss(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(monitor="val_acc"), ValueError,
         r"monitor 'val_acc' is not a column.*available: \['epoch', 'train_loss', 'lr'\]"
         r".*pass fit\(\.\.\., val_data=\.\.\.\)"),
        (dict(monitor="train_auc"), ValueError, r"monitor 'train_auc'.*available"),
        (dict(mode="maximum"), ValueError, r"mode must be one of 'min', 'max'; received 'maximum'"),
        (dict(mixed_precision="fp8"), ValueError,
         r"mixed_precision must be None or one of 'no', 'fp16', 'bf16'; received 'fp8'"),
        (dict(epochs=0), ValueError, r"epochs must be an int >= 1; received 0"),
        (dict(epochs=2.5), ValueError, r"epochs must be an int >= 1; received 2.5"),
        (dict(gradient_accumulation_steps=0), ValueError, r"gradient_accumulation_steps"),
        (dict(max_grad_norm=-1.0), ValueError, r"max_grad_norm must be None or a number > 0"),
        (dict(patience=-1), ValueError, r"patience must be None or an int >= 0"),
        (dict(trian_data=None), TypeError, r"unexpected keyword argument 'trian_data'; "
                                           r"did you mean 'train_data'\?"),
        (dict(callbacks=[object()]), TypeError, r"Callback instances; received object"),
        (dict(callbacks="cb"), TypeError, r"callbacks must be a list of Callback objects; "
                                          r"received str 'cb'"),
        (dict(ckpt_path=123), TypeError, r"ckpt_path must be a str or os.PathLike path or "
                                         r"None; received int 123"),
        (dict(state_path=7), TypeError, r"state_path must be a str or os.PathLike path or "
                                        r"None; received int 7"),
        (dict(log_dir=3.5), TypeError, r"log_dir must be a str or os.PathLike path or None; "
                                       r"received float 3.5"),
        (dict(resume=7), TypeError, r"resume must be a bool or a path; received int"),
        *[(dict([(flag, value)]), TypeError, f"{flag} must be True or False; received "
                                             f"{type(value).__name__} {value!r}")
          for flag in ("plot", "quiet", "cpu", "shuffle", "skip_nonfinite", "fast_data",
                       "compile", "wandb")
          for value in ("no", 1)],
    ],
)
def test_fit_argument_errors_are_raised_before_any_batch(data, kwargs, exc, pattern):
    model = _model()
    with pytest.raises(exc, match=pattern):
        model.fit(data, **{"ckpt_path": None, "quiet": True, **kwargs})
    assert CountingNet.calls == 0


def test_constructor_errors():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module; received function"):
        KerasModel(lambda x: x, nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="loss_fn must be callable.*received str"):
        KerasModel(TinyNet(), "cross_entropy")
    with pytest.raises(TypeError, match=r"metrics_dict\['acc'\] must be a torchmetrics Metric "
                                        r"or a callable.*received float"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss(), metrics_dict={"acc": 0.5})
    with pytest.raises(TypeError, match="metrics_dict must be a dict.*received list"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss(), metrics_dict=[torchmetrics.MeanMetric()])
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss(), optimizer="adam")
    with pytest.raises(TypeError, match="step_runner must be a subclass of kerastorch.StepRunner"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss(), step_runner=object)
    with pytest.raises(ValueError, match="lr_scheduler_interval must be 'epoch' or 'step'"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss(), lr_scheduler_interval="batch")


def test_empty_loaders_are_rejected_before_training(data):
    empty = DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)))
    model = _model()
    with pytest.raises(ValueError, match=r"train_data has no batches"):
        model.fit(empty, ckpt_path=None, quiet=True)
    with pytest.raises(ValueError, match=r"val_data has no batches"):
        model.fit(data, empty, ckpt_path=None, quiet=True)
    assert CountingNet.calls == 0


def test_wrong_data_kinds(data):
    model = _model()
    with pytest.raises(TypeError, match=r"train_data must be a torch DataLoader, a Dataset, or "
                                        r"an \(X, y\) pair.*received a str"):
        model.fit("train.csv", ckpt_path=None, quiet=True)
    with pytest.raises(ValueError, match=r"len\(X\)=16, len\(y\)=15"):
        model.fit((torch.zeros(16, 4), torch.zeros(15)), ckpt_path=None, quiet=True)


def test_non_writable_ckpt_path_fails_before_training(data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    model = _model()
    with pytest.raises(ValueError, match=r"ckpt_path .* is not writable"):
        model.fit(data, ckpt_path=str(blocker / "sub" / "best.pt"), quiet=True)
    assert CountingNet.calls == 0


@pytest.mark.parametrize(
    "loss_fn, exc, pattern",
    [
        (nn.CrossEntropyLoss(reduction="none"), ValueError,
         r"CrossEntropyLoss has reduction='none' and returned per-element losses of shape "
         r"\(8,\); training needs a scalar loss"),
        (lambda p, t: nn.functional.cross_entropy(p, t, reduction="none"), ValueError,
         r"returned a tensor of shape \(8,\); a training loss must be a scalar"),
        (lambda p, t: nn.functional.cross_entropy(p.detach(), t), ValueError,
         r"no gradient path from the loss to the net"),
        (lambda p, t: float(nn.functional.cross_entropy(p.detach(), t)), TypeError,
         r"must return a torch.Tensor; received float"),
        (nn.BCEWithLogitsLoss(), ValueError,
         r"BCEWithLogitsLoss in binary/multi-label mode expects y_true with the same shape as "
         r"y_pred; received y_pred \(8, 3\) and y_true \(8,\)"),
    ],
)
def test_bad_loss_functions_fail_on_the_first_batch_before_any_update(data, loss_fn, exc,
                                                                      pattern):
    net = TinyNet()
    before = [p.detach().clone() for p in net.parameters()]
    model = KerasModel(net, loss_fn)
    with pytest.raises(exc, match=pattern):
        model.fit(data, ckpt_path=None, quiet=True)
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p, b)


def test_batch_size_mismatch_between_output_and_labels(data):
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x).reshape(-1, 1).repeat(1, 3)[: 2 * len(x)]

    model = KerasModel(Flat(), lambda p, t: p.mean())
    with pytest.raises(ValueError, match=r"output has batch size 16 but the labels have 8"):
        model.fit(data, ckpt_path=None, quiet=True)


def test_dict_batches_without_a_label_key_name_the_keys_and_label_keys():
    class DictDataset(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"x": torch.zeros(4), "answer": torch.tensor(0)}

    model = _model()
    before = [p.detach().clone() for p in model.net.parameters()]
    with pytest.raises(TypeError, match=r"keys \['answer', 'x'\] and none of the label keys "
                                        r"\['label', 'labels', 'y', 'target'\].*label_keys="):
        model.fit(DataLoader(DictDataset(), batch_size=2), ckpt_path=None, quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(before, model.net.parameters()))


def test_mode_contradicting_higher_is_better_warns(data):
    acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss(), metrics_dict={"acc": acc})
    with pytest.warns(UserWarning, match=r"monitor 'val_acc' uses mode='min'.*pass mode='max'"):
        model.fit(data, data, epochs=1, monitor="val_acc", mode="min", ckpt_path=None,
                  quiet=True)


def test_log_softmax_into_cross_entropy_warns_at_the_users_fit_line(data):
    class LogSoftmaxNet(TinyNet):
        def forward(self, x):
            return super().forward(x).log_softmax(dim=1)

    model = KerasModel(LogSoftmaxNet(), nn.CrossEntropyLoss())
    with pytest.warns(UserWarning, match="log_softmax") as record:
        model.fit(data, epochs=1, ckpt_path=None, quiet=True)
    assert any(w.filename == __file__ for w in record if "log_softmax" in str(w.message))


def test_loader_yielding_non_tensors_is_a_type_error_naming_the_item():
    class Strings(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return f"sample {i}", i % 3

    model = _model()
    with pytest.raises(TypeError, match=r"expects every batch item to be a tensor; input 0 is a "
                                        r"tuple of str.*collate_fn"):
        model.fit(DataLoader(Strings(), batch_size=2), ckpt_path=None, quiet=True)
    assert CountingNet.calls == 0


def test_an_empty_x_y_pair_names_the_argument():
    model = _model()
    with pytest.raises(ValueError, match=r"train_data is an \(X, y\) pair with no samples"):
        model.fit((torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), quiet=True,
                  ckpt_path=None)
    with pytest.raises(ValueError, match=r"val_data is an \(X, y\) pair with no samples"):
        model.evaluate((torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), quiet=True)
    assert CountingNet.calls == 0


@pytest.mark.parametrize("scheduler", ["steplr", 0.1, object()])
def test_a_scheduler_without_step_fails_at_construction(scheduler):
    with pytest.raises(TypeError, match="lr_scheduler must be a torch.optim.lr_scheduler object "
                                        "with step.. and state_dict..; received"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss(), lr_scheduler=scheduler)


def test_a_metric_that_raises_on_the_first_batch_changes_no_weight(data):
    def broken(preds, labels):
        raise RuntimeError("metric bug")

    net = TinyNet()
    before = [p.detach().clone() for p in net.parameters()]
    model = KerasModel(net, nn.CrossEntropyLoss(), metrics_dict={"mine": broken},
                       optimizer=torch.optim.Adam(net.parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match="metric bug"):
        model.fit(data, ckpt_path=None, quiet=True)
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))
    assert not model.optimizer.state  # Adam took no step either


def test_metric_that_raises_propagates_with_a_note_naming_it(data):
    def broken(preds, labels):
        raise RuntimeError("metric bug")

    model = KerasModel(TinyNet(), nn.CrossEntropyLoss(), metrics_dict={"mine": broken})
    with pytest.raises(RuntimeError, match="metric bug") as info:
        model.fit(data, ckpt_path=None, quiet=True)
    assert any("raised in metric 'mine'.update" in note for note in info.value.__notes__)


def test_optimizer_over_parameters_not_in_the_net():
    other = TinyNet()
    with pytest.raises(ValueError, match=r"optimizer holds 2 parameter tensor\(s\) that are not "
                                         r"in net \(shapes \[\(3, 4\), \(3,\)\]\)"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss(),
                   optimizer=torch.optim.SGD(other.parameters(), lr=0.1))

    class WeightedLoss(nn.Module):  # a loss with learnable parameters is fine
        def __init__(self):
            super().__init__()
            self.log_scale = nn.Parameter(torch.zeros(()))

        def forward(self, p, t):
            return nn.functional.cross_entropy(p, t) * self.log_scale.exp() - self.log_scale

    net, loss = TinyNet(), WeightedLoss()
    KerasModel(net, loss, optimizer=torch.optim.SGD([*net.parameters(), *loss.parameters()], 0.1))


def test_schedulers_that_would_fail_or_misbehave_mid_run(data):
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=opt, lr_scheduler=one_cycle,
                       lr_scheduler_interval="step")
    # 2 batches x 6 epochs = 12 steps > 10: torch would raise in epoch 6
    with pytest.raises(ValueError, match=r"OneCycleLR allows total_steps=10 steps but this fit "
                                         r"would step it 12 times"):
        model.fit(data, epochs=6, ckpt_path=None, quiet=True)
    df = model.fit(data, epochs=5, ckpt_path=None, quiet=True, patience=None)
    assert len(df) == 5
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(ValueError, match="ReduceLROnPlateau needs the monitored value"):
        KerasModel(net, nn.CrossEntropyLoss(), optimizer=opt, lr_scheduler=plateau,
                   lr_scheduler_interval="step")


def test_iterable_dataset_without_len_trains_with_a_totalless_progress_bar():
    import io

    from kerastorch.callbacks import ProgressBar

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            g = torch.Generator().manual_seed(0)
            for _ in range(20):
                x = torch.randn(4, generator=g)
                yield x, int(x.sum() > 0)

    stream = io.StringIO()
    model = _model()
    df = model.fit(DataLoader(Stream(), batch_size=8), DataLoader(Stream(), batch_size=8),
                   epochs=2, ckpt_path=None, quiet=True, callbacks=[ProgressBar(file=stream)])
    assert len(df) == 2 and model.train_steps is None
    assert CountingNet.calls == 2 * (3 + 3)  # 20 samples -> 3 batches per pass
    assert "3it" in stream.getvalue()  # counted batches, no total
