"""Focal losses: binary / multi-label (sigmoid) and multi-class (softmax)."""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .validation import (
    bce_from_probabilities,
    binary_target,
    check_bool,
    check_probabilities,
    check_real,
    check_reduction,
    check_weight_vector,
    class_inputs,
    float_input,
    reduce,
    target_log_probs,
)

__all__ = ["FocalLoss", "MultiClassFocalLoss"]


class FocalLoss(nn.Module):
    r"""Binary / multi-label focal loss with torchvision ``sigmoid_focal_loss`` semantics.

    For every element, with ``p = sigmoid(y_pred)`` and target ``y`` in ``[0, 1]``::

        p_t     = p * y + (1 - p) * (1 - y)
        alpha_t = alpha * y + (1 - alpha) * (1 - y)          (1 when alpha is None)
        loss    = alpha_t * (1 - p_t) ** gamma * BCE(p, y)

    where ``BCE(p, y) = -(y log p + (1 - y) log(1 - p))``; for hard targets this is
    ``-alpha_t (1 - p_t)^gamma log(p_t)`` from Lin et al., "Focal Loss for Dense
    Object Detection", ICCV 2017 (arXiv:1708.02002).

    Convention: ``alpha`` weights the *positive* class (targets equal to 1) and
    ``1 - alpha`` the negatives, as in the paper and torchvision; the paper's
    ``alpha=0.25`` therefore down-weights positives. ``alpha=None`` disables the
    weighting (torchvision's ``alpha=-1``). With ``gamma=0`` and ``alpha=None``
    the loss equals :class:`torch.nn.BCEWithLogitsLoss`.

    With ``from_logits=True`` the loss is computed from ``logsigmoid`` and
    ``(1 - p_t)^gamma = exp(gamma * log(1 - p_t))``, so loss and gradient stay
    finite at saturated logits, also for ``0 < gamma < 1``. With
    ``from_logits=False`` ``y_pred`` holds probabilities and the BCE term follows
    :class:`torch.nn.BCELoss` (``log`` clamped at -100); prefer logits.

    Args:
        alpha: Weight of the positive class in ``[0, 1]``, or None for no
            weighting. Defaults to 0.25.
        gamma: Focusing parameter ``>= 0``; 0 gives (weighted) BCE. Defaults to 2.0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (elementwise, same shape as
            ``y_pred``). Defaults to ``"mean"``.
        from_logits: Whether ``y_pred`` holds raw logits (True) or probabilities
            in ``[0, 1]`` (False). Defaults to True.

    Example:
        >>> import math, torch
        >>> loss_fn = FocalLoss(alpha=0.25, gamma=2.0)
        >>> y_pred = torch.zeros(2)                 # p = 0.5 for both elements
        >>> y_true = torch.tensor([1.0, 0.0])
        >>> expected = (0.25 * 0.5**2 * math.log(2) + 0.75 * 0.5**2 * math.log(2)) / 2
        >>> math.isclose(loss_fn(y_pred, y_true).item(), expected, rel_tol=1e-6)
        True
    """

    def __init__(
        self,
        alpha: Optional[float] = 0.25,
        gamma: float = 2.0,
        reduction: str = "mean",
        from_logits: bool = True,
    ) -> None:
        super().__init__()
        self.alpha = check_real("alpha", alpha, low=0.0, high=1.0, allow_none=True)
        self.gamma = check_real("gamma", gamma, low=0.0)
        self.reduction = check_reduction(reduction)
        self.from_logits = check_bool("from_logits", from_logits)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}, "
            f"from_logits={self.from_logits}"
        )

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        x = float_input(y_pred, "FocalLoss")
        t = binary_target(y_true, y_pred, x, "FocalLoss")
        if self.from_logits:
            ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
            if self.gamma > 0:
                # log(1 - p_t) = log(p (1 - y) + (1 - p) y), combined in log space so that
                # soft targets work and nothing overflows; log(0) = -inf terms drop out of
                # logaddexp with zero gradient.
                log_1m_pt = torch.logaddexp(
                    F.logsigmoid(x) + torch.log1p(-t), F.logsigmoid(-x) + torch.log(t)
                )
                ce = ce * torch.exp(self.gamma * log_1m_pt)
        else:
            p = check_probabilities(x, "FocalLoss")
            ce = bce_from_probabilities(p, t)
            if self.gamma > 0:
                one_m_pt = p * (1 - t) + (1 - p) * t
                # pow's derivative gamma * u^(gamma - 1) is infinite at u = 0 for gamma < 1;
                # the clamp gives a finite value there and a zero gradient through the clamp.
                tiny = torch.finfo(one_m_pt.dtype).tiny
                ce = ce * one_m_pt.clamp(min=tiny).pow(self.gamma)
        if self.alpha is not None:
            ce = ce * (self.alpha * t + (1 - self.alpha) * (1 - t))
        return reduce(ce, self.reduction)


