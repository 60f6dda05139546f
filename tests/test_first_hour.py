"""The calls a Keras or torchkeras user types in their first hour, each with its result."""

import os
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torchmetrics
from torch import nn

from kerastorch import KerasModel


def _arrays(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))  # float64, as numpy makes it
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def _model(seed=0, metrics=True):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    acc = {"acc": torchmetrics.Accuracy(task="multiclass", num_classes=2)} if metrics else None
    return KerasModel(net, nn.CrossEntropyLoss(), metrics_dict=acc)


def _weights(model):
    return [p.detach().clone() for p in model.net.parameters()]


def test_keras_fit_x_y_equals_the_pair_form_bit_for_bit():
    x, y = _arrays()
    a, b = _model(), _model()
    torch.manual_seed(1)
    ha = a.fit(x, y, epochs=3, ckpt_path=None, quiet=True)
    torch.manual_seed(1)
    hb = b.fit((x, y), epochs=3, ckpt_path=None, quiet=True)
    pd.testing.assert_frame_equal(ha, hb)
    assert all(torch.equal(p, q) for p, q in zip(_weights(a), _weights(b)))


def test_keras_fit_with_validation_data_keyword_and_verbose_zero(capsys):
    x, y = _arrays()
    model = _model()
    history = model.fit(x[:100], y[:100], epochs=2, validation_data=(x[100:], y[100:]),
                        verbose=0, ckpt_path=None)
    assert list(history.columns) == ["epoch", "train_loss", "train_acc", "lr", "val_loss",
                                     "val_acc"]
    assert capsys.readouterr().err == ""  # verbose=0: no progress bar
    expected = model.evaluate((x[100:], y[100:]), quiet=True)
    assert history["val_loss"].iloc[-1] == pytest.approx(expected["val_loss"], rel=1e-6)


def test_val_data_and_validation_data_together_is_an_error_before_training():
    x, y = _arrays()
    model = _model()
    before = _weights(model)
    with pytest.raises(ValueError, match=r"val_data and validation_data .* both given"):
        model.fit((x, y), (x, y), validation_data=(x, y), epochs=1, ckpt_path=None, quiet=True)
    assert all(torch.equal(p, q) for p, q in zip(before, _weights(model)))


@pytest.mark.parametrize("verbose, quiet, error", [(3, False, ValueError), ("yes", False, ValueError),
                                                   (0, True, ValueError)])
def test_bad_verbose_names_the_keyword(verbose, quiet, error):
    x, y = _arrays()
    with pytest.raises(error, match="verbose"):
        _model().fit(x, y, epochs=1, verbose=verbose, quiet=quiet, ckpt_path=None)


def test_ambiguous_arrays_say_did_you_mean():
    x, y = _arrays()
    model = _model()
    with pytest.raises(ValueError, match=r"different lengths, 120 and 119 samples; did you mean "
                                         r"fit\(\(X, y\)\)"):
        model.fit(x, y[:-1], epochs=1, ckpt_path=None, quiet=True)
    with pytest.raises(TypeError, match=r"inputs without labels; did you mean fit\(X, y\)"):
        model.fit(x, epochs=1, ckpt_path=None, quiet=True)
    with pytest.raises(TypeError, match=r"val_data is .* without labels; did you mean "
                                        r"val_data=\(X_val, y_val\)"):
        model.fit((x, y), torch.zeros(3, 4), epochs=1, ckpt_path=None, quiet=True)


def test_keras_evaluate_x_y_and_positional_quiet(capsys):
    x, y = _arrays()
    model = _model()
    model.fit(x, y, epochs=1, ckpt_path=None, quiet=True)
    keras_style = model.evaluate(x, y, quiet=True)
    pair = model.evaluate((x, y), True)  # the older positional quiet still works
    assert keras_style == pair
    assert set(keras_style) == {"val_loss", "val_acc"}
    assert capsys.readouterr().err == ""


def test_summary_uses_the_last_fits_batch_or_says_an_input_is_needed(capsys):
    model = _model()
    with pytest.raises(TypeError, match=r"needs an example input.*input_data=.*after fit"):
        model.summary()
    x, y = _arrays()
    model.fit(x, y, epochs=1, batch_size=16, ckpt_path=None, quiet=True)
    df = model.summary()
    out = capsys.readouterr().out
    assert df["output_shape"].tolist() == [(16, 8), (16, 8), (16, 2)]
    assert df["params"].tolist() == [40, 0, 18]
    assert df.attrs == {"total_params": 58, "trainable_params": 58, "non_trainable_params": 0}
    assert "Total params: 58  Trainable params: 58  Non-trainable params: 0" in out
    explicit = model.summary(input_data=torch.zeros(5, 4), print_table=False)
    assert explicit["output_shape"].tolist() == [(5, 8), (5, 8), (5, 2)]


