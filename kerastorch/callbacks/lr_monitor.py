"""Record the learning rate of every optimizer parameter group, once per epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Callback

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LearningRateMonitor"]


class LearningRateMonitor(Callback):
    """Record each parameter group's learning rate at the start of every epoch.

    The history's ``lr`` column holds only the first group's rate; this callback
    keeps all of them, in its own record rather than in the epoch logs, so the
    history DataFrame (and the CSV and TensorBoard files made from it) keep the
    same columns whether or not it is used. ``to_frame()`` gives one row per
    epoch: ``epoch``, then ``lr_<name>`` per group, where ``<name>`` is the
    group's ``"name"`` entry if it has one, else ``group<i>``. Values are read at
    ``on_epoch_begin``, so they are the rates the epoch starts with, as the
    ``lr`` column is (an epoch scheduler steps before ``on_epoch_end``). Reading
    them costs no device sync (they are Python floats).

    Args:
        momentum: also record ``momentum`` (SGD) or ``beta1`` (Adam-like) per group,
            as ``momentum_<name>``. Defaults to False.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> class M:
        ...     optimizer = torch.optim.SGD([{"params": [w]}, {"params": [], "lr": 0.5}], lr=0.1)
        >>> monitor = LearningRateMonitor()
        >>> monitor.set_model(M()); monitor.on_fit_begin(); monitor.on_epoch_begin(1)
        >>> monitor.records
        [{'epoch': 1, 'lr_group0': 0.1, 'lr_group1': 0.5}]
    """

    def __init__(self, *, momentum: bool = False):
        if not isinstance(momentum, bool):
            raise TypeError(f"momentum must be a bool; received {type(momentum).__name__}")
        self.momentum = momentum
        self.records: list = []

    def on_fit_begin(self, logs=None):
        self.records = []  # reset for reuse: one record per fit

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state: dict) -> None:
        self.records = [dict(r) for r in state["records"]]

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("LearningRateMonitor needs model.optimizer; the model it was given "
                             f"({type(self.model).__name__}) has none")
        if self.records and self.records[-1]["epoch"] == epoch:
            return  # resumed inside this epoch: its row, with the rates it began with, is kept
        row = {"epoch": epoch}
        for i, group in enumerate(optimizer.param_groups):
            name = group["name"] if isinstance(group.get("name"), str) else f"group{i}"
            row[f"lr_{name}"] = float(group["lr"])
            if self.momentum:
                row[f"momentum_{name}"] = _momentum(group)
        self.records.append(row)

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch: ``epoch`` and the recorded rates."""
        import pandas as pd

        return pd.DataFrame(self.records)


def _momentum(group: dict) -> float:
    if "momentum" in group:
        return float(group["momentum"])
    if "betas" in group:
        return float(group["betas"][0])
    return float("nan")
