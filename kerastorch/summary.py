"""``summary(model, input)``: a table of layers, output shapes and parameter counts.

``model`` is a ``torch.nn.Module`` or a :class:`kerastorch.KerasModel` (its ``net`` is
described). The example input is given positionally, ``summary(net, x)`` or
``summary(net, x1, x2)``, or with torchkeras's keywords ``input_data=``,
``input_data_args=`` and ``input_shape=``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["summary"]

# Modules that are one layer although they have children: their forward uses the
# children's weights directly, so the children's hooks never fire (as in torchkeras).
_LAYER_TYPES = (torch.nn.MultiheadAttention,)


def _shape(out: Any):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return [_shape(o) for o in out]
    return type(out).__name__


def _kind(value: Any) -> str:
    return type(value).__name__


def _resolve_net(model: Any) -> torch.nn.Module:
    """The module to describe: ``model`` itself, or the ``net`` of a KerasModel."""
    if isinstance(model, torch.nn.Module):
        return model
    # duck typing: importing kerasmodel here would be an import cycle
    if hasattr(model, "net") and isinstance(model.net, torch.nn.Module):
        return model.net
    raise TypeError(f"summary(model, ...): model must be a torch.nn.Module or a "
                    f"kerastorch.KerasModel; received {_kind(model)}")


def _net_device(net: torch.nn.Module) -> Optional[torch.device]:
    """The device of all the net's parameters and buffers; None when there are none or several."""
    devices = {t.device for t in (*net.parameters(), *net.buffers())}
    return devices.pop() if len(devices) == 1 else None


