"""Loss functions for kerastorch: focal, symmetric, overlap, cost-sensitive and regularized losses.

Every loss here is an :class:`torch.nn.Module` called as ``loss_fn(y_pred, y_true)``
(prediction first, as everywhere in PyTorch) and accepts ``reduction`` in
``{"mean", "sum", "none"}``.

Conventions shared by the module:

* Binary / multi-label losses (:class:`FocalLoss`, :class:`DiceLoss`,
  :class:`JaccardLoss`, :class:`TverskyLoss`, :class:`DiceBCELoss`) take raw
  logits by default (``from_logits=True``) and targets of exactly the same shape
  as ``y_pred`` with values in ``[0, 1]`` (float, integer or bool).
* Multi-class losses (:class:`MultiClassFocalLoss`, :class:`SCELoss`,
  :class:`CostSensitiveLoss`) take raw logits of shape ``(N, C)`` or
  ``(N, C, d1, ...)`` and integer class-index targets of shape ``(N,)`` or
  ``(N, d1, ...)``, like :class:`torch.nn.CrossEntropyLoss`.
* float16 / bfloat16 inputs are computed in float32 and the loss is returned in
  float32; gradients still flow back to the half-precision input.
* Shapes are never broadcast: a mismatch raises ``ValueError`` naming both shapes.

:func:`with_regularization` adds L1/L2 penalties to any loss, and
:func:`check_loss` diagnoses the classic mistakes (softmax or log_softmax fed to
CrossEntropyLoss, wrong target dtype/shape, non-scalar losses, losses that
detach the prediction) on one batch.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FocalLoss",
    "MultiClassFocalLoss",
    "SCELoss",
    "DiceLoss",
    "JaccardLoss",
    "TverskyLoss",
    "DiceBCELoss",
    "CostSensitiveLoss",
    "RegularizedLoss",
    "with_regularization",
    "check_loss",
]

_REDUCTIONS = ("mean", "sum", "none")
_HALF_DTYPES = (torch.float16, torch.bfloat16)
# log(1e-4): the value Wang et al. substitute for log(0) in the reverse cross entropy.
_SCE_LOG_ZERO = math.log(1e-4)


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------
def _check_reduction(reduction: Any) -> str:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be one of 'mean', 'sum', 'none'; received {reduction!r}"
        )
    return reduction


def _check_real(
    name: str,
    value: Any,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    allow_none: bool = False,
) -> Optional[float]:
    if value is None and allow_none:
        return None
    expected = "a real number" + (" or None" if allow_none else "")
    # bool is an int subclass; True as a gamma or a smoothing constant is a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}; received {type(value).__name__} {value!r}")
    value = float(value)
    if low is not None and high is not None:
        wanted = f"in [{low:g}, {high:g}]"
    elif low is not None:
        wanted = f">= {low:g}"
    else:
        wanted = "finite"
    if (
        not math.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        raise ValueError(f"{name} must be {wanted}; received {value!r}")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; received {type(value).__name__} {value!r}")
    return value


def _check_weight_vector(name: str, value: Any) -> Tensor:
    if isinstance(value, (numbers.Number, str, bytes)):
        raise TypeError(
            f"{name} must be a sequence or 1-D tensor of per-class weights, or None; "
            f"received {type(value).__name__} {value!r}"
        )
    try:
        weights = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{name} must be a sequence or 1-D tensor of per-class weights, or None; "
            f"received {type(value).__name__}"
        ) from exc
    if weights.ndim != 1 or weights.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of per-class weights; "
            f"received shape {tuple(weights.shape)}"
        )
    if weights.dtype == torch.bool or weights.is_complex():
        raise TypeError(f"{name} must hold real numbers; received dtype {weights.dtype}")
    if not weights.is_floating_point():
        weights = weights.to(torch.get_default_dtype())
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(
            f"{name} must hold finite non-negative weights; received {weights.tolist()}"
        )
    return weights.detach().clone()


# ---------------------------------------------------------------------------
# tensor helpers
# ---------------------------------------------------------------------------
def _float_input(y_pred: Any, owner: str) -> Tensor:
    if not isinstance(y_pred, Tensor):
        raise TypeError(f"{owner} expects y_pred to be a torch.Tensor; received {type(y_pred).__name__}")
    if not y_pred.is_floating_point():
        raise TypeError(
            f"{owner} expects floating-point y_pred (scores or probabilities); received dtype {y_pred.dtype}"
        )
    # Half precision loses the small terms (1 - p_t)^gamma and the pooled sums; float32 keeps them.
    return y_pred.float() if y_pred.dtype in _HALF_DTYPES else y_pred


def _binary_target(y_true: Any, y_pred: Tensor, x: Tensor, owner: str) -> Tensor:
    if not isinstance(y_true, Tensor):
        raise TypeError(f"{owner} expects y_true to be a torch.Tensor; received {type(y_true).__name__}")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{owner} expects y_true with the same shape as y_pred; received "
            f"y_pred {tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}"
        )
    if y_true.is_complex():
        raise TypeError(f"{owner} expects real targets in [0, 1]; received dtype {y_true.dtype}")
    return y_true.to(dtype=x.dtype)


def _check_probabilities(p: Tensor, owner: str) -> Tensor:
    if p.numel() and bool(((p < 0) | (p > 1)).any()):
        raise ValueError(
            f"{owner} with from_logits=False expects probabilities in [0, 1]; received values in "
            f"[{p.min().item():.4g}, {p.max().item():.4g}]. Pass raw scores with from_logits=True."
        )
    return p


def _autocast_off(device_type: str):
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except RuntimeError:
        enabled = False
    return torch.autocast(device_type, enabled=False) if enabled else contextlib.nullcontext()


def _bce_from_probabilities(p: Tensor, t: Tensor) -> Tensor:
    # F.binary_cross_entropy clamps log(p) at -100 like nn.BCELoss and its backward guards
    # p * (1 - p) with an epsilon, so p in {0, 1} stays finite; CUDA autocast refuses it,
    # and the inputs here are already float32 or wider.
    with _autocast_off(p.device.type):
        return F.binary_cross_entropy(p, t, reduction="none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _class_inputs(y_pred: Any, y_true: Any, owner: str) -> Tuple[Tensor, Tensor, Tuple[int, ...]]:
    """Validates class-index inputs and returns (logits (M, C), targets (M,), target shape)."""
    x = _float_input(y_pred, owner)
    if x.ndim < 2:
        raise ValueError(
            f"{owner} expects y_pred of shape (N, C) or (N, C, d1, ...) with classes on dim 1; "
            f"received {tuple(y_pred.shape)}"
        )
    if x.shape[1] < 2:
        raise ValueError(f"{owner} needs at least 2 classes on dim 1; received y_pred {tuple(y_pred.shape)}")
    if not isinstance(y_true, Tensor):
        raise TypeError(f"{owner} expects y_true to be a torch.Tensor; received {type(y_true).__name__}")
    if y_true.dtype == torch.bool or y_true.is_floating_point() or y_true.is_complex():
        raise TypeError(
            f"{owner} expects integer class-index targets (e.g. torch.long); received dtype "
            f"{y_true.dtype}. Convert one-hot targets with y_true.argmax(dim=1)."
        )
    expected = (x.shape[0],) + tuple(x.shape[2:])
    if tuple(y_true.shape) != expected:
        raise ValueError(
            f"{owner} expects y_true of shape {expected} (y_pred's shape without the class dim 1); "
            f"received y_pred {tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}"
        )
    num_classes = x.shape[1]
    # reshape rather than view: inputs may be non-contiguous (permuted channels-last tensors).
    logits = x.movedim(1, -1).reshape(-1, num_classes)
    return logits, y_true.reshape(-1).long(), expected


def _target_log_probs(logits: Tensor, target: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Returns (log_softmax, log p_y, log(1 - p_y)) for every row of ``logits``."""
    log_probs = F.log_softmax(logits, dim=-1)
    log_p_y = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    # 1 - p_y = sum_{j != y} p_j; summing the other classes in log space keeps (1 - p_y)^gamma
    # and its gradient finite when p_y rounds to 1, where log1p(-exp(log p_y)) gives -inf.
    is_target = torch.arange(logits.shape[-1], device=logits.device) == target.unsqueeze(-1)
    log_1m_p_y = torch.logsumexp(log_probs.masked_fill(is_target, float("-inf")), dim=-1)
    return log_probs, log_p_y, log_1m_p_y


