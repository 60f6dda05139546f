"""Loss functions for kerastorch: focal, symmetric, overlap, cost-sensitive and regularized losses.

Every loss here is an :class:`torch.nn.Module` called as ``loss_fn(y_pred, y_true)``
(prediction first, as everywhere in PyTorch) and accepts ``reduction`` in
``{"mean", "sum", "none"}``.

Conventions shared by the package:

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

The package holds one module per family: ``focal``, ``symmetric``, ``overlap``,
``cost_sensitive``, ``regularization``, and ``misuse`` for :func:`check_loss`;
``validation`` holds the argument checks they share. The package imports
nothing from the trainer (only ``kerastorch.userwarn``, so that warnings point
at the user's line), so the losses work without it.
"""

from .misuse import check_loss
from .cost_sensitive import CostSensitiveLoss
from .focal import FocalLoss, MultiClassFocalLoss
from .overlap import DiceBCELoss, DiceLoss, JaccardLoss, TverskyLoss
from .regularization import RegularizedLoss, with_regularization
from .symmetric import SCELoss

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
