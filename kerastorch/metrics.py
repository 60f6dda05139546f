"""Metrics that torchkeras users import from ``torchkeras.metrics``, on torchmetrics."""

from __future__ import annotations

import torch
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

__all__ = ["AUCROC", "Accuracy"]


class AUCROC(BinaryAUROC):
    """Exact binary ROC AUC from logits or probabilities, any shape of ``(N,)``/``(N, 1)``.

    A drop-in for ``torchkeras.metrics.AUCROC``: predictions are flattened and
    targets may be float 0/1 labels (as ``BCEWithLogitsLoss`` wants them).
    Logits are recognised by values outside [0, 1] and passed through a sigmoid
    (torchmetrics' convention).

    Example:
        >>> m = AUCROC()
        >>> m.update(torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([[1.0], [0.0], [0.0]]))
        >>> round(float(m.compute()), 4)
        1.0
    """

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds.reshape(-1).float(), target.reshape(-1).long())


class Accuracy(BinaryAccuracy):
    """Binary accuracy at threshold 0.5 for ``(N,)``/``(N, 1)`` logits or probabilities.

    A drop-in for ``torchkeras.metrics.Accuracy``; for multiclass use
    ``torchmetrics.Accuracy(task="multiclass", num_classes=...)``.
    """

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds.reshape(-1).float(), target.reshape(-1).long())