# ---------------------------------------------------------------------------
# focal losses
# ---------------------------------------------------------------------------
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
        >>> import torch
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
        self.alpha = _check_real("alpha", alpha, low=0.0, high=1.0, allow_none=True)
        self.gamma = _check_real("gamma", gamma, low=0.0)
        self.reduction = _check_reduction(reduction)
        self.from_logits = _check_bool("from_logits", from_logits)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}, "
            f"from_logits={self.from_logits}"
        )

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        x = _float_input(y_pred, "FocalLoss")
        t = _binary_target(y_true, y_pred, x, "FocalLoss")
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
            p = _check_probabilities(x, "FocalLoss")
            ce = _bce_from_probabilities(p, t)
            if self.gamma > 0:
                one_m_pt = p * (1 - t) + (1 - p) * t
                # pow's derivative gamma * u^(gamma - 1) is infinite at u = 0 for gamma < 1;
                # the clamp gives a finite value there and a zero gradient through the clamp.
                tiny = torch.finfo(one_m_pt.dtype).tiny
                ce = ce * one_m_pt.clamp(min=tiny).pow(self.gamma)
        if self.alpha is not None:
            ce = ce * (self.alpha * t + (1 - self.alpha) * (1 - t))
        return _reduce(ce, self.reduction)


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
        self.gamma = _check_real("gamma", gamma, low=0.0)
        self.register_buffer("alpha", None if alpha is None else _check_weight_vector("alpha", alpha))
        self.reduction = _check_reduction(reduction)
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
        logits, target, shape = _class_inputs(y_pred, y_true, "MultiClassFocalLoss")
        num_classes = logits.shape[1]
        valid = target != self.ignore_index
        # Ignored rows still index the tables below; class 0 is a harmless stand-in that is
        # zeroed afterwards.
        safe_target = target.masked_fill(~valid, 0)
        _, log_p_y, log_1m_p_y = _target_log_probs(logits, safe_target)
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


