"""What a step minimises: one loss, a weighted sum of per-output losses, or the loss the net
returns itself; optionally weighted per sample."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Mapping
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .batches import describe_keys, output_loss, plain

__all__ = ["Objective", "check_loss_weights", "class_sample_weights", "class_weight_table",
           "element_normalizer", "per_sample_loss", "weighted_mean"]

REDUCTIONS = ("mean", "sum", "none")


def check_loss_weights(loss_fn: Any, loss_weights: Any) -> Optional[Dict[str, float]]:
    """``loss_weights`` as ``{output: float}``; only with a dict ``loss_fn``, keys among its keys.

    Raises:
        TypeError: not a dict of numbers, or given without a dict loss_fn.
        ValueError: a key that is not an output of ``loss_fn``, or a weight < 0 or not finite.
    """
    if loss_weights is None:
        return None
    if not isinstance(loss_fn, Mapping):
        raise TypeError("loss_weights needs loss_fn to be a dict {output_name: loss}; received "
                        f"loss_fn {type(loss_fn).__name__}")
    if not isinstance(loss_weights, Mapping):
        raise TypeError(f"loss_weights must be a dict {{output_name: float}}; received "
                        f"{type(loss_weights).__name__}")
    extra = set(loss_weights) - set(loss_fn)
    if extra:
        raise ValueError(f"loss_weights has keys {describe_keys(extra)} that are not outputs of "
                         f"loss_fn; loss_fn's keys are {describe_keys(loss_fn)}")
    return {key: _weight(f"loss_weights[{key!r}]", weight)
            for key, weight in loss_weights.items()}


def _weight(where: str, weight: Any) -> float:
    """A finite number >= 0, as a float."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
            or not weight >= 0 or weight == float("inf"):
        raise ValueError(f"{where} must be a finite number >= 0; received {weight!r}")
    return float(weight)


def per_sample_loss(loss_fn: Callable, name: str = "loss_fn") -> Tuple[Callable, str]:
    """``(fn, reduction)``: ``fn(preds, labels)`` returns the loss per element, and the
    reduction ``loss_fn`` applies itself (``"mean"``, ``"sum"`` or ``"none"``).

    A loss module with a ``reduction`` attribute is copied with ``reduction="none"``
    (its buffers, such as class weights, are shared); a function with a
    ``reduction`` keyword gets ``reduction="none"``.

    Raises:
        ValueError: ``loss_fn`` has no way to return per-sample values.
    """
    reduction = getattr(loss_fn, "reduction", None)
    if isinstance(loss_fn, torch.nn.Module) and reduction in REDUCTIONS:
        unreduced = copy.copy(loss_fn)  # shallow: parameters and buffers stay shared
        unreduced.reduction = "none"
        return unreduced, reduction
    try:
        params = inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "reduction" in params:
        default = params["reduction"].default
        default = default if default in REDUCTIONS else "mean"
        return functools.partial(loss_fn, reduction="none"), default
    raise ValueError(
        f"sample weights need per-sample losses, but {name} ({type(loss_fn).__name__}) has no "
        "reduction to turn off: use a loss module with a `reduction` attribute (any "
        "torch.nn loss, kerastorch.losses), or a function taking reduction='none'")


