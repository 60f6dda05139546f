"""The learning-rate scheduler: its checks, and the one place where it is stepped.

A scheduler is stepped either once per epoch (``ReduceLROnPlateau`` with the
monitored value) or once per optimizer step (``lr_scheduler_interval="step"``,
never on an accumulation micro-batch nor on a step the AMP scaler skipped).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["INTERVALS", "SchedulerStepper", "check_scheduler", "check_scheduler_for_fit"]

INTERVALS = ("epoch", "step")


def check_scheduler(sched: Any, interval: str) -> None:
    """At construction: a scheduler must have ``step`` (and state for resume).

    Example:
        >>> check_scheduler("steplr", "epoch")
        Traceback (most recent call last):
        ...
        TypeError: lr_scheduler must be a torch.optim.lr_scheduler object with step() and state_dict(); received str 'steplr'
    """
    if interval not in INTERVALS:
        raise ValueError(f"lr_scheduler_interval must be 'epoch' or 'step'; received {interval!r}")
    if sched is None:
        return
    if not (callable(getattr(sched, "step", None)) and callable(getattr(sched, "state_dict", None))):
        raise TypeError(f"lr_scheduler must be a torch.optim.lr_scheduler object with step() and "
                        f"state_dict(); received {type(sched).__name__} {sched!r}"[:300])
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau) and interval == "step":
        raise ValueError("ReduceLROnPlateau needs the monitored value once per epoch; "
                         "received lr_scheduler_interval='step'. Use 'epoch'")


def check_scheduler_for_fit(sched: Any, interval: str, epochs: int,
                            steps_per_epoch: Optional[int], grad_accum: int) -> None:
    """Before training: a scheduler with a step budget (OneCycleLR) must last the fit."""
    total = getattr(sched, "total_steps", None)  # OneCycleLR stops after this many
    if sched is None or total is None:
        return
    if interval == "step" and steps_per_epoch is not None:
        needed = epochs * -(-steps_per_epoch // grad_accum)
    else:
        needed = epochs
    if needed > total:
        raise ValueError(
            f"{type(sched).__name__} allows total_steps={total} steps but this fit "
            f"would step it {needed} times (lr_scheduler_interval={interval!r}); pass "
            "lr_scheduler_interval='step' with total_steps=epochs*len(train_loader), or fewer "
            "epochs")


class SchedulerStepper:
    """Steps ``scheduler`` at the interval it was given; a no-op without a scheduler.

    Args:
        scheduler: a ``torch.optim.lr_scheduler`` object, or None.
        interval: ``"epoch"`` or ``"step"``. Defaults to ``"epoch"``.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([w], lr=1.0)
        >>> stepper = SchedulerStepper(torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5))
        >>> opt.step(); stepper.after_epoch(monitored=0.3); opt.param_groups[0]["lr"]
        0.5
    """

    def __init__(self, scheduler: Any = None, interval: str = "epoch"):
        self.scheduler = scheduler
        self.per_step = scheduler is not None and interval == "step"
        self.per_epoch = scheduler is not None and interval == "epoch"

    def after_optimizer_step(self, accelerator: Any) -> None:
        """Called after every micro-batch; steps only after a real optimizer step."""
        if (self.per_step and accelerator.sync_gradients
                and not accelerator.optimizer_step_was_skipped):
            self.scheduler.step()

    def after_epoch(self, monitored: Optional[float]) -> None:
        """Called once per epoch with the monitored value (which ReduceLROnPlateau needs);
        None when the epoch did not compute it (no validation that epoch): a plateau
        scheduler then skips the epoch, as Keras's ReduceLROnPlateau does."""
        if not self.per_epoch:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if monitored is not None:
                self.scheduler.step(monitored)
        else:
            self.scheduler.step()