# ---------------------------------------------------------------------------
# symmetric cross entropy
# ---------------------------------------------------------------------------
class SCELoss(nn.Module):
    r"""Symmetric Cross Entropy for learning with noisy labels.

    Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy
    Labels", ICCV 2019 (arXiv:1908.06112)::

        loss_i = alpha * CE_i + beta * RCE_i
        CE_i   = -log p_{i, y_i}
        RCE_i  = -sum_k p_{i, k} log q_{i, k} = -log(1e-4) * (1 - p_{i, y_i})

    where ``q`` is the one-hot label and ``log 0`` is replaced by
    ``A = log(1e-4)`` as in the paper. The predicted probabilities are not
    clamped, so RCE is exactly 0 at a perfect prediction and every class keeps
    its gradient. ``y_pred`` holds raw logits ``(N, C)`` or ``(N, C, d1, ...)``;
    ``y_true`` holds class indices ``(N,)`` or ``(N, d1, ...)``. Defaults follow
    the paper's CIFAR-10 setting (``alpha=0.1, beta=1.0``).

    Args:
        alpha: Weight of the cross-entropy term, ``>= 0``. Defaults to 0.1.
        beta: Weight of the reverse cross-entropy term, ``>= 0``. Defaults to 1.0.
        num_classes: Expected number of classes; checked against ``y_pred``'s
            dim 1, and inferred from it when None. Defaults to None.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape of ``y_true``).
            Defaults to ``"mean"``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, -1.0]])
        >>> ce = torch.nn.CrossEntropyLoss()(logits, torch.tensor([0]))
        >>> p_y = torch.softmax(logits, dim=1)[0, 0]
        >>> expected = 0.1 * ce - 1.0 * math.log(1e-4) * (1 - p_y)
        >>> torch.allclose(SCELoss()(logits, torch.tensor([0])), expected)
        True
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        num_classes: Optional[int] = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.alpha = _check_real("alpha", alpha, low=0.0)
        self.beta = _check_real("beta", beta, low=0.0)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
                raise TypeError(
                    f"num_classes must be an int or None; received {type(num_classes).__name__} {num_classes!r}"
                )
            if num_classes < 2:
                raise ValueError(f"num_classes must be >= 2; received {num_classes}")
            num_classes = int(num_classes)
        self.num_classes = num_classes
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, num_classes={self.num_classes}, "
            f"reduction={self.reduction!r}"
        )

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        logits, target, shape = _class_inputs(y_pred, y_true, "SCELoss")
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"SCELoss was built with num_classes={self.num_classes}; received y_pred with "
                f"{logits.shape[1]} classes on dim 1 (shape {tuple(y_pred.shape)})"
            )
        _, log_p_y, log_1m_p_y = _target_log_probs(logits, target)
        loss = self.alpha * (-log_p_y) + self.beta * (-_SCE_LOG_ZERO) * torch.exp(log_1m_p_y)
        return _reduce(loss.reshape(shape), self.reduction)


# ---------------------------------------------------------------------------
# overlap (segmentation) losses
# ---------------------------------------------------------------------------
class _OverlapLoss(nn.Module):
    """Shared machinery of the Dice / Jaccard / Tversky family (binary or multi-label)."""

    _name = "_OverlapLoss"

    def __init__(self, smooth: float, from_logits: bool, reduction: str, per_sample: bool) -> None:
        super().__init__()
        self.smooth = _check_real("smooth", smooth, low=0.0)
        self.from_logits = _check_bool("from_logits", from_logits)
        self.reduction = _check_reduction(reduction)
        self.per_sample = _check_bool("per_sample", per_sample)

    def extra_repr(self) -> str:
        return (
            f"smooth={self.smooth}, from_logits={self.from_logits}, "
            f"reduction={self.reduction!r}, per_sample={self.per_sample}"
        )

    def _inputs(self, y_pred: Tensor, y_true: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Returns (scores as float, probabilities, targets)."""
        x = _float_input(y_pred, self._name)
        t = _binary_target(y_true, y_pred, x, self._name)
        if self.per_sample and x.ndim == 0:
            raise ValueError(f"{self._name} with per_sample=True needs a batch dim 0; received a 0-dim y_pred")
        p = torch.sigmoid(x) if self.from_logits else _check_probabilities(x, self._name)
        return x, p, t

    def _pool(self, v: Tensor) -> Tensor:
        # reshape, not view: the seeds' .view(-1) fails on permuted (non-contiguous) masks.
        if self.per_sample:
            return v.reshape(v.shape[0], -1).sum(dim=1)
        return v.sum()

    def _overlap_loss(self, p: Tensor, t: Tensor) -> Tensor:
        tp = self._pool(p * t)
        return 1 - self._score(tp, self._pool(p), self._pool(t))

    def _score(self, tp: Tensor, sum_p: Tensor, sum_t: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        _, p, t = self._inputs(y_pred, y_true)
        return _reduce(self._overlap_loss(p, t), self.reduction)


class DiceLoss(_OverlapLoss):
    r"""Soft Dice loss for binary or multi-label segmentation.

    With ``p = sigmoid(y_pred)`` (or ``y_pred`` itself when ``from_logits=False``)
    and targets ``y`` in ``[0, 1]`` of the same shape::

        loss = 1 - (2 * sum(p * y) + smooth) / (sum(p) + sum(y) + smooth)

    the linear (Sørensen) soft Dice used in the seed code; Milletari et al.,
    "V-Net", 3DV 2016 (arXiv:1606.04797) use squared terms in the denominator.
    Smoothing in numerator and denominator makes an empty mask predicted empty
    score 1 (loss 0) instead of 0/0.

    ``per_sample=False`` pools all elements of the batch into one score (the
    seeds' behaviour), so every reduction returns that single 0-dim value.
    ``per_sample=True`` computes one score per sample (sums over all dims but
    dim 0) and then applies ``reduction`` to the ``(N,)`` losses.

    Args:
        smooth: Additive smoothing ``>= 0`` in numerator and denominator; 0
            gives the exact Dice (NaN on empty masks). Defaults to 1.0.
        from_logits: Whether ``y_pred`` holds logits (True) or probabilities
            (False). Defaults to True.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Defaults to ``"mean"``.
        per_sample: Score each sample separately instead of pooling the batch.
            Defaults to False.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.5, 1.0, 0.0]])
        >>> y = torch.tensor([[1.0, 1.0, 0.0]])
        >>> loss = DiceLoss(smooth=1.0, from_logits=False)(p, y)
        >>> math.isclose(loss.item(), 1 - (2 * 1.5 + 1) / (1.5 + 2 + 1), rel_tol=1e-6)
        True
    """

    _name = "DiceLoss"

    def __init__(
        self,
        smooth: float = 1.0,
        from_logits: bool = True,
        reduction: str = "mean",
        per_sample: bool = False,
    ) -> None:
        super().__init__(smooth, from_logits, reduction, per_sample)

    def _score(self, tp: Tensor, sum_p: Tensor, sum_t: Tensor) -> Tensor:
        return (2 * tp + self.smooth) / (sum_p + sum_t + self.smooth)


class JaccardLoss(_OverlapLoss):
    r"""Soft Jaccard (IoU) loss for binary or multi-label segmentation.

    With ``p`` and ``y`` as in :class:`DiceLoss`::

        I    = sum(p * y)
        loss = 1 - (I + smooth) / (sum(p) + sum(y) - I + smooth)

    Rahman & Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks
    for Image Segmentation", ISVC 2016. Without smoothing the Jaccard score
    ``J`` and the Dice score ``D`` satisfy ``J = D / (2 - D)``.
    ``per_sample`` and ``reduction`` behave as in :class:`DiceLoss`.

    Args:
        smooth: Additive smoothing ``>= 0`` in numerator and denominator.
            Defaults to 1.0.
        from_logits: Whether ``y_pred`` holds logits (True) or probabilities
            (False). Defaults to True.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Defaults to ``"mean"``.
        per_sample: Score each sample separately instead of pooling the batch.
            Defaults to False.

    Example:
        >>> import torch
        >>> p = torch.tensor([0.5, 1.0, 0.0])
        >>> y = torch.tensor([1.0, 1.0, 0.0])
        >>> loss = JaccardLoss(smooth=0.0, from_logits=False)(p, y)
        >>> math.isclose(loss.item(), 1 - 1.5 / (1.5 + 2 - 1.5), rel_tol=1e-6)
        True
    """

    _name = "JaccardLoss"

    def __init__(
        self,
        smooth: float = 1.0,
        from_logits: bool = True,
        reduction: str = "mean",
        per_sample: bool = False,
    ) -> None:
        super().__init__(smooth, from_logits, reduction, per_sample)

    def _score(self, tp: Tensor, sum_p: Tensor, sum_t: Tensor) -> Tensor:
        return (tp + self.smooth) / (sum_p + sum_t - tp + self.smooth)


class TverskyLoss(_OverlapLoss):
    r"""Tversky loss: Dice/Jaccard with separate weights for false positives and negatives.

    With ``p`` and ``y`` as in :class:`DiceLoss`, ``TP = sum(p y)``,
    ``FP = sum(p (1 - y))`` and ``FN = sum((1 - p) y)``::

        loss = 1 - (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)

    Salehi et al., "Tversky loss function for image segmentation using 3D fully
    convolutional deep networks", MLMI 2017 (arXiv:1706.05721). ``alpha``
    weights false positives and ``beta`` false negatives; ``beta > alpha``
    favours recall. ``TverskyLoss(0.5, 0.5, smooth=s)`` equals
    ``DiceLoss(smooth=2 * s)`` and ``TverskyLoss(1, 1, smooth=s)`` equals
    ``JaccardLoss(smooth=s)``. ``per_sample`` and ``reduction`` behave as in
    :class:`DiceLoss`.

    Args:
        alpha: Weight of false positives, ``>= 0``. Defaults to 0.5.
        beta: Weight of false negatives, ``>= 0``. Defaults to 0.5.
        smooth: Additive smoothing ``>= 0`` in numerator and denominator.
            Defaults to 1.0.
        from_logits: Whether ``y_pred`` holds logits (True) or probabilities
            (False). Defaults to True.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Defaults to ``"mean"``.
        per_sample: Score each sample separately instead of pooling the batch.
            Defaults to False.

    Example:
        >>> import torch
        >>> x, y = torch.randn(2, 5), torch.randint(0, 2, (2, 5)).float()
        >>> torch.allclose(TverskyLoss(0.5, 0.5, smooth=1.0)(x, y), DiceLoss(smooth=2.0)(x, y))
        True
    """

    _name = "TverskyLoss"

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth: float = 1.0,
        from_logits: bool = True,
        reduction: str = "mean",
        per_sample: bool = False,
    ) -> None:
        super().__init__(smooth, from_logits, reduction, per_sample)
        self.alpha = _check_real("alpha", alpha, low=0.0)
        self.beta = _check_real("beta", beta, low=0.0)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, " + super().extra_repr()

    def _score(self, tp: Tensor, sum_p: Tensor, sum_t: Tensor) -> Tensor:
        fp = sum_p - tp
        fn = sum_t - tp
        return (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)


