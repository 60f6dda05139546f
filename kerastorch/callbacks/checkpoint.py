"""Save the net's weights when a monitored value improves, atomically."""

from __future__ import annotations

import os
from typing import Optional, Union

from ..files import atomic_save, cpu_state_dict
from .monitor import MonitorCallback

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(MonitorCallback):
    """Write the net's ``state_dict`` to ``filepath`` when ``monitor`` improves.

    Files are written by the main process only, through a temporary file and a
    rename, so an interrupted write never corrupts the previous best file. A NaN
    score never counts as an improvement.

    Args:
        filepath: where to save; may contain ``{epoch}`` and any log key as format
            fields, e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.pt"``. None keeps the best
            weights in memory only. Defaults to ``"checkpoint"``.
        monitor: column to watch. Defaults to ``"val_loss"``.
        mode: ``"min"`` or ``"max"``. Defaults to ``"min"``.
        save_best_only: save only on improvement; otherwise every epoch. Defaults to True.
        restore_best_weights: load the best weights back into the net when ``fit``
            ends (from a CPU copy held in memory, so every process restores the same
            weights without reading the file). Defaults to False.
        save_last: also write the latest weights after every epoch, for resuming:
            True writes ``last.pt`` next to ``filepath`` (``last<ext>`` when the
            pattern has an extension), a str is the path (it may use the same format
            fields). Costs one device-to-CPU copy of the weights per epoch. Defaults
            to False.

    Example:
        >>> cb = ModelCheckpoint(None, monitor="val_acc", mode="max")
        >>> cb.on_fit_begin(); cb.is_improvement(0.9)
        True
    """

    def __init__(self, filepath: Optional[str] = "checkpoint", monitor: str = "val_loss",
                 mode: str = "min", *, save_best_only: bool = True,
                 restore_best_weights: bool = False, min_delta: float = 0.0,
                 save_last: Union[bool, str] = False):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.filepath = filepath
        self.save_best_only = save_best_only
        self.restore_best_weights = restore_best_weights
        self.last_path = _last_path(filepath, save_last)

    @property
    def state_key(self) -> str:
        return f"ModelCheckpoint[{self.filepath}|{self.monitor}]"

    def reset(self) -> None:
        super().reset()
        self.last_saved = None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "last_saved": self.last_saved}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.last_saved = state["last_saved"]

    def on_epoch_end(self, epoch, logs=None):
        if self.last_path is not None and self.is_writer():
            atomic_save(cpu_state_dict(self.model.unwrapped_net),
                        self.last_path.format(**{**logs, "epoch": epoch}))
        if self.epoch_not_validated():
            return
        improved = self.update_best(epoch, logs)
        if not improved and self.save_best_only:
            return
        if improved and self.restore_best_weights:
            self.remember_weights()
        if self.filepath is not None and self.is_writer():
            path = self.filepath.format(**{**logs, "epoch": epoch})
            atomic_save(self.best_weights if improved and self.best_weights is not None
                        else cpu_state_dict(self.model.unwrapped_net), path)
            self.last_saved = path

    def on_fit_end(self, logs=None):
        if self.restore_best_weights:
            self.restore_weights()


def _last_path(filepath: Optional[str], save_last: Union[bool, str]) -> Optional[str]:
    if isinstance(save_last, str):
        return save_last
    if not isinstance(save_last, bool):
        raise TypeError(f"save_last must be a bool or a str path; received "
                        f"{type(save_last).__name__}")
    if not save_last:
        return None
    if filepath is None:
        raise ValueError("save_last=True names last.pt after filepath, which is None; pass "
                         "save_last='path/to/last.pt' or a filepath")
    ext = os.path.splitext(filepath)[1] or ".pt"
    path = os.path.join(os.path.dirname(filepath), "last" + ext)
    if os.path.normpath(path) == os.path.normpath(filepath):
        raise ValueError(f"save_last=True would write {path!r}, which is filepath itself; "
                         "pass save_last='another/path.pt'")
    return path