def test_summary_of_a_dict_batch_net_calls_it_with_keywords():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, left, right):
            return self.a(left) + self.b(right)

    data = [{"left": torch.randn(3), "right": torch.randn(5), "label": torch.tensor(i % 2)}
            for i in range(12)]
    model = KerasModel(Net(), nn.CrossEntropyLoss())
    model.fit(torch.utils.data.DataLoader(data, batch_size=4), epochs=1, ckpt_path=None,
              quiet=True)
    df = model.summary(print_table=False)
    assert df["layer"].tolist() == ["a", "b"]
    assert df["output_shape"].tolist() == [(4, 2), (4, 2)]


def test_repr_shows_net_loss_optimizer_metrics_and_state():
    model = _model()
    text = repr(model)
    assert text.startswith("KerasModel(\n")
    assert "net:          Sequential (58 parameters, 58 trainable)" in text
    assert "loss_fn:      CrossEntropyLoss()" in text
    assert "optimizer:    Adam (lr=0.001)" in text
    assert "metrics:      ['acc']" in text
    assert "state:        not fitted" in text
    x, y = _arrays()
    history = model.fit(x, y, epochs=2, validation_split=0.25, ckpt_path=None, quiet=True)
    text = repr(model)
    last = history.iloc[-1]
    assert f"fitted 2 epoch(s); last train_loss={last.train_loss:.4g}, " \
           f"val_loss={last.val_loss:.4g}" in text
    model.net[0].weight.requires_grad_(False)
    assert "(58 parameters, 26 trainable)" in repr(model)


def test_repr_of_dict_and_own_losses():
    net = nn.Linear(2, 2)
    multi = KerasModel(net, {"a": nn.MSELoss(), "b": nn.L1Loss()}, loss_weights={"b": 0.5})
    assert "loss_fn:      {'a': MSELoss(), 'b': L1Loss()} weighted {'b': 0.5}" in repr(multi)
    own = KerasModel(net, None)
    assert "loss_fn:      None (the net returns its loss)" in repr(own)


def test_predict_after_bf16_fit_returns_float32_that_numpy_accepts():
    x, y = _arrays()
    model = _model(metrics=False)
    model.fit(x, y, epochs=1, mixed_precision="bf16", ckpt_path=None, quiet=True)
    preds = model.predict(x)
    assert preds.dtype == torch.float32
    assert preds.numpy().shape == (120, 2)
    # the values are the bf16 forward's, widened: the same as rounding a float32 forward
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = model.net(torch.as_tensor(x, dtype=torch.float32)).float()
    assert torch.equal(preds, reference)


def test_run_directory_of_keras_arrays_and_of_an_own_loss_net_has_a_confusion_matrix(tmp_path):
    x, y = _arrays()
    model = _model()
    model.fit(x, y, epochs=1, validation_split=0.25, log_dir=str(tmp_path / "arrays"),
              ckpt_path=None, quiet=True)
    (run,) = os.listdir(tmp_path / "arrays")
    report = pd.read_csv(tmp_path / "arrays" / run / "classification_report.csv", index_col=0)
    # the report covers exactly the 30 held-out rows of validation_split=0.25
    assert report.loc[["0", "1"], "support"].sum() == 30

    class OwnLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x, label=None):
            logits = self.linear(x)
            out = {"logits": logits}
            if label is not None:
                out["loss"] = nn.functional.cross_entropy(logits, label)
            return out

    rows = [{"x": torch.tensor(x[i], dtype=torch.float32), "label": torch.tensor(y[i])}
            for i in range(len(x))]
    own = KerasModel(OwnLoss(), None)
    loader = torch.utils.data.DataLoader
    own.fit(loader(rows[:90], batch_size=16), loader(rows[90:], batch_size=16), epochs=1, log_dir=str(tmp_path / "own"), ckpt_path=None,
            quiet=True)
    (run,) = os.listdir(tmp_path / "own")
    files = os.listdir(tmp_path / "own" / run)
    assert "confusion_matrix.png" in files
    report = pd.read_csv(tmp_path / "own" / run / "classification_report.csv", index_col=0)
    assert report.loc[["0", "1"], "support"].sum() == 30
    log = (tmp_path / "own" / run / "log.log").read_text()
    assert not re.search(r"not a classification task", log)


def test_validation_batch_size_sets_the_validation_batches_only():
    x, y = _arrays()
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, inputs):
            seen.append((self.training, len(inputs)))
            return self.linear(inputs)

    model = KerasModel(Recorder(), nn.CrossEntropyLoss())
    model.fit(x[:100], y[:100], validation_data=(x[100:], y[100:]), batch_size=25,
              validation_batch_size=8, epochs=1, ckpt_path=None, quiet=True)
    assert [n for training, n in seen if training] == [25, 25, 25, 25]
    assert [n for training, n in seen if not training] == [8, 8, 4]
    with pytest.raises(ValueError, match=r"validation_batch_size must be None or an int >= 1"):
        model.fit(x, y, validation_batch_size=0, epochs=1, ckpt_path=None, quiet=True)
