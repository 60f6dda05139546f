"""Live training curves: a matplotlib figure redrawn each epoch."""

from __future__ import annotations

import os
from typing import Optional

from .base import Callback

__all__ = ["LivePlot"]


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LivePlot(Callback):
    """Plot every history column (train vs val per quantity) after each epoch.

    In a Jupyter notebook the figure is redrawn in place; elsewhere it is written
    to ``path`` as a PNG. Only the main process draws. Needs matplotlib.

    Args:
        path: PNG file written outside notebooks. Defaults to "curves.png".
    """

    def __init__(self, path: Optional[str] = "curves.png"):
        self.path = path
        self.rows: list = []
        self._handle = None

    def on_fit_begin(self, logs=None):
        self.rows = []
        self._handle = None
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise ImportError("fit(plot=True) needs matplotlib: pip install matplotlib") from exc

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append(dict(logs))
        if self.model is not None and not self.model.is_main_process:
            return
        import pandas as pd

        from ..plots import plot_history

        fig = plot_history(pd.DataFrame(self.rows))
        if _in_notebook():
            from IPython.display import display

            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)
        elif self.path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            fig.savefig(self.path)
        import matplotlib.pyplot as plt

        plt.close(fig)
