"""Export a net for serving: ONNX, TorchScript, or its weights as safetensors, written atomically.

The net is exported where it is (the example input is moved to the net's device); move it
to the CPU first for a file that never names a GPU. Export runs in eval mode under
``torch.no_grad`` and gives every module back its own training flag afterwards.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import warnings
from typing import Any

import torch

from .checks import check_path
from .files import atomic_open, save_safetensors_file
from .userwarn import warn_user

__all__ = ["FORMATS", "export"]

FORMATS = ("onnx", "torchscript", "safetensors")
ONNX_EXTRA = 'pip install -e ".[onnx]"'
INPUT_KINDS = "a tensor, a tuple of tensors, or a dict of tensors (keyword inputs)"


def export(model, path: str | os.PathLike, example_input: Any = None, *,
           format: str = "onnx") -> str:
    """Write ``model``'s net to ``path`` as ONNX, TorchScript or safetensors weights.

    - ``"onnx"``: ``torch.onnx.export`` with the dynamo exporter (needs ``onnxscript``);
      when it is missing or fails, a warning says why and the TorchScript-based exporter
      writes the file instead. The first dimension of every input and output is a dynamic
      ``batch`` axis. Inputs are named ``input`` (``input_0``, ``input_1``, ... for a
      tuple; the keys for a dict), outputs ``output`` (``output_0``, ...). The model is
      serialised in one piece, so it must be under protobuf's 2 GB.
    - ``"torchscript"``: ``torch.jit.trace`` on the example input, saved with
      ``torch.jit.save``; reload with ``torch.jit.load``. Traced, so data-dependent
      branches are frozen as the example took them.
    - ``"safetensors"``: the ``state_dict`` as contiguous CPU tensors; tied weights are
      stored once. ``KerasModel.load_ckpt`` reads it back. ``example_input`` is not used.

    Args:
        model: a ``torch.nn.Module`` or a ``KerasModel`` (its ``net`` is exported).
        path: the file to write; its folder is created. Written through a temporary file
            and a rename, so ``path`` is never half-written.
        example_input: what the net is called with: a tensor (``net(x)``), a tuple of
            tensors (``net(*inputs)``) or a dict of tensors (``net(**inputs)``), all with
            the same batch size. Required for ``"onnx"`` and ``"torchscript"``.
            Defaults to None.
        format: ``"onnx"``, ``"torchscript"`` or ``"safetensors"``. Defaults to ``"onnx"``.

    Returns:
        What wrote the file: ``"torch.onnx.export(dynamo=True)"``,
        ``"torch.onnx.export(dynamo=False)"``, ``"torch.jit.trace"`` or ``"safetensors"``.

    Raises:
        TypeError: ``model``, ``path``, ``format`` or ``example_input`` is of the wrong kind.
        ValueError: an unknown ``format``, or an ``example_input`` without a shared batch
            dimension; nothing is written.
        ImportError: ``"safetensors"`` without the safetensors package.

    Example:
        >>> import os, tempfile, torch
        >>> net = torch.nn.Linear(3, 2)
        >>> path = os.path.join(tempfile.mkdtemp(), "net.pt")
        >>> export(net, path, torch.randn(4, 3), format="torchscript")
        'torch.jit.trace'
        >>> torch.jit.load(path)(torch.ones(5, 3)).shape
        torch.Size([5, 2])
    """
    net = _net_of(model)
    path = check_path("path", path, allow_none=False)
    format = _check_format(format)
    if format == "safetensors":
        if example_input is not None:
            _as_call(example_input, format)
        save_safetensors_file(net.state_dict(), path)
        return "safetensors"
    args, kwargs = _as_call(example_input, format)
    device = _device_of(net)
    args = tuple(a.to(device) for a in args)
    kwargs = {k: v.to(device) for k, v in kwargs.items()}
    with _eval_mode(net), torch.no_grad():
        if format == "torchscript":
            return _export_torchscript(net, path, args, kwargs)
        return _export_onnx(net, path, args, kwargs)


def _net_of(model) -> torch.nn.Module:
    """The net itself, or a KerasModel's (duck-typed: this module sits below kerasmodel)."""
    if isinstance(model, torch.nn.Module):
        return model
    net = getattr(model, "unwrapped_net", getattr(model, "net", None))
    if isinstance(net, torch.nn.Module):
        return net
    raise TypeError("model must be a torch.nn.Module or a KerasModel; "
                    f"received {type(model).__name__}")


def _check_format(format) -> str:
    if not isinstance(format, str):
        raise TypeError(f"format must be a str, one of {FORMATS}; received {type(format).__name__} "
                        f"{format!r}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; received {format!r}")
    return format


