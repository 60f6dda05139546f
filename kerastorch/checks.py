"""Argument checks for KerasModel and fit, raised before any work, naming expected vs received."""

from __future__ import annotations

import difflib
import os
import sys
from typing import Iterable, Optional

import torch

from .userwarn import warn_user


__all__ = ["check_bool", "check_callbacks", "check_fit_args", "check_initial_epoch",
           "check_label_keys", "check_loss_fn", "check_metrics", "check_steps",
           "check_validation_freq",
           "loss_modules",
           "check_mode", "check_monitor", "check_net", "check_optimizer",
           "check_optimizer_params", "check_patience", "check_path",
           "check_subclass", "is_torchmetrics_metric", "monitor_message", "reject_unknown",
           "state_paths"]

MIXED_PRECISION = ("no", "fp16", "bf16")
MODES = ("min", "max")


def check_bool(name: str, value) -> bool:
    """``value`` when it is True or False; a truthy string such as ``"no"`` is an error.

    Example:
        >>> check_bool("shuffle", "no")
        Traceback (most recent call last):
        ...
        TypeError: shuffle must be True or False; received str 'no'
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; received {type(value).__name__} "
                        f"{value!r}")
    return value


def check_path(name: str, value, *, allow_none: bool = True):
    """``value`` as a str path (``os.PathLike`` accepted); None when allowed.

    Example:
        >>> check_path("ckpt_path", 123)
        Traceback (most recent call last):
        ...
        TypeError: ckpt_path must be a str or os.PathLike path or None; received int 123
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
        expected = "a str or os.PathLike path" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}; received {type(value).__name__} {value!r}")
    path = os.fspath(value)
    if not path:
        raise ValueError(f"{name} must be a non-empty path; received {value!r}")
    return path


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of 'min', 'max'; received {mode!r}")
    return mode


def check_patience(patience, *, allow_none: bool = True):
    if patience is None and allow_none:
        return None
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        expected = "None or an int >= 0" if allow_none else "an int >= 0"
        raise ValueError(f"patience must be {expected}; received {patience!r}")
    return patience


def check_callbacks(callbacks, callback_type: type) -> list:
    """``fit``'s ``callbacks`` as a list; a single callback or a string is an error
    (each item is checked by the CallbackList)."""
    if callbacks is None:
        return []
    if isinstance(callbacks, (str, bytes, callback_type)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a list of Callback objects; received "
                        f"{type(callbacks).__name__} {callbacks!r}"[:300])
    return list(callbacks)


def state_paths(ckpt_path, state_path, resume, save_state_every):
    """(where to save the state, where to resume from) for fit's arguments."""
    if not isinstance(save_state_every, int) or isinstance(save_state_every, bool) \
            or save_state_every < 0:
        raise ValueError(f"save_state_every must be an int >= 0; received {save_state_every!r}")
    if state_path is None and ckpt_path is not None:
        state_path = f"{ckpt_path}.state.pt"
    if isinstance(resume, bool):
        if resume and state_path is None:
            raise ValueError("resume=True needs a state file: pass ckpt_path or state_path, "
                             "or resume='path/to/file.state.pt'")
        resume_path = state_path if resume and os.path.isfile(state_path) else None
        if resume and resume_path is None:
            warn_user(f"resume=True: no state at {state_path!r} yet; starting from scratch")
    elif isinstance(resume, (str, os.PathLike)):
        resume_path = os.fspath(resume)
        if not os.path.isfile(resume_path):
            raise FileNotFoundError(f"resume={resume_path!r}: no such state file")
        state_path = state_path or resume_path
    else:
        raise TypeError(f"resume must be a bool or a path; received {type(resume).__name__}")
    return (state_path if save_state_every else None), resume_path


def reject_unknown(unknown: dict, fn: str, known: Iterable[str]) -> None:
    if not unknown:
        return
    name = next(iter(unknown))
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {sorted(known)}"
    raise TypeError(f"{fn}() got an unexpected keyword argument {name!r}{hint}")


