"""Stop training when a loss becomes NaN or infinite."""

from __future__ import annotations

import logging
import math
import numbers
from typing import Optional

import torch

from .base import Callback

__all__ = ["TerminateOnNaN"]

logger = logging.getLogger(__name__)

_NO_STEP = 2**62  # "no bad step yet"; larger than any step index


class TerminateOnNaN(Callback):
    """Stop training after an epoch in which a loss stopped being finite.

    Every training step's ``*loss`` values are checked **on the device**: the
    index of the first non-finite step is kept in a device tensor (a few tiny
    kernels per step, no host sync), and read once, at the end of the epoch. The
    decision to stop is taken on the epoch row, where a non-finite step makes the
    epoch's loss non-finite too; the row is identical on every process, so all
    processes stop together. (The loop can only stop between epochs, so checking
    mid-epoch would not stop any sooner; it would only cost syncs.)

    The message names the loss, the epoch and the first bad step (0-based within
    the epoch), is logged at WARNING level on the ``kerastorch`` logger (so it
    lands in ``log.log`` with ``fit(log_dir=...)``) and is kept in ``message``.
    ``val_*loss`` columns that are not finite stop training too (their step is
    not tracked).

    Attributes:
        stopped_epoch: the epoch after which training stopped, or None.
        bad_key: the loss that was not finite, or None.
        bad_step: the first non-finite training step of that epoch, or None.
        message: the message that was logged, or None.

    Example:
        >>> import torch
        >>> class M: stop_training = False
        >>> cb = TerminateOnNaN(); cb.set_model(M()); cb.on_fit_begin(); cb.on_epoch_begin(3)
        >>> for step, loss in enumerate([0.5, float("nan"), 0.4]):
        ...     cb.on_train_batch_end(step, {"train_loss": torch.tensor(loss)})
        >>> cb.on_epoch_end(3, {"train_loss": float("nan")})
        >>> cb.model.stop_training, cb.message
        (True, 'train_loss is nan at epoch 3 (first non-finite step: 1); training stopped')
    """

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.stopped_epoch: Optional[int] = None
        self.bad_key: Optional[str] = None
        self.bad_step: Optional[int] = None
        self.message: Optional[str] = None
        self._first_bad: dict = {}

    def on_fit_begin(self, logs=None):
        self._reset()  # reset for reuse

    def on_epoch_begin(self, epoch, logs=None):
        self._first_bad = {}  # loss key -> first non-finite step (device tensor or int)

    def on_train_batch_end(self, step, logs=None):
        for key, value in (logs or {}).items():
            if not key.endswith("loss"):
                continue
            if isinstance(value, torch.Tensor):
                # device ops only: min over steps of (step if bad else _NO_STEP)
                bad = torch.where(torch.isfinite(value).all(), _NO_STEP, step)
                seen = self._first_bad.get(key)
                self._first_bad[key] = bad if seen is None else torch.minimum(seen, bad)
            elif key not in self._first_bad and isinstance(value, numbers.Real) \
                    and not math.isfinite(value):
                self._first_bad[key] = step

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        bad = [k for k, v in logs.items() if k.endswith("loss") and isinstance(v, numbers.Real)
               and not math.isfinite(v)]
        if not bad:
            return
        steps = {key: int(first) for key, first in self._first_bad.items()}  # one sync per key
        steps = {key: s for key, s in steps.items() if s != _NO_STEP}
        key = min(steps, key=steps.get) if steps else bad[0]
        self.stopped_epoch, self.bad_key, self.bad_step = epoch, key, steps.get(key)
        value = logs.get(key, float("nan"))
        where = (f" (first non-finite step: {self.bad_step})" if self.bad_step is not None
                 else "")
        self.message = f"{key} is {value} at epoch {epoch}{where}; training stopped"
        logger.warning("TerminateOnNaN: %s", self.message)
        self.model.stop_training = True
