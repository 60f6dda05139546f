"""Shared monitor/mode logic for callbacks that track one logged value."""

from __future__ import annotations

import math
from typing import Optional

from ..checks import check_mode, check_monitor
from ..files import net_weights
from .base import Callback

__all__ = ["MonitorCallback"]


class MonitorCallback(Callback):
    """Base for callbacks that watch ``monitor`` and remember its best value.

    A score counts as an improvement when it is finite and beats the best so far
    by more than ``min_delta`` in the direction given by ``mode``. NaN or inf is
    never an improvement, so a diverged epoch cannot become "best".

    Args:
        monitor: the history column to watch. Defaults to ``"val_loss"``.
        mode: ``"min"`` or ``"max"``. Defaults to ``"min"``.
        min_delta: smallest change that counts as an improvement. Defaults to 0.
        baseline: a value the score must beat before anything counts as an
            improvement. Defaults to None.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", *,
                 min_delta: float = 0.0, baseline: Optional[float] = None):
        self.monitor = check_monitor(monitor)
        self.mode = check_mode(mode)
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0; received {min_delta}")
        self.min_delta = float(min_delta)
        self.baseline = baseline
        self.reset()

    def reset(self) -> None:
        """Forget the best score and weights (called at the start of every fit for reuse)."""
        self.best: Optional[float] = self.baseline
        self.best_epoch: Optional[int] = None
        self.best_weights: Optional[dict] = None

    def remember_weights(self) -> None:
        """Keep a CPU copy of the net's weights as the best ones (device memory stays flat,
        at one copy per improvement)."""
        self.best_weights = net_weights(self.model)

    def restore_weights(self) -> bool:
        """Load the remembered best weights back into the net; False when there are none."""
        if self.best_weights is None:
            return False
        load = getattr(self.model, "load_full_state_dict", None)
        if load is not None:  # KerasModel: also a sharded net
            load(self.best_weights)
        else:
            self.model.unwrapped_net.load_state_dict(self.best_weights)
        return True

    def on_fit_begin(self, logs=None):
        self.reset()

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.best_weights = state.get("best_weights")

    def get_score(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise ValueError(
                f"{type(self).__name__} monitors {self.monitor!r}, which is not in the logs; "
                f"available: {sorted(logs)}"
            )
        return float(logs[self.monitor])

    def is_improvement(self, score: float) -> bool:
        """Whether ``score`` beats the best so far (see the class docstring)."""
        return self.is_improvement_over(score, self.best)

    def is_improvement_over(self, score: float, reference: Optional[float]) -> bool:
        """Whether ``score`` is finite and beats ``reference`` by more than ``min_delta``."""
        if not math.isfinite(score):
            return False
        if reference is None:
            return True
        if self.mode == "min":
            return score < reference - self.min_delta
        return score > reference + self.min_delta

    def epoch_not_validated(self) -> bool:
        """True when the monitor is a ``val_`` column and this epoch ran no validation
        (``fit(..., validation_freq=...)``): the epoch then neither improves nor counts."""
        return self.monitor.startswith("val_") and not getattr(self.model, "validated", True)

    def update_best(self, epoch: int, logs: dict) -> bool:
        """Record ``logs[monitor]`` as the best if it improves; return whether it did.

        An epoch whose loss is NaN or inf is never best, whatever the monitored
        metric says (NaN logits can still score an accuracy).
        """
        score = self.eligible_score(logs)
        if score is not None and self.is_improvement(score):
            self.best, self.best_epoch = score, epoch
            return True
        return False

    def eligible_score(self, logs: dict) -> Optional[float]:
        """``logs[monitor]`` when it may count at all: finite, from an epoch whose losses
        are finite; None otherwise (the rule :meth:`update_best` and rankings share)."""
        score = self.get_score(logs)
        validated = getattr(self.model, "validated", True)
        losses_finite = all(math.isfinite(v) for k, v in logs.items()
                            if k.endswith("_loss") and isinstance(v, float)
                            and (validated or not k.startswith("val_")))
        return score if losses_finite and math.isfinite(score) else None
