"""``fit_ddp``: ``fit`` on several processes started from a notebook, with the result brought back.

Accelerate's ``notebook_launcher`` forks the processes (torch's elastic launcher, one
process per GPU, or gloo between CPU processes). A forked process inherits the model,
the data and the fit arguments as they are in the notebook's memory (nothing is
pickled), trains its copy, and ends; nothing it changes comes back by itself. So rank 0
writes the history, the net's weights (the best ones, restored) and the optimizer's
state to a temporary folder, and the notebook loads them into its own model. A process
that raises writes its exception there too, and the notebook re-raises it.
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import json
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Optional

import torch
from tqdm.std import tqdm as text_tqdm

from .accelerate_compat import forget_prepared, reset_for_launch
from .callbacks import progress
from .callbacks.history import History
from .checks import reject_unknown
from .errors import add_note
from .files import atomic_open, atomic_save, cpu_state_dict, load_weights_only

__all__ = ["fit_ddp", "check_launch"]

RESULT = "result.pt"
ERROR_PREFIX = "error-rank"
# torch's elastic launcher installs handlers for these and leaves them installed: the
# notebook's next Ctrl-C would raise its SignalException instead of KeyboardInterrupt
LAUNCH_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


def fit_ddp(model: Any, num_processes: int, train_data, val_data=None, **fit_kwargs):
    """Run ``model.fit(train_data, val_data, **fit_kwargs)`` on ``num_processes`` processes.

    See :meth:`kerastorch.KerasModel.fit_ddp`. ``num_processes=1`` is ``model.fit`` in
    this process. Afterwards ``model.net`` holds rank 0's final weights (the best ones
    when ``fit`` restored them), ``model.optimizer`` its state, and ``model.history``
    the history, which is returned.

    Raises:
        TypeError, ValueError: bad ``num_processes``, an unknown fit keyword, or
            ``accelerator=``; before anything starts.
        RuntimeError: this process cannot fork training processes (see
            :func:`check_launch`), or a process died without a Python exception.
        KeyboardInterrupt: Ctrl-C (SIGINT) while the processes ran; they are stopped
            and ``model`` is unchanged.
        Exception: what a training process raised, re-raised here with its message
            (a built-in exception keeps its type; others become ``RuntimeError``) and a
            note holding the rank and that process's traceback.
    """
    check_launch(model, num_processes, train_data, val_data, fit_kwargs)
    if num_processes == 1:
        return model.fit(train_data, val_data, **fit_kwargs)
    # heavy, and only needed here
    from accelerate import notebook_launcher

    _import_what_each_process_would()
    folder = tempfile.mkdtemp(prefix="kerastorch-fit-ddp-")
    try:
        reset_for_launch()
        with _signal_handlers_kept():
            try:
                notebook_launcher(_train_in_process,
                                  (model, train_data, val_data, fit_kwargs, folder),
                                  num_processes=num_processes, use_port=str(_free_port()))
            except Exception as exc:
                _raise_launch_failure(exc, folder)
        return _take_result(model, folder, fit_kwargs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _raise_launch_failure(exc: Exception, folder: str) -> None:
    """Raise what the notebook should see for ``exc``, raised by the launch.

    The elastic launcher's exception classes are recognised through ``sys.modules``:
    the launch imported them, and ``import kerastorch`` need not.
    """
    elastic = "torch.distributed.elastic.multiprocessing"
    failed = getattr(sys.modules.get(f"{elastic}.errors"), "ChildFailedError", ())
    signalled = getattr(sys.modules.get(f"{elastic}.api"), "SignalException", ())
    if isinstance(exc, failed):
        error = _reported_error(folder)
        if error is None:
            raise RuntimeError(
                "fit_ddp: a training process failed without reporting an exception from fit "
                "(killed, out of memory, or failed outside fit); see the processes' output "
                "above and the cause below") from exc
        raise error from None
    if isinstance(exc, signalled) and exc.sigval == signal.SIGINT:  # Ctrl-C
        raise KeyboardInterrupt("fit_ddp was interrupted: its processes were stopped and "
                                "this model is unchanged") from None
    raise exc


def check_launch(model: Any, num_processes: int, train_data, val_data, fit_kwargs: dict) -> None:
    """What must hold before ``fit_ddp`` forks, each failure naming its fix.

    Raises:
        TypeError: ``num_processes`` is not an int, ``train_data`` is None, a keyword is
            not one of ``fit``'s, or (only where processes are spawned, not forked) the
            model, data or a fit argument cannot be pickled.
        ValueError: ``num_processes < 1``, more processes than GPUs, or ``accelerator=``.
        RuntimeError: no ``fork`` start method (Windows), CUDA already initialized in
            this process, or this process is already one of a multi-process run.
    """
    if not isinstance(num_processes, int) or isinstance(num_processes, bool):
        raise TypeError(f"num_processes must be an int >= 1 (the processes to train on); "
                        f"received {num_processes!r} of type {type(num_processes).__name__}")
    if num_processes < 1:
        raise ValueError(f"num_processes must be an int >= 1 (the processes to train on); "
                         f"received {num_processes!r}")
    if train_data is None:
        raise TypeError("fit_ddp() needs train_data, as fit does; received None")
    known = _fit_keywords(type(model))
    reject_unknown({k: v for k, v in fit_kwargs.items() if k not in known}, "fit_ddp", known)
    if fit_kwargs.get("accelerator") is not None:
        raise ValueError(
            "fit_ddp builds each process's Accelerator; an Accelerator made in this notebook "
            "is a single-process one. Pass mixed_precision/gradient_accumulation_steps instead "
            "(or run a script under `accelerate launch` with fit(accelerator=...))")
    if num_processes == 1:
        return
    _check_process(num_processes, bool(fit_kwargs.get("cpu", False)))
    if _start_method() != "fork":
        _check_picklable({"the model": model, "train_data": train_data, "val_data": val_data,
                          **{f"fit argument {k}": v for k, v in fit_kwargs.items()}})


def _fit_keywords(cls: type) -> list:
    """The keywords the ``fit`` methods of ``cls`` and its bases name (a subclass's
    ``fit(self, train_data, val_data, **kwargs)`` passes its bases' on)."""
    names: dict = {}
    for klass in cls.__mro__:
        if "fit" in vars(klass):
            for p in list(inspect.signature(vars(klass)["fit"]).parameters.values())[3:]:
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    names[p.name] = None
    return list(names)


def _check_process(num_processes: int, cpu: bool) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        raise RuntimeError(
            "fit_ddp forks its training processes, and this platform has no fork start "
            "method (Windows): put the training in a script and run it with `accelerate "
            "launch` or `torchrun --nproc_per_node N script.py`, calling model.fit there")
    world = os.environ.get("WORLD_SIZE", "1")
    if (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
            (world.isdigit() and int(world) > 1):
        raise RuntimeError(
            f"fit_ddp starts its own processes, but this process is already one of a "
            f"multi-process run (WORLD_SIZE={world}, under torchrun or accelerate launch): "
            "call model.fit(...) there instead")
    if torch.cuda.is_initialized():
        raise RuntimeError(
            "CUDA was initialized in this process before fit_ddp, and forked processes cannot "
            "use it then: restart the kernel and call fit_ddp before anything touches the GPU "
            "(no .cuda()/.to('cuda'), no fit/evaluate/predict on the GPU before it)")
    gpus = torch.cuda.device_count()  # NVML's count: does not initialize CUDA
    if not cpu and 0 < gpus < num_processes:
        raise ValueError(
            f"num_processes={num_processes} but this machine has {gpus} GPU(s), one per "
            f"process: pass num_processes <= {gpus}, or cpu=True to train on CPU processes")


def _start_method() -> str:
    """How ``notebook_launcher`` starts processes: ``spawn`` for ROCm and XPU, else ``fork``."""
    xpu = getattr(torch, "xpu", None)
    if torch.version.hip is not None or (xpu is not None and xpu.is_available()):
        return "spawn"
    return "fork"


def _check_picklable(objects: dict) -> None:
    for what, obj in objects.items():
        try:
            pickle.dumps(obj)
        except Exception as exc:
            raise TypeError(
                f"fit_ddp starts processes with 'spawn' on this machine (ROCm or XPU), which "
                f"pickles what each process needs, and {what} cannot be pickled "
                f"({type(exc).__name__}: {exc}): use no lambdas or local functions, and define "
                "the net's and the data's classes in an importable module, not the notebook"
            ) from exc


@contextlib.contextmanager
def _signal_handlers_kept():
    """Restore the handlers the elastic launcher replaces (main thread only; else none)."""
    names = [n for n in LAUNCH_SIGNALS if hasattr(signal, n)]
    main = threading.current_thread() is threading.main_thread()
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names} if main else {}
    try:
        yield
    finally:
        for name, handler in saved.items():
            if handler is not None:
                signal.signal(getattr(signal, name), handler)


def _import_what_each_process_would() -> None:
    """Import, once and before the fork, what every process would import after it.

    Each forked process inherits the notebook's imported modules. Left to them,
    ``datasets`` (which Accelerate's ``prepare_data_loader`` imports under several
    processes whenever it is installed) and pandas (the history frame) cost every
    process seconds, all at once, on every call.
    """
    import pandas  # noqa: F401
    from accelerate.utils import is_datasets_available

    if is_datasets_available():
        import datasets  # noqa: F401


def _free_port() -> int:
    """A free TCP port for the processes' rendezvous (not a fixed 29500 two notebooks share)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- in each training process ----------------------------------------------------------

def _train_in_process(model, train_data, val_data, fit_kwargs: dict, folder: str) -> None:
    # GNU OpenMP's thread pool does not survive fork: a forked process computing with more
    # than one thread hangs once the notebook has computed in parallel. One thread each is
    # also torchrun's default for several processes; the variable keeps Accelerate's
    # multi-CPU setup from raising it again (to cores / processes) when it is unset.
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    _text_progress_in_a_kernel()
    rank = int(os.environ.get("RANK", "0"))
    try:
        forget_prepared(model.net)  # a fit in the notebook marked it; DDP must wrap it here
        model.fit(train_data, val_data, **fit_kwargs)
        if model.is_main_process:
            scheduler = model.lr_scheduler
            atomic_save({
                "rows": [dict(row) for row in model.history_callback.rows],
                "net": cpu_state_dict(model.net),
                "optimizer": model.optimizer.state_dict(),
                "scheduler": None if scheduler is None else scheduler.state_dict(),
            }, os.path.join(folder, RESULT))
    except BaseException as exc:
        _report(folder, rank, exc)
        raise
    # a clean gloo shutdown: exiting with the process group alive can abort in C++ teardown
    model.accelerator.end_training()


def _text_progress_in_a_kernel() -> None:
    """Draw rank 0's progress as tqdm's text bar when the notebook is a Jupyter kernel.

    ipykernel forwards what a forked process writes to ``sys.stdout``/``sys.stderr`` to
    the cell, but refuses its widget messages ("attempted to send message from fork"),
    so ``tqdm.auto``'s widget would show nothing. Only this forked process is changed.
    """
    if type(sys.stderr).__module__.startswith("ipykernel"):
        progress.tqdm = text_tqdm


def _report(folder: str, rank: int, exc: BaseException) -> None:
    try:
        args = json.loads(json.dumps(list(exc.args)))
    except (TypeError, ValueError):
        args = [str(exc)]
    report = {"rank": rank, "world_size": os.environ.get("WORLD_SIZE", "?"),
              "module": type(exc).__module__, "type": type(exc).__qualname__, "args": args,
              "message": str(exc), "notes": [str(n) for n in getattr(exc, "__notes__", ())],
              "traceback": "".join(traceback.format_tb(exc.__traceback__)), "time": time.time()}
    with atomic_open(os.path.join(folder, f"{ERROR_PREFIX}{rank}.json"), "w") as f:
        json.dump(report, f)


# -- back in the notebook ----------------------------------------------------------------

def _reported_error(folder: str) -> Optional[Exception]:
    """The first exception a training process reported in ``folder``, rebuilt; None if none.

    The earliest report is the cause: the other ranks fail after it (their peer is gone).
    A built-in exception keeps its type and arguments; any other becomes a
    ``RuntimeError`` naming its type. Its notes, then a note with the rank and the
    process's traceback, are added.
    """
    reports = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(ERROR_PREFIX) and name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                reports.append(json.load(f))
    if not reports:
        return None
    first = min(reports, key=lambda r: r["time"])
    cls = getattr(builtins, first["type"], None) if first["module"] == "builtins" else None
    error = None
    if isinstance(cls, type) and issubclass(cls, Exception):
        with contextlib.suppress(Exception):
            error = cls(*first["args"])
    if error is None:
        name = first["type"] if first["module"] == "builtins" else \
            f"{first['module']}.{first['type']}"
        error = RuntimeError(f"{name}: {first['message']}")
    for note in first["notes"]:
        add_note(error, note)
    add_note(error, f"raised in fit_ddp's training process of rank {first['rank']} (of "
                    f"{first['world_size']}); its traceback, most recent call last:\n"
                    f"{first['traceback'].rstrip()}")
    return error


def _take_result(model: Any, folder: str, fit_kwargs: dict):
    path = os.path.join(folder, RESULT)
    if not os.path.exists(path):
        raise RuntimeError("fit_ddp: the training processes ended without rank 0's result")
    result = load_weights_only(path, "fit_ddp result")
    model.net.load_state_dict(result["net"])
    model.optimizer.load_state_dict(result["optimizer"])
    # a torch scheduler of the model's own continues; a recipe is rebuilt by each fit
    if result["scheduler"] is not None and model.lr_scheduler is not None and \
            getattr(model, "schedule", None) is None and "lr_scheduler" not in fit_kwargs:
        model.lr_scheduler.load_state_dict(result["scheduler"])
    history = History()
    history.rows = result["rows"]
    model.history_callback, model.history = history, history.to_frame()
    return model.history
