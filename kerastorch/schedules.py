"""Learning-rate schedules that size themselves to the fit they are used in.

``one_cycle(max_lr)`` and ``warmup_cosine(...)`` return a :class:`Schedule`: a
recipe, not yet a scheduler. ``fit`` builds the torch scheduler from it once it
knows the number of optimizer steps the run will take (epochs x batches per
epoch, divided by gradient accumulation, per process), and steps it after every
optimizer step. The built scheduler is an ordinary ``torch.optim.lr_scheduler``
object, so it is saved in and restored from the resumable state like any other.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.zeros(1))
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> sched = warmup_cosine(warmup=2).build(opt, total_steps=6)
    >>> group, lrs = opt.param_groups[0], []
    >>> for _ in range(6):
    ...     lrs.append(round(group["lr"], 4)); opt.step(); sched.step()
    >>> lrs
    [0.0, 0.05, 0.1, 0.075, 0.025, 0.0]
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

__all__ = ["Schedule", "one_cycle", "warmup_cosine"]


class Schedule:
    """A learning-rate schedule waiting for the fit's step count.

    Args:
        name: what the schedule is called in messages and reprs.
        build_fn: ``build_fn(optimizer, total_steps)`` returning a torch scheduler.
        **params: the schedule's settings, for the repr and the run directory.
    """

    def __init__(self, name: str, build_fn: Callable[[torch.optim.Optimizer, int], Any],
                 **params: Any):
        self.name = name
        self.build_fn = build_fn
        self.params = params

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """The torch scheduler for ``total_steps`` optimizer steps.

        Raises:
            ValueError: ``total_steps`` is not an int >= 1.
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"{self.name} needs the number of optimizer steps, an int >= 1; "
                             f"received {total_steps!r}")
        return self.build_fn(optimizer, total_steps)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; received {value!r}")
    return float(value)


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1); received {value!r}")
    return float(value)


def one_cycle(max_lr: Any, *, pct_start: float = 0.25, div_factor: float = 25.0,
              final_div_factor: float = 1e4, anneal_strategy: str = "cos",
              three_phase: bool = False) -> Schedule:
    """fastai's ``fit_one_cycle`` schedule: ``torch.optim.lr_scheduler.OneCycleLR`` sized to the fit.

    The learning rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of the steps and anneals to ``max_lr / (div_factor * final_div_factor)``;
    with an optimizer that has momentum (SGD's ``momentum``, Adam's ``betas``) the
    momentum cycles the other way, as in OneCycleLR. ``pct_start=0.25`` is fastai's
    default (torch's is 0.3).

    Args:
        max_lr: the peak learning rate, or one per parameter group.
        pct_start: the warm-up's share of the steps. Defaults to 0.25.
        div_factor: the start is ``max_lr / div_factor``. Defaults to 25.
        final_div_factor: the end is the start divided by this. Defaults to 1e4.
        anneal_strategy: ``"cos"`` or ``"linear"``. Defaults to ``"cos"``.
        three_phase: torch's three-phase variant. Defaults to False.

    Raises:
        ValueError: a bad value, naming the argument.
    """
    peaks = max_lr if isinstance(max_lr, (list, tuple)) else [max_lr]
    for peak in peaks:
        _positive("max_lr", peak)
    _fraction("pct_start", pct_start)
    _positive("div_factor", div_factor)
    _positive("final_div_factor", final_div_factor)
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(f"anneal_strategy must be 'cos' or 'linear'; received {anneal_strategy!r}")
    if not isinstance(three_phase, bool):
        raise TypeError(f"three_phase must be True or False; received {three_phase!r}")
    settings = dict(pct_start=pct_start, div_factor=div_factor,
                    final_div_factor=final_div_factor, anneal_strategy=anneal_strategy,
                    three_phase=three_phase)

    def build(optimizer, total_steps):
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=list(max_lr) if isinstance(max_lr, (list, tuple)) else max_lr,
            total_steps=total_steps, **settings)

    return Schedule("one_cycle", build, max_lr=max_lr, **settings)


class WarmupCosine:
    """The multiplier of :func:`warmup_cosine` at step ``step`` (a picklable ``LambdaLR``
    function, so the scheduler's state saves it)."""

    def __init__(self, warmup_steps: int, total_steps: int, final_factor: float):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.final_factor = final_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        span = max(self.total_steps - 1 - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_factor + (1.0 - self.final_factor) * cosine


def warmup_cosine(warmup: Any = 0.05, *, final_factor: float = 0.0) -> Schedule:
    """Linear warm-up from 0 to the optimizer's lr, then a cosine decay to
    ``final_factor`` x lr at the last step (``LambdaLR``).

    Args:
        warmup: warm-up steps: an int, or a float in [0, 1) as a share of the fit's
            steps. Defaults to 0.05.
        final_factor: the last step's lr as a fraction of the optimizer's lr.
            Defaults to 0.0.

    Raises:
        ValueError: a bad value, naming the argument; at fit, more warm-up steps than
            the fit has.
    """
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)):
        raise ValueError(f"warmup must be an int number of steps or a float share in [0, 1); "
                         f"received {warmup!r}")
    if isinstance(warmup, float):
        _fraction("warmup", warmup)
    elif warmup < 0:
        raise ValueError(f"warmup must be an int >= 0 or a float in [0, 1); received {warmup!r}")
    _positive("final_factor", final_factor, allow_zero=True)
    if final_factor > 1:
        raise ValueError(f"final_factor must be in [0, 1]; received {final_factor!r}")

    def build(optimizer, total_steps):
        steps = int(round(warmup * total_steps)) if isinstance(warmup, float) else warmup
        if steps >= total_steps:
            raise ValueError(f"warmup={warmup!r} is {steps} steps, but the fit has only "
                             f"{total_steps} optimizer steps")
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, WarmupCosine(steps, total_steps, final_factor))

    return Schedule("warmup_cosine", build, warmup=warmup, final_factor=final_factor)