class DiceBCELoss(DiceLoss):
    r"""Dice loss plus binary cross entropy, for binary or multi-label segmentation.

    ``loss = DiceLoss(y_pred, y) + BCE(y_pred, y)`` where, with the default
    ``from_logits=True``, the BCE term is :func:`binary_cross_entropy_with_logits`
    computed from the logits (not from ``sigmoid(y_pred)``, whose log saturates
    at 100 and whose gradient vanishes for confidently wrong logits); with
    ``from_logits=False`` it follows :class:`torch.nn.BCELoss` on probabilities.
    A common segmentation combination (e.g. Isensee et al., "nnU-Net", Nature
    Methods 2021, pair Dice with cross entropy).

    The BCE term is averaged over the same elements the Dice term pools: the
    whole batch when ``per_sample=False`` (one 0-dim value for every reduction),
    each sample when ``per_sample=True`` (then ``reduction`` applies to the
    ``(N,)`` losses).

    Args:
        smooth: Additive Dice smoothing ``>= 0``. Defaults to 1.0.
        from_logits: Whether ``y_pred`` holds logits (True) or probabilities
            (False). Defaults to True.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Defaults to ``"mean"``.
        per_sample: Score each sample separately instead of pooling the batch.
            Defaults to False.

    Example:
        >>> import torch
        >>> x, y = torch.randn(2, 5), torch.randint(0, 2, (2, 5)).float()
        >>> expected = DiceLoss()(x, y) + torch.nn.BCEWithLogitsLoss()(x, y)
        >>> torch.allclose(DiceBCELoss()(x, y), expected)
        True
    """

    _name = "DiceBCELoss"

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        x, p, t = self._inputs(y_pred, y_true)
        if self.from_logits:
            bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        else:
            bce = _bce_from_probabilities(p, t)
        if self.per_sample:
            bce = bce.reshape(bce.shape[0], -1).mean(dim=1)
        else:
            bce = bce.mean()
        return _reduce(self._overlap_loss(p, t) + bce, self.reduction)


