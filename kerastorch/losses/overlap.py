"""Overlap (segmentation) losses: Dice, Jaccard, Tversky and Dice plus BCE, on one shared base."""

from __future__ import annotations

from typing import Tuple

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
    float_input,
    reduce,
)

__all__ = ["OverlapLoss", "DiceLoss", "JaccardLoss", "TverskyLoss", "DiceBCELoss"]


class OverlapLoss(nn.Module):
    """Shared machinery of the Dice / Jaccard / Tversky family (binary or multi-label).

    Package-internal (not re-exported by :mod:`kerastorch.losses`): subclasses set
    ``_name`` and implement ``_score``; :func:`check_loss` recognises the family by it.
    """

    _name = "OverlapLoss"

    def __init__(self, smooth: float, from_logits: bool, reduction: str, per_sample: bool) -> None:
        super().__init__()
        self.smooth = check_real("smooth", smooth, low=0.0)
        self.from_logits = check_bool("from_logits", from_logits)
        self.reduction = check_reduction(reduction)
        self.per_sample = check_bool("per_sample", per_sample)

    def extra_repr(self) -> str:
        return (
            f"smooth={self.smooth}, from_logits={self.from_logits}, "
            f"reduction={self.reduction!r}, per_sample={self.per_sample}"
        )

    def _inputs(self, y_pred: Tensor, y_true: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Returns (scores as float, probabilities, targets)."""
        x = float_input(y_pred, self._name)
        t = binary_target(y_true, y_pred, x, self._name)
        if self.per_sample and x.ndim == 0:
            raise ValueError(f"{self._name} with per_sample=True needs a batch dim 0; received a 0-dim y_pred")
        p = torch.sigmoid(x) if self.from_logits else check_probabilities(x, self._name)
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
        return reduce(self._overlap_loss(p, t), self.reduction)


class DiceLoss(OverlapLoss):
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
        >>> import math, torch
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


class JaccardLoss(OverlapLoss):
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
        >>> import math, torch
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


class TverskyLoss(OverlapLoss):
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
        self.alpha = check_real("alpha", alpha, low=0.0)
        self.beta = check_real("beta", beta, low=0.0)

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
            bce = bce_from_probabilities(p, t)
        if self.per_sample:
            bce = bce.reshape(bce.shape[0], -1).mean(dim=1)
        else:
            bce = bce.mean()
        return reduce(self._overlap_loss(p, t) + bce, self.reduction)
