"""Resumable training state: everything needed to continue a run exactly, in one file.

The state is a dict of tensors and plain Python values saved with ``torch.save``
and loaded with ``weights_only=True``, so a tampered file cannot run code. RNG
states are stored as tensors for the same reason.
"""

from __future__ import annotations

import os
import random
import shutil
from typing import Any, List, Optional

import numpy as np
import torch

from .accelerate_compat import loader_generator
from .files import atomic_save, is_sharded, load_weights_only, net_weights
from .userwarn import warn_user

__all__ = ["get_rng_state", "set_rng_state", "loader_rng_state", "set_loader_rng_state",
           "metric_states", "load_metric_states", "save_training_state", "load_training_state",
           "save_fit_state", "load_fit_state", "shards_folder", "StepStates"]

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


def loader_rng_state(loader: Any) -> dict:
    """The RNG states a pass over ``loader`` draws from: the global ones and the loader's
    shuffling generator (see ``accelerate_compat.loader_generator``)."""
    generator = loader_generator(loader)
    return {"rng": get_rng_state(),
            "loader_generator": None if generator is None else generator.get_state()}


def set_loader_rng_state(loader: Any, snapshot: dict) -> None:
    """Restore what :func:`loader_rng_state` returned."""
    set_rng_state(snapshot["rng"])
    generator = loader_generator(loader)
    if generator is not None and snapshot["loader_generator"] is not None:
        generator.set_state(snapshot["loader_generator"])


def _metric_modules(metric: Any) -> list:
    """``metric`` and the torchmetrics Metrics nested in it (duck-typed: no torchmetrics import)."""
    return [m for m in metric.modules() if hasattr(m, "metric_state") and hasattr(m, "_defaults")]


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list):  # a "cat" state: a list of tensors
        return [_cpu(v) for v in value]
    return value