def check_fit_args(epochs, mixed_precision, grad_accum, max_grad_norm) -> None:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1; received {epochs!r}")
    if mixed_precision is not None and mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be None or one of 'no', 'fp16', 'bf16'; "
                         f"received {mixed_precision!r}")
    if not isinstance(grad_accum, int) or isinstance(grad_accum, bool) or grad_accum < 1:
        raise ValueError(f"gradient_accumulation_steps must be an int >= 1; received "
                         f"{grad_accum!r}")
    if max_grad_norm is not None and not (isinstance(max_grad_norm, (int, float))
                                          and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be None or a number > 0; received {max_grad_norm!r}")


def check_accelerator(accelerator, mixed_precision, cpu: bool, grad_accum: int) -> None:
    """``fit(accelerator=...)``: an ``accelerate.Accelerator`` whose settings the three
    keywords, when given, agree with."""
    from accelerate import Accelerator  # already imported by whoever built one

    if not isinstance(accelerator, Accelerator):
        raise TypeError(f"accelerator must be an accelerate.Accelerator; received "
                        f"{type(accelerator).__name__}")
    theirs = str(accelerator.mixed_precision)
    if mixed_precision is not None and mixed_precision != theirs:
        raise ValueError(f"mixed_precision={mixed_precision!r} conflicts with the accelerator's "
                         f"mixed_precision={theirs!r}: configure it on the Accelerator and "
                         "leave fit's mixed_precision out")
    if cpu and accelerator.device.type != "cpu":
        raise ValueError(f"cpu=True conflicts with the accelerator's device "
                         f"{str(accelerator.device)!r}: build it with Accelerator(cpu=True)")
    if grad_accum != 1 and grad_accum != accelerator.gradient_accumulation_steps:
        raise ValueError(f"gradient_accumulation_steps={grad_accum} conflicts with the "
                         f"accelerator's gradient_accumulation_steps="
                         f"{accelerator.gradient_accumulation_steps}: set it on the Accelerator")


def monitor_message(monitor: str, columns: list, has_val: bool) -> str:
    msg = f"monitor {monitor!r} is not a column this run produces; available: {columns}"
    if monitor.startswith("val_") and not has_val:
        msg += ". Validation columns need val_data: pass fit(..., val_data=...)"
    return msg


def check_metrics(metrics_dict: Optional[dict], outputs: Iterable[str] = ()) -> tuple:
    """``(flat, metric_outputs)``: ``metrics_dict`` flattened, and which output each metric reads.

    ``{name: metric}`` metrics see the whole output; ``{output: {name: metric}}``
    (a net with several outputs, ``outputs`` being ``loss_fn``'s keys) become
    ``"<output>_<name>"`` reading ``preds[output]`` and ``labels[output]``.
    """
    if metrics_dict is None:
        return {}, {}
    if not isinstance(metrics_dict, dict):
        raise TypeError(f"metrics_dict must be a dict of name -> torchmetrics Metric; received "
                        f"{type(metrics_dict).__name__}")
    outputs = list(outputs)
    flat, metric_outputs = {}, {}
    for name, metric in metrics_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"metrics_dict keys must be str; received {name!r}")
        if isinstance(metric, dict):
            if name not in outputs:
                raise ValueError(
                    f"metrics_dict[{name!r}] is a dict of per-output metrics, so {name!r} must be "
                    f"an output of loss_fn; loss_fn's outputs are {sorted(outputs)}"
                    + ("" if outputs else " (loss_fn is not a dict {output_name: loss})"))
            for inner, m in metric.items():
                if not isinstance(inner, str):
                    raise TypeError(f"metrics_dict[{name!r}] keys must be str; received {inner!r}")
                _check_metric(m, f"metrics_dict[{name!r}][{inner!r}]")
                flat[f"{name}_{inner}"] = m
                metric_outputs[f"{name}_{inner}"] = name
        else:
            _check_metric(metric, f"metrics_dict[{name!r}]")
            flat[name] = metric
    return flat, metric_outputs


def is_torchmetrics_metric(obj) -> bool:
    """Whether ``obj`` is a torchmetrics ``Metric``, without importing torchmetrics.

    torchmetrics takes seconds to import; an object can only be one of its metrics once
    torchmetrics is imported, so an unimported torchmetrics answers False.

    Example:
        >>> is_torchmetrics_metric(len)
        False
    """
    torchmetrics = sys.modules.get("torchmetrics")
    return torchmetrics is not None and isinstance(obj, torchmetrics.Metric)


def _check_metric(metric, where: str) -> None:
    if not (is_torchmetrics_metric(metric) or callable(metric)):
        raise TypeError(f"{where} must be a torchmetrics Metric or a callable fn(preds, labels); "
                        f"received {type(metric).__name__}")


