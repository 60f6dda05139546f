"""L1/L2 penalties on a model's parameters, added to any loss."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from .validation import HALF_DTYPES, check_bool, check_real

__all__ = ["RegularizedLoss", "with_regularization"]


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
        self.l1 = check_real("l1", l1, low=0.0)
        self.l2 = check_real("l2", l2, low=0.0)
        self.exclude_bias = check_bool("exclude_bias", exclude_bias)

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
            w = param.float() if param.dtype in HALF_DTYPES else param
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
        return self.add_penalty(self.loss_fn(y_pred, y_true))

    def add_penalty(self, loss: Any) -> Tensor:
        """Returns ``loss`` plus :meth:`penalty`; ``loss`` must be a scalar tensor.

        :func:`check_loss` checks the wrapped loss's value first and then adds the
        penalty through this method, so the two paths cannot drift apart.
        """
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
