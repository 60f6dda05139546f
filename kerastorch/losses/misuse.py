"""check_loss: the classic loss mistakes, diagnosed on one batch, and the loss-value checks it shares.

The trainer runs these on the first training batch (see ``kerastorch.diagnostics``);
users may call :func:`check_loss` themselves. Warnings point at the first frame
outside kerastorch unless a ``stacklevel`` is given.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..userwarn import warn_user
from .cost_sensitive import CostSensitiveLoss
from .focal import FocalLoss, MultiClassFocalLoss
from .overlap import OverlapLoss
from .regularization import RegularizedLoss
from .symmetric import SCELoss
from .validation import HALF_DTYPES

__all__ = ["check_loss", "check_loss_value", "loss_name"]

_SOFTMAX_LOSSES = (nn.CrossEntropyLoss, MultiClassFocalLoss, SCELoss, CostSensitiveLoss)
_INDEX_ONLY_LOSSES = (nn.NLLLoss, MultiClassFocalLoss, SCELoss, CostSensitiveLoss)
_BINARY_LOSSES = (nn.BCEWithLogitsLoss, nn.BCELoss, FocalLoss, OverlapLoss)
_REGRESSION_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)
# nll_loss accepts only these index dtypes; the focal/SCE/cost losses accept any integer dtype.
_TORCH_INDEX_DTYPES = (torch.long, torch.uint8)


def loss_name(loss_fn: Any) -> str:
    """The name messages use for a loss: the class of a module, else the function's name."""
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
    tol = 5e-2 if y_pred.dtype in HALF_DTYPES else 1e-3
    if bool((x <= tol).all()) and bool(((x.exp().sum(class_dim) - 1).abs() <= tol).all()):
        return "log_softmax"
    if bool((x >= -tol).all()) and bool((x <= 1 + tol).all()) and bool(((x.sum(class_dim) - 1).abs() <= tol).all()):
        return "softmax"
    return None