class MultiClassFocalLoss(nn.Module):
    r"""Softmax focal loss on class-index targets.

    With ``p = softmax(y_pred, dim=1)`` and target class ``y``::

        loss_i = -alpha[y_i] * (1 - p_{i, y_i}) ** gamma * log p_{i, y_i}

    (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, softmax
    form). ``y_pred`` holds raw logits of shape ``(N, C)`` or ``(N, C, d1, ...)``;
    ``y_true`` holds class indices of shape ``(N,)`` or ``(N, d1, ...)``.
    Targets equal to ``ignore_index`` contribute 0 and are not counted.

    With ``gamma=0`` and ``alpha=None`` the loss equals
    :class:`torch.nn.CrossEntropyLoss` (same ``ignore_index``) for every
    reduction. ``"mean"`` divides the sum by the number of non-ignored targets,
    also when ``alpha`` is given; this differs from
    ``CrossEntropyLoss(weight=alpha)``, which divides by the sum of the targets'
    weights (the two agree under ``"sum"``). A batch whose targets are all
    ignored gives NaN under ``"mean"``, as CrossEntropyLoss does.

    ``(1 - p_y)`` is computed as the sum of the other classes' probabilities in
    log space, so gradients stay finite at saturated logits.

    Args:
        gamma: Focusing parameter ``>= 0``. Defaults to 2.0.
        alpha: Per-class weights (sequence or 1-D tensor of length C), or None
            for no weighting. Defaults to None.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape of ``y_true``, 0 at
            ignored positions). Defaults to ``"mean"``.
        ignore_index: Target value that is skipped. Defaults to -100.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
        >>> target = torch.tensor([0, -100])
        >>> ce = torch.nn.CrossEntropyLoss()(logits, target)
        >>> torch.allclose(MultiClassFocalLoss(gamma=0.0)(logits, target), ce)
        True
        >>> bool(MultiClassFocalLoss(gamma=2.0)(logits, target) < ce)
        True
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Optional[Union[Sequence[float], Tensor]] = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        self.gamma = check_real("gamma", gamma, low=0.0)
        self.register_buffer("alpha", None if alpha is None else check_weight_vector("alpha", alpha))
        self.reduction = check_reduction(reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(
                f"ignore_index must be an int; received {type(ignore_index).__name__} {ignore_index!r}"
            )
        self.ignore_index = int(ignore_index)

    def extra_repr(self) -> str:
        alpha = None if self.alpha is None else self.alpha.tolist()
        return (
            f"gamma={self.gamma}, alpha={alpha}, reduction={self.reduction!r}, "
            f"ignore_index={self.ignore_index}"
        )

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        logits, target, shape = class_inputs(y_pred, y_true, "MultiClassFocalLoss")
        num_classes = logits.shape[1]
        valid = target != self.ignore_index
        # Ignored rows still index the tables below; class 0 is a harmless stand-in that is
        # zeroed afterwards.
        safe_target = target.masked_fill(~valid, 0)
        _, log_p_y, log_1m_p_y = target_log_probs(logits, safe_target)
        loss = -log_p_y
        if self.gamma > 0:
            loss = loss * torch.exp(self.gamma * log_1m_p_y)
        if self.alpha is not None:
            if self.alpha.numel() != num_classes:
                raise ValueError(
                    f"MultiClassFocalLoss has {self.alpha.numel()} alpha weights but y_pred has "
                    f"{num_classes} classes on dim 1 (shape {tuple(y_pred.shape)})"
                )
            loss = loss * self.alpha.to(device=loss.device, dtype=loss.dtype)[safe_target]
        loss = loss.masked_fill(~valid, 0.0)
        if self.reduction == "none":
            return loss.reshape(shape)
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / valid.sum()
