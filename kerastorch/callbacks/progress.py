"""The progress display: the only part of kerastorch that writes to the terminal."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from .base import Callback

__all__ = ["ProgressBar", "format_value", "epoch_line"]


def format_value(value) -> str:
    """A logged value as the progress bar and ``log.log`` show it (4 significant digits)."""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def epoch_line(epoch: int, epochs, logs: dict) -> str:
    """The epoch's summary as the progress bar ends it: ``Epoch 2/10: train_loss=0.41, ...``.

    Example:
        >>> epoch_line(2, 10, {"epoch": 2, "train_loss": 0.41234})
        'Epoch 2/10: train_loss=0.4123'
    """
    values = ", ".join(f"{k}={format_value(v)}" for k, v in logs.items() if k != "epoch")
    return f"Epoch {epoch}/{epochs}: {values}" if epochs else f"Epoch {epoch}: {values}"


class ProgressBar(Callback):
    """A tqdm bar per epoch: a widget in Jupyter, a redrawn line in a terminal.

    The running values shown are the latest step's, read from the device at most
    ``1 / refresh_interval`` times a second; between refreshes a step costs one
    clock read. At the end of each epoch the bar shows the epoch's row.
    Only the main process draws.

    Args:
        refresh_interval: minimum seconds between two redraws. Defaults to 0.1.
        file: stream to write to; None is tqdm's default (stderr). Defaults to None.
    """

    def __init__(self, refresh_interval: float = 0.1, file=None):
        self.refresh_interval = refresh_interval
        self.file = file
        self.bar = None
        self.refreshes = 0

    def on_fit_begin(self, logs=None):
        self.refreshes = 0

    def on_epoch_begin(self, epoch, logs=None):
        if not self.is_writer():
            return
        epochs = getattr(self.model, "epochs", None)
        total = getattr(self.model, "train_steps", None)
        self.bar = tqdm(total=total, desc=f"Epoch {epoch}/{epochs}" if epochs else f"Epoch {epoch}",
                        file=self.file, mininterval=self.refresh_interval, leave=True,
                        dynamic_ncols=True)
        self._last = 0.0

    def on_train_batch_end(self, step, logs=None):
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.monotonic()
        if logs and now - self._last >= self.refresh_interval:
            self._last = now
            self.refreshes += 1
            # float() here is a host sync, paid at most once per refresh_interval
            self.bar.set_postfix({k: format_value(v) for k, v in logs.items()}, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is None:
            return
        shown = {k: format_value(v) for k, v in (logs or {}).items() if k != "epoch"}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.close()
        self.bar = None

    def on_fit_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
