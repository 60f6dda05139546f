"""Live training curves: a matplotlib figure redrawn as epochs end."""

from __future__ import annotations

import os
import time
from typing import Optional

from ..plots import figure_png, history_figure, save_png
from .base import Callback

__all__ = ["LivePlot"]


def _in_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel (notebook, lab, Colab, VS Code)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    # a kernel-backed shell has a kernel; the terminal IPython shell does not
    return shell is not None and getattr(shell, "kernel", None) is not None


class LivePlot(Callback):
    """Plot every history column (train vs val per quantity) as epochs end.

    In a Jupyter notebook one picture is shown and updated in place (through an
    IPython display handle, as a PNG, so it works with any matplotlib backend);
    elsewhere the figure is written to ``path`` as a PNG (through a temporary file
    and a rename, so a viewer never sees half a picture). Drawing costs a few
    tenths of a second, so it happens at most once per ``refresh_interval``
    seconds, and always after the last epoch. Each fit starts a new picture. Only
    the main process draws. Needs matplotlib. ``fit(..., plot=True)`` adds one.

    Args:
        path: PNG file written outside notebooks; None writes nothing there.
            Defaults to "curves.png".
        refresh_interval: minimum seconds between two redraws. Defaults to 1.0.

    The rows drawn come from the fit's :class:`History`, so a resumed fit draws the
    whole run. Epoch ticks are whole numbers; with ``lr_scheduler_interval="step"``
    the lr panel is titled ``lr at epoch start`` (see :func:`kerastorch.plot_history`).

    Example:
        >>> import os, tempfile, types
        >>> from kerastorch.callbacks import History
        >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
        >>> history, plot = History(), LivePlot(path, refresh_interval=0)
        >>> plot.set_model(types.SimpleNamespace(history_callback=history))
        >>> plot.on_fit_begin()
        >>> row = {"epoch": 1, "train_loss": 0.9, "val_loss": 1.0}
        >>> history.on_epoch_end(1, row); plot.on_epoch_end(1, row)
        >>> plot.draws, os.path.isfile(path)
        (1, True)
    """

    def __init__(self, path: Optional[str] = "curves.png", *, refresh_interval: float = 1.0):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str path or None; received {type(path).__name__}")
        if not isinstance(refresh_interval, (int, float)) or refresh_interval < 0:
            raise ValueError(f"refresh_interval must be a number >= 0; received "
                             f"{refresh_interval!r}")
        self.path = None if path is None else os.fspath(path)
        self.refresh_interval = refresh_interval
        self.draws = 0
        self._handle = None
        self._last_draw: Optional[float] = None
        self._drawn_rows = 0

    def on_fit_begin(self, logs=None):
        # reset for reuse: a second fit gets its own picture
        self.draws, self._handle = 0, None
        self._last_draw, self._drawn_rows = None, 0
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise ImportError("LivePlot (fit(plot=True)) needs matplotlib: "
                              "pip install matplotlib") from exc

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        if self._last_draw is None or now - self._last_draw >= self.refresh_interval:
            self._draw()

    def on_fit_end(self, logs=None):
        # the last epochs came faster than the interval
        if self.is_writer() and self._drawn_rows < len(self.history_rows()):
            self._draw()

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        notebook = _in_notebook()
        if not self.is_writer() or (not notebook and self.path is None):
            return
        import pandas as pd

        rows = self.history_rows()
        self._drawn_rows = len(rows)
        fig = history_figure(pd.DataFrame(rows), lr_scheduler_interval=getattr(
            self.model, "lr_scheduler_interval", "epoch"))
        if notebook:
            from IPython.display import Image, display

            image = Image(data=figure_png(fig), format="png")
            if self._handle is None:
                self._handle = display(image, display_id=True)
            else:
                self._handle.update(image)
        else:
            save_png(fig, self.path)
        self.draws += 1
