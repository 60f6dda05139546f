"""The learning-rate range test (Leslie Smith's, as fastai's ``lr_find``): the loop, the
smoothing, the suggestion rule and the result object. ``KerasModel.lr_find`` prepares
the data and the Accelerator and restores the model afterwards."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Optional

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

from .plots import new_figure

__all__ = ["LRFinderResult", "check_range", "lr_grid", "range_test", "smoothed", "steepest"]


def check_range(start_lr: Any, end_lr: Any, num_steps: Any, beta: Any, diverge: Any) -> None:
    """The range test's arguments, each with a clear error naming it."""
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0; received {value!r}")
    if end_lr <= start_lr:
        raise ValueError(f"end_lr must be greater than start_lr; received start_lr={start_lr}, "
                         f"end_lr={end_lr}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 5:
        raise ValueError(f"num_steps must be an int >= 5; received {num_steps!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
        raise ValueError(f"smooth must be a number in [0, 1); received {beta!r}")
    if diverge is not None and (isinstance(diverge, bool) or not isinstance(diverge, (int, float))
                                or not diverge > 1):
        raise ValueError(f"diverge must be None or a number > 1; received {diverge!r}")


def lr_grid(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` learning rates spaced evenly in log scale from ``start_lr`` to ``end_lr``.

    Example:
        >>> lr_grid(1e-3, 1e-1, 3).tolist()
        [0.001, 0.01, 0.1]
    """
    return np.geomspace(start_lr, end_lr, num_steps)


def smoothed(losses: Iterable[float], beta: float) -> np.ndarray:
    """The bias-corrected exponential moving average fastai smooths the range test with.

    Example:
        >>> smoothed([1.0, 0.0], 0.5).tolist()
        [1.0, 0.3333333333333333]
    """
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** i))
    return np.asarray(out, dtype=float)


def steepest(lrs: np.ndarray, losses: np.ndarray) -> Optional[float]:
    """The suggestion: the lr where the smoothed loss falls fastest against log(lr),
    on its way down to its minimum.

    The slope is ``numpy.gradient`` of the smoothed loss over ``log10(lr)``. The
    first tenth of the points (at least 2) are left out, where the average is still
    settling, and so is everything from the smoothed loss's minimum on: past it the
    run is diverging, and a loss falling back after a spike is not a good lr.
    None when fewer than 3 points remain.

    Example:
        >>> lrs = np.geomspace(1e-4, 1, 50)
        >>> losses = 1 / (1 + np.exp(4 * (np.log10(lrs) + 2)))  # falls fastest at 1e-2
        >>> 0.008 < steepest(lrs, losses) < 0.012
        True
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    skip = max(2, len(lrs) // 10)
    end = int(np.argmin(losses)) + 1 if len(losses) else 0
    if end - skip < 3:
        return None
    slope = np.gradient(losses, np.log10(lrs))
    index = skip + int(np.argmin(slope[skip:end]))
    return float(lrs[index])


def range_test(step_runner: Any, batches: Iterable, lrs: np.ndarray, optimizer: Any,
               accelerator: Any, *, beta: float, diverge: Optional[float]) -> pd.DataFrame:
    """Train one step per learning rate of ``lrs`` and record the loss; stop on divergence.

    The loss of every step is read on the host (the stop decision needs it), averaged
    across processes first so that all of them stop together. The run stops when
    the smoothed loss exceeds ``diverge`` times its best, or is not finite.

    Returns:
        A DataFrame with ``lr``, ``loss`` and ``smoothed_loss``, one row per step run.
    """
    rows, best, avg = [], math.inf, 0.0
    iterator = iter(batches)
    for i, lr in enumerate(lrs, start=1):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        try:
            batch = next(iterator)
        except StopIteration:  # a short loader: start another pass
            iterator = iter(batches)
            batch = next(iterator)
        with accelerator.accumulate(step_runner.net):
            logs, _ = step_runner(batch)
        loss = logs["train_loss"]
        if accelerator.num_processes > 1:
            loss = accelerator.reduce(loss.detach().reshape(1), reduction="mean")
        loss = float(loss)
        avg = beta * avg + (1 - beta) * loss
        smooth = avg / (1 - beta ** i)
        rows.append({"lr": float(lr), "loss": loss, "smoothed_loss": smooth})
        if not math.isfinite(smooth) or (diverge is not None and i > 1
                                          and smooth > diverge * best):
            break
        best = min(best, smooth)
    import pandas as pd

    return pd.DataFrame(rows, columns=["lr", "loss", "smoothed_loss"])


class LRFinderResult:
    """What :meth:`KerasModel.lr_find` returns.

    Attributes:
        history: a DataFrame of ``lr``, ``loss`` and ``smoothed_loss``, one row per step.
        suggestion: the lr of steepest descent of the smoothed loss (see
            :func:`steepest`), or None when the run was too short to tell.
    """

    def __init__(self, history: pd.DataFrame):
        self.history = history
        self.suggestion = steepest(history["lr"].to_numpy(), history["smoothed_loss"].to_numpy())

    def plot(self):
        """The smoothed loss against the learning rate (log scale), with the suggestion marked.

        Returns:
            A matplotlib ``Figure``, made through pyplot so a notebook shows it (end the
            cell with ``;`` to show it once).
        """
        fig = new_figure((6, 4), pyplot=True)  # shown inline in a notebook, like plot_history
        ax = fig.add_subplot()
        ax.plot(self.history["lr"], self.history["smoothed_loss"], label="smoothed loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="tab:red", linestyle="--",
                       label=f"steepest descent: {self.suggestion:.2e}")
        ax.legend()
        ax.set_title("learning-rate range test")
        return fig

    def __repr__(self) -> str:
        shown = "None" if self.suggestion is None else f"{self.suggestion:.3g}"
        return f"LRFinderResult(steps={len(self.history)}, suggestion={shown})"
