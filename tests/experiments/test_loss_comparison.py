"""LossComparison still unpacks as (history, report); its pictures show curves and pairs."""

import pandas as pd
import pytest
from experiment_helpers import mlp, small_digits, two_losses
from matplotlib.figure import Figure

from kerastorch.experiments import LossComparison, compare_losses


@pytest.fixture(scope="module")
def result():
    train, val = small_digits()
    return compare_losses(mlp, two_losses(), train, val, epochs=3, seeds=2, patience=1)


def test_it_unpacks_as_the_named_pair_did(result):
    history, report = result
    assert history is result.history and report is result.report
    assert result[0] is history and result[1] is report and len(result) == 2
    assert result.baseline == "ce"
    assert repr(result) == ("LossComparison(losses=['ce', 'smooth'], seeds=[0, 1], "
                            "baseline='ce', runs=4)")


def test_curves_show_the_mean_over_seeds_in_a_band(result):
    figures = result.plot()
    assert set(figures) == {"curves", "final"}
    assert all(isinstance(fig, Figure) for fig in figures.values())  # no pyplot, no window
    (ax,) = figures["curves"].axes
    assert ax.get_title() == "loss"
    assert [line.get_label() for line in ax.lines] == ["ce train", "ce val", "smooth train",
                                                       "smooth val"]
    ce = result.history[result.history["loss"] == "ce"]
    means = ce.groupby("epoch")["val_loss"].mean()
    x, y = ax.lines[1].get_data()
    assert list(x) == means.index.tolist() and list(y) == pytest.approx(means.tolist())
    assert len(ax.collections) == 4  # one band per curve
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert all(float(t).is_integer() for t in ticks)


def test_final_values_join_each_seed_across_losses(result):
    fig = result.plot(["val_loss", "train_loss"])["final"]
    assert [ax.get_title() for ax in fig.axes] == ["val_loss at the best epoch",
                                                   "train_loss at the best epoch"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ce", "smooth"]
    wide = result.runs.pivot(index="seed", columns="loss", values="val_loss")
    paired = [line for line in ax.lines if len(line.get_xdata()) == 2
              and line.get_marker() == "o"]
    assert [list(line.get_ydata()) for line in paired] == wide[["ce", "smooth"]].values.tolist()


def test_a_table_of_runs_is_enough_to_summarize():
    runs = pd.DataFrame({"loss": ["a", "b"] * 3, "seed": [0, 0, 1, 1, 2, 2],
                         "val_loss": [0.5, 0.4, 0.6, 0.5, 0.55, 0.5]})
    table = LossComparison(pd.DataFrame(), pd.DataFrame(), runs, "a").summary()
    assert table.set_index("loss").loc["b", "diff_mean"] == pytest.approx(-0.0833333333)
