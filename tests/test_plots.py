"""The public plotting helpers draw exactly the data they are given."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import kerastorch
from kerastorch import plot_confusion_matrix, plot_history, plot_predictions


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_history_pairs_train_and_val_per_quantity():
    df = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.9, 0.6, 0.5],
                       "train_acc": [0.5, 0.7, 0.8], "lr": [0.1, 0.05, 0.025],
                       "val_loss": [1.0, 0.8, 0.7], "val_acc": [0.4, 0.6, 0.75],
                       "per_class": [[1, 2], [1, 2], [1, 2]]})  # not numeric: no panel
    fig = plot_history(df)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "acc", "lr"]
    for ax, name in zip(fig.axes[:2], ["loss", "acc"]):
        train, val = ax.lines
        assert (train.get_label(), val.get_label()) == ("train", "val")
        assert list(train.get_xdata()) == [1, 2, 3]
        assert list(train.get_ydata()) == df[f"train_{name}"].tolist()
        assert list(val.get_ydata()) == df[f"val_{name}"].tolist()
    (lr,) = fig.axes[2].lines
    assert list(lr.get_ydata()) == [0.1, 0.05, 0.025]
    with pytest.raises(TypeError, match="history must be a pandas DataFrame; received dict"):
        plot_history({"train_loss": [1.0]})


def _ticks_in_view(ax):
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 12, 40])
def test_history_ticks_are_whole_epochs(epochs):
    df = pd.DataFrame({"epoch": range(1, epochs + 1), "train_loss": np.linspace(1, 0, epochs),
                       "lr": [0.1] * epochs})
    fig = plot_history(df)
    for ax in fig.axes:
        ticks = ax.get_xticks()
        assert len(ticks) >= 1 and all(float(t).is_integer() for t in ticks), ticks
        assert len(_ticks_in_view(ax)) >= 2 or epochs == 1
        if epochs <= 3:  # every epoch gets its own tick, and only the epochs do
            assert _ticks_in_view(ax) == list(range(1, epochs + 1))


def test_lr_panel_title_says_epoch_start_under_a_per_step_schedule():
    df = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.9, 0.5], "lr": [0.1, 0.01],
                       "val_loss": [1.0, 0.7]})
    assert [ax.get_title() for ax in plot_history(df).axes] == ["loss", "lr"]
    fig = plot_history(df, lr_scheduler_interval="step")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "lr at epoch start"]
    (lr,) = fig.axes[1].lines  # still one point per epoch: the rate each epoch began with
    assert list(lr.get_ydata()) == [0.1, 0.01]
    with pytest.raises(ValueError, match="lr_scheduler_interval must be 'epoch' or 'step'; "
                                         "received 'batch'"):
        plot_history(df, lr_scheduler_interval="batch")
    with pytest.raises(ValueError, match=r"received \['step'\]"):
        plot_history(df, lr_scheduler_interval=["step"])


def test_plot_confusion_matrix_counts_normalisation_and_errors():
    matrix = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    fig = plot_confusion_matrix(matrix, ["a", "b", "c"])
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), matrix)
    assert [t.get_text() for t in ax.texts] == ["5", "1", "0", "2", "2", "0", "0", "0", "0"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")

    fig = plot_confusion_matrix(matrix, normalize=True)
    shown = fig.axes[0].images[0].get_array()
    # each row divided by its total; the empty row stays zero
    np.testing.assert_allclose(shown, [[5 / 6, 1 / 6, 0], [0.5, 0.5, 0], [0, 0, 0]])
    assert fig.axes[0].texts[0].get_text() == "0.83"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0", "1", "2"]

    with pytest.raises(ValueError, match=r"square 2-D array; received shape \(2, 3\)"):
        plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class_names has 2 names for a 3x3 matrix"):
        plot_confusion_matrix(matrix, ["a", "b"])


def test_plot_predictions_is_seed_000s_two_by_three_grid():
    images = torch.rand(8, 1, 28, 28)
    logits = torch.zeros(8, 10)
    logits[torch.arange(8), torch.tensor([7, 2, 1, 0, 4, 1, 4, 9])] = 1.0
    labels = torch.tensor([7, 2, 1, 0, 4, 1, 9, 9])
    fig = plot_predictions(images, logits, labels)
    axes = fig.axes
    assert len(axes) == 6  # 2 x 3; the last two images are not shown
    titles = [ax.get_title() for ax in axes]
    assert titles == ["pred 7 / true 7", "pred 2 / true 2", "pred 1 / true 1",
                      "pred 0 / true 0", "pred 4 / true 4", "pred 1 / true 1"]
    assert all(ax.title.get_color() == "black" for ax in axes)
    shown = axes[0].images[0].get_array()
    assert shown.shape == (28, 28)  # the single channel is squeezed and drawn in gray
    np.testing.assert_allclose(shown, images[0, 0].numpy().astype(np.float64))
    assert axes[0].get_xticks().size == 0 and axes[0].get_yticks().size == 0

    # a wrong prediction is titled in red; class names replace indices
    fig = plot_predictions(images[6:8], torch.tensor([4, 9]), labels[6:8], nrows=1, ncols=3,
                           class_names=[f"digit{i}" for i in range(10)])
    first, second, empty = fig.axes
    assert first.get_title() == "pred digit4 / true digit9"
    assert first.title.get_color() == "tab:red" and second.title.get_color() == "black"
    assert not empty.axison and not empty.images


def test_plot_predictions_layouts_and_errors():
    channels_last = np.random.default_rng(0).random((2, 5, 5, 3))
    fig = plot_predictions(channels_last, [0, 1], nrows=1, ncols=2)
    assert fig.axes[0].images[0].get_array().shape == (5, 5, 3)
    assert [ax.get_title() for ax in fig.axes] == ["pred 0", "pred 1"]
    # normalised images (outside [0, 1]) are rescaled per image for display
    normalised = torch.tensor([[[-2.0, 0.0], [1.0, 2.0]]])
    fig = plot_predictions(normalised, [3], nrows=1, ncols=1)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), [[0, 0.5], [0.75, 1.0]])

    with pytest.raises(ValueError, match="images has 2 items but preds has 3"):
        plot_predictions(channels_last, [0, 1, 2])
    with pytest.raises(ValueError, match="images has 2 items but labels has 1"):
        plot_predictions(channels_last, [0, 1], [0])
    with pytest.raises(ValueError, match=r"received shape \(2, 5\)"):
        plot_predictions(np.zeros((2, 5)), [0, 1])
    with pytest.raises(ValueError, match="nrows must be an int >= 1; received 0"):
        plot_predictions(channels_last, [0, 1], nrows=0)


def test_helpers_are_public():
    for name in ("plot_history", "plot_confusion_matrix", "plot_predictions"):
        assert name in kerastorch.__all__ and callable(getattr(kerastorch, name))