def check_net(net):
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module; received {type(net).__name__}")
    return net


def check_loss_fn(loss_fn):
    """A callable ``loss_fn(preds, labels)``, a dict ``{output_name: loss}``, or None (the net
    returns its own loss)."""
    if loss_fn is None:
        return None
    if isinstance(loss_fn, dict):
        if not loss_fn:
            raise ValueError("loss_fn is an empty dict; a dict loss_fn needs one loss per output")
        for key, fn in loss_fn.items():
            if not isinstance(key, str):
                raise TypeError(f"loss_fn dict keys must be str output names; received {key!r}")
            if not callable(fn):
                raise TypeError(f"loss_fn[{key!r}] must be callable as loss(preds, labels); "
                                f"received {type(fn).__name__}")
        return dict(loss_fn)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(preds, labels), a dict "
                        f"{{output_name: loss}}, or None for a net returning its own loss; "
                        f"received {type(loss_fn).__name__}")
    return loss_fn


def loss_modules(loss_fn) -> list:
    """The ``torch.nn.Module`` losses in ``loss_fn`` (one, or the values of a dict)."""
    losses = loss_fn.values() if isinstance(loss_fn, dict) else [loss_fn]
    return [fn for fn in losses if isinstance(fn, torch.nn.Module)]


def check_label_keys(label_keys) -> tuple:
    if isinstance(label_keys, str) or not isinstance(label_keys, (list, tuple)) or not label_keys \
            or not all(isinstance(k, str) for k in label_keys):
        raise TypeError(f"label_keys must be a non-empty list of str keys; received "
                        f"{type(label_keys).__name__} {label_keys!r}")
    return tuple(label_keys)


def check_steps(name: str, value) -> Optional[int]:
    """None or an int >= 1, for ``steps_per_epoch``, ``validation_steps`` and the like."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None or an int >= 1; received {value!r}")
    return value


def check_validation_freq(validation_freq):
    """An int >= 1 (validate every that many epochs) or a collection of epoch numbers."""
    if isinstance(validation_freq, int) and not isinstance(validation_freq, bool):
        if validation_freq < 1:
            raise ValueError(f"validation_freq must be an int >= 1 or a list of epochs; "
                             f"received {validation_freq!r}")
        return validation_freq
    if isinstance(validation_freq, (list, tuple, set, range)) and all(
            isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in validation_freq):
        return frozenset(validation_freq)
    raise TypeError(f"validation_freq must be an int >= 1 or a list of epoch numbers >= 1; "
                    f"received {type(validation_freq).__name__} {validation_freq!r}")


def check_initial_epoch(initial_epoch, epochs):
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int) or initial_epoch < 0:
        raise ValueError(f"initial_epoch must be an int >= 0; received {initial_epoch!r}")
    if initial_epoch >= epochs:
        raise ValueError(f"initial_epoch={initial_epoch} leaves nothing to train: epochs is the "
                         f"last epoch's number (as in Keras) and must be > initial_epoch; "
                         f"received epochs={epochs}")
    return initial_epoch


def check_monitor(monitor) -> str:
    if not isinstance(monitor, str):
        raise TypeError(f"monitor must be a str column name; received {type(monitor).__name__}")
    return monitor


def check_optimizer(optimizer, net, loss_fn):
    """``optimizer`` when it is an Optimizer over the net's (or a loss module's) parameters."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer; received "
                        f"{type(optimizer).__name__}")
    check_optimizer_params(optimizer, net, loss_fn)
    return optimizer


def check_optimizer_params(optimizer, net, loss_fn) -> None:
    """Every optimized tensor must belong to the net (or to a loss_fn module)."""
    known = {id(p) for p in net.parameters()}
    for module in loss_modules(loss_fn):
        known |= {id(p) for p in module.parameters()}
    stray = [tuple(p.shape) for g in optimizer.param_groups for p in g["params"]
             if id(p) not in known]
    if stray:
        raise ValueError(
            f"the optimizer holds {len(stray)} parameter tensor(s) that are not in net "
            f"(shapes {stray[:3]}{'...' if len(stray) > 3 else ''}); build it from "
            "net.parameters() of the net passed to KerasModel (was it made for another "
            "net instance?)")


def check_subclass(cls, base: type, what: str) -> type:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{what} must be a subclass of kerastorch.{base.__name__}; "
                        f"received {cls!r}")
    return cls
