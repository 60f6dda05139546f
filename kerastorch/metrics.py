"""Metrics that torchkeras users import from ``torchkeras.metrics``, on torchmetrics."""

from __future__ import annotations

import copy

import torch
import torchmetrics
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

__all__ = ["AUCROC", "Accuracy", "BatchMeanMetric", "disable_metric_sync", "fresh_metric"]


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


def disable_metric_sync(metric: torchmetrics.Metric) -> None:
    """Stop torchmetrics from syncing across processes at ``compute``.

    Used for validation metrics, which are updated with already-gathered batches.
    """
    for module in metric.modules():
        if isinstance(module, torchmetrics.Metric):
            module.sync_on_compute = False
            module._to_sync = False


def fresh_metric(metric, device, stage: str) -> torchmetrics.Metric:
    """A reset copy per fit and stage, so nothing leaks between stages or fits."""
    if not isinstance(metric, torchmetrics.Metric):
        metric = BatchMeanMetric(metric)
    metric = copy.deepcopy(metric).to(device)
    metric.reset()
    if stage == "val":
        disable_metric_sync(metric)
    return metric


class BatchMeanMetric(torchmetrics.Metric):
    """Wraps ``fn(preds, labels) -> scalar`` as a sample-weighted mean over the epoch."""

    full_state_update = False

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds, labels) -> None:
        value = torch.as_tensor(self.fn(preds, labels)).detach()
        n = labels.shape[0] if isinstance(labels, torch.Tensor) and labels.ndim else 1
        self.total += value.to(self.total.device, torch.float64) * n
        self.count += n

    def compute(self) -> torch.Tensor:
        return self.total / self.count
