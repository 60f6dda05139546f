"""``summary(net, input)``: a table of layers, output shapes and parameter counts."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

__all__ = ["summary"]


def _shape(out: Any):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return [_shape(o) for o in out]
    return type(out).__name__


def summary(net: torch.nn.Module, *inputs: Any, print_table: bool = True) -> pd.DataFrame:
    """Run ``net(*inputs)`` once and tabulate each leaf module's output and parameters.

    A drop-in for ``torchkeras.summary(net, features)``. The net runs in eval mode
    under ``no_grad`` and its training mode is restored afterwards.

    Args:
        net: the module to describe.
        *inputs: example inputs, e.g. one batch of features.
        print_table: print the table and the totals. Defaults to True.

    Returns:
        A DataFrame with columns ``layer``, ``type``, ``output_shape``, ``params``.

    Example:
        >>> from torch import nn
        >>> df = summary(nn.Sequential(nn.Linear(2, 4), nn.ReLU()), torch.zeros(3, 2),
        ...              print_table=False)
        >>> df[["layer", "output_shape", "params"]].values.tolist()
        [['0', (3, 4), 12], ['1', (3, 4), 0]]
    """
    if not inputs:
        raise TypeError("summary(net, *inputs) needs at least one example input; received none")
    rows, handles = [], []
    for name, module in net.named_modules():
        if name == "" or any(True for _ in module.children()):
            continue

        def hook(mod, args, out, name=name):
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            rows.append({"layer": name, "type": type(mod).__name__,
                         "output_shape": _shape(out), "params": params})

        handles.append(module.register_forward_hook(hook))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(*inputs)
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    df = pd.DataFrame(rows, columns=["layer", "type", "output_shape", "params"])
    if print_table:
        total = sum(p.numel() for p in net.parameters())
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        print(df.to_string(index=False))
        print(f"Total params: {total:,}  Trainable params: {trainable:,}")
    return df