def _as_call(example_input, format: str) -> tuple:
    """``example_input`` as (positional tensors, keyword tensors), checked."""
    if example_input is None:
        raise TypeError(f"example_input is required for format={format!r}: {INPUT_KINDS}")
    if isinstance(example_input, torch.Tensor):
        args, kwargs = (example_input,), {}
    elif isinstance(example_input, (tuple, list)):
        args, kwargs = tuple(example_input), {}
    elif isinstance(example_input, dict):
        args, kwargs = (), dict(example_input)
        bad_keys = [k for k in kwargs if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(f"example_input's dict keys must be str (the net's keyword arguments); "
                            f"received {bad_keys[0]!r}")
    else:
        raise TypeError(f"example_input must be {INPUT_KINDS}; "
                        f"received {type(example_input).__name__}")
    items = {f"example_input[{i}]": a for i, a in enumerate(args)}
    items.update({f"example_input[{k!r}]": v for k, v in kwargs.items()})
    if not items:
        raise ValueError(f"example_input is empty; pass {INPUT_KINDS}")
    _check_tensors(items)
    return args, kwargs


def _check_tensors(items: dict) -> None:
    for name, value in items.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a tensor; received {type(value).__name__}")
        if value.dim() == 0:
            raise ValueError(f"{name} is a 0-d tensor; every input needs a first (batch) dimension")
    sizes = {name: value.shape[0] for name, value in items.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"example_input's tensors must share their first (batch) dimension, "
                         f"which is exported as dynamic; received sizes {sizes}")


def _device_of(net: torch.nn.Module) -> torch.device:
    for tensor in itertools.chain(net.parameters(), net.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(net: torch.nn.Module):
    """Eval mode for the export; each module's own flag back afterwards (a frozen
    batch-norm kept in eval during training stays so)."""
    modes = [(module, module.training) for module in net.modules()]
    net.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _export_torchscript(net, path: str, args: tuple, kwargs: dict) -> str:
    # strict=False lets a net return a dict or list
    if kwargs:
        traced = torch.jit.trace(net, example_kwarg_inputs=kwargs, strict=False)
    else:
        traced = torch.jit.trace(net, args, strict=False)
    with atomic_open(path, "wb") as f:
        torch.jit.save(traced, f)
    return "torch.jit.trace"


def _export_onnx(net, path: str, args: tuple, kwargs: dict) -> str:
    input_names = list(kwargs) or (["input"] if len(args) == 1
                                   else [f"input_{i}" for i in range(len(args))])
    outputs = _count_tensors(net(*args, **kwargs))  # one extra forward, to name the outputs
    output_names = ["output"] if outputs == 1 else [f"output_{i}" for i in range(outputs)]
    names = {"input_names": input_names, "output_names": output_names}
    try:
        data, used = _onnx_dynamo(net, args, kwargs, names), "torch.onnx.export(dynamo=True)"
    # a missing onnxscript, or a net that torch.export cannot capture
    except Exception as exc:  # noqa: BLE001
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        hint = f" ({ONNX_EXTRA} installs it)" if isinstance(exc, ImportError) else ""
        warn_user(f"the dynamo ONNX exporter failed ({type(exc).__name__}: {first_line}){hint}; "
                  "exporting with the TorchScript-based exporter instead")
        data, used = _onnx_torchscript(net, args, kwargs, names), "torch.onnx.export(dynamo=False)"
    with atomic_open(path, "wb") as f:
        f.write(data)
    return used


def _onnx_dynamo(net, args: tuple, kwargs: dict, names: dict) -> bytes:
    batch = torch.export.Dim("batch")
    if kwargs:
        dynamic_shapes = {k: {0: batch} for k in kwargs}
    else:
        dynamic_shapes = tuple({0: batch} for _ in args)
    program = torch.onnx.export(net, args, kwargs=kwargs or None, dynamo=True,
                                dynamic_shapes=dynamic_shapes, verbose=False, **names)
    return program.model_proto.SerializeToString()


def _onnx_torchscript(net, args: tuple, kwargs: dict, names: dict) -> bytes:
    buffer = io.BytesIO()
    dynamic_axes = {name: {0: "batch"} for name in names["input_names"] + names["output_names"]}
    with warnings.catch_warnings():
        # chosen deliberately, after the warning above: its deprecation notice adds nothing
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, args, buffer, kwargs=kwargs or None, dynamo=False,
                          dynamic_axes=dynamic_axes, **names)
    return buffer.getvalue()


def _count_tensors(output) -> int:
    if isinstance(output, torch.Tensor):
        return 1
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return sum(_count_tensors(item) for item in output)
    return 0
