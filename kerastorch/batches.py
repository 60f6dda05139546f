"""Batch and output structures: split a batch into inputs and labels, call the net, and
concatenate nested outputs (tensors, tuples, lists, dicts, HuggingFace ``ModelOutput``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import torch

__all__ = ["LABEL_KEYS", "SAMPLE_WEIGHT_KEY", "call_net", "concat_outputs", "describe_keys",
           "first_tensor", "map_tensors", "output_loss", "plain", "predictions_view",
           "split_mapping", "structure_len"]

LABEL_KEYS = ("label", "labels", "y", "target")
SAMPLE_WEIGHT_KEY = "sample_weight"


def plain(value: Any) -> Any:
    """``value`` with every mapping (a ``ModelOutput`` included) turned into a plain dict.

    A ``ModelOutput`` keeps only its set fields (its ``None`` fields are not items),
    so ``plain(output)`` holds exactly what the model returned.

    Example:
        >>> from collections import OrderedDict
        >>> plain(OrderedDict(a=1, b=(2, {"c": 3})))
        {'a': 1, 'b': (2, {'c': 3})}
    """
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def call_net(net: Callable, inputs: Any) -> Any:
    """``net(**inputs)`` for a mapping, ``net(*inputs)`` for a tuple/list, else ``net(inputs)``."""
    if isinstance(inputs, Mapping):
        return net(**inputs)
    if isinstance(inputs, (tuple, list)):
        return net(*inputs)
    return net(inputs)


def split_mapping(batch: Mapping, label_keys: Sequence[str], *,
                  keep_labels: bool = False) -> Tuple[dict, Any]:
    """``(inputs, labels)`` of a mapping batch; the labels are the value under a label key.

    Args:
        batch: the batch, a mapping.
        label_keys: the keys that may hold the labels; at most one may be present.
        keep_labels: leave the label key in the inputs too (a net that computes its
            own loss from them). Defaults to False.

    Returns:
        The inputs (a dict without ``"sample_weight"``) and the labels, None when
        the batch has none of the label keys.

    Raises:
        ValueError: more than one label key is present.

    Example:
        >>> split_mapping({"x": 1, "label": 2}, LABEL_KEYS)
        ({'x': 1}, 2)
    """
    present = [k for k in label_keys if k in batch]
    if len(present) > 1:
        raise ValueError(
            f"the batch holds several label keys {present}; which one are the labels? Pass "
            f"KerasModel(..., label_keys=[...]) naming the one(s) to use")
    key = present[0] if present else None
    inputs = {k: v for k, v in batch.items()
              if k != SAMPLE_WEIGHT_KEY and (keep_labels or k != key)}
    return inputs, (batch[key] if key is not None else None)


def output_loss(output: Any) -> Optional[torch.Tensor]:
    """The loss a net returned with its outputs: ``output.loss`` or ``output["loss"]``, or None."""
    if isinstance(output, Mapping):
        return output.get("loss")
    loss = getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def predictions_view(output: Any) -> Any:
    """What metrics see of an output that carries its own loss: the output without the loss.

    A mapping gives its ``"logits"`` entry when it has one, else its one entry
    other than ``"loss"``, else the dict without ``"loss"``.

    Example:
        >>> predictions_view({"loss": 0.3, "logits": 5})
        5
    """
    if not isinstance(output, Mapping):
        return output
    if "logits" in output:
        return output["logits"]
    rest = {k: v for k, v in output.items() if k != "loss"}
    return next(iter(rest.values())) if len(rest) == 1 else rest


def map_tensors(fn: Callable[[torch.Tensor], Any], value: Any) -> Any:
    """Apply ``fn`` to every tensor of a nested structure; mappings come back as dicts."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: map_tensors(fn, v) for k, v in value.items()}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(map_tensors(fn, v) for v in value)
    if isinstance(value, list):
        return [map_tensors(fn, v) for v in value]
    return value


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)


def first_tensor(value: Any) -> Optional[torch.Tensor]:
    """The first tensor of a nested structure (depth first), or None."""
    return next(_tensors(value), None)


def structure_len(value: Any) -> int:
    """The batch size of a (nested) batch item: dim 0 of its first tensor with a dim.

    A structure without tensors counts its items, anything else counts as 1.
    """
    if isinstance(value, torch.Tensor) and value.ndim > 0:  # the common case, first
        return int(value.shape[0])
    for tensor in _tensors(value):
        if tensor.ndim > 0:
            return int(tensor.shape[0])
    try:
        return len(value)
    except TypeError:
        return 1


def describe_keys(keys: Any) -> str:
    return str(sorted(map(str, keys)))


def concat_outputs(outputs: Sequence[Any]) -> Any:
    """Concatenate per-batch outputs of one structure along the batch dimension.

    Tensors are concatenated (0-dim tensors stacked), tuples and lists item by
    item, mappings key by key (returned as dicts, a ``ModelOutput`` included),
    ``None`` stays ``None``; lists of plain values (a batch's strings) are joined into
    one list, and any other value is collected into a list.

    Raises:
        ValueError: the batches' structures differ (naming where).

    Example:
        >>> out = concat_outputs([{"a": torch.zeros(2)}, {"a": torch.ones(1)}])
        >>> out["a"].tolist()
        [0.0, 0.0, 1.0]
        >>> scores, names = concat_outputs([(torch.ones(1), ["a", "b"]), (torch.zeros(1), ["c"])])
        >>> names
        ['a', 'b', 'c']
    """
    return _concat(list(outputs), "output")


def _concat(items: list, where: str) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        if not all(isinstance(i, torch.Tensor) for i in items):
            raise ValueError(f"{where} is a tensor in some batches but not in others")
        return torch.stack(items) if first.ndim == 0 else torch.cat(items)
    if isinstance(first, Mapping):
        keys = list(first)
        for item in items:
            if not isinstance(item, Mapping) or set(item) != set(keys):
                got = describe_keys(item) if isinstance(item, Mapping) else type(item).__name__
                raise ValueError(f"{where} has keys {describe_keys(keys)} in the first batch "
                                 f"but {got} in another")
        return {k: _concat([i[k] for i in items], f"{where}[{k!r}]") for k in keys}
    if isinstance(first, list) and not any(
            isinstance(v, (torch.Tensor, Mapping, tuple, list)) for i in items for v in i):
        return [v for item in items for v in item]  # per-sample values (strings, ids): joined
    if isinstance(first, (tuple, list)) and not hasattr(first, "_fields"):
        if any(not isinstance(i, (tuple, list)) or len(i) != len(first) for i in items):
            raise ValueError(f"{where} is a {type(first).__name__} of {len(first)} items in the "
                             "first batch but not in another")
        return type(first)(_concat([i[n] for i in items], f"{where}[{n}]")
                           for n in range(len(first)))
    if first is None:
        return None
    return list(items)
