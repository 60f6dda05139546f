"""Symmetric cross entropy (SCE) for learning with noisy labels."""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import Tensor, nn

from .validation import check_real, check_reduction, class_inputs, reduce, target_log_probs

__all__ = ["SCELoss"]

# log(1e-4): the value Wang et al. substitute for log(0) in the reverse cross entropy.
_SCE_LOG_ZERO = math.log(1e-4)


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
        >>> import math, torch
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
        self.alpha = check_real("alpha", alpha, low=0.0)
        self.beta = check_real("beta", beta, low=0.0)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
                raise TypeError(
                    f"num_classes must be an int or None; received {type(num_classes).__name__} {num_classes!r}"
                )
            if num_classes < 2:
                raise ValueError(f"num_classes must be >= 2; received {num_classes}")
            num_classes = int(num_classes)
        self.num_classes = num_classes
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, num_classes={self.num_classes}, "
            f"reduction={self.reduction!r}"
        )

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        logits, target, shape = class_inputs(y_pred, y_true, "SCELoss")
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"SCELoss was built with num_classes={self.num_classes}; received y_pred with "
                f"{logits.shape[1]} classes on dim 1 (shape {tuple(y_pred.shape)})"
            )
        _, log_p_y, log_1m_p_y = target_log_probs(logits, target)
        loss = self.alpha * (-log_p_y) + self.beta * (-_SCE_LOG_ZERO) * torch.exp(log_1m_p_y)
        return reduce(loss.reshape(shape), self.reduction)