# ---------------------------------------------------------------------------
# cost-sensitive cross entropy
# ---------------------------------------------------------------------------
class CostSensitiveLoss(nn.Module):
    r"""Cross entropy plus the expected misclassification cost under the softmax.

    With ``p = softmax(y_pred, dim=1)`` and a cost matrix ``C`` whose row is the
    true class and column the predicted class (``C[i, i] = 0``)::

        loss_i = CE_i + lambd * sum_j p_{i, j} * C[y_i, j]

    The second term is the expected cost of the prediction (Elkan, "The
    Foundations of Cost-Sensitive Learning", IJCAI 2001). Its gradient with
    respect to logit ``j`` is ``lambd * p_j * (C[y, j] - expected cost)``, so
    probability mass is pushed away from costly columns sample by sample. To
    make "misclassifying a 9 costs more" set row 9 high: ``C[9, j] = c`` for
    ``j != 9``. A zero matrix gives plain cross entropy.

    ``y_pred`` holds raw logits ``(N, C)`` or ``(N, C, d1, ...)``; ``y_true``
    holds class indices ``(N,)`` or ``(N, d1, ...)``.

    Args:
        cost_matrix: Square ``(C, C)`` matrix (tensor, array or nested list) of
            finite non-negative costs with a zero diagonal.
        lambd: Weight of the expected-cost term, ``>= 0``. Defaults to 1.0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape of ``y_true``).
            Defaults to ``"mean"``.

    Example:
        >>> import torch
        >>> cost = torch.ones(3, 3) - torch.eye(3)
        >>> cost[2, :2] = 10.0                     # mistaking a true 2 is expensive
        >>> logits = torch.tensor([[0.0, 0.0, 0.0]])
        >>> loss = CostSensitiveLoss(cost)(logits, torch.tensor([2]))
        >>> math.isclose(loss.item(), math.log(3) + (10 + 10) / 3, rel_tol=1e-6)
        True
    """

    def __init__(
        self,
        cost_matrix: Union[Tensor, Sequence[Sequence[float]]],
        lambd: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        try:
            cost = torch.as_tensor(cost_matrix)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                "cost_matrix must be a square (C, C) tensor, array or nested list of numbers; "
                f"received {type(cost_matrix).__name__}"
            ) from exc
        if cost.dtype == torch.bool or cost.is_complex():
            raise TypeError(f"cost_matrix must hold real numbers; received dtype {cost.dtype}")
        if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] < 2:
            raise ValueError(
                f"cost_matrix must be a square (C, C) matrix with C >= 2; received shape {tuple(cost.shape)}"
            )
        if not cost.is_floating_point():
            cost = cost.to(torch.get_default_dtype())
        if not bool(torch.isfinite(cost).all()) or bool((cost < 0).any()):
            raise ValueError(f"cost_matrix must hold finite non-negative costs; received {cost.tolist()}")
        diagonal = cost.diagonal()
        if bool((diagonal != 0).any()):
            i = int((diagonal != 0).nonzero()[0])
            raise ValueError(
                "cost_matrix must have a zero diagonal (a correct prediction costs nothing); "
                f"received C[{i}, {i}] = {diagonal[i].item():g}"
            )
        self.register_buffer("cost_matrix", cost.detach().clone())
        self.lambd = _check_real("lambd", lambd, low=0.0)
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.cost_matrix.shape[0]}, lambd={self.lambd}, reduction={self.reduction!r}"

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        logits, target, shape = _class_inputs(y_pred, y_true, "CostSensitiveLoss")
        if logits.shape[1] != self.cost_matrix.shape[0]:
            raise ValueError(
                f"CostSensitiveLoss has a {tuple(self.cost_matrix.shape)} cost_matrix but y_pred has "
                f"{logits.shape[1]} classes on dim 1 (shape {tuple(y_pred.shape)})"
            )
        log_probs = F.log_softmax(logits, dim=-1)
        ce = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        # The loss module is often left on the CPU while the batch lives on an accelerator.
        cost = self.cost_matrix.to(device=logits.device, dtype=logits.dtype)[target]
        loss = ce + self.lambd * (log_probs.exp() * cost).sum(dim=-1)
        return _reduce(loss.reshape(shape), self.reduction)


# ---------------------------------------------------------------------------
# regularization
# ---------------------------------------------------------------------------
def _is_bias(name: str) -> bool:
    # The parameter's own name (last dotted part) decides: "fc.bias", "in_proj_bias" and
    # "bias_ih_l0" are biases, a module called "bias_head" holding a ".weight" is not.
    return "bias" in name.rsplit(".", 1)[-1]


class RegularizedLoss:
    r"""A loss plus L1/L2 penalties on a model's parameters; build it with :func:`with_regularization`.

    Calling it returns ``loss_fn(y_pred, y_true) + l1 * sum|w| + l2 * sum w^2``,
    the sums running over ``model``'s trainable parameters (``requires_grad``)
    at call time, skipping biases when ``exclude_bias`` is True.

    Args:
        loss_fn: Loss returning a scalar tensor (reduction ``"mean"`` or ``"sum"``).
        model: Module whose parameters are penalized.
        l1: L1 coefficient ``>= 0``. Defaults to 0.0.
        l2: L2 coefficient ``>= 0``. Defaults to 0.0.
        exclude_bias: Skip parameters whose own name contains ``"bias"``.
            Defaults to True.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1)
        >>> loss_fn = RegularizedLoss(torch.nn.MSELoss(), net, l1=0.1)
        >>> torch.allclose(loss_fn.penalty(), 0.1 * net.weight.abs().sum())
        True
    """

    def __init__(
        self,
        loss_fn: Callable[[Any, Any], Tensor],
        model: nn.Module,
        l1: float = 0.0,
        l2: float = 0.0,
        exclude_bias: bool = True,
    ) -> None:
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable; received {type(loss_fn).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; received {type(model).__name__}")
        self.loss_fn = loss_fn
        self.model = model
        self.l1 = _check_real("l1", l1, low=0.0)
        self.l2 = _check_real("l2", l2, low=0.0)
        self.exclude_bias = _check_bool("exclude_bias", exclude_bias)

    def __repr__(self) -> str:
        return (
            f"RegularizedLoss(loss_fn={self.loss_fn!r}, model={type(self.model).__name__}, "
            f"l1={self.l1}, l2={self.l2}, exclude_bias={self.exclude_bias})"
        )

    def named_penalized_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        """Yields the (name, parameter) pairs the penalty covers right now."""
        for name, param in self.model.named_parameters():
            if param.requires_grad and not (self.exclude_bias and _is_bias(name)):
                yield name, param

    def penalty(self) -> Tensor:
        """Returns ``l1 * sum|w| + l2 * sum w^2`` over the penalized parameters, as a 0-dim tensor."""
        total: Optional[Tensor] = None
        for _, param in self.named_penalized_parameters():
            w = param.float() if param.dtype in _HALF_DTYPES else param
            term = 0
            if self.l1:
                term = term + self.l1 * w.abs().sum()
            if self.l2:
                term = term + self.l2 * (w * w).sum()
            if isinstance(term, Tensor):
                total = term if total is None else total + term
        if total is None:
            first = next(self.model.parameters(), None)
            device = first.device if first is not None else None
            return torch.zeros((), device=device)
        return total

    def __call__(self, y_pred: Any, y_true: Any) -> Tensor:
        return self._add_penalty(self.loss_fn(y_pred, y_true))

    def _add_penalty(self, loss: Any) -> Tensor:
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                "with_regularization needs loss_fn to return a scalar tensor (reduction 'mean' or "
                f"'sum'), so the penalty is added once; received {shape}"
            )
        if not (self.l1 or self.l2):
            return loss
        return loss + self.penalty().to(loss.device)


