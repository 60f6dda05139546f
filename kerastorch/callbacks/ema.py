"""An exponential moving average of the weights (EMA), validated in place of the weights."""

from __future__ import annotations

from typing import Optional

import torch

from ..checks import check_bool
from .base import Callback

__all__ = ["EMA", "AveragedWeightsCallback"]


class AveragedWeightsCallback(Callback):
    """Base for callbacks that keep averaged weights and validate with them.

    With ``validate_with_average`` the averaged tensors are copied into the net in
    ``on_val_begin``, so the validation pass and the best-weights snapshot that early
    stopping and checkpointing take in ``on_epoch_end`` (they run before user callbacks)
    see them; this callback's ``on_epoch_end`` copies the training weights back. The
    training weights wait in a copy on the device while validation runs (one extra copy
    of the swapped tensors). Epochs without validation swap nothing.

    When ``fit`` ends while the averaged weights are still in the net (Ctrl-C or an error
    during validation), ``on_fit_end`` puts the training weights back, unless another
    callback has loaded other weights since (the best weights restored by
    ``ModelCheckpoint``, which ``fit`` promises): those stay. Subclasses return the
    tensors to exchange from :meth:`swap_pairs`.

    Args:
        validate_with_average: validate with the averaged weights. Defaults to True.
    """

    def __init__(self, validate_with_average: bool = True):
        self.validate_with_average = check_bool("validate_with_average", validate_with_average)
        self._swapped: Optional[list[torch.Tensor]] = None  # the net tensors holding averages
        self._backup: Optional[list[torch.Tensor]] = None
        self._versions: Optional[list[int]] = None

    def swap_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(net tensor, averaged tensor)`` pairs to validate with; empty when there is no
        average yet (the net then validates with its own weights)."""
        raise NotImplementedError

    @property
    def swapped(self) -> bool:
        """Whether the net holds the averaged weights now."""
        return self._swapped is not None

    @torch.no_grad()
    def swap_in(self) -> None:
        """Copy the averaged tensors into the net, keeping the training ones aside."""
        if self.swapped:
            return
        pairs = self.swap_pairs()
        if not pairs:
            return
        targets = [net_tensor for net_tensor, _ in pairs]
        self._backup = [t.detach().clone() for t in targets]
        torch._foreach_copy_(targets, [avg for _, avg in pairs])
        self._swapped = targets
        # a later in-place write (load_state_dict of other weights) bumps these counters
        self._versions = [t._version for t in targets]

    @torch.no_grad()
    def swap_out(self) -> None:
        """Put the training weights back into the net (nothing when not swapped)."""
        if self.swapped:
            torch._foreach_copy_(self._swapped, self._backup)
        self._swapped = self._backup = self._versions = None

    def on_fit_begin(self, logs=None):
        self._swapped = self._backup = self._versions = None

    def on_val_begin(self, epoch, logs=None):
        if self.validate_with_average:
            self.swap_in()

    def on_epoch_end(self, epoch, logs=None):
        self.swap_out()

    def on_fit_end(self, logs=None):
        if self.swapped and [t._version for t in self._swapped] != self._versions:
            # other weights were loaded over the averaged ones (the restored best): keep them
            self._swapped = self._backup = self._versions = None
        self.swap_out()


class EMA(AveragedWeightsCallback):
    """Keep an exponential moving average of the net's weights, updated every optimizer step.

    After each optimizer step (in ``on_train_batch_end``, only when gradients were
    synchronised, so once per ``gradient_accumulation_steps`` batches; not after a step
    skipped by ``skip_nonfinite`` or by the fp16 scaler) the average moves towards the
    weights: ``average += (1 - decay) * (weights - average)``, with one
    ``torch._foreach_lerp_`` over all tensors on their device: no host sync and no
    allocation per step.

    Only the parameters that require gradients when ``fit`` starts are averaged, in their
    own device and dtype (a bfloat16 net keeps a bfloat16 average, which cannot resolve
    ``1 - decay`` steps of 1e-3 well: train in float32 with mixed precision instead).
    Buffers (BatchNorm's running statistics) are not averaged: the net's current buffers
    are used with the averaged parameters. Each ``fit`` starts the average from the
    net's weights at its start; a resumed fit continues the saved average exactly (the
    average is part of the resumable state, on the CPU).

    With ``validate_with_ema`` each validation pass, and the best-weights snapshot
    taken by early stopping and checkpointing at that epoch's end, use the averaged
    weights (see :class:`AveragedWeightsCallback`), so ``fit`` ends with the averaged
    weights loaded when they were best, and the checkpoint file holds them. Monitor a
    ``val_`` column: an epoch without validation (``validation_freq``) keeps the training
    weights in the net. Under several processes each process keeps the same average
    (DDP keeps the weights equal), so nothing is communicated.

    Args:
        decay: weight of the old average in each update, in [0, 1). Defaults to 0.999.
        validate_with_ema: validate with the averaged weights. Defaults to True.
        update_every: update the average every this many optimizer steps (``decay``
            applies per update). Defaults to 1.
        start_step: the average copies the weights for the first this-many optimizer
            steps of a fit, then starts averaging (skips the random start). Defaults to 0.

    Attributes:
        averaged: ``{parameter name: averaged tensor}`` on the net's device.
        optimizer_steps: optimizer steps seen in this fit (and the fits it resumed).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1)
        >>> ema = EMA(decay=0.5, validate_with_ema=False)
        >>> ema.begin(net)
        >>> with torch.no_grad():
        ...     _ = net.weight.add_(2.0)
        >>> ema.update()
        >>> torch.allclose(ema.averaged["weight"], net.weight - 1.0)
        True
    """

    def __init__(self, decay: float = 0.999, *, validate_with_ema: bool = True,
                 update_every: int = 1, start_step: int = 0):
        super().__init__(check_bool("validate_with_ema", validate_with_ema))
        if isinstance(decay, bool) or not isinstance(decay, (int, float)):
            raise TypeError(f"decay must be a float; received {type(decay).__name__} {decay!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), e.g. 0.999; received {decay}")
        for name, value, low in (("update_every", update_every, 1),
                                 ("start_step", start_step, 0)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int; received {type(value).__name__} "
                                f"{value!r}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}; received {value}")
        self.decay = float(decay)
        self.update_every = update_every
        self.start_step = start_step
        self.averaged: dict = {}
        self.optimizer_steps = 0
        self._params: list[torch.Tensor] = []
        self._averages: list[torch.Tensor] = []

    @property
    def state_key(self) -> str:
        return f"EMA[{self.decay}]"

    @torch.no_grad()
    def begin(self, net: torch.nn.Module) -> None:
        """Start the average from ``net``'s trainable parameters (``on_fit_begin`` does this
        with the model's net)."""
        named = [(n, p) for n, p in net.named_parameters()
                 if p.requires_grad and p.is_floating_point()]
        self._params = [p for _, p in named]
        self._averages = [p.detach().clone() for _, p in named]
        self.averaged = {n: a for (n, _), a in zip(named, self._averages)}
        self.optimizer_steps = 0

    @torch.no_grad()
    def update(self) -> None:
        """Count one optimizer step and move the average (no host sync, no allocation)."""
        self.optimizer_steps += 1
        if self.optimizer_steps <= self.start_step:
            torch._foreach_copy_(self._averages, self._params)
        elif (self.optimizer_steps - self.start_step) % self.update_every == 0:
            torch._foreach_lerp_(self._averages, self._params, 1.0 - self.decay)

    def swap_pairs(self):
        return list(zip(self._params, self._averages))

    @torch.no_grad()
    def copy_to(self, net: torch.nn.Module) -> None:
        """Load the averaged parameters into ``net`` (a net of the same architecture)."""
        params = dict(net.named_parameters())
        missing = sorted(set(self.averaged) - set(params))
        if missing:
            raise ValueError(f"EMA.copy_to: the net has no parameters {missing}; expected a "
                             "net of the architecture the average was taken on")
        for name, average in self.averaged.items():
            params[name].copy_(average)

    def on_fit_begin(self, logs=None):
        super().on_fit_begin(logs)
        self.begin(self.model.unwrapped_net)

    def on_train_batch_end(self, step, logs=None):
        acc = self.model.accelerator
        # empty logs: skip_nonfinite skipped the step; the scaler's skip is a host bool
        if not acc.sync_gradients or not logs or acc.optimizer_step_was_skipped:
            return
        self.update()

    def state_dict(self) -> dict:
        if not self.averaged:
            return {}
        return {"optimizer_steps": self.optimizer_steps,
                "averaged": {n: a.detach().to("cpu", copy=True)
                             for n, a in self.averaged.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        saved = state["averaged"]
        if set(saved) != set(self.averaged):
            raise ValueError(
                f"EMA: the saved average holds parameters {sorted(saved)}, the net's trainable "
                f"parameters are {sorted(self.averaged)}; resume with the same net and the "
                "same parameters frozen")
        for name, average in self.averaged.items():
            average.copy_(saved[name])
        self.optimizer_steps = int(state["optimizer_steps"])
