"""Cost-sensitive cross entropy: cross entropy plus the expected cost of the softmax prediction."""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .validation import check_real, check_reduction, class_inputs, reduce

__all__ = ["CostSensitiveLoss"]


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
        >>> import math, torch
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
        self.lambd = check_real("lambd", lambd, low=0.0)
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.cost_matrix.shape[0]}, lambd={self.lambd}, reduction={self.reduction!r}"

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        logits, target, shape = class_inputs(y_pred, y_true, "CostSensitiveLoss")
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
        return reduce(loss.reshape(shape), self.reduction)
