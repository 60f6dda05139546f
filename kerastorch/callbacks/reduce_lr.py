"""Keras's ReduceLROnPlateau: lower the learning rate when a monitored value stops improving."""

from __future__ import annotations

import logging
import math
import numbers
from typing import Optional

import torch

from ..checks import check_monitor
from .base import Callback

__all__ = ["ReduceLROnPlateau"]

logger = logging.getLogger(__name__)

MODES = ("auto", "min", "max")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    Keras's callback, with Keras's arguments and Keras's counting, run by torch's
    ``torch.optim.lr_scheduler.ReduceLROnPlateau`` on the model's optimizer (every
    parameter group), stepped at each epoch end with ``logs[monitor]``. The learning-rate
    sequence is exactly that of torch's scheduler built as :meth:`torch_settings` says;
    the two translations from Keras's meaning to torch's are:

    * ``min_delta`` is absolute, as in Keras (``current < best - min_delta`` in "min"
      mode): torch's ``threshold=min_delta, threshold_mode="abs"`` (torch's default
      ``"rel"`` would scale it by the best value).
    * Keras reduces on the ``patience``-th epoch without improvement and ignores the
      ``cooldown - 1`` epochs after a reduction (its cooldown counter reaches 0 during
      the ``cooldown``-th epoch, which then counts); torch reduces on the
      ``(patience + 1)``-th and ignores ``cooldown`` epochs. So Keras's ``patience``
      and ``cooldown`` are torch's ``patience - 1`` and ``cooldown - 1`` (0 stays 0:
      Keras's 0 and 1 behave alike). torch's ``eps`` is 0, so a reduction down to
      ``min_lr`` is never skipped as too small, as in Keras.

    A NaN score never improves (it counts as an epoch without improvement). Epochs that
    ran no validation (``fit(..., validation_freq=...)``) are skipped when ``monitor``
    is a ``val_`` column: they neither improve nor count. The lr column of the history
    is the rate an epoch started with, so a reduction after epoch ``e`` shows from
    epoch ``e + 1``. Each reduction is logged on the ``kerastorch`` logger (INFO;
    WARNING with ``verbose=1``, so it shows on the terminal and in ``log.log``) and
    kept in :attr:`reductions`. The scheduler's state is part of :meth:`state_dict`,
    so a resumed fit reduces at the same epochs. Each fit starts counting afresh (the
    rate itself is the optimizer's and is kept), as in Keras.

    Args:
        monitor: the history column to watch. Defaults to "val_loss".
        factor: the rate is multiplied by this, ``0 <= factor < 1``. Defaults to 0.1.
        patience: epochs without improvement before a reduction. Defaults to 10.
        mode: "min", "max" or "auto": the direction from the metric's
            ``higher_is_better`` when it declares one, else "max" when ``"acc"`` is
            in the column name (Keras's rule), else "min". Defaults to "auto".
        min_delta: the least change that counts as an improvement (absolute).
            Defaults to 1e-4.
        cooldown: epochs after a reduction during which nothing counts (Keras's
            counting, see above). Defaults to 0.
        min_lr: the rate is never reduced below this. Defaults to 0.0.
        verbose: 0 logs reductions at INFO, 1 at WARNING. Defaults to 0.

    Attributes:
        scheduler: the torch scheduler of the current (or last) fit, else None.
        resolved_mode: "min" or "max", the direction of the current fit.
        reductions: ``[(epoch, old_lr, new_lr)]`` of the current fit (first group's rates).

    Raises:
        TypeError, ValueError: bad arguments; a model without a torch optimizer (at
            fit begin); ``monitor`` missing from an epoch's logs (ValueError listing the
            columns).

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> class Model:
        ...     optimizer = torch.optim.SGD([w], lr=1.0)
        >>> cb = ReduceLROnPlateau("val_loss", factor=0.5, patience=2)
        >>> cb.set_model(Model()); cb.on_fit_begin()
        >>> for epoch, loss in enumerate([0.9, 0.8, 0.85, 0.84], start=1):
        ...     cb.on_epoch_end(epoch, {"val_loss": loss})
        >>> cb.reductions
        [(4, 1.0, 0.5)]
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0, verbose: int = 0):
        self.monitor = check_monitor(monitor)
        self.factor = _number("factor", factor)
        if not 0 <= self.factor < 1:
            raise ValueError(f"factor must be >= 0 and < 1 (the rate is multiplied by it); "
                             f"received {factor!r}")
        self.patience = _count("patience", patience)
        if mode not in MODES:
            raise ValueError(f"mode must be one of 'auto', 'min', 'max'; received {mode!r}")
        self.mode = mode
        self.min_delta = _non_negative("min_delta", min_delta)
        self.cooldown = _count("cooldown", cooldown)
        self.min_lr = _non_negative("min_lr", min_lr)
        if verbose not in (0, 1):
            raise ValueError(f"verbose must be 0 or 1; received {verbose!r}")
        self.verbose = int(verbose)
        self.scheduler: Optional[torch.optim.lr_scheduler.ReduceLROnPlateau] = None
        self.resolved_mode = mode if mode != "auto" else None
        self.reductions: list = []

    @property
    def state_key(self) -> str:
        return f"ReduceLROnPlateau[{self.monitor}]"

    def torch_settings(self) -> dict:
        """The ``torch.optim.lr_scheduler.ReduceLROnPlateau`` keywords that reduce the rate
        at the same epochs as this callback (see the class docstring)."""
        return {"mode": self.resolved_mode or _mode_from_name(self.monitor),
                "factor": self.factor, "patience": max(self.patience - 1, 0),
                "threshold": self.min_delta, "threshold_mode": "abs",
                "cooldown": max(self.cooldown - 1, 0), "min_lr": self.min_lr, "eps": 0.0}

    def on_fit_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"ReduceLROnPlateau needs model.optimizer, a torch optimizer; the "
                             f"model ({type(self.model).__name__}) has "
                             f"{type(optimizer).__name__}")
        self.resolved_mode = self._resolve_mode()
        # a fresh scheduler per fit: counting restarts, as Keras's on_train_begin resets it
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer,
                                                                    **self.torch_settings())
        self.reductions = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor.startswith("val_") and not getattr(self.model, "validated", True):
            return  # no validation this epoch: its val_ columns are NaN placeholders
        if self.monitor not in logs:
            raise ValueError(f"ReduceLROnPlateau monitors {self.monitor!r}, which is not in "
                             f"the logs; available: {sorted(logs)}")
        groups = self.scheduler.optimizer.param_groups
        old = float(groups[0]["lr"])
        self.scheduler.step(float(logs[self.monitor]))
        new = float(groups[0]["lr"])
        if new != old:
            self.reductions.append((epoch, old, new))
            logger.log(logging.WARNING if self.verbose else logging.INFO,
                       "epoch %s: ReduceLROnPlateau reduced the learning rate from %s to %s "
                       "(%s did not improve for %s epochs)", epoch, old, new, self.monitor,
                       self.patience)

    def state_dict(self) -> dict:
        if self.scheduler is None:
            return {}
        return {"scheduler": self.scheduler.state_dict(), "reductions": list(self.reductions)}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.reductions = [tuple(r) for r in state.get("reductions", [])]

    def _resolve_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        name = self.monitor.split("_", 1)[-1]
        metric = getattr(self.model, "metrics_dict", {}).get(name)
        better = getattr(metric, "higher_is_better", None)
        if isinstance(better, bool) and not self.monitor.endswith("loss"):
            return "max" if better else "min"
        return _mode_from_name(self.monitor)


def _mode_from_name(monitor: str) -> str:
    return "max" if "acc" in monitor else "min"  # Keras's "auto"


def _number(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number; received {type(value).__name__} {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number; received nan")
    return float(value)


def _non_negative(name: str, value) -> float:
    value = _number(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0; received {value!r}")
    return value


def _count(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= 0; received {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0; received {value}")
    return value