def _net_dtype(net: torch.nn.Module) -> torch.dtype:
    """The dtype of the net's first floating-point parameter (or buffer), else the default."""
    for t in (*net.parameters(), *net.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _binds(net: torch.nn.Module, args: tuple, kwargs: dict) -> Optional[bool]:
    """Whether ``net.forward`` accepts ``(*args, **kwargs)``; None when its signature is unknown."""
    try:
        signature = inspect.signature(net.forward)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _from_input_data(net: torch.nn.Module, input_data: Any) -> tuple[tuple, dict]:
    """``(args, kwargs)`` for ``net`` from torchkeras's ``input_data``.

    torchkeras calls ``model(input_data)``. A tuple/list is spread into positional
    inputs and a dict into keyword inputs, unless ``net.forward`` cannot take them
    that way but takes one argument: then it is passed whole, as torchkeras does.
    """
    if isinstance(input_data, torch.Tensor) or hasattr(input_data, "_fields"):
        return (input_data,), {}  # a tensor, or a namedtuple such as PackedSequence
    if isinstance(input_data, (tuple, list)):
        items = tuple(input_data)
        if _binds(net, items, {}) is False and _binds(net, (input_data,), {}):
            return (input_data,), {}
        return items, {}
    if isinstance(input_data, Mapping):
        bad = [k for k in input_data if not isinstance(k, str)]
        if bad:
            raise TypeError(f"summary(input_data=dict): keys must be str argument names of "
                            f"the net's forward; received key {bad[0]!r}")
        kwargs = dict(input_data)
        if _binds(net, (), kwargs) is False and _binds(net, (input_data,), {}):
            return (input_data,), {}
        return (), kwargs
    raise TypeError(f"summary(input_data=...): expected a torch.Tensor, a tuple/list of "
                    f"positional inputs or a dict of keyword inputs; received "
                    f"{_kind(input_data)} (pass any other object positionally: "
                    f"summary(model, obj))")


def _check_shape(shape: Any) -> tuple:
    if not (isinstance(shape, tuple)
            and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise TypeError(f"summary(input_shape=...): expected a tuple of ints without the "
                        f"batch dimension, e.g. (1, 28, 28), or a list of such tuples for "
                        f"several inputs; received {_kind(shape)} {shape!r}"[:300])
    if any(d < 0 for d in shape):
        raise ValueError(f"summary(input_shape=...): dimensions must be >= 0; received {shape!r}")
    return shape


def _from_input_shape(net: torch.nn.Module, input_shape: Any, input_dtype: Any) -> tuple:
    """Zeros batches of one, ``(1, *shape)``, on the net's device, one per shape."""
    if isinstance(input_shape, list):
        if not input_shape:
            raise TypeError("summary(input_shape=[...]): expected at least one shape tuple; "
                            "received an empty list")
        shapes = [_check_shape(s) for s in input_shape]
    else:
        shapes = [_check_shape(input_shape)]  # a tuple (or torch.Size) is one input
    if input_dtype is None:
        dtype = _net_dtype(net)
    elif isinstance(input_dtype, torch.dtype):
        dtype = input_dtype
    elif isinstance(getattr(input_dtype, "dtype", None), torch.dtype):
        dtype = input_dtype.dtype  # a legacy tensor type such as torchkeras's torch.FloatTensor
    else:
        raise TypeError(f"summary(input_dtype=...): expected a torch.dtype such as torch.long; "
                        f"received {_kind(input_dtype)} {input_dtype!r}"[:300])
    device = _net_device(net) or torch.device("cpu")
    return tuple(torch.zeros(1, *shape, dtype=dtype, device=device) for shape in shapes)


def _to_device(value: Any, device: Optional[torch.device]) -> Any:
    """``value`` (a tensor, or a tuple/list/dict of them, one level deep) on ``device``."""
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device) if value.device != device else value
    if type(value) in (tuple, list):
        return type(value)(_to_device(v, None if isinstance(v, (tuple, list, Mapping)) else device)
                           for v in value)
    if type(value) is dict:
        return {k: _to_device(v, None if isinstance(v, (tuple, list, Mapping)) else device)
                for k, v in value.items()}
    return value


def summary(model: Any, *inputs: Any, input_data: Any = None,
            input_data_args: Optional[Sequence] = None, input_shape: Any = None,
            input_dtype: Any = None, print_table: bool = True) -> pd.DataFrame:
    """Run the net once on an example input and tabulate each layer's output and parameters.

    A drop-in for ``torchkeras.summary(model, input_data=features)``. The layers are
    the leaf modules (and ``nn.MultiheadAttention``), one row per call, in call
    order. The net runs in eval mode under ``no_grad`` and its training mode is
    restored afterwards. Input tensors on another device than the net's are copied
    to it (after ``fit`` on a GPU the net stays there).

    Give the example input one way only:

    * positionally: ``summary(net, x)`` runs ``net(x)``; ``summary(net, x1, x2)``
      runs ``net(x1, x2)``;
    * ``input_data=x``: a tensor runs ``net(x)``; a tuple/list ``(x1, x2)`` runs
      ``net(x1, x2)`` and a dict ``{"ids": t, "mask": m}`` runs ``net(ids=t, mask=m)``,
      except that when ``net.forward`` cannot take them spread but takes one
      argument, the tuple/list/dict is passed whole, ``net(input_data)``, as
      torchkeras always does;
    * ``input_data_args=(x1, x2)``: runs ``net(x1, x2)``;
    * ``input_shape``: a shape without the batch dimension, e.g. ``(1, 28, 28)``, or a
      list of such shapes for several inputs; each becomes a zeros batch of one,
      ``(1, *shape)``, on the net's device with ``input_dtype``.

    Args:
        model: a ``torch.nn.Module``, or a :class:`kerastorch.KerasModel` (its ``net``).
        *inputs: example positional inputs, e.g. one batch of features.
        input_data: torchkeras's keyword for the example input (see above).
            Defaults to None.
        input_data_args: a tuple/list of positional inputs. Defaults to None.
        input_shape: input shape(s) without the batch dimension. Defaults to None.
        input_dtype: dtype of the ``input_shape`` zeros: a ``torch.dtype`` (or a
            legacy tensor type such as ``torch.LongTensor``); None means the dtype of
            the net's floating-point parameters. Defaults to None.
        print_table: print the table and the totals. Defaults to True.

    Returns:
        A DataFrame with columns ``layer``, ``type``, ``output_shape``, ``params``
        (``output_shape`` includes the batch dimension); ``df.attrs`` holds
        ``total_params``, ``trainable_params`` and ``non_trainable_params`` (the net's
        parameters, each counted once).

    Raises:
        TypeError: ``model`` is neither a module nor a KerasModel; no example input,
            or inputs given more than one way; an argument of the wrong kind.

    Example:
        >>> from torch import nn
        >>> df = summary(nn.Sequential(nn.Linear(2, 4), nn.ReLU()), torch.zeros(3, 2),
        ...              print_table=False)
        >>> df[["layer", "output_shape", "params"]].values.tolist()
        [['0', (3, 4), 12], ['1', (3, 4), 0]]
        >>> from kerastorch import KerasModel
        >>> model = KerasModel(nn.Sequential(nn.Linear(2, 4), nn.ReLU()), nn.MSELoss())
        >>> df = summary(model, input_shape=(2,))
        layer   type output_shape  params
            0 Linear       (1, 4)      12
            1   ReLU       (1, 4)       0
        Total params: 12  Trainable params: 12  Non-trainable params: 0
        >>> summary(model, torch.zeros(3, 2), input_data=torch.zeros(3, 2))
        Traceback (most recent call last):
        ...
        TypeError: summary() received positional inputs and input_data=; give the example input ...
    """
    net = _resolve_net(model)
    if not isinstance(print_table, bool):
        raise TypeError(f"summary(print_table=...): expected a bool; received "
                        f"{_kind(print_table)}")
    given = [name for name, present in (("positional inputs", bool(inputs)),
                                        ("input_data=", input_data is not None),
                                        ("input_data_args=", input_data_args is not None),
                                        ("input_shape=", input_shape is not None)) if present]
    if len(given) > 1:
        raise TypeError(f"summary() received {' and '.join(given)}; give the example input "
                        f"one way only")
    if not given:
        raise TypeError("summary() needs an example input: summary(model, x), "
                        "input_data=x or input_shape=(...); received none")
    if input_dtype is not None and input_shape is None:
        raise TypeError(f"summary(input_dtype=...) applies to input_shape= only; received "
                        f"input_dtype with {given[0]}")
    args, kwargs = inputs, {}
    if input_data is not None:
        args, kwargs = _from_input_data(net, input_data)
    elif input_data_args is not None:
        if not isinstance(input_data_args, (tuple, list)):
            raise TypeError(f"summary(input_data_args=...): expected a tuple/list of "
                            f"positional inputs; received {_kind(input_data_args)}")
        args = tuple(input_data_args)
    elif input_shape is not None:
        args = _from_input_shape(net, input_shape, input_dtype)
    device = _net_device(net)
    args = tuple(_to_device(a, device) for a in args)
    kwargs = {k: _to_device(v, device) for k, v in kwargs.items()}

    rows, handles, layer_prefixes = [], [], []
    for name, module in net.named_modules():
        if any(name.startswith(prefix) for prefix in layer_prefixes):
            continue  # inside a layer that counts its children's parameters
        is_layer_type = isinstance(module, _LAYER_TYPES)
        if is_layer_type:
            layer_prefixes.append(f"{name}." if name else "")
        elif any(True for _ in module.children()):
            continue  # a container: its layers get the rows
        params = sum(p.numel() for p in module.parameters(recurse=is_layer_type))

        def hook(mod, hook_args, out, name=name, params=params):
            rows.append({"layer": name, "type": type(mod).__name__,
                         "output_shape": _shape(out), "params": params})

        handles.append(module.register_forward_hook(hook))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(*args, **kwargs)
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    import pandas as pd

    df = pd.DataFrame(rows, columns=["layer", "type", "output_shape", "params"])
    # totals over the net's parameters, each counted once (a layer called twice has two
    # rows, and a container's own parameters, such as a class token, have none)
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    df.attrs.update(total_params=total, trainable_params=trainable,
                    non_trainable_params=total - trainable)
    if print_table:
        print(df.to_string(index=False))
        print(f"Total params: {total:,}  Trainable params: {trainable:,}  "
              f"Non-trainable params: {total - trainable:,}")
    return df
