"""LivePlot: one picture updated in place in a notebook, a PNG file in a terminal."""

import os

import matplotlib.image as mpimg
import pytest
import torch
from conftest import TinyNet, loader, make_classification
from torch import nn

import kerastorch.callbacks.live_plot as live_plot
from kerastorch import KerasModel
from kerastorch.callbacks import LivePlot


def _fit(callbacks, epochs=3, **kwargs):
    x, y = make_classification(n=16)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    return model.fit(loader(x, y), loader(x, y), epochs=epochs, ckpt_path=None, patience=None,
                     quiet=True, callbacks=callbacks, **kwargs)


@pytest.mark.parametrize("refresh_interval, epochs, draws", [
    (0, 3, 3),       # every epoch
    (3600, 3, 2),    # the first epoch, then once more after the last
    (3600, 1, 1),    # a single epoch is drawn once
])
def test_terminal_writes_a_png_throttled(tmp_path, refresh_interval, epochs, draws):
    plot = LivePlot(tmp_path / "curves.png", refresh_interval=refresh_interval)
    _fit([plot], epochs=epochs)
    assert plot.draws == draws
    image = mpimg.imread(tmp_path / "curves.png")
    assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 400
    assert os.listdir(tmp_path) == ["curves.png"]  # written via a temp file and a rename


class FakeHandle:
    def __init__(self, log):
        self.log = log

    def update(self, obj):
        self.log.append(("update", obj))


def test_notebook_updates_one_display_in_place(monkeypatch, tmp_path):
    display_module = pytest.importorskip("IPython.display")
    log = []

    def fake_display(obj, display_id=None):
        log.append(("display", obj, display_id))
        return FakeHandle(log)

    monkeypatch.setattr(live_plot, "_in_notebook", lambda: True)
    monkeypatch.setattr(display_module, "display", fake_display)
    monkeypatch.chdir(tmp_path)
    plot = LivePlot(refresh_interval=0)
    _fit([plot], epochs=3)
    assert [entry[0] for entry in log] == ["display", "update", "update"]
    assert log[0][2] is True  # a display id, so later updates replace the picture
    images = [log[0][1], log[1][1], log[2][1]]
    assert all(isinstance(im, display_module.Image) and im.data[:8] == b"\x89PNG\r\n\x1a\n"
               for im in images)
    assert os.listdir(tmp_path) == []  # no PNG file in a notebook

    # one instance reused: the next fit shows a new picture
    _fit([plot], epochs=1)
    assert [entry[0] for entry in log[3:]] == ["display"]


def test_plot_true_with_log_dir_draws_into_the_run_directory_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fit([], epochs=2, plot=True, log_dir="runs")
    assert os.listdir(tmp_path) == ["runs"]  # no ./curves.png next to the run
    (run,) = os.listdir(tmp_path / "runs")
    assert mpimg.imread(tmp_path / "runs" / run / "curves.png").ndim == 3


@pytest.mark.parametrize("interval, title", [("epoch", "lr"), ("step", "lr at epoch start")])
def test_whole_epoch_ticks_and_the_lr_title_follows_the_schedule(tmp_path, monkeypatch,
                                                                 interval, title):
    figures, draw = [], live_plot.history_figure

    def spy(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(live_plot, "history_figure", spy)
    x, y = make_classification(n=16)
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=optimizer,
                       lr_scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5),
                       lr_scheduler_interval=interval)
    model.fit(loader(x, y), loader(x, y), epochs=3, ckpt_path=None, quiet=True,
              callbacks=[LivePlot(tmp_path / "c.png", refresh_interval=0)])
    assert len(figures) == 3
    first, last = figures[0], figures[-1]
    assert [ax.get_title() for ax in last.axes] == ["loss", title]
    # the one-epoch picture too: a single tick, at epoch 1
    low, high = first.axes[0].get_xlim()
    assert [t for t in first.axes[0].get_xticks() if low <= t <= high] == [1]
    for ax in last.axes:
        low, high = ax.get_xlim()
        assert [t for t in ax.get_xticks() if low <= t <= high] == [1, 2, 3]


def test_only_the_main_process_draws(tmp_path):
    class NotMain:
        is_main_process = False

    plot = LivePlot(tmp_path / "c.png", refresh_interval=0)
    plot.set_model(NotMain())
    plot.on_fit_begin()
    plot.on_epoch_end(1, {"epoch": 1, "train_loss": 1.0})
    plot.on_fit_end()
    assert plot.draws == 0 and os.listdir(tmp_path) == []


def test_bad_arguments():
    with pytest.raises(TypeError, match="path must be a str path or None; received int"):
        LivePlot(5)
    with pytest.raises(ValueError, match="refresh_interval must be a number >= 0; received -1"):
        LivePlot(refresh_interval=-1)
