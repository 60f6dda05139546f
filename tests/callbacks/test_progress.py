"""The progress bar: silent when quiet, throttled otherwise, shows the epoch row at the end."""

import io
import time

import torch
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback, ProgressBar


class Slow(Callback):
    def on_train_batch_end(self, step, logs=None):
        time.sleep(0.002)


def test_quiet_writes_nothing(capsys):
    x, y = make_classification(n=32)
    KerasModel(TinyNet(), nn.CrossEntropyLoss()).fit(loader(x, y, 4), loader(x, y), epochs=2,
                                                     ckpt_path=None, quiet=True)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_progress_refreshes_at_most_ten_times_a_second_and_ends_with_the_row():
    x, y = make_classification(n=2000)
    stream = io.StringIO()
    bar = ProgressBar(file=stream)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    start = time.monotonic()
    model.fit(loader(x, y, 4), loader(x, y, 500), epochs=1, ckpt_path=None, quiet=True,
              callbacks=[bar, Slow()])
    seconds = time.monotonic() - start
    assert seconds > 0.5  # 500 steps of >= 2 ms each
    assert 1 <= bar.refreshes <= 10 * seconds + 1
    text = stream.getvalue()
    redraws = text.count("\r")
    assert redraws <= 10 * seconds + 5, (redraws, seconds)
    last = text.rstrip().split("\r")[-1]
    row = model.history.iloc[0]
    assert f"train_loss={row['train_loss']:.4g}" in last
    assert f"val_loss={row['val_loss']:.4g}" in last and "500/500" in last


def test_only_the_main_process_draws():
    class NotMain:
        is_main_process = False
        epochs = 1
        train_steps = 3

    bar = ProgressBar(file=io.StringIO())
    bar.set_model(NotMain())
    bar.on_epoch_begin(1)
    bar.on_train_batch_end(0, {"train_loss": torch.tensor(1.0)})
    bar.on_epoch_end(1, {"train_loss": 1.0})
    assert bar.file.getvalue() == ""