def _to(value: Any, device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value


def metric_states(metrics: dict) -> dict:
    """What each torchmetrics metric has accumulated so far (its ``metric_state`` and update
    count, and those of the metrics nested in it), on the CPU; a host sync."""
    return {name: [{"state": {k: _cpu(v) for k, v in m.metric_state.items()},
                    "updates": m._update_count} for m in _metric_modules(metric)]
            for name, metric in metrics.items()}


def load_metric_states(metrics: dict, states: dict) -> None:
    """Put :func:`metric_states`' values back, so ``compute()`` sees the same updates."""
    for name, metric in metrics.items():
        modules = _metric_modules(metric)
        saved = states.get(name)
        if saved is None or len(saved) != len(modules):
            raise ValueError(f"resume: the saved state has no matching state for metric "
                             f"{name!r}; resume with the metrics_dict the state was saved with")
        for module, entry in zip(modules, saved):
            for key, value in entry["state"].items():
                setattr(module, key, _to(value, module.device))
            module._update_count = entry["updates"]
            module._computed = None  # compute() must not return a cached value


def save_training_state(path: str, *, epoch: int, net, optimizer,
                        lr_scheduler=None, scaler=None, callback_states: dict,
                        rng_states: List[dict],
                        extra: Optional[dict] = None) -> None:
    """Write the state at the end of ``epoch`` atomically to ``path``.

    ``net`` is a module or its state dict already taken (a sharded net's, gathered);
    ``optimizer`` may be None (a sharded one is saved beside the file, see
    :func:`save_fit_state`). ``rng_states`` holds one entry per process, so each rank
    gets its own back; ``callback_states`` maps each callback's ``state_key`` to its state.
    """
    state: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "net": net if isinstance(net, dict) else net.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
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


def save_fit_state(model, path: str, epoch: int, callbacks, train_dl, *,
                   step_states: Optional["StepStates"] = None,
                   progress: Optional[tuple] = None) -> None:
    """Write ``model``'s training state after ``epoch`` completed epochs (rank 0 writes, all
    wait). With ``progress``, ``(batches, sums, count)`` of the train EpochRunner, the state
    is taken inside epoch ``epoch + 1`` (see :class:`StepStates`).

    A sharded net (FSDP, DeepSpeed: ``model.is_sharded``) is never read with
    ``state_dict()``: every process joins ``model.full_state_dict()`` (Accelerate's
    ``get_state_dict``) for the file's ``"net"``, and Accelerate's ``save_state`` writes
    the net and optimizer shards to ``<path>.accelerate/<tag>/``, a new folder per state;
    the file names its folder, and once it is written the older folders are removed, so a
    kill at any moment leaves a file and the folder it names.
    """
    from accelerate.utils import gather_object

    acc = model.accelerator
    # Accelerator.step counts the batches of the current accumulation (it decides when
    # gradients sync), so a resume inside an accumulation or a steps_per_epoch pass needs it
    extra = {"stopped": model.stop_training, "accelerator_step": acc.step}
    generator = loader_generator(train_dl)
    if generator is not None:
        extra["loader_generator"] = generator.get_state()
    if step_states is not None:
        extra["optimizer_steps"] = step_states.optimizer_steps
    own: dict = {"rng": get_rng_state()}
    if hasattr(train_dl, "kerastorch_state"):  # steps_per_epoch: where the loader's pass is
        own["loader_position"] = train_dl.kerastorch_state()
    if progress is not None:
        extra["mid_epoch"] = {"epoch": epoch + 1, "batches": progress[0],
                              "lr": step_states.lr}
        own.update(step_states.rank_progress(*progress))
    net, optimizer = model.unwrapped_net, model.optimizer
    if is_sharded(model):  # collectives: every process takes part
        net, optimizer = net_weights(model), None
        extra["shards"] = _save_shards(acc, path, f"epoch{epoch}" if progress is None
                                       else f"epoch{epoch}-step{step_states.optimizer_steps}")
    # every rank's RNG (and epoch progress) goes into rank 0's one file
    ranks = gather_object([own]) if acc.num_processes > 1 else [own]
    if acc.is_main_process:
        extra["ranks"] = [{k: v for k, v in r.items() if k != "rng"} for r in ranks]
        save_training_state(
            path, epoch=epoch, net=net, optimizer=optimizer,
            lr_scheduler=model.lr_scheduler, scaler=acc.scaler,
            callback_states=callbacks.state_dict(),
            rng_states=[r["rng"] for r in ranks], extra=extra)
        if "shards" in extra:
            _remove_other_shards(path, extra["shards"])
    acc.wait_for_everyone()


def shards_folder(path: str) -> str:
    """Where the net and optimizer shards of the state file ``path`` are saved."""
    return f"{path}.accelerate"


def _save_shards(acc, path: str, tag: str) -> str:
    if acc.project_configuration.automatic_checkpoint_naming:
        raise ValueError("the Accelerator's ProjectConfiguration has automatic_checkpoint_naming"
                         "=True, which makes save_state ignore the folder kerastorch saves a "
                         "sharded net's state to; pass an Accelerator without it")
    acc.save_state(os.path.join(shards_folder(path), tag))
    return tag


def _remove_other_shards(path: str, keep: str) -> None:
    folder = shards_folder(path)
    for name in os.listdir(folder):
        if name != keep:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def load_fit_state(model, path: str, callbacks, train_dl, *, epoch_runner=None,
                   step_states: Optional["StepStates"] = None) -> tuple:
    """Restore a state written by :func:`save_fit_state`.

    Returns:
        ``(epochs_done, resumed)``: ``resumed`` is None for a state taken at an epoch end;
        for one taken inside an epoch (restored into ``epoch_runner``: its running sums
        and metric states), a dict with the ``"batches"`` already trained on, the
        epoch's ``"lr"``, the RNG states the pass started from (``"pass_start"``, None
        under ``steps_per_epoch``, whose loader keeps its own) and those of the saved
        moment (``"rng"``), for ``data.resume_epoch``.
    """
    state = load_training_state(path)
    acc = model.accelerator
    extra, rank = state["extra"], acc.process_index
    ranks = extra.get("ranks") or [{"loader_position": extra.get("loader_position")}]
    own = ranks[min(rank, len(ranks) - 1)]
    if "mid_epoch" in extra:  # before anything changes
        _check_mid_epoch(extra, own, len(ranks), acc.num_processes, train_dl)
    if ("shards" in extra) != is_sharded(model):
        raise ValueError(f"resume: {path!r} was saved from a {'' if 'shards' in extra else 'not '}"
                         "sharded net (FSDP or DeepSpeed); resume under the same setup")
    _load_training_objects(model, state, callbacks, path)
    rng = state["rng"][min(rank, len(state["rng"]) - 1)]
    set_rng_state(rng)
    generator = loader_generator(train_dl)
    if generator is not None and "loader_generator" in extra:
        generator.set_state(extra["loader_generator"])
    _load_loader_position(train_dl, own.get("loader_position"))
    if "accelerator_step" in extra:
        acc.step = extra["accelerator_step"]
    if step_states is not None:
        step_states.optimizer_steps = extra.get("optimizer_steps", 0)
    resumed = None
    if "mid_epoch" in extra:
        _restore_progress(epoch_runner, own, acc.device)
        resumed = {**extra["mid_epoch"], "pass_start": own["pass_start"],
                   "rng": {"rng": rng, "loader_generator": extra.get("loader_generator")}}
    if extra.get("stopped"):
        # the saved run had finished by early stopping: resuming must not train on
        model.stop_training = True
        warn_user(f"resume: the saved run stopped early after epoch {state['epoch']}; "
                  "nothing left to train (fit without resume to train further)")
    return int(state["epoch"]), resumed


def _load_training_objects(model, state: dict, callbacks, path: str) -> None:
    """The net, optimizer, scheduler, AMP scaler and callback states of ``state``."""
    shards = state["extra"].get("shards")
    if shards is not None:
        # a collective; it sets the RNG states and Accelerator.step too, which the
        # caller sets again from the state afterwards
        model.accelerator.load_state(os.path.join(shards_folder(path), shards))
    else:
        model.unwrapped_net.load_state_dict(state["net"])
        model.optimizer.load_state_dict(state["optimizer"])
    if model.lr_scheduler is not None and state["lr_scheduler"] is not None:
        model.lr_scheduler.load_state_dict(state["lr_scheduler"])
    scaler = model.accelerator.scaler
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    for key in callbacks.load_state_dict(state["callbacks"]):
        warn_user(f"resume: no saved state for callback {key}; it starts fresh")


def _load_loader_position(train_dl, position) -> None:
    if not hasattr(train_dl, "load_kerastorch_state"):
        return
    if position is None:
        warn_user("resume: the saved state has no loader position (it was saved without "
                  "steps_per_epoch), so the loader starts a new pass")
    else:
        train_dl.load_kerastorch_state(position)


def _check_mid_epoch(extra: dict, own: dict, saved_ranks: int, processes: int,
                     train_dl) -> None:
    """A state taken inside an epoch continues only where the same data pass can be replayed."""
    where = (f"the state was saved inside epoch {extra['mid_epoch']['epoch']} "
             f"({extra['mid_epoch']['batches']} batches in)")
    if saved_ranks != processes:
        raise ValueError(f"resume: {where} by {saved_ranks} process(es), and each process's "
                         f"part of the epoch is in it; resume with {saved_ranks} process(es) "
                         f"(received {processes})")
    saved_steps = own.get("pass_start") is None
    if saved_steps != hasattr(train_dl, "load_kerastorch_state"):
        raise ValueError(f"resume: {where} " + ("with steps_per_epoch; pass the same "
                         "steps_per_epoch" if saved_steps else "without steps_per_epoch; "
                         "resume without it") + " to continue that epoch")


def _restore_progress(epoch_runner, own: dict, device) -> None:
    if epoch_runner is None:
        raise ValueError("resume: a state saved inside an epoch needs the train EpochRunner")
    sums = {k: v.to(device) for k, v in own["sums"].items()}
    count = own["count"].to(device) if isinstance(own["count"], torch.Tensor) else own["count"]
    epoch_runner.resume_from(own["batches"], sums, count)
    epoch_runner.step_runner.skipped_steps = own["skipped_steps"]
    load_metric_states(epoch_runner.step_runner.metrics_dict, own["metrics"])


class StepStates:
    """``fit(save_state_every_steps=N)``: writes the resumable state every N optimizer steps.

    It is the train :class:`~kerastorch.runners.EpochRunner`'s ``after_step``, called
    after each batch (only when set, so a fit without it pays nothing). It counts the
    steps whose gradients synced and whose update ran (not a micro-batch of a gradient
    accumulation, not a step ``skip_nonfinite`` skipped) over the whole fit; the count is
    part of every state, so it continues after a resume. The state holds, besides what
    an epoch-end state holds, the epoch's running loss sums and metric states of every
    process and the RNG states its training pass started from, so a resume replays the
    pass to the saved batch (see ``data.resume_epoch``).

    Args:
        model: the ``KerasModel`` being fitted.
        path: the state file (replaced atomically at every write).
        every: N.
        callbacks: the fit's ``CallbackList``.
        train_dl: the training loader fit iterates.
        epoch_runner: the train ``EpochRunner``.
    """

    def __init__(self, model, path: str, every: int, callbacks, train_dl, epoch_runner):
        self.model, self.path, self.every = model, path, every
        self.callbacks, self.train_dl, self.epoch_runner = callbacks, train_dl, epoch_runner
        self.optimizer_steps = 0
        self.epoch, self.lr, self.pass_start = 0, None, None

    def begin_epoch(self, epoch: int, lr: float, pass_start: Optional[dict] = None) -> None:
        """Before the training pass of ``epoch``: its lr (a history column) and the RNG
        states the pass starts from (taken now unless given; a ``steps_per_epoch`` loader
        keeps its own)."""
        self.epoch, self.lr = epoch, lr
        if pass_start is None and not hasattr(self.train_dl, "kerastorch_state"):
            pass_start = loader_rng_state(self.train_dl)
        self.pass_start = pass_start

    def __call__(self, batches: int, sums: dict, count, step_logs: dict) -> None:
        accelerator = self.model.accelerator
        # empty logs: skip_nonfinite skipped the update; no sync: a micro-batch
        if not step_logs or not accelerator.sync_gradients:
            return
        self.optimizer_steps += 1  # a Python int: no host sync
        if self.optimizer_steps % self.every == 0:
            save_fit_state(self.model, self.path, self.epoch - 1, self.callbacks,
                           self.train_dl, step_states=self, progress=(batches, sums, count))

    def rank_progress(self, batches: int, sums: dict, count) -> dict:
        """This process's part of the epoch so far, on the CPU (a host sync, per write only)."""
        step_runner = self.epoch_runner.step_runner
        return {"batches": batches, "pass_start": self.pass_start,
                "sums": {k: _cpu(v) for k, v in sums.items()}, "count": _cpu(count),
                "skipped_steps": step_runner.skipped_steps,
                "metrics": metric_states(step_runner.metrics_dict)}
