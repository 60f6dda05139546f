"""Write every epoch's logged values as TensorBoard scalars."""

from __future__ import annotations

import numbers
import os

from ..checks import check_path
from .base import Callback

__all__ = ["TensorBoard"]


class TensorBoard(Callback):
    """Log each number of the epoch row as a TensorBoard scalar, at step ``epoch``.

    The tags are the history column names (``train_loss``, ``val_acc``, ``lr``...),
    so what TensorBoard shows is exactly the DataFrame ``fit`` returns. Values are
    written once per epoch (never per step, so logging costs no host sync) and
    flushed right away, so a running ``tensorboard --logdir`` sees each epoch as it
    ends. Each fit opens a new event file in ``log_dir``. Only the main process
    writes. Needs the ``tensorboard`` package (``torch.utils.tensorboard``).

    Args:
        log_dir: directory for the event files; created if needed. Defaults to "runs".

    Example:
        >>> import tempfile
        >>> tb = TensorBoard(tempfile.mkdtemp())
        >>> tb.on_fit_begin()
        >>> tb.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5, "lr": 0.01})
        >>> tb.on_fit_end()
        >>> tb.written
        {'train_loss': 1, 'lr': 1}
    """

    def __init__(self, log_dir: str = "runs"):
        log_dir = check_path("log_dir", log_dir, allow_none=False)
        self.log_dir = os.fspath(log_dir)
        self.writer = None
        self.written: dict = {}

    def on_fit_begin(self, logs=None):
        self.written = {}  # tag -> scalars written this fit; reset for reuse
        if not self.is_writer():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError("the TensorBoard callback needs the tensorboard package: "
                              "pip install tensorboard") from exc
        self.writer = SummaryWriter(log_dir=self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        if self.writer is None:
            return
        for key, value in (logs or {}).items():
            # lists (a per-class metric) and strings have no scalar chart
            if key == "epoch" or not isinstance(value, numbers.Real):
                continue
            self.writer.add_scalar(key, float(value), global_step=epoch)
            self.written[key] = self.written.get(key, 0) + 1
        self.writer.flush()

    def on_fit_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