def with_regularization(
    loss_fn: Callable[[Any, Any], Tensor],
    model: nn.Module,
    l1: float = 0.0,
    l2: float = 0.0,
    exclude_bias: bool = True,
) -> RegularizedLoss:
    r"""Wraps a loss so that it adds L1 and L2 penalties on ``model``'s parameters.

    The returned callable computes::

        loss_fn(y_pred, y_true) + l1 * sum_w |w| + l2 * sum_w w**2

    over the trainable parameters of ``model`` (``requires_grad=True``), read
    at every call, so it always penalizes the current weights. With
    ``exclude_bias=True`` parameters whose own name contains ``"bias"``
    (``fc.bias``, ``in_proj_bias``, ``bias_ih_l0``) are skipped. The L2 term
    follows the Keras convention ``l2 * sum w^2`` (gradient ``2 * l2 * w``);
    the seed code's ``0.5 * alpha * sum w^2`` corresponds to ``l2 = alpha / 2``.

    Relation to optimizer ``weight_decay``: torch's SGD and Adam add
    ``weight_decay * w`` to the gradient, so ``weight_decay = 2 * l2`` on a
    parameter group holding exactly the penalized weights (biases in a group
    with ``weight_decay=0``) takes the same steps as this L2 penalty. AdamW
    decays the weights outside the adaptive update (decoupled weight decay,
    Loshchilov & Hutter, ICLR 2019) and is not equivalent to any L2 penalty.
    L1 has no optimizer counterpart.

    Args:
        loss_fn: Loss returning a scalar tensor (reduction ``"mean"`` or ``"sum"``).
        model: Module whose parameters are penalized.
        l1: L1 coefficient ``>= 0``. Defaults to 0.0.
        l2: L2 coefficient ``>= 0``. Defaults to 0.0.
        exclude_bias: Skip parameters named like biases. Defaults to True.

    Returns:
        A :class:`RegularizedLoss`, called as ``loss(y_pred, y_true)``; its
        ``penalty()`` method returns the penalty alone.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1)
        >>> loss_fn = with_regularization(torch.nn.MSELoss(), net, l2=0.01)
        >>> x, y = torch.randn(4, 2), torch.randn(4, 1)
        >>> manual = torch.nn.MSELoss()(net(x), y) + 0.01 * net.weight.pow(2).sum()
        >>> torch.allclose(loss_fn(net(x), y), manual)
        True
    """
    return RegularizedLoss(loss_fn, model, l1=l1, l2=l2, exclude_bias=exclude_bias)


# ---------------------------------------------------------------------------
# guard rails
# ---------------------------------------------------------------------------
_SOFTMAX_LOSSES = (nn.CrossEntropyLoss, MultiClassFocalLoss, SCELoss, CostSensitiveLoss)
_INDEX_ONLY_LOSSES = (nn.NLLLoss, MultiClassFocalLoss, SCELoss, CostSensitiveLoss)
_BINARY_LOSSES = (nn.BCEWithLogitsLoss, nn.BCELoss, FocalLoss, _OverlapLoss)
_REGRESSION_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)
# nll_loss accepts only these index dtypes; the focal/SCE/cost losses accept any integer dtype.
_TORCH_INDEX_DTYPES = (torch.long, torch.uint8)


def _loss_name(loss_fn: Any) -> str:
    if isinstance(loss_fn, nn.Module):
        return type(loss_fn).__name__
    return getattr(loss_fn, "__name__", type(loss_fn).__name__)


def _output_kind(y_pred: Tensor) -> Optional[str]:
    """Returns "log_softmax" or "softmax" when the rows of y_pred (dim 1, or 0 if 1-D) look like one."""
    class_dim = 1 if y_pred.ndim >= 2 else 0
    if y_pred.ndim == 0 or y_pred.numel() == 0 or y_pred.shape[class_dim] < 2:
        return None
    if not y_pred.is_floating_point():
        return None
    x = y_pred.detach().double()
    # -inf is a legitimate log-probability (masked classes); NaN or +inf says nothing.
    if bool(torch.isnan(x).any()) or bool((x == float("inf")).any()):
        return None
    # Row sums of half-precision outputs are off by ~1e-2; raw logits never land this close.
    tol = 5e-2 if y_pred.dtype in _HALF_DTYPES else 1e-3
    if bool((x <= tol).all()) and bool(((x.exp().sum(class_dim) - 1).abs() <= tol).all()):
        return "log_softmax"
    if bool((x >= -tol).all()) and bool((x <= 1 + tol).all()) and bool(((x.sum(class_dim) - 1).abs() <= tol).all()):
        return "softmax"
    return None


def _warn_activation(base: Any, name: str, y_pred: Tensor, stacklevel: int) -> None:
    if isinstance(base, _SOFTMAX_LOSSES):
        kind = _output_kind(y_pred)
        if kind == "log_softmax":
            alternative = ", or use nn.NLLLoss" if isinstance(base, nn.CrossEntropyLoss) else ""
            warnings.warn(
                f"{name} received y_pred whose rows exponentiate to 1: the net already ends in "
                f"log_softmax. {name} applies log_softmax itself, so the second one changes nothing "
                "numerically, but the net's outputs are log-probabilities, not the logits the loss "
                f"documents: remove the log_softmax from the net's forward{alternative}.",
                UserWarning,
                stacklevel=stacklevel,
            )
        elif kind == "softmax":
            num_classes = y_pred.shape[1 if y_pred.ndim >= 2 else 0]
            floor = math.log(1 + (num_classes - 1) / math.e)
            warnings.warn(
                f"{name} received y_pred whose rows sum to 1: the net already ends in softmax. "
                f"{name} expects raw logits and applies log_softmax to these probabilities again, "
                f"which squashes the loss (it cannot fall below log(1 + (C-1)/e) = {floor:.3f} for "
                f"C={num_classes}) and shrinks its gradients: remove the softmax from the net's "
                "forward and return logits, or use nn.NLLLoss on torch.log(y_pred).",
                UserWarning,
                stacklevel=stacklevel,
            )
    elif isinstance(base, nn.NLLLoss):
        kind = _output_kind(y_pred)
        if kind == "softmax":
            warnings.warn(
                "NLLLoss received y_pred whose rows sum to 1: these are probabilities, but NLLLoss "
                "expects log-probabilities: end the net in log_softmax instead of softmax, or use "
                "nn.CrossEntropyLoss on raw logits.",
                UserWarning,
                stacklevel=stacklevel,
            )
        elif kind is None and y_pred.ndim >= 1:
            warnings.warn(
                "NLLLoss received y_pred whose rows do not exponentiate to 1, so they are not "
                "log-probabilities (raw logits?): add log_softmax at the end of the net's forward, "
                "or use nn.CrossEntropyLoss, which applies it itself.",
                UserWarning,
                stacklevel=stacklevel,
            )


