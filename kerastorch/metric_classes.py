"""The metric classes built on torchmetrics: torchkeras's ``AUCROC`` and ``Accuracy``, and
``BatchMeanMetric``, which wraps a plain ``fn(preds, labels)``.

Subclassing torchmetrics imports it, which takes seconds, so this module is imported on
first use only: through :mod:`kerastorch.metrics` (``from kerastorch.metrics import
Accuracy``), or when a fit wraps a plain-callable metric.
"""

from __future__ import annotations

import torch
import torchmetrics
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

__all__ = ["AUCROC", "Accuracy", "BatchMeanMetric"]


class _BinaryInputs:
    """Flatten ``(N,)``/``(N, 1)`` scores, apply the sigmoid to logits, take 0/1 float labels.

    torchmetrics guesses per batch whether scores are logits (any value outside
    [0, 1]); a batch of logits that all happen to lie in [0, 1] would then be read
    as probabilities, mixing two scales in one epoch. Saying it once avoids that.
    """

    def __init__(self, *, from_logits: bool = True, **kwargs):
        if not isinstance(from_logits, bool):
            raise TypeError(f"from_logits must be True or False; received {from_logits!r}")
        super().__init__(**kwargs)
        self.from_logits = from_logits

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds = preds.detach().reshape(-1).float()
        if self.from_logits:
            preds = torch.sigmoid(preds)
        super().update(preds, target.reshape(-1).long())


class AUCROC(_BinaryInputs, BinaryAUROC):
    """Exact binary ROC AUC for ``(N,)``/``(N, 1)`` scores; a drop-in for torchkeras's.

    Targets may be float 0/1 labels (as ``BCEWithLogitsLoss`` wants them).

    Args:
        from_logits: the net outputs logits (a sigmoid is applied); False for
            probabilities. Defaults to True.

    Example:
        >>> m = AUCROC()
        >>> m.update(torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([[1.0], [0.0], [0.0]]))
        >>> m.update(torch.tensor([[0.9], [0.1]]), torch.tensor([[0.0], [1.0]]))  # still logits
        >>> round(float(m.compute()), 4)
        0.6667
    """


class Accuracy(_BinaryInputs, BinaryAccuracy):
    """Binary accuracy at probability 0.5 for ``(N,)``/``(N, 1)`` scores (torchkeras's drop-in).

    For multiclass use ``torchmetrics.Accuracy(task="multiclass", num_classes=...)``.

    Args:
        from_logits: the net outputs logits (a sigmoid is applied); False for
            probabilities. Defaults to True.

    Example:
        >>> m = Accuracy()
        >>> m.update(torch.tensor([0.3, -0.2]), torch.tensor([1.0, 0.0]))  # logit 0.3 -> p 0.57
        >>> float(m.compute())
        1.0
    """


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
