"""The callback that collects one row per epoch and builds the history DataFrame."""

from __future__ import annotations

import pandas as pd

from .callbacks.base import Callback

__all__ = ["History"]


class History(Callback):
    """Collects each epoch's row of floats; ``to_frame()`` gives the DataFrame.

    Rows are kept as plain floats (never tensors), so a long run holds no device memory.
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

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)