def _check_index_targets(base: Any, name: str, y_pred: Tensor, y_true: Tensor, mode: str) -> None:
    if y_pred.ndim == 0:
        raise ValueError(f"{name} ({mode}) needs y_pred with a class dim; received a 0-dim y_pred")
    class_dim = 1 if y_pred.ndim >= 2 else 0
    num_classes = y_pred.shape[class_dim]
    expected = tuple(y_pred.shape[:class_dim]) + tuple(y_pred.shape[class_dim + 1:])
    torch_loss = isinstance(base, (nn.CrossEntropyLoss, nn.NLLLoss))
    wrong_dtype = (
        y_true.dtype not in _TORCH_INDEX_DTYPES
        if torch_loss
        else (y_true.dtype == torch.bool or y_true.is_floating_point() or y_true.is_complex())
    )
    if wrong_dtype:
        hint = "convert with y_true.long()"
        if tuple(y_true.shape) == tuple(y_pred.shape):
            hint = "one-hot targets convert with y_true.argmax(dim=1)"
        raise ValueError(
            f"{name} in {mode} expects integer class indices (torch.long) of shape {expected}; "
            f"received dtype {y_true.dtype}: {hint}"
        )
    if tuple(y_true.shape) != expected:
        hint = ""
        if y_true.numel() == math.prod(expected):
            hint = f": reshape with y_true.reshape{expected}"
        elif tuple(y_true.shape) == tuple(y_pred.shape):
            hint = ": one-hot targets convert with y_true.argmax(dim=1)"
        raise ValueError(
            f"{name} in {mode} expects y_true of shape {expected} (y_pred {tuple(y_pred.shape)} "
            f"without the class dim {class_dim}); received {tuple(y_true.shape)}{hint}"
        )
    ignore_index = getattr(base, "ignore_index", None)
    labels = y_true[y_true != ignore_index] if ignore_index is not None else y_true.reshape(-1)
    if labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            ignored = f" or equal ignore_index={ignore_index}" if ignore_index is not None else ""
            raise ValueError(
                f"{name} in {mode} expects class indices in [0, {num_classes - 1}]{ignored} "
                f"(y_pred has {num_classes} classes on dim {class_dim}); received values in [{low}, {high}]"
            )


def _check_targets(base: Any, name: str, y_pred: Tensor, y_true: Tensor) -> None:
    if isinstance(base, nn.CrossEntropyLoss) and y_true.is_floating_point():
        mode = "class-probability mode (floating-point targets)"
        if tuple(y_true.shape) != tuple(y_pred.shape):
            raise ValueError(
                f"{name} received floating-point targets, so it runs in {mode} and expects y_true "
                f"of shape {tuple(y_pred.shape)} (same as y_pred); received {tuple(y_true.shape)}. "
                "For class-index mode pass integer targets: y_true.long()."
            )
    elif isinstance(base, (nn.CrossEntropyLoss,) + _INDEX_ONLY_LOSSES):
        _check_index_targets(base, name, y_pred, y_true, "class-index mode")
    elif isinstance(base, _BINARY_LOSSES):
        mode = "binary/multi-label mode"
        if tuple(y_true.shape) != tuple(y_pred.shape):
            hint = ": reshape with y_true.view_as(y_pred)" if y_true.numel() == y_pred.numel() else ""
            raise ValueError(
                f"{name} in {mode} expects y_true with the same shape as y_pred; received "
                f"y_pred {tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}{hint}"
            )
        if isinstance(base, (nn.BCEWithLogitsLoss, nn.BCELoss)) and not y_true.is_floating_point():
            raise ValueError(
                f"{name} in {mode} expects floating-point targets in [0, 1]; received dtype "
                f"{y_true.dtype}: convert with y_true.float()"
            )
        if y_true.numel() and not y_true.is_complex():
            low, high = y_true.min().item(), y_true.max().item()
            if low < 0 or high > 1:
                raise ValueError(
                    f"{name} in {mode} expects targets in [0, 1]; received values in [{low:g}, {high:g}]. "
                    "For class indices use nn.CrossEntropyLoss or MultiClassFocalLoss."
                )
        probabilities = isinstance(base, nn.BCELoss) or (
            isinstance(base, (FocalLoss, _OverlapLoss)) and not base.from_logits
        )
        if probabilities and y_pred.numel() and y_pred.is_floating_point():
            low, high = y_pred.min().item(), y_pred.max().item()
            if low < 0 or high > 1:
                fix = "use nn.BCEWithLogitsLoss" if isinstance(base, nn.BCELoss) else "set from_logits=True"
                raise ValueError(
                    f"{name} expects probabilities in [0, 1] as y_pred; received values in "
                    f"[{low:.4g}, {high:.4g}] (raw logits?): {fix}"
                )
    elif isinstance(base, _REGRESSION_LOSSES):
        if tuple(y_true.shape) != tuple(y_pred.shape):
            raise ValueError(
                f"{name} expects y_true with the same shape as y_pred; received y_pred "
                f"{tuple(y_pred.shape)} and y_true {tuple(y_true.shape)} (broadcasting would compare "
                "every prediction with every target)"
            )
        if not y_true.is_floating_point():
            raise ValueError(
                f"{name} expects floating-point targets; received dtype {y_true.dtype}: convert with y_true.float()"
            )