def _warn_activation(base: Any, name: str, y_pred: Tensor, stacklevel: Optional[int]) -> None:
    if isinstance(base, _SOFTMAX_LOSSES):
        kind = _output_kind(y_pred)
        if kind == "log_softmax":
            alternative = ", or use nn.NLLLoss" if isinstance(base, nn.CrossEntropyLoss) else ""
            warn_user(
                f"{name} received y_pred whose rows exponentiate to 1: the net already ends in "
                f"log_softmax. {name} applies log_softmax itself, so the second one changes nothing "
                "numerically, but the net's outputs are log-probabilities, not the logits the loss "
                f"documents: remove the log_softmax from the net's forward{alternative}.",
                stacklevel=stacklevel,
            )
        elif kind == "softmax":
            num_classes = y_pred.shape[1 if y_pred.ndim >= 2 else 0]
            floor = math.log(1 + (num_classes - 1) / math.e)
            warn_user(
                f"{name} received y_pred whose rows sum to 1: the net already ends in softmax. "
                f"{name} expects raw logits and applies log_softmax to these probabilities again, "
                f"which squashes the loss (it cannot fall below log(1 + (C-1)/e) = {floor:.3f} for "
                f"C={num_classes}) and shrinks its gradients: remove the softmax from the net's "
                "forward and return logits, or use nn.NLLLoss on torch.log(y_pred).",
                stacklevel=stacklevel,
            )
    elif isinstance(base, nn.NLLLoss):
        kind = _output_kind(y_pred)
        if kind == "softmax":
            warn_user(
                "NLLLoss received y_pred whose rows sum to 1: these are probabilities, but NLLLoss "
                "expects log-probabilities: end the net in log_softmax instead of softmax, or use "
                "nn.CrossEntropyLoss on raw logits.",
                stacklevel=stacklevel,
            )
        elif kind is None and y_pred.ndim >= 1:
            warn_user(
                "NLLLoss received y_pred whose rows do not exponentiate to 1, so they are not "
                "log-probabilities (raw logits?): add log_softmax at the end of the net's forward, "
                "or use nn.CrossEntropyLoss, which applies it itself.",
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
            isinstance(base, (FocalLoss, OverlapLoss)) and not base.from_logits
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


def check_loss_value(
    loss: Any,
    name: str,
    *,
    y_pred: Any = None,
    net: Optional[nn.Module] = None,
    training: bool = True,
    reduction: Optional[str] = None,
    stacklevel: Optional[int] = None,
) -> None:
    """Checks a computed loss value: a scalar tensor, finite, with a gradient path to the net.

    The one copy of these checks: :func:`check_loss` runs them on the loss it
    computes, and the trainer on the loss of a runner whose ``compute_loss`` is
    overridden and on the first validation loss.

    Args:
        loss: What the loss computation returned.
        name: What computed it, as the messages name it (e.g. ``"CrossEntropyLoss"``).
        y_pred: The prediction the loss was computed from; when it requires grad,
            so must the loss. Defaults to None.
        net: The model that produced ``y_pred``; the loss's autograd graph must
            reach its trainable parameters. Defaults to None.
        training: Whether the loss is for training: only then is a non-finite
            value warned about and the gradient path checked (and never under
            ``torch.no_grad()``). Defaults to True.
        reduction: The loss's ``reduction`` attribute, if it has one; names the
            cause of a non-scalar loss. Defaults to None.
        stacklevel: Level of the non-finite warning, counted as
            :func:`warnings.warn` counts it from inside this function (2 is its
            caller); None points at the first frame outside kerastorch.
            Defaults to None.

    Raises:
        TypeError: ``loss`` is not a tensor.
        ValueError: ``loss`` is not a scalar, or has no gradient path to
            ``y_pred`` or to ``net``'s trainable parameters.

    Example:
        >>> import torch
        >>> check_loss_value(torch.ones(3), "my_loss", reduction="none")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: my_loss has reduction='none' and returned per-element losses of shape (3,); ...
    """
    if not isinstance(loss, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor; received {type(loss).__name__}")
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
    if not training:
        return
    if not bool(torch.isfinite(loss.detach()).all()):
        warn_user(
            f"{name} returned a non-finite loss ({loss.item()}) on this batch: check the inputs "
            "for NaN/inf, a batch whose targets are all ignored, or probabilities of exactly 0/1 "
            "fed to a log.",
            stacklevel=stacklevel,
        )
    if torch.is_grad_enabled():
        _check_gradient_path(loss, name, y_pred, net)


def _check_gradient_path(loss: Tensor, name: str, y_pred: Any, net: Optional[nn.Module]) -> None:
    if isinstance(y_pred, Tensor) and y_pred.requires_grad and not loss.requires_grad:
        raise ValueError(
            f"no gradient path from the loss to the net: y_pred.requires_grad is True but the loss "
            f"returned by {name} has requires_grad=False. The loss detaches its input somewhere "
            "(.detach(), .item(), .numpy(), torch.tensor(...), argmax/round); compute it with "
            "differentiable torch operations."
        )
    if net is None:
        return
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


def check_loss(
    loss_fn: Callable[[Any, Any], Tensor],
    y_pred: Any,
    y_true: Any,
    *,
    net: Optional[nn.Module] = None,
    stacklevel: Optional[int] = None,
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
        stacklevel: ``stacklevel`` of the warnings. None points them at the
            first frame outside kerastorch: the line that calls ``check_loss``,
            or the user's ``fit(...)`` line when the trainer calls it. An int
            keeps its former meaning, counted as :func:`warnings.warn` counts it
            from inside ``check_loss`` (2 is the line that calls it), for code
            outside kerastorch that wraps ``check_loss``. Defaults to None.

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
    # The helpers below warn from one frame deeper than this function.
    level = None if stacklevel is None else stacklevel + 1
    base = loss_fn.loss_fn if isinstance(loss_fn, RegularizedLoss) else loss_fn
    name = loss_name(base)
    if isinstance(y_pred, Tensor) and isinstance(y_true, Tensor):
        _warn_activation(base, name, y_pred, level)
        _check_targets(base, name, y_pred, y_true)

    # A wrapped loss is checked before its penalty is added: the penalty alone would give the
    # loss a gradient path to the parameters even when y_pred has been detached.
    loss = base(y_pred, y_true)
    check_loss_value(
        loss,
        name,
        y_pred=y_pred,
        net=net,
        training=True,
        reduction=getattr(base, "reduction", None),
        stacklevel=level,
    )
    if isinstance(loss_fn, RegularizedLoss):
        return loss_fn.add_penalty(loss)
    return loss