def weighted_mean(values: torch.Tensor, sample_weight: torch.Tensor, reduction: str,
                  normalizer: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reduce per-element losses with one weight per sample.

    Each sample's loss is first averaged over its other dimensions (pixels,
    tokens) under ``"mean"``/``"none"``, summed under ``"sum"``. Then ``"mean"``
    and ``"none"`` give ``sum(w * l) / sum(w)``, the sample-weighted mean (0 when
    every weight in the batch is 0), and ``"sum"`` gives ``sum(w * l)``. With all
    weights 1 the value and its gradient equal the unweighted mean's bit for bit,
    as long as the loss's per-element values do.

    A ``normalizer`` (what each element counts in the loss's own mean, see
    :func:`element_normalizer`) makes ``"mean"``/``"none"`` give
    ``sum(w * l) / sum(w * n)`` over all elements instead, so targets at
    ``ignore_index`` and class weights count as they do in the loss itself.
    """
    if normalizer is not None and reduction != "sum":
        return _normalized_mean(values, sample_weight, normalizer)
    values = values.reshape(values.shape[0], -1) if values.ndim > 1 else values.reshape(-1)
    if values.ndim > 1:
        values = values.sum(1) if reduction == "sum" else values.mean(1)
    if values.shape[0] != sample_weight.shape[0]:
        raise ValueError(f"the loss returned {values.shape[0]} per-sample values for "
                         f"{sample_weight.shape[0]} sample weights")
    weight = sample_weight.to(values.dtype)
    if reduction == "sum":
        return (values * weight).sum()
    # mean(w * l) * (n / sum(w)) is sum(w * l) / sum(w), written so that weights of all ones
    # compute exactly what the loss's own mean does (the factor is then exactly 1)
    total = weight.sum()
    factor = torch.where(total > 0, values.shape[0] / total, torch.zeros_like(total))
    return (values * weight).mean() * factor


def _normalized_mean(values, sample_weight, normalizer):
    n = values.shape[0]
    if sample_weight.shape[0] != n:
        raise ValueError(f"the loss returned {n} per-sample values for "
                         f"{sample_weight.shape[0]} sample weights")
    weight = sample_weight.to(values.dtype)
    sums = values.reshape(n, -1).sum(1)
    counts = normalizer.to(values.dtype).reshape(n, -1).sum(1)
    total = (weight * counts).sum()
    return torch.where(total > 0, (weight * sums).sum() / total, torch.zeros_like(total))


def element_normalizer(loss_fn: Any, labels: Any) -> Optional[torch.Tensor]:
    """What each element counts in the mean of a loss that is not a plain mean, or None.

    ``CrossEntropyLoss``/``NLLLoss`` with class-index targets average over the
    targets that are not ``ignore_index``, each counting its class weight (a
    token-classification batch padded with -100); their per-element values alone
    cannot say so. Any other loss: None (every element counts 1).
    """
    if not isinstance(loss_fn, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)) \
            or not isinstance(labels, torch.Tensor) or labels.is_floating_point():
        return None
    valid = labels != loss_fn.ignore_index
    if loss_fn.weight is None:
        return valid
    classes = labels.clamp(0, loss_fn.weight.shape[0] - 1)
    return torch.where(valid, loss_fn.weight[classes], torch.zeros_like(loss_fn.weight[0]))


class Objective:
    """The loss of one batch, and its parts per output.

    Args:
        loss_fn: ``loss_fn(preds, labels)``; a dict ``{output_name: loss}`` for a net
            returning a dict of outputs (labels a dict with the same keys); or None
            when the net's output carries its own loss (``output.loss`` or
            ``output["loss"]``, as HuggingFace models return).
        loss_weights: ``{output_name: weight}`` for a dict ``loss_fn``; missing
            outputs weigh 1.0. Defaults to None.

    Calling it as ``objective(preds, labels, sample_weight=None)`` returns
    ``(total, parts)``: the loss to minimise and, for a dict ``loss_fn``, each
    output's (unweighted by ``loss_weights``) loss keyed by output name.
    """

    def __init__(self, loss_fn: Any, loss_weights: Optional[Mapping] = None):
        self.loss_fn = loss_fn
        self.loss_weights = check_loss_weights(loss_fn, loss_weights) or {}
        self.multi = isinstance(loss_fn, Mapping)
        self._unreduced: dict = {}

    @property
    def outputs(self) -> list:
        """The output names of a dict ``loss_fn`` (in its order), else ``[]``."""
        return list(self.loss_fn) if self.multi else []

    def __call__(self, preds: Any, labels: Any,
                 sample_weight: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, dict]:
        if self.loss_fn is None:
            return self._own_loss(preds, sample_weight), {}
        if not self.multi:
            return self._one(self.loss_fn, None, preds, labels, sample_weight), {}
        preds, labels = plain(preds), plain(labels)
        self.check_keys(preds, labels)
        parts, total = {}, None
        for key, fn in self.loss_fn.items():
            parts[key] = self._one(fn, key, preds[key], labels[key], sample_weight)
            term = parts[key] * self.loss_weights.get(key, 1.0)
            total = term if total is None else total + term
        return total, parts

    def check_keys(self, preds: Any, labels: Any) -> None:
        """A dict ``loss_fn`` needs dict outputs and labels with exactly its keys.

        Raises:
            TypeError: the outputs or the labels are not a dict.
            ValueError: missing or extra keys, naming the keys on each side.
        """
        expected = describe_keys(self.loss_fn)
        for what, value in (("the net's output", preds), ("the labels", labels)):
            if not isinstance(value, Mapping):
                raise TypeError(f"loss_fn is a dict with keys {expected}, so {what} must be a "
                                f"dict with those keys; received a {type(value).__name__}")
            if set(value) != set(self.loss_fn):
                missing = set(self.loss_fn) - set(value)
                extra = set(value) - set(self.loss_fn)
                raise ValueError(
                    f"{what} has keys {describe_keys(value)} but loss_fn has keys {expected}"
                    + (f"; missing {describe_keys(missing)}" if missing else "")
                    + (f"; extra {describe_keys(extra)}" if extra else ""))

    def _one(self, fn, key, preds, labels, sample_weight):
        if sample_weight is None:
            return fn(preds, labels)
        if key not in self._unreduced:
            name = "loss_fn" if key is None else f"loss_fn[{key!r}]"
            self._unreduced[key] = per_sample_loss(fn, name)
        unreduced, reduction = self._unreduced[key]
        return weighted_mean(unreduced(preds, labels), sample_weight, reduction,
                             element_normalizer(fn, labels))

    def _own_loss(self, preds, sample_weight):
        if sample_weight is not None:
            raise ValueError("sample weights need loss_fn: a net that computes its own loss "
                             "(loss_fn=None) cannot be weighted per sample")
        loss = output_loss(preds)
        if loss is None:
            what = (f"a dict with keys {describe_keys(preds)}" if isinstance(preds, Mapping)
                    else f"a {type(preds).__name__}")
            raise ValueError(
                "loss_fn=None needs the net to return its own loss (an output with a .loss "
                f"field, such as a HuggingFace ModelOutput, or a dict with a 'loss' key); the "
                f"net returned {what} without one. Pass the labels the model needs (for a "
                "HuggingFace model, a 'labels' key in the batch) or give KerasModel a loss_fn")
        return loss


def class_weight_table(class_weight: Any) -> Optional[torch.Tensor]:
    """Keras's ``class_weight={class_index: weight}`` as a lookup tensor (absent classes 1.0).

    Raises:
        TypeError: not a dict, or a key that is not an int.
        ValueError: empty, a negative key, or a weight that is not a finite number >= 0.

    Example:
        >>> class_weight_table({0: 1.0, 2: 5.0}).tolist()
        [1.0, 1.0, 5.0]
    """
    if class_weight is None:
        return None
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"class_weight must be a dict {{class_index: weight}}; received "
                        f"{type(class_weight).__name__}")
    if not class_weight:
        raise ValueError("class_weight must have at least one class; received {}")
    table: dict = {}
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, int) and not (
                hasattr(key, "__index__") and not isinstance(key, float)):
            raise TypeError(f"class_weight keys must be int class indices; received "
                            f"{type(key).__name__} {key!r}")
        if int(key) < 0:
            raise ValueError(f"class_weight keys must be class indices >= 0; received {key!r}")
        table[int(key)] = _weight(f"class_weight[{key!r}]", weight)
    values = torch.ones(max(table) + 1, dtype=torch.float32)
    for key, weight in table.items():
        values[key] = weight
    return values


def class_sample_weights(table: torch.Tensor, labels: Any) -> torch.Tensor:
    """One weight per sample from its class, as Keras derives them from ``class_weight``.

    Labels of shape ``(N, C)`` with ``C > 1`` are one-hot or probabilities (the
    argmax is the class), ``(N, 1)`` is squeezed, float labels are rounded;
    classes outside the table (an ignore index such as -100) weigh 1.0. Runs on
    the labels' device, without a host sync.

    Raises:
        TypeError: the labels are not a tensor (class_weight needs one output).
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"class_weight needs the labels to be one tensor of class indices; "
                        f"received a {type(labels).__name__}")
    y = labels.detach()
    if y.ndim > 1:
        y = y.argmax(-1) if y.shape[-1] != 1 else y.squeeze(-1)
    if y.is_floating_point():
        y = y.round()
    y = y.long().reshape(-1) if y.ndim == 0 else y.long()
    table = table.to(labels.device)
    inside = (y >= 0) & (y < len(table))
    return torch.where(inside, table[y.clamp(0, len(table) - 1)], torch.ones((), device=y.device))
