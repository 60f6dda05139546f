"""The callback that collects one row per epoch and builds the history DataFrame."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Callback

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["History"]


class History(Callback):
    """Collects each epoch's row of floats; ``to_frame()`` gives the DataFrame.

    ``fit`` makes one per run, first in the callback list, and exposes it as
    ``model.history_callback``: it is the only copy of the epoch rows, which the
    file and plot callbacks read (:meth:`Callback.history_rows`) and the resumable
    state saves once. Rows are kept as plain floats (never tensors), so a long run
    holds no device memory.

    Example:
        >>> history = History(); history.on_fit_begin()
        >>> history.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5})
        >>> history.to_frame().to_dict("records")
        [{'epoch': 1, 'train_loss': 0.5}]
    """

    def __init__(self):
        self.rows: list = []

    def on_fit_begin(self, logs=None):
        self.rows = []

    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [dict(r) for r in state["rows"]]

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append(dict(logs))

    def update_last(self, values: dict) -> None:
        """Add or overwrite columns of the last epoch's row.

        For a callback that measures something of its own at the end of an epoch
        (``on_epoch_end``; every callback runs after History) and wants it as a
        history column: ``self.model.history_callback.update_last({"name": value})``.
        Callbacks called after it read the value through ``history_rows()``; their
        own ``logs`` copy does not have it, so it cannot be a ``monitor``.

        Raises:
            ValueError: no epoch has ended yet.
            TypeError: ``values`` is not a dict of str keys.
        """
        if not self.rows:
            raise ValueError("update_last needs a finished epoch; no row yet")
        if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
            raise TypeError(f"values must be a dict of str column names; received "
                            f"{type(values).__name__}")
        self.rows[-1].update(values)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows)