def _reaches_any(grad_fn: Any, parameter_ids: set) -> bool:
    stack, seen = [grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) in parameter_ids:
            return True
        stack.extend(fn for fn, _ in node.next_functions)
    return False


def check_loss(
    loss_fn: Callable[[Any, Any], Tensor],
    y_pred: Any,
    y_true: Any,
    *,
    net: Optional[nn.Module] = None,
    stacklevel: int = 2,
) -> Tensor:
    r"""Checks a loss on one batch for the classic mistakes and returns the loss it computed.

    Meant for the first batch of training (the checks synchronize with the
    device and walk the autograd graph, so they are not for every step).
    Known losses are recognised by type, also inside :func:`with_regularization`,
    whose wrapped loss is checked before the penalty is added. Custom loss
    functions get the generic checks (scalar output, gradient path).

    Warnings (``UserWarning``):

    * softmax-based losses (``nn.CrossEntropyLoss``, :class:`MultiClassFocalLoss`,
      :class:`SCELoss`, :class:`CostSensitiveLoss`) fed outputs whose rows
      exponentiate to 1 (the net ends in ``log_softmax``; redundant, same
      values) or sum to 1 (the net ends in ``softmax``; wrong, squashed loss);
    * ``nn.NLLLoss`` fed outputs that are not log-probabilities;
    * a non-finite loss value.

    Errors (``ValueError``; ``TypeError`` when the loss returns no tensor):

    * targets of the wrong dtype or shape for the loss, naming the mode in use:
      class-index mode (integer targets, ``y_pred`` shape without dim 1),
      class-probability mode (``nn.CrossEntropyLoss`` with float targets of
      ``y_pred``'s shape, e.g. one-hot, which is legal), binary/multi-label mode
      (targets of ``y_pred``'s shape in ``[0, 1]``), regression (same shape);
      class indices out of range;
    * a loss that returns a non-scalar tensor, in particular under
      ``reduction="mean"``;
    * no gradient path: ``y_pred.requires_grad`` is True but the loss is not,
      or, when ``net`` is given, the loss's autograd graph reaches none of
      ``net``'s trainable parameters. Skipped when grad mode is off.

    Args:
        loss_fn: The loss, called as ``loss_fn(y_pred, y_true)``.
        y_pred: The net's output for one batch.
        y_true: The batch's targets.
        net: The model that produced ``y_pred``; enables the parameter
            reachability check. Defaults to None.
        stacklevel: ``stacklevel`` of the warnings, counted from the caller of
            ``check_loss``; a trainer calling it on the user's behalf passes a
            larger value. Defaults to 2.

    Returns:
        The loss tensor ``loss_fn(y_pred, y_true)`` (penalty included for a
        regularized loss), still attached to the autograd graph, so a caller
        may backpropagate it instead of computing the loss a second time.

    Example:
        >>> import torch, warnings
        >>> logits = torch.randn(4, 3, requires_grad=True)
        >>> target = torch.tensor([0, 2, 1, 0])
        >>> loss = check_loss(torch.nn.CrossEntropyLoss(), logits, target)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = check_loss(torch.nn.CrossEntropyLoss(), logits.log_softmax(1), target)
        >>> "remove the log_softmax" in str(caught[0].message)
        True
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable; received {type(loss_fn).__name__}")
    if net is not None and not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module or None; received {type(net).__name__}")
    base = loss_fn.loss_fn if isinstance(loss_fn, RegularizedLoss) else loss_fn
    name = _loss_name(base)
    if isinstance(y_pred, Tensor) and isinstance(y_true, Tensor):
        _warn_activation(base, name, y_pred, stacklevel + 1)
        _check_targets(base, name, y_pred, y_true)

    # A wrapped loss is checked before its penalty is added: the penalty alone would give the
    # loss a gradient path to the parameters even when y_pred has been detached.
    loss = base(y_pred, y_true)

    if not isinstance(loss, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor; received {type(loss).__name__}")
    reduction = getattr(base, "reduction", None)
    if loss.numel() != 1:
        if reduction == "none":
            raise ValueError(
                f"{name} has reduction='none' and returned per-element losses of shape "
                f"{tuple(loss.shape)}; training needs a scalar loss: use reduction='mean' or 'sum'"
            )
        under = f" under reduction={reduction!r}" if reduction is not None else ""
        raise ValueError(
            f"{name} returned a tensor of shape {tuple(loss.shape)}{under}; a training loss must "
            "be a scalar (0-dim) tensor: reduce the per-element losses, e.g. with .mean()"
        )
    if not bool(torch.isfinite(loss.detach()).all()):
        warnings.warn(
            f"{name} returned a non-finite loss ({loss.item()}) on this batch: check the inputs "
            "for NaN/inf, a batch whose targets are all ignored, or probabilities of exactly 0/1 "
            "fed to a log.",
            UserWarning,
            stacklevel=stacklevel,
        )

    if torch.is_grad_enabled():
        if isinstance(y_pred, Tensor) and y_pred.requires_grad and not loss.requires_grad:
            raise ValueError(
                f"no gradient path from the loss to the net: y_pred.requires_grad is True but the loss "
                f"returned by {name} has requires_grad=False. The loss detaches its input somewhere "
                "(.detach(), .item(), .numpy(), torch.tensor(...), argmax/round); compute it with "
                "differentiable torch operations."
            )
        if net is not None:
            trainable = {id(p) for p in net.parameters() if p.requires_grad}
            if trainable and not loss.requires_grad:
                raise ValueError(
                    f"no gradient path from the loss to the net: net has {len(trainable)} trainable "
                    f"parameter tensors but the loss returned by {name} has requires_grad=False "
                    "(is y_pred computed under torch.no_grad() or detached in the net's forward?)"
                )
            if trainable and not _reaches_any(loss.grad_fn, trainable):
                raise ValueError(
                    f"no gradient path from the loss to the net: the autograd graph of the loss "
                    f"returned by {name} reaches none of net's trainable parameters (is y_pred "
                    "produced by a different model, or detached and re-wrapped in the forward?)"
                )
    if isinstance(loss_fn, RegularizedLoss):
        return loss_fn._add_penalty(loss)
    return loss
