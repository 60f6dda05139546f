"""Write the history to a CSV file, rewritten atomically after every epoch."""

from __future__ import annotations

import os
from typing import Optional

import pandas as pd

from ..files import atomic_open
from .base import Callback

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Keep ``filename`` equal to the history DataFrame, one row per finished epoch.

    After each epoch the whole file is rewritten through a temporary file and a
    rename, so a reader (or a crash) never sees half a row, and a column that
    appears late (a custom step's extra loss) gets a proper header. Rewriting
    costs O(epochs) per epoch, a few kilobytes. ``pandas.read_csv(filename)``
    gives back the history (floats are written with full precision). Only the
    main process writes.

    Args:
        filename: the CSV file; its directory is created if needed.
        separator: the field separator. Defaults to ",".
        append: keep the rows already in ``filename`` (e.g. when resuming) and add
            this fit's rows after them; otherwise each fit starts the file afresh.
            Defaults to False.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
        >>> logger = CSVLogger(path)
        >>> logger.on_fit_begin()
        >>> logger.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5})
        >>> print(open(path).read().strip())
        epoch,train_loss
        1,0.5
    """

    def __init__(self, filename: str, *, separator: str = ",", append: bool = False):
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"filename must be a str or os.PathLike path; received "
                            f"{type(filename).__name__}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be a single character; received {separator!r}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self.rows: list = []
        self._previous: Optional[pd.DataFrame] = None

    def _enabled(self) -> bool:
        return self.model is None or getattr(self.model, "is_main_process", True)

    def on_fit_begin(self, logs=None):
        self.rows = []  # reset for reuse: each fit writes its own rows
        self._previous = None
        if self.append and self._enabled() and os.path.isfile(self.filename) \
                and os.path.getsize(self.filename) > 0:
            self._previous = pd.read_csv(self.filename, sep=self.separator)

    def state_dict(self) -> dict:
        previous = None if self._previous is None else self._previous.to_dict("records")
        return {"rows": [dict(r) for r in self.rows], "previous": previous}

    def load_state_dict(self, state: dict) -> None:
        # a resumed fit continues the file it was writing, earlier rows included
        self.rows = [dict(r) for r in state["rows"]]
        previous = state.get("previous")
        self._previous = None if previous is None else pd.DataFrame(previous)

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append(dict(logs or {}))
        if self._enabled():
            self._write()

    def to_frame(self) -> pd.DataFrame:
        """The rows this file holds (earlier rows first with ``append=True``)."""
        frame = pd.DataFrame(self.rows)
        if self._previous is not None:
            frame = pd.concat([self._previous, frame], ignore_index=True)
        return frame

    def _write(self) -> None:
        text = self.to_frame().to_csv(sep=self.separator, index=False)
        with atomic_open(self.filename, "w", newline="") as f:
            f.write(text)
