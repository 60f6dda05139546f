"""Turn what a user passes as data (a DataLoader, a Dataset, an (X, y) pair) into a DataLoader."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

__all__ = ["as_dataloader", "as_tensor"]


def as_tensor(array: Any, name: str) -> torch.Tensor:
    """A tensor from a tensor, numpy array or array-like; float64 becomes float32.

    float64 is narrowed because nets are float32 by default and numpy's default
    float is float64 (a Keras user's ``np.random.rand`` would otherwise fail inside
    the first Linear layer).
    """
    if isinstance(array, torch.Tensor):
        tensor = array
    else:
        try:
            tensor = torch.as_tensor(np.asarray(array))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{name} must be a tensor or numpy array; received {type(array).__name__}"
            ) from exc
    if tensor.dtype == torch.float64:
        tensor = tensor.to(torch.float32)
    return tensor


def _is_array_like(obj: Any) -> bool:
    return isinstance(obj, (torch.Tensor, np.ndarray)) or hasattr(obj, "__array__")


def as_dataloader(data: Any, *, batch_size: int, shuffle: bool, name: str) -> Any:
    """Return ``data`` as something the loop can iterate in batches.

    Accepts a ``DataLoader`` (returned as is), a ``Dataset`` (wrapped with
    ``batch_size``/``shuffle``) or an ``(X, y)`` pair of tensors or numpy arrays.

    Raises:
        TypeError: any other kind of object.
        ValueError: X and y of different lengths, or a bad batch_size.
    """
    if isinstance(data, DataLoader):
        return data
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; received {batch_size!r}")
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(map(_is_array_like, data)):
        x, y = as_tensor(data[0], f"{name}[0]"), as_tensor(data[1], f"{name}[1]")
        if len(x) != len(y):
            raise ValueError(
                f"{name} is an (X, y) pair of different lengths: len(X)={len(x)}, len(y)={len(y)}"
            )
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)
    if isinstance(data, IterableDataset):
        return DataLoader(data, batch_size=batch_size)
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle)
    raise TypeError(
        f"{name} must be a torch DataLoader, a Dataset, or an (X, y) pair of tensors/numpy "
        f"arrays; received {_describe(data)}"
    )


def _describe(data: Any) -> str:
    if isinstance(data, (tuple, list)):
        inner = ", ".join(type(d).__name__ for d in data[:4])
        return f"a {type(data).__name__} of {len(data)} item(s) ({inner})"
    return f"a {type(data).__name__}"


def loader_length(loader: Any):
    """``len(loader)``, or None for loaders without a length (an IterableDataset)."""
    try:
        return len(loader)
    except TypeError:
        return None
