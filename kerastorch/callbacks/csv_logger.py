"""Write the history to a CSV file, rewritten atomically after every epoch."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from ..checks import check_bool, check_path
from ..files import atomic_open
from .base import Callback

if TYPE_CHECKING:
    import pandas as pd

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

    The rows come from the fit's :class:`History` (``Callback.history_rows``), so
    the logger keeps no copy of its own.

    Example:
        >>> import os, tempfile, types
        >>> from kerastorch.callbacks import History
        >>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
        >>> history, logger = History(), CSVLogger(path)
        >>> logger.set_model(types.SimpleNamespace(history_callback=history))
        >>> logger.on_fit_begin()
        >>> history.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5})
        >>> logger.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5})
        >>> print(open(path).read().strip())
        epoch,train_loss
        1,0.5
    """

    def __init__(self, filename: str, *, separator: str = ",", append: bool = False):
        filename = check_path("filename", filename, allow_none=False)
        check_bool("append", append)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be a single character; received {separator!r}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self._previous: Optional[pd.DataFrame] = None

    def on_fit_begin(self, logs=None):
        self._previous = None  # reset for reuse: each fit writes its own rows
        if self.append and self.is_writer() and os.path.isfile(self.filename) \
                and os.path.getsize(self.filename) > 0:
            import pandas as pd

            self._previous = pd.read_csv(self.filename, sep=self.separator)

    @property
    def state_key(self) -> str:
        return f"CSVLogger[{self.filename}]"

    def state_dict(self) -> dict:
        # this fit's rows are the History's; only the file's earlier rows are the logger's
        if self._previous is None:
            return {}
        return {"previous": self._previous.to_dict("records")}

    def load_state_dict(self, state: dict) -> None:
        import pandas as pd

        previous = state.get("previous")
        self._previous = None if previous is None else pd.DataFrame(previous)

    def on_epoch_end(self, epoch, logs=None):
        if self.is_writer():
            self._write()

    def to_frame(self) -> pd.DataFrame:
        """The rows this file holds (earlier rows first with ``append=True``)."""
        import pandas as pd

        frame = pd.DataFrame(self.history_rows())
        if self._previous is not None:
            frame = pd.concat([self._previous, frame], ignore_index=True)
        return frame

    def _write(self) -> None:
        text = self.to_frame().to_csv(sep=self.separator, index=False)
        with atomic_open(self.filename, "w", newline="") as f:
            f.write(text)
