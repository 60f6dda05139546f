"""Pictures of a loss experiment: mean learning curves over seeds, and paired final values.

Both are backend-free ``matplotlib.figure.Figure`` objects (no window, no
``plt.close`` needed); matplotlib is imported only when one is drawn.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

from ..plots import new_figure

__all__ = ["curves_figure", "final_values_figure", "comparison_figures"]


def comparison_figures(history: pd.DataFrame, runs: pd.DataFrame,
                       metrics: Sequence[str]) -> Dict[str, object]:
    """``{"curves": ..., "final": ...}``: :func:`curves_figure` and :func:`final_values_figure`."""
    return {"curves": curves_figure(history), "final": final_values_figure(runs, metrics)}


def curves_figure(history: pd.DataFrame):
    """One panel per quantity (the loss, each metric): per loss, the mean over seeds at each
    epoch, train dashed and val solid, in a band of mean +- one standard deviation (ddof=1;
    no band where one seed is left, e.g. after the others stopped early).

    Example:
        >>> history = pd.DataFrame({"loss": ["a"] * 4, "seed": [0, 0, 1, 1],
        ...                         "epoch": [1, 2, 1, 2], "train_loss": [1.0, 0.5, 0.8, 0.7],
        ...                         "lr": [0.1] * 4, "val_loss": [1.1, 0.6, 0.9, 0.8]})
        >>> fig = curves_figure(history)
        >>> [ax.get_title() for ax in fig.axes], len(fig.axes[0].collections)
        (['loss'], 2)
    """
    from matplotlib.ticker import MaxNLocator

    quantities = _quantities(history)
    losses = list(dict.fromkeys(history["loss"]))
    fig = new_figure((4.2 * len(quantities), 3.4), pyplot=False)
    axes = fig.subplots(1, len(quantities), squeeze=False)[0]
    for ax, quantity in zip(axes, quantities):
        for i, name in enumerate(losses):
            rows = history[history["loss"] == name]
            for stage, style in (("train", "--"), ("val", "-")):
                column = f"{stage}_{quantity}"
                if column not in rows:
                    continue
                grouped = rows.groupby("epoch")[column]
                mean, std = grouped.mean(), grouped.std(ddof=1)
                ax.plot(mean.index, mean.to_numpy(), style, color=f"C{i}", marker="o",
                        markersize=3, label=f"{name} {stage}")
                ax.fill_between(mean.index, mean - std, mean + std, color=f"C{i}", alpha=0.15,
                                linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=quantity, xlabel="epoch")
    axes[0].set_ylabel("mean over seeds +- std")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def final_values_figure(runs: pd.DataFrame, metrics: Sequence[str]):
    """One panel per metric: each run's value at its best epoch, a box per loss, and each
    seed's values joined by a grey line across the losses (the comparison is paired).

    Example:
        >>> runs = pd.DataFrame({"loss": ["a", "b", "a", "b"], "seed": [0, 0, 1, 1],
        ...                      "val_loss": [0.5, 0.4, 0.6, 0.45]})
        >>> fig = final_values_figure(runs, ["val_loss"])
        >>> [t.get_text() for t in fig.axes[0].get_xticklabels()], len(fig.axes[0].lines) >= 2
        (['a', 'b'], True)
    """
    metrics = list(metrics)
    losses = list(dict.fromkeys(runs["loss"]))
    positions = np.arange(len(losses))
    fig = new_figure((max(3.0, 1.2 * len(losses) + 1.5) * max(len(metrics), 1), 3.4),
                     pyplot=False)
    axes = fig.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        wide = runs.pivot(index="seed", columns="loss", values=metric)[losses]
        for seed, values in wide.iterrows():
            ax.plot(positions, values.to_numpy(float), color="0.6", linewidth=0.8, marker="o",
                    markersize=4, markerfacecolor="C0", markeredgewidth=0, zorder=3)
        ax.boxplot([wide[name].dropna().to_numpy(float) for name in losses],
                   positions=positions, widths=0.35, showfliers=False, zorder=2)
        ax.set_xticks(positions, losses)
        ax.set(title=f"{metric} at the best epoch", xlabel="loss")
    fig.tight_layout()
    return fig


def _quantities(history: pd.DataFrame) -> List[str]:
    """``loss`` and each metric, in column order (``train_acc`` and ``val_acc`` give ``acc``)."""
    names = []
    for column in history.columns:
        if column.startswith(("train_", "val_")) and pd.api.types.is_numeric_dtype(history[column]):
            name = column.split("_", 1)[1]
            if name not in names:
                names.append(name)
    return names or ["loss"]
