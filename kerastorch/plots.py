"""Plotting helpers for histories (matplotlib is imported only when called)."""

from __future__ import annotations

import pandas as pd

__all__ = ["plot_history"]


def plot_history(history: pd.DataFrame):
    """One panel per quantity (loss, each metric, lr), train and val curves together.

    Args:
        history: the DataFrame returned by ``fit``.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    names = []
    for col in history.columns:
        if col == "epoch":
            continue
        name = col.split("_", 1)[1] if col.startswith(("train_", "val_")) else col
        if name not in names:
            names.append(name)
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4 * max(len(names), 1), 3.2),
                             squeeze=False)
    x = history["epoch"] if "epoch" in history else range(1, len(history) + 1)
    for ax, name in zip(axes[0], names):
        for prefix in ("train_", "val_", ""):
            col = prefix + name
            if col in history:
                ax.plot(x, history[col], marker="o", label=prefix.rstrip("_") or name)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    return fig
