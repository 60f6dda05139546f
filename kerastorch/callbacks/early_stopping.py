"""Stop training when a monitored value stops improving."""

from __future__ import annotations

from typing import Optional

from ..checks import check_patience
from .monitor import MonitorCallback

__all__ = ["EarlyStopping"]


class EarlyStopping(MonitorCallback):
    """Stop after ``patience`` consecutive epochs without improvement of ``monitor``.

    Follows Keras's semantics, except that ``patience=0`` stops at the first epoch
    that does not improve (an improving run never stops). Stopping is a flag on
    the model (``model.stop_training``); every process sees the same logs, so all
    ranks stop at the same epoch.

    Args:
        monitor: column to watch. Defaults to ``"val_loss"``.
        min_delta: smallest change that counts as an improvement. Defaults to 0.
        patience: epochs without improvement before stopping. Defaults to 5.
        mode: ``"min"`` or ``"max"``. Defaults to ``"min"``.
        baseline: value to beat; epochs that do not beat it count against patience
            (the best epoch is still tracked among them, as in Keras). Defaults to None.
        restore_best_weights: copy the net's weights back from the best epoch when
            training ends, also when no epoch beat ``baseline``. Defaults to False.

    Example:
        >>> es = EarlyStopping(monitor="val_loss", patience=1)
        >>> class M: stop_training = False
        >>> es.set_model(M()); es.on_fit_begin()
        >>> for epoch, loss in enumerate([0.5, 0.4, 0.45], start=1):
        ...     es.on_epoch_end(epoch, {"val_loss": loss})
        >>> es.model.stop_training, es.stopped_epoch
        (True, 3)
    """

    def __init__(self, monitor: str = "val_loss", *, min_delta: float = 0.0, patience: int = 5,
                 mode: str = "min", baseline: Optional[float] = None,
                 restore_best_weights: bool = False):
        self.patience = check_patience(patience, allow_none=False)
        self.restore_best_weights = restore_best_weights
        super().__init__(monitor, mode, min_delta=min_delta, baseline=baseline)

    def reset(self) -> None:
        super().reset()
        self.best = None  # the baseline gates patience only; the best epoch is tracked anyway
        self.wait = 0
        self.stopped_epoch = None

    @property
    def state_key(self) -> str:
        return f"EarlyStopping[{self.monitor}]"

    def state_dict(self) -> dict:
        return {**super().state_dict(), "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_not_validated():
            return
        if self.update_best(epoch, logs):
            if self.restore_best_weights:
                self.remember_weights()
            if self.baseline is None or self.is_improvement_over(self.best, self.baseline):
                self.wait = 0
                return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_fit_end(self, logs=None):
        if self.restore_best_weights:
            self.restore_weights()
