"""First-batch diagnostics: the checks the StepRunner runs once, on the first batch of a stage.

They catch misuse that would otherwise fail obscurely deep in the step, or not
at all: batch items that are not tensors, outputs and labels of different batch
sizes, a loss fed the wrong kind of output or targets, a loss that is not a
scalar or has no gradient path to the net. They sync with the device and walk
the autograd graph, which is why they run on the first batch only.

The runner passes in what it knows (whether its methods are overridden, its
loss) rather than this module importing the runner, which sits above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

from torch import Tensor, nn

from .batches import structure_len
from .losses.misuse import check_loss, check_loss_value, loss_name

__all__ = [
    "check_batch_sizes",
    "check_batch_types",
    "check_loss_output",
    "check_sample_weight",
    "checked_first_loss",
    "describe",
]


def describe(value: Any) -> str:
    """Names a value's kind for a message: a tensor's dtype and shape, a sequence's item type.

    Args:
        value: Anything a batch, a net or a loss produced.

    Returns:
        A phrase such as ``"a torch.float32 tensor of shape (2, 3)"``.

    Example:
        >>> import torch
        >>> describe(torch.zeros(2, 3))
        'a torch.float32 tensor of shape (2, 3)'
        >>> describe(("a", "b"))
        'a tuple of str'
    """
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)) and value:
        return f"a {type(value).__name__} of {type(value[0]).__name__}"
    return f"a {type(value).__name__}"


def check_batch_types(inputs: Any, labels: Any, *, custom_unpack: bool,
                      labels_optional: bool = False) -> None:
    """Checks that every batch item is a tensor (or a tuple/dict of them), as the default
    unpack and forward need.

    Args:
        inputs: The inputs the runner unpacked from the batch: a tuple or a dict.
        labels: The labels it unpacked: a tensor, or a tuple/dict of tensors.
        custom_unpack: Whether the runner overrides ``unpack_batch`` or
            ``forward``; the override then decides what an item may be, and
            nothing is checked.
        labels_optional: the labels may be None (a net that computes its own loss).
            Defaults to False.

    Raises:
        TypeError: an item is not a tensor, naming which one and what it is.

    Example:
        >>> import torch
        >>> check_batch_types(("sample 0",), torch.tensor([1]), custom_unpack=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: the default StepRunner expects every batch item to be a tensor; input 0 is a str. ...
    """
    if custom_unpack:
        return
    if isinstance(inputs, Mapping):
        items = [(f"input {k!r}", x) for k, x in inputs.items()]
    else:
        items = [(f"input {i}", x) for i, x in enumerate(inputs)]
    if labels is not None or not labels_optional:
        items.append(("the label (last item)" if not isinstance(inputs, Mapping)
                      else "the labels", labels))
    for where, item in items:
        bad = _first_non_tensor(item, where)
        if bad is not None:
            raise TypeError(
                f"the default StepRunner expects every batch item to be a tensor; {bad[0]} is "
                f"{describe(bad[1])}. Convert it in the Dataset or the DataLoader's "
                "collate_fn (for a HuggingFace dataset, remove its text columns or use "
                "with_format('torch')), or subclass StepRunner and override unpack_batch/forward"
            )


def _first_non_tensor(item: Any, where: str):
    """``(where, value)`` of the first leaf of a nested item that is not a tensor, or None."""
    if isinstance(item, Tensor):
        return None
    if isinstance(item, Mapping):
        for key, value in item.items():
            bad = _first_non_tensor(value, f"{where}[{key!r}]")
            if bad is not None:
                return bad
        return None
    if isinstance(item, (tuple, list)) and item and all(
            isinstance(v, (Tensor, Mapping, tuple, list)) for v in item):
        for n, value in enumerate(item):
            bad = _first_non_tensor(value, f"{where}[{n}]")
            if bad is not None:
                return bad
        return None
    return where, item


def check_sample_weight(weights: Any, reference: Any) -> None:
    """Checks a batch's sample weights: a 1-D float tensor, one weight per sample, none < 0.

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: wrong shape or negative weights.

    Example:
        >>> import torch
        >>> check_sample_weight(torch.ones(3), torch.zeros(4))
        Traceback (most recent call last):
        ...
        ValueError: the batch has 3 sample weights for 4 samples; sample_weight needs one weight per sample, shape (4,)
    """
    if not isinstance(weights, Tensor) or not weights.is_floating_point():
        raise TypeError(f"sample_weight must be a floating-point tensor, one weight per "
                        f"sample; received {describe(weights)}")
    n = structure_len(reference)
    if weights.ndim != 1 or weights.shape[0] != n:
        got = (f"{weights.shape[0]} sample weights" if weights.ndim == 1
               else f"sample weights of shape {tuple(weights.shape)}")
        raise ValueError(f"the batch has {got} for {n} samples; sample_weight needs one weight "
                         f"per sample, shape ({n},)")
    if bool((weights < 0).any()):
        raise ValueError("sample_weight has negative weights; weights must be >= 0")


def check_batch_sizes(preds: Any, labels: Any) -> None:
    """Checks that the net's output and the labels agree on the batch size (dim 0).

    Runs before the loss, whose own error for a mismatch rarely names the cause
    (and a broadcasting loss raises none). Non-tensors and 0-dim tensors pass.

    Args:
        preds: The net's output.
        labels: The batch's labels.

    Raises:
        ValueError: dim 0 differs, naming both shapes.

    Example:
        >>> import torch
        >>> check_batch_sizes(torch.zeros(16, 3), torch.zeros(8))
        Traceback (most recent call last):
        ...
        ValueError: the net's output has batch size 16 but the labels have 8 (output shape (16, 3), labels shape (8,))
    """
    if isinstance(preds, Tensor) and isinstance(labels, Tensor) \
            and preds.ndim > 0 and labels.ndim > 0 and preds.shape[0] != labels.shape[0]:
        raise ValueError(
            f"the net's output has batch size {preds.shape[0]} but the labels have "
            f"{labels.shape[0]} (output shape {tuple(preds.shape)}, labels shape "
            f"{tuple(labels.shape)})"
        )


def checked_first_loss(
    compute_loss: Callable[[Any, Any], Tensor],
    preds: Any,
    labels: Any,
    *,
    net: nn.Module,
    loss_fn: Optional[Callable[[Any, Any], Tensor]] = None,
) -> Tensor:
    """Computes the first training loss and checks it, before any backward pass.

    With the runner's default ``compute_loss`` the loss is computed through
    :func:`kerastorch.losses.check_loss`, which also checks the outputs and
    targets against the loss's type; an overridden ``compute_loss`` gets the
    checks of its returned value only. Either way the loss is computed once, and
    warnings point at the user's ``fit(...)`` line.

    Args:
        compute_loss: The runner's ``compute_loss``, called as
            ``compute_loss(preds, labels)``.
        preds: The net's output for the first batch.
        labels: The first batch's labels.
        net: The network; the loss must reach its trainable parameters.
        loss_fn: The runner's ``loss_fn`` when ``compute_loss`` is the default
            one (which just calls it), else None. Defaults to None.

    Returns:
        The loss, attached to the autograd graph.

    Raises:
        TypeError, ValueError: see :func:`check_batch_sizes`,
            :func:`kerastorch.losses.check_loss` and :func:`check_loss_output`.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 3)
        >>> loss_fn = torch.nn.CrossEntropyLoss()
        >>> preds, labels = net(torch.randn(4, 2)), torch.tensor([0, 1, 2, 0])
        >>> loss = checked_first_loss(loss_fn, preds, labels, net=net, loss_fn=loss_fn)
        >>> loss.requires_grad
        True
    """
    check_batch_sizes(preds, labels)
    if loss_fn is not None:
        loss = check_loss(loss_fn, preds, labels, net=net)
        _require_grad(loss, loss_name(loss_fn))
        return loss
    loss = compute_loss(preds, labels)
    check_loss_output(loss, compute_loss, preds=preds, training=True)
    return loss


def check_loss_output(
    loss: Any,
    compute_loss: Callable[[Any, Any], Tensor],
    *,
    loss_fn: Optional[Callable[[Any, Any], Tensor]] = None,
    preds: Any = None,
    training: bool,
) -> None:
    """Checks the value the runner's loss computation returned on the first batch.

    The checks are :func:`kerastorch.losses.misuse.check_loss_value`'s: a scalar
    tensor; in training also finite (a warning) with a gradient path to
    ``preds``, and, since a backward pass follows, requiring grad at all.

    Args:
        loss: What ``compute_loss`` returned.
        compute_loss: The runner's ``compute_loss``; names the source in messages
            when it is overridden.
        loss_fn: The runner's ``loss_fn`` when ``compute_loss`` is the default
            one, else None; names the source and its ``reduction``. Defaults to None.
        preds: The net's output the loss was computed from. Defaults to None.
        training: Whether this is the train stage (validation losses are
            computed under ``torch.no_grad()``).

    Raises:
        TypeError: the loss is not a tensor.
        ValueError: the loss is not a scalar or, in training, has no gradient path.

    Example:
        >>> import torch
        >>> def compute_loss(preds, labels):
        ...     return (preds - labels) ** 2
        >>> check_loss_output(torch.ones(4), compute_loss, training=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: compute_loss returned a tensor of shape (4,); a training loss must be a scalar (0-dim) tensor: ...
    """
    if loss_fn is not None:
        name, reduction = loss_name(loss_fn), getattr(loss_fn, "reduction", None)
    else:
        name, reduction = _method_name(compute_loss), None
    check_loss_value(loss, name, y_pred=preds, training=training, reduction=reduction)
    if training:
        _require_grad(loss, name)


def _method_name(method: Callable[..., Any]) -> str:
    # "MyStep.compute_loss" names the override; __qualname__ would add "<locals>" paths.
    owner = getattr(method, "__self__", None)
    name = loss_name(method)
    return name if owner is None else f"{type(owner).__name__}.{name}"


def _require_grad(loss: Tensor, name: str) -> None:
    # check_loss lets a loss without grad pass when nothing says it should have one (y_pred
    # without grad, no trainable parameter, grad mode off); backward, which comes next, needs it.
    if not loss.requires_grad:
        raise ValueError(
            f"no gradient path from the loss to the net: the loss returned by {name} has "
            "requires_grad=False, so backward() has nothing to differentiate (does the net "
            "have trainable parameters? is the output computed under torch.no_grad()?)"
        )
