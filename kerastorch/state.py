"""Resumable training state: everything needed to continue a run exactly, in one file.

The state is a dict of tensors and plain Python values saved with ``torch.save``
and loaded with ``weights_only=True``, so a tampered file cannot run code. RNG
states are stored as tensors for the same reason.
"""

from __future__ import annotations

import random
from typing import Any, List, Optional

import numpy as np
import torch

from .accelerate_compat import loader_generator
from .files import atomic_save, load_weights_only
from .userwarn import warn_user

__all__ = ["get_rng_state", "set_rng_state", "save_training_state", "load_training_state",
           "save_fit_state", "load_fit_state"]

# 2: callback states keyed by Callback.state_key (1 matched them by position)
FORMAT_VERSION = 2


def get_rng_state() -> dict:
    """The Python, numpy, torch (and CUDA) generator states as tensors and numbers."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": py_version,
        "python_gauss": py_gauss,
        "numpy_kind": np_kind,
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate((state["python_version"], tuple(state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state((state["numpy_kind"], state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str, *, epoch: int, net: torch.nn.Module, optimizer,
                        lr_scheduler=None, scaler=None, callback_states: dict,
                        rng_states: List[dict],
                        extra: Optional[dict] = None) -> None:
    """Write the state at the end of ``epoch`` atomically to ``path``.

    ``rng_states`` holds one entry per process, so each rank gets its own back;
    ``callback_states`` maps each callback's ``state_key`` to its state.
    """
    state: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "net": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": None if lr_scheduler is None else lr_scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "callbacks": callback_states,
        "rng": rng_states,
        "extra": extra or {},
    }
    atomic_save(state, path)


def load_training_state(path: str) -> dict:
    """Load a state written by :func:`save_training_state` (weights-only unpickling).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is corrupt, holds code, or is not a training state.
    """
    state = load_weights_only(path, "training state")
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path!r} is not a kerastorch training state (format "
                         f"{FORMAT_VERSION}); received {type(state).__name__}")
    return state


def save_fit_state(model, path: str, epoch: int, callbacks, train_dl) -> None:
    """Write ``model``'s training state at the end of ``epoch`` (rank 0 writes, all wait)."""
    from accelerate.utils import gather_object

    acc = model.accelerator
    extra = {"stopped": model.stop_training}
    generator = loader_generator(train_dl)
    if generator is not None:
        extra["loader_generator"] = generator.get_state()
    if hasattr(train_dl, "kerastorch_state"):  # steps_per_epoch: where the loader's pass is
        extra["loader_position"] = train_dl.kerastorch_state()
    # every rank's RNG goes into rank 0's one file
    rng_states = gather_object([get_rng_state()]) if acc.num_processes > 1 \
        else [get_rng_state()]
    if acc.is_main_process:
        save_training_state(
            path, epoch=epoch, net=model.unwrapped_net, optimizer=model.optimizer,
            lr_scheduler=model.lr_scheduler, scaler=acc.scaler,
            callback_states=callbacks.state_dict(),
            rng_states=rng_states, extra=extra)
    acc.wait_for_everyone()


def load_fit_state(model, path: str, callbacks, train_dl) -> int:
    """Restore a state written by :func:`save_fit_state`; returns the epochs already done."""
    state = load_training_state(path)
    model.unwrapped_net.load_state_dict(state["net"])
    model.optimizer.load_state_dict(state["optimizer"])
    if model.lr_scheduler is not None and state["lr_scheduler"] is not None:
        model.lr_scheduler.load_state_dict(state["lr_scheduler"])
    if model.accelerator.scaler is not None and state["scaler"] is not None:
        model.accelerator.scaler.load_state_dict(state["scaler"])
    for key in callbacks.load_state_dict(state["callbacks"]):
        warn_user(f"resume: no saved state for callback {key}; it starts fresh")
    rng = state["rng"]
    set_rng_state(rng[min(model.accelerator.process_index, len(rng) - 1)])
    generator = loader_generator(train_dl)
    if generator is not None and "loader_generator" in state["extra"]:
        generator.set_state(state["extra"]["loader_generator"])
    position = state["extra"].get("loader_position")
    if hasattr(train_dl, "load_kerastorch_state"):
        if position is None:
            warn_user("resume: the saved state has no loader position (it was saved without "
                      "steps_per_epoch), so the loader starts a new pass")
        else:
            train_dl.load_kerastorch_state(position)
    if state["extra"].get("stopped"):
        # the saved run had finished by early stopping: resuming must not train on
        model.stop_training = True
        warn_user(f"resume: the saved run stopped early after epoch {state['epoch']}; "
                  "nothing left to train (fit without resume to train further)")
    return int(state["epoch"])
