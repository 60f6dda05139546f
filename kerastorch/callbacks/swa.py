"""Stochastic weight averaging (SWA) over ``torch.optim.swa_utils``, once per epoch."""

from __future__ import annotations

from typing import Optional

import torch
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from ..checks import check_bool
from ..userwarn import warn_user
from .ema import AveragedWeightsCallback

__all__ = ["SWA"]

_BATCH_NORM = torch.nn.modules.batchnorm._BatchNorm


class SWA(AveragedWeightsCallback):
    """Average the weights once per epoch from epoch ``swa_start`` on (torch's SWA recipe).

    At the end of each training pass of epochs ``swa_start, swa_start + 1, ...`` (1-based)
    the net's parameters go into a ``torch.optim.swa_utils.AveragedModel`` (an equal-weight
    running mean, on the net's device). With ``swa_lr`` a ``SWALR`` scheduler, built when
    ``fit`` starts, is stepped at the end of each of those epochs, annealing the learning
    rate to ``swa_lr`` over ``anneal_epochs``: combine it with no ``lr_scheduler`` of the
    fit, or one that has finished by ``swa_start`` (both would set the rate).

    BatchNorm: the averaged parameters need their own running statistics, which
    ``torch.optim.swa_utils.update_bn`` computes with one pass over a loader. A callback
    cannot reach the fit's training loader, so pass it as ``bn_loader`` (batches ``x`` or
    ``(x, ...)`` on any device; they are moved to the net's). It is used before each
    validation with the average and once when ``fit`` ends normally (not after Ctrl-C or an
    error), so :attr:`averaged_model` is the finished SWA model. Without ``bn_loader`` a net
    with BatchNorm validates the average with the training weights' statistics (a warning
    says so).

    With ``validate_with_swa`` each validation from epoch ``swa_start`` on uses the average
    (and its BatchNorm statistics), as do the best-weights snapshot and checkpoint file of
    that epoch (see :class:`AveragedWeightsCallback`); ``fit`` then ends with the averaged
    weights loaded when they were best. Earlier epochs validate the training weights.
    The average, its BatchNorm statistics and ``SWALR``'s state are part of the resumable
    state, so a resumed fit continues exactly. Each ``fit`` starts a new average.

    Args:
        swa_start: the first epoch (1-based) whose weights are averaged.
        swa_lr: the learning rate ``SWALR`` anneals to; None leaves the rate alone.
            Defaults to None.
        anneal_epochs: ``SWALR``'s annealing epochs. Defaults to 10.
        anneal_strategy: ``"cos"`` or ``"linear"``. Defaults to ``"cos"``.
        bn_loader: a loader for ``update_bn`` (see above). Defaults to None.
        validate_with_swa: validate with the averaged weights. Defaults to True.

    Attributes:
        averaged_model: the ``AveragedModel`` (torch's ``swa_model``), set by ``fit``.

    Example:
        >>> swa = SWA(swa_start=3, swa_lr=0.05)
        >>> swa.swa_start, swa.anneal_epochs
        (3, 10)
    """

    def __init__(self, swa_start: int, *, swa_lr: Optional[float] = None,
                 anneal_epochs: int = 10, anneal_strategy: str = "cos", bn_loader=None,
                 validate_with_swa: bool = True):
        super().__init__(check_bool("validate_with_swa", validate_with_swa))
        for name, value, low in (("swa_start", swa_start, 1), ("anneal_epochs", anneal_epochs, 0)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int; received {type(value).__name__} "
                                f"{value!r}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}; received {value}")
        if swa_lr is not None and (isinstance(swa_lr, bool) or not isinstance(swa_lr, (int, float))
                                   or swa_lr < 0):
            raise ValueError(f"swa_lr must be a learning rate >= 0 or None; received {swa_lr!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear'; received "
                             f"{anneal_strategy!r}")
        self.swa_start, self.swa_lr = swa_start, swa_lr
        self.anneal_epochs, self.anneal_strategy = anneal_epochs, anneal_strategy
        self.bn_loader = bn_loader
        self.averaged_model: Optional[AveragedModel] = None
        self.swa_scheduler: Optional[SWALR] = None
        self.averaged_epoch: Optional[int] = None  # the last epoch averaged
        self._bn_fresh = False  # the average's BatchNorm statistics belong to it
        self._has_bn = False

    @property
    def state_key(self) -> str:
        return f"SWA[{self.swa_start}|{self.swa_lr}]"

    def average(self, epoch: int) -> None:
        """Add the net's weights after ``epoch``'s training pass (once per epoch)."""
        if epoch < self.swa_start or self.averaged_epoch == epoch:
            return
        self.averaged_model.update_parameters(self.model.unwrapped_net)  # one host sync
        self.averaged_epoch, self._bn_fresh = epoch, False

    def update_bn(self) -> None:
        """Recompute the average's BatchNorm statistics on ``bn_loader`` (one pass)."""
        if not self._has_bn or self.bn_loader is None or self._bn_fresh \
                or self.averaged_epoch is None:
            return
        device = next(self.averaged_model.module.parameters()).device
        update_bn(self.bn_loader, self.averaged_model, device=device)
        self._bn_fresh = True

    def swap_pairs(self):
        if self.averaged_epoch is None:
            return []
        net, averaged = self.model.unwrapped_net, self.averaged_model.module
        pairs = [(p, a) for p, a in zip(net.parameters(), averaged.parameters())
                 if p.is_floating_point()]
        if self._bn_fresh:
            pairs += [(b, a) for m, am in zip(net.modules(), averaged.modules())
                      if isinstance(m, _BATCH_NORM)
                      for b, a in zip(m.buffers(recurse=False), am.buffers(recurse=False))]
        return pairs

    def on_fit_begin(self, logs=None):
        super().on_fit_begin(logs)
        net = self.model.unwrapped_net
        self.averaged_model = AveragedModel(net)  # a deep copy on the net's device
        self.averaged_epoch, self._bn_fresh = None, False
        self._has_bn = any(isinstance(m, _BATCH_NORM) for m in net.modules())
        if self._has_bn and self.bn_loader is None:
            warn_user("SWA: the net has BatchNorm but no bn_loader was given, so the averaged "
                      "weights run with the training weights' running statistics; pass "
                      "SWA(..., bn_loader=train_loader) to recompute them (update_bn)")
        self.swa_scheduler = None if self.swa_lr is None else SWALR(
            self.model.optimizer, self.swa_lr, anneal_epochs=self.anneal_epochs,
            anneal_strategy=self.anneal_strategy)

    def on_val_begin(self, epoch, logs=None):
        self.average(epoch)
        if self.validate_with_average:
            self.update_bn()
        super().on_val_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.average(epoch)
        if self.swa_scheduler is not None and epoch >= self.swa_start:
            self.swa_scheduler.step()  # after the fit's own scheduler: the SWA rate wins

    def on_fit_end(self, logs=None):
        super().on_fit_end(logs)
        logs = logs or {}
        if not logs.get("interrupted") and logs.get("error") is None:
            self.update_bn()

    @torch.no_grad()
    def copy_to(self, net: torch.nn.Module) -> None:
        """Load the averaged parameters (and BatchNorm statistics, once computed) into
        ``net``, a net of the same architecture."""
        if self.averaged_epoch is None:
            raise ValueError(f"SWA.copy_to: nothing averaged yet (averaging starts at epoch "
                             f"{self.swa_start})")
        state = {k[len("module."):]: v for k, v in self.averaged_model.state_dict().items()
                 if k.startswith("module.")}
        if not self._bn_fresh:  # the copy's buffers are stale: keep the net's own
            state = {k: v for k, v in state.items() if k in dict(net.named_parameters())}
        net.load_state_dict(state, strict=False)

    def state_dict(self) -> dict:
        if self.averaged_model is None:
            return {}
        return {"averaged": {k: v.detach().to("cpu", copy=True)
                             for k, v in self.averaged_model.state_dict().items()},
                "averaged_epoch": self.averaged_epoch, "bn_fresh": self._bn_fresh,
                "swa_scheduler": None if self.swa_scheduler is None
                else self.swa_scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.averaged_model.load_state_dict(state["averaged"])
        self.averaged_epoch, self._bn_fresh = state["averaged_epoch"], state["bn_fresh"]
        if self.swa_scheduler is not None and state["swa_scheduler"] is not None:
            self.swa_scheduler.load_state_dict(state["swa_scheduler"])
