"""Plotting helpers: history curves, a confusion matrix, a grid of predictions (matplotlib).

matplotlib is imported only when a helper is called. The public helpers return
pyplot figures (so ``plt.show()`` and a notebook's inline display work as usual);
callbacks draw on backend-free ``matplotlib.figure.Figure`` objects instead, which
never open a window, need no ``plt.close`` and are safe outside the main thread.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

from .evaluation import to_classes
from .files import atomic_open

__all__ = ["plot_history", "plot_confusion_matrix", "plot_predictions"]

# the lr column is the rate each epoch started with: the rate of the whole epoch unless a
# per-step schedule moves it within the epoch
LR_TITLES = {"epoch": "lr", "step": "lr at epoch start"}


def plot_history(history: pd.DataFrame, *, lr_scheduler_interval: str = "epoch"):
    """One panel per quantity (loss, each metric, lr), train and val curves together.

    The x axis is the epoch, with ticks at whole epochs only. The ``lr`` column holds
    the rate each epoch started with, one point per epoch; with a per-step schedule
    the rate moves within an epoch, so that panel is titled ``lr at epoch start``
    rather than ``lr``.

    Args:
        history: the DataFrame returned by ``fit`` (an ``epoch`` column is the
            x axis when present; non-numeric columns are skipped).
        lr_scheduler_interval: how the fit stepped its scheduler, ``"epoch"`` or
            ``"step"`` (``model.lr_scheduler_interval``). Defaults to "epoch".

    Returns:
        The matplotlib ``Figure``.

    Raises:
        TypeError: ``history`` is not a DataFrame.
        ValueError: ``lr_scheduler_interval`` is neither "epoch" nor "step".

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.9, 0.5],
        ...                    "lr": [0.1, 0.1], "val_loss": [1.0, 0.7]})
        >>> fig = plot_history(df)
        >>> [ax.get_title() for ax in fig.axes]
        ['loss', 'lr']
        >>> [line.get_label() for line in fig.axes[0].lines]
        ['train', 'val']
        >>> [ax.get_title() for ax in plot_history(df, lr_scheduler_interval="step").axes]
        ['loss', 'lr at epoch start']
    """
    return history_figure(history, lr_scheduler_interval=lr_scheduler_interval, pyplot=True)


def history_figure(history: pd.DataFrame, *, lr_scheduler_interval: str = "epoch",
                   pyplot: bool = False):
    import pandas as pd

    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas DataFrame; received {type(history).__name__}")
    if not isinstance(lr_scheduler_interval, str) or lr_scheduler_interval not in LR_TITLES:
        raise ValueError(f"lr_scheduler_interval must be 'epoch' or 'step'; received "
                         f"{lr_scheduler_interval!r}")
    from matplotlib.ticker import MaxNLocator

    names = _history_panels(history)
    fig = new_figure((4 * max(len(names), 1), 3.2), pyplot=pyplot)
    axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
    x = history["epoch"] if "epoch" in history else range(1, len(history) + 1)
    for ax, name in zip(axes, names):
        for prefix in ("train_", "val_", ""):
            col = prefix + name
            if col in history and col != "epoch":
                ax.plot(x, history[col], marker="o", label=prefix.rstrip("_") or name)
        ax.set_title(LR_TITLES[lr_scheduler_interval] if name == "lr" else name)
        ax.set_xlabel("epoch")
        # whole epochs only; min_n_ticks=1 keeps that true for a single epoch too
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.legend()
    fig.tight_layout()
    return fig


def _history_panels(history: pd.DataFrame) -> list:
    """Quantity names in column order: ``train_acc`` and ``val_acc`` share the panel ``acc``."""
    import pandas as pd

    names = []
    for col in history.columns:
        if col == "epoch" or not pd.api.types.is_numeric_dtype(history[col]):
            continue
        name = col.split("_", 1)[1] if col.startswith(("train_", "val_")) else col
        if name not in names:
            names.append(name)
    return names


def plot_confusion_matrix(matrix: Any, class_names: Optional[Sequence[str]] = None, *,
                          normalize: bool = False, title: str = "Confusion matrix"):
    """Draw a confusion matrix: rows are true classes, columns predicted classes.

    Args:
        matrix: a square array of counts, e.g. from
            ``sklearn.metrics.confusion_matrix(y_true, y_pred)``.
        class_names: tick labels, one per class; None numbers the classes from 0.
            Defaults to None.
        normalize: divide each row by its total, so the diagonal shows each class's
            recall (a row with no samples stays 0). Defaults to False.
        title: the axes title. Defaults to "Confusion matrix".

    Returns:
        The matplotlib ``Figure``; cells are annotated with their values when there
        are at most 30 classes.

    Raises:
        ValueError: ``matrix`` is not square, or ``class_names`` has the wrong length.

    Example:
        >>> fig = plot_confusion_matrix([[5, 1], [0, 4]], ["cat", "dog"])
        >>> ax = fig.axes[0]
        >>> [t.get_text() for t in ax.texts]
        ['5', '1', '0', '4']
        >>> [t.get_text() for t in ax.get_yticklabels()]
        ['cat', 'dog']
    """
    return confusion_figure(matrix, class_names, normalize=normalize, title=title, pyplot=True)


def confusion_figure(matrix: Any, class_names: Optional[Sequence[str]] = None, *,
                      normalize: bool = False, title: str = "Confusion matrix",
                      pyplot: bool = False):
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"matrix must be a non-empty square 2-D array; received shape "
                         f"{matrix.shape}")
    classes = matrix.shape[0]
    names = [str(i) for i in range(classes)] if class_names is None else [str(c) for c in
                                                                          class_names]
    if len(names) != classes:
        raise ValueError(f"class_names has {len(names)} names for a {classes}x{classes} matrix; "
                         f"pass one name per class")
    size = 4.5 + 0.35 * classes
    fig = new_figure((size, size), pyplot=pyplot)
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(xticks=range(classes), yticks=range(classes), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title=title)
    ax.tick_params(axis="x", labelrotation=45 if max(map(len, names)) > 3 else 0)
    if classes <= 30:  # beyond that the numbers no longer fit in their cells
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(classes):
            for j in range(classes):
                text = f"{matrix[i, j]:.2f}" if normalize else f"{matrix[i, j]:.0f}"
                ax.text(j, i, text, ha="center", va="center",
                        color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    return fig


def plot_predictions(images: Any, preds: Any, labels: Any = None, *,
                     class_names: Optional[Sequence[str]] = None, nrows: int = 2, ncols: int = 3):
    """A grid of images titled with their predicted (and true) classes.

    The first ``nrows * ncols`` images are shown. A title reads ``pred 3`` or, with
    ``labels``, ``pred 3 / true 5``, in red when the prediction is wrong.

    Args:
        images: ``(N, H, W)``, ``(N, C, H, W)`` (as torch loads them) or ``(N, H, W, C)``
            tensors or arrays with 1, 3 or 4 channels. Images outside ``[0, 1]``
            (e.g. normalised ones) are rescaled per image for display.
        preds: ``(N,)`` class indices, ``(N, classes)`` scores (their argmax is taken),
            e.g. ``model.predict(images)``, or ``(N,)``/``(N, 1)`` binary scores
            (thresholded as :func:`kerastorch.evaluation.to_classes` does).
        labels: ``(N,)`` true class indices, or None. Defaults to None.
        class_names: names to show instead of indices. Defaults to None.
        nrows: rows of the grid. Defaults to 2.
        ncols: columns of the grid. Defaults to 3.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: the lengths or shapes do not match.

    Example:
        >>> import torch
        >>> images = torch.zeros(6, 1, 8, 8)
        >>> fig = plot_predictions(images, torch.tensor([0, 1, 2, 3, 4, 5]),
        ...                        labels=torch.tensor([0, 1, 2, 3, 4, 0]))
        >>> [ax.get_title() for ax in fig.axes][-2:]
        ['pred 4 / true 4', 'pred 5 / true 0']
    """
    pictures = _as_images(images)
    pred_idx = _as_classes(preds, "preds")
    true_idx = None if labels is None else _as_classes(labels, "labels")
    for name, values in (("preds", pred_idx), ("labels", true_idx)):
        if values is not None and len(values) != len(pictures):
            raise ValueError(f"images has {len(pictures)} items but {name} has {len(values)}; "
                             "pass one per image")
    for name, value in (("nrows", nrows), ("ncols", ncols)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; received {value!r}")
    fig = new_figure((2.6 * ncols, 2.8 * nrows), pyplot=True)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    name = (lambda i: str(i)) if class_names is None else (lambda i: str(class_names[i]))
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(pictures):
            ax.set_axis_off()
            continue
        picture = pictures[i]
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="none")
        title, color = f"pred {name(pred_idx[i])}", "black"
        if true_idx is not None:
            title += f" / true {name(true_idx[i])}"
            color = "black" if pred_idx[i] == true_idx[i] else "tab:red"
        ax.set_title(title, color=color)
    fig.tight_layout()
    return fig


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a tensor or array; received {type(value).__name__}") \
            from exc


def _as_classes(values: Any, name: str) -> np.ndarray:
    array = _to_numpy(values, name)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be (N,) class indices or (N, classes) scores; received "
                         f"shape {array.shape}")
    return to_classes(torch.from_numpy(np.ascontiguousarray(array))).numpy()


def _as_images(images: Any) -> list:
    array = _to_numpy(images, "images").astype(np.float64)
    if array.ndim == 4 and array.shape[1] in (1, 3, 4):  # channels first, as torch stores them
        array = array.transpose(0, 2, 3, 1)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"images must be (N, H, W), (N, C, H, W) or (N, H, W, C) with 1, 3 or "
                         f"4 channels; received shape {tuple(np.shape(images))}")
    out = []
    for picture in array:
        low, high = picture.min(), picture.max()
        if low < 0 or high > 1:
            picture = (picture - low) / (high - low) if high > low else np.zeros_like(picture)
        out.append(picture)
    return out


def new_figure(figsize, *, pyplot: bool):
    if pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def figure_png(fig, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(fig, path: str, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` as a PNG through a temporary file and a rename.

    An image viewer (or a test) watching ``path`` never sees half a picture.
    """
    data = figure_png(fig, dpi)
    with atomic_open(path, "wb") as f:
        f.write(data)
