"""KerasModel: argument checks, the Accelerator lifecycle, fit/evaluate/predict, checkpoints."""

from __future__ import annotations

import copy
import difflib
import os
import sys
import warnings
from typing import Iterable, Optional

import pandas as pd
import torch
import torchmetrics
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import gather_object

from .callbacks.base import Callback, CallbackList
from .callbacks.checkpoint import ModelCheckpoint
from .callbacks.early_stopping import EarlyStopping
from .callbacks.monitor import check_mode
from .callbacks.progress import ProgressBar
from .data import as_dataloader, as_tensor, fast_loader, loader_length
from .files import atomic_save, check_writable, load_state_dict_file
from .history import History
from .interrupt import AbortTraining, InterruptGuard
from .runners import EpochRunner, StepRunner, disable_metric_sync
from .state import get_rng_state, load_training_state, save_training_state, set_rng_state

__all__ = ["KerasModel"]

MIXED_PRECISION = ("no", "fp16", "bf16")
# bumped whenever any KerasModel creates an Accelerator: Accelerate's state is
# process-wide, so a model whose Accelerator is older must build a new one
_accelerator_generation = 0
SCHEDULER_INTERVALS = ("epoch", "step")


class KerasModel:
    """A Keras-style trainer around a PyTorch ``net``.

    Args:
        net: the ``torch.nn.Module`` to train.
        loss_fn: ``loss_fn(preds, labels)`` returning a scalar tensor.
        metrics_dict: name -> torchmetrics ``Metric`` (or a plain callable
            ``fn(preds, labels)`` returning a per-batch scalar, averaged over
            samples). Each ``fit`` works on fresh copies. Defaults to None.
        optimizer: None means ``Adam(net.parameters(), lr=1e-3)``. Defaults to None.
        lr_scheduler: a ``torch.optim.lr_scheduler`` object; stepped once per epoch
            (``ReduceLROnPlateau`` receives the monitored value), or once per
            optimizer step with ``lr_scheduler_interval="step"``. Defaults to None.
        step_runner: a :class:`StepRunner` subclass to use instead of the class
            attribute ``step_runner_class``. Defaults to None.
        epoch_runner: an :class:`EpochRunner` subclass, likewise. Defaults to None.
        lr_scheduler_interval: ``"epoch"`` or ``"step"``. Defaults to ``"epoch"``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0) and None
        >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
        >>> model = KerasModel(nn.Linear(3, 2), nn.CrossEntropyLoss())
        >>> history = model.fit((X, y), epochs=2, ckpt_path=None, quiet=True)
        >>> list(history.columns)
        ['epoch', 'train_loss', 'lr']
    """

    step_runner_class = StepRunner
    epoch_runner_class = EpochRunner

    def __init__(self, net: torch.nn.Module, loss_fn, metrics_dict: Optional[dict] = None,
                 optimizer: Optional[torch.optim.Optimizer] = None, lr_scheduler=None, *,
                 step_runner: Optional[type] = None, epoch_runner: Optional[type] = None,
                 lr_scheduler_interval: str = "epoch"):
        if not isinstance(net, torch.nn.Module):
            raise TypeError(f"net must be a torch.nn.Module; received {type(net).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(preds, labels); "
                            f"received {type(loss_fn).__name__}")
        self.net = net
        self.loss_fn = loss_fn
        self.metrics_dict = _check_metrics(metrics_dict)
        if optimizer is None:
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        elif not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer; received "
                            f"{type(optimizer).__name__}")
        _check_optimizer_params(optimizer, net, loss_fn)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        if lr_scheduler_interval not in SCHEDULER_INTERVALS:
            raise ValueError(f"lr_scheduler_interval must be 'epoch' or 'step'; "
                             f"received {lr_scheduler_interval!r}")
        self.lr_scheduler_interval = lr_scheduler_interval
        if step_runner is not None:
            self.step_runner_class = _check_subclass(step_runner, StepRunner, "step_runner")
        if epoch_runner is not None:
            self.epoch_runner_class = _check_subclass(epoch_runner, EpochRunner, "epoch_runner")
        self.accelerator: Optional[Accelerator] = None
        self._accelerator_config: Optional[tuple] = None
        self._generation = -1
        self.history: Optional[pd.DataFrame] = None
        self.stop_training = False
        self.interrupted = False
        self.epochs: Optional[int] = None
        self.train_steps: Optional[int] = None

    # -- properties used by callbacks ---------------------------------------------

    @property
    def unwrapped_net(self) -> torch.nn.Module:
        """The user's net (never the DDP or autocast wrapper)."""
        return self.net

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    # -- fit -------------------------------------------------------------------

    def fit(self, train_data, val_data=None, epochs: int = 10, *,
            ckpt_path: Optional[str] = "checkpoint", patience: Optional[int] = 5,
            monitor: str = "val_loss", mode: str = "min",
            callbacks: Optional[Iterable[Callback]] = None, plot: bool = False,
            quiet: bool = False, mixed_precision: str = "no", cpu: bool = False,
            gradient_accumulation_steps: int = 1, max_grad_norm: Optional[float] = None,
            batch_size: int = 32, shuffle: bool = True, resume=False,
            state_path: Optional[str] = None, save_state_every: int = 1,
            skip_nonfinite: bool = False, fast_data: bool = True, compile: bool = False,
            log_dir: Optional[str] = None, **unknown) -> pd.DataFrame:
        """Train for up to ``epochs`` epochs and return the history DataFrame.

        Each epoch trains on ``train_data``, then evaluates ``val_data`` (if given),
        and appends one row: ``epoch``, ``train_loss``, ``train_<metric>``, ``lr``
        (the learning rate the epoch used), ``val_loss``, ``val_<metric>``.
        ``patience`` epochs without improvement of ``monitor`` stop training; the
        best weights by ``monitor`` are written to ``ckpt_path`` whenever they
        improve and are loaded back into the net when ``fit`` ends. With no
        ``val_data`` the default monitor ``"val_loss"`` becomes ``"train_loss"``.

        Args:
            train_data: a DataLoader, a Dataset, or an ``(X, y)`` pair of tensors/arrays.
            val_data: the same kinds, or None. Defaults to None.
            epochs: maximum number of epochs (>= 1). Defaults to 10.
            ckpt_path: file for the best weights; None writes nothing. Defaults to "checkpoint".
            patience: epochs without improvement before stopping; None never stops
                early. Defaults to 5.
            monitor: the history column that decides "best". Defaults to "val_loss".
            mode: "min" or "max". Defaults to "min".
            callbacks: extra ``Callback`` objects. Defaults to None.
            plot: draw the history live (see ``kerastorch.callbacks``). Defaults to False.
            quiet: write nothing to the terminal. Defaults to False.
            mixed_precision: "no", "fp16" (CUDA only; ignored on the CPU) or "bf16".
                Defaults to "no".
            cpu: force the CPU even when a GPU is present. Defaults to False.
            gradient_accumulation_steps: batches per optimizer step. Defaults to 1.
            max_grad_norm: clip the gradient norm to this; None never clips. Defaults to None.
            batch_size: batch size when the data is not already a DataLoader. Defaults to 32.
            shuffle: shuffle ``train_data`` when it is not already a DataLoader. Defaults to True.
            resume: True continues from ``state_path`` when that file exists (else starts
                fresh); a path continues from that file (which must exist). The net,
                optimizer, scheduler, AMP scaler, epoch counter, history, callback
                states and RNG states are restored, so the run continues exactly.
                Defaults to False.
            state_path: where the resumable state is written at epoch ends; None means
                ``ckpt_path + ".state.pt"`` (no state when ckpt_path is None too).
                Defaults to None.
            save_state_every: write the state every this many epochs; 0 never.
                Defaults to 1.
            skip_nonfinite: skip updates whose loss is NaN/inf (weights and optimizer
                unchanged; costs one host sync per step). Defaults to False.
            fast_data: slice batches straight from the tensors of an ``(X, y)`` pair or a
                plain DataLoader over a TensorDataset (same batches, order and RNG
                draws; see ``kerastorch.data.fast_loader``). Defaults to True.
            compile: run the net through ``torch.compile`` (``self.net`` stays the
                uncompiled module, sharing the weights). Defaults to False.
            log_dir: create ``log_dir/<YYYYmmdd-HHMMSS>/`` with ``log.log``, ``hparams.json``,
                ``history.csv``, TensorBoard events, ``curves.png``, ``best.pt`` (unless
                ckpt_path is None) and, for classification, ``confusion_matrix.png`` and
                ``classification_report.csv`` (see ``kerastorch.callbacks.RunDirectory``);
                None writes none of them. Defaults to None.

        Returns:
            The history ``pandas.DataFrame``, one row per epoch; also ``self.history``.
            After Ctrl-C (or a ``KeyboardInterrupt`` raised in a callback) training stops
            after the current batch, the best weights are restored and the rows of the
            completed epochs are returned; a second Ctrl-C aborts at once.

        Raises:
            TypeError, ValueError: bad arguments, detected before the first batch.
        """
        arguments = dict(locals())  # recorded in the run directory's hparams.json
        _reject_unknown(unknown, "fit", _FIT_KEYWORDS)
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False; received {compile!r}")
        _check_fit_args(epochs, mixed_precision, gradient_accumulation_steps, max_grad_norm,
                        patience)
        train_dl = as_dataloader(train_data, batch_size=batch_size, shuffle=shuffle,
                                 name="train_data")
        val_dl = None if val_data is None else as_dataloader(
            val_data, batch_size=batch_size, shuffle=False, name="val_data")
        _check_not_empty(train_dl, "train_data")
        _check_not_empty(val_dl, "val_data")
        monitor = self._resolve_monitor(monitor, mode, has_val=val_dl is not None)
        self._check_scheduler(epochs, loader_length(train_dl), gradient_accumulation_steps)
        state_path, resume_path = _state_paths(ckpt_path, state_path, resume, save_state_every)
        for path in (ckpt_path, state_path):
            if path is not None:
                check_writable(path)

        acc = self._accelerator_for(mixed_precision, cpu, gradient_accumulation_steps)
        train_dl, val_dl = (fast_loader(dl, acc, enabled=fast_data) for dl in (train_dl, val_dl))
        net, optimizer, train_dl, val_dl = self._prepare(acc, train_dl, val_dl)
        net = torch.compile(net) if compile else net  # compiles lazily, at the first batch
        history = History()
        cbs = CallbackList(self._fit_callbacks(history, ckpt_path, monitor, mode, patience,
                                               quiet, plot, callbacks, log_dir, arguments),
                           model=self)
        guard = InterruptGuard(message=not quiet and acc.is_main_process)
        train_epoch = self._make_epoch_runner(net, "train", optimizer, cbs, max_grad_norm,
                                              guard, skip_nonfinite)
        val_epoch = (self._make_epoch_runner(net, "val", None, cbs, interrupt=guard)
                     if val_dl is not None else None)
        self.epochs, self.train_steps = epochs, loader_length(train_dl)
        self.stop_training = self.interrupted = False
        try:
            cbs.call("on_fit_begin", {})
            done = 0 if resume_path is None else self._load_state(resume_path, cbs, train_dl)
            with guard:
                for epoch in range(done + 1, epochs + 1 if not self.stop_training else 0):
                    self._run_epoch(epoch, cbs, train_epoch, train_dl, val_epoch, val_dl,
                                    monitor)
                    if state_path is not None and epoch % save_state_every == 0:
                        self._save_state(state_path, epoch, cbs, train_dl)
                    if self.stop_training:
                        break
        except AbortTraining:
            raise
        except KeyboardInterrupt:
            self.interrupted = True
            warnings.warn(f"training interrupted during epoch {len(history.rows) + 1}; "
                          "returning the completed epochs with the best weights restored"
                          + (f"; resume from {state_path}" if state_path else ""),
                          UserWarning, stacklevel=2)
        finally:
            try:
                cbs.call("on_fit_end", {"epochs_completed": len(history.rows),
                                        "stopped_early": self.stop_training,
                                        "interrupted": self.interrupted,
                                        "error": sys.exc_info()[1]})
            finally:
                self.history = history.to_frame()
                acc.unwrap_model(net, keep_fp32_wrapper=False)
        return self.history

    def _run_epoch(self, epoch, cbs, train_epoch, train_dl, val_epoch, val_dl, monitor):
        cbs.call("on_epoch_begin", epoch, {})
        lr = self.optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, **train_epoch(train_dl), "lr": lr}
        if val_epoch is not None:
            row.update(val_epoch(val_dl))
        if monitor not in row:
            raise ValueError(_monitor_message(monitor, sorted(row), has_val=val_dl is not None))
        self._step_epoch_scheduler(row[monitor])
        skipped = train_epoch.step_runner.skipped_steps
        if skipped:
            train_epoch.step_runner.skipped_steps = 0
            warnings.warn(f"epoch {epoch}: skipped {skipped} step(s) whose loss was not finite",
                          UserWarning, stacklevel=3)
        cbs.call("on_epoch_end", epoch, row)

    def _step_epoch_scheduler(self, monitored: float) -> None:
        if self.lr_scheduler is None or self.lr_scheduler_interval != "epoch":
            return
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.lr_scheduler.step(monitored)
        else:
            self.lr_scheduler.step()

    # -- evaluate / predict --------------------------------------------------------

    def evaluate(self, val_data, quiet: bool = False, *, batch_size: int = 32) -> dict:
        """Evaluate on ``val_data`` and return ``{"val_loss": ..., "val_<metric>": ...}`` floats.

        Uses the precision and device of the last ``fit`` (or full precision).
        """
        val_dl = as_dataloader(val_data, batch_size=batch_size, shuffle=False, name="val_data")
        _check_not_empty(val_dl, "val_data")
        acc = self._accelerator_for(*(self._accelerator_config or ("no", False, 1)))
        net, val_dl = acc.prepare(self.net, fast_loader(val_dl, acc))
        try:
            cbs = CallbackList([] if quiet else [ProgressBar()], model=self)
            logs = self._make_epoch_runner(net, "val", None, cbs)(val_dl)
        finally:
            acc.unwrap_model(net, keep_fp32_wrapper=False)
        return logs

    @torch.no_grad()
    def predict(self, data, *, batch_size: int = 32) -> torch.Tensor:
        """The net's outputs for ``data``, concatenated on the CPU in dataset order.

        ``data`` is a DataLoader (batches ``(x, ..., y)`` have their last item
        dropped as labels; a batch of one tensor is the input), a Dataset, a tensor
        or array of inputs, or an ``(X, y)`` pair. Under several processes the
        padding duplicates of the last batch are dropped.
        """
        if isinstance(data, (torch.Tensor,)) or (hasattr(data, "__array__")
                                                  and not isinstance(data, (tuple, list))):
            data = torch.utils.data.TensorDataset(as_tensor(data, "data"))
        loader = as_dataloader(data, batch_size=batch_size, shuffle=False, name="data")
        acc = self._accelerator_for(*(self._accelerator_config or ("no", False, 1)))
        net, loader = acc.prepare(self.net, fast_loader(loader, acc))
        step = self.step_runner_class(net, self.loss_fn, acc, stage="val")
        outputs = []
        try:
            net.eval()
            for batch in loader:
                if isinstance(batch, (tuple, list)) and len(batch) == 1:
                    inputs = tuple(batch)
                elif isinstance(batch, torch.Tensor):
                    inputs = (batch,)
                else:
                    inputs, _ = step.unpack_batch(batch)
                with acc.autocast():
                    preds = step.forward(inputs)
                outputs.append(acc.gather_for_metrics(preds).cpu())
        finally:
            acc.unwrap_model(net, keep_fp32_wrapper=False)
        return torch.cat(outputs)

    # -- checkpoints -----------------------------------------------------------------

    def save_ckpt(self, path: str) -> None:
        """Write the net's weights to ``path`` atomically (main process only)."""
        if self.is_main_process:
            atomic_save(self.unwrapped_net.state_dict(), path)

    def load_ckpt(self, path: str) -> None:
        """Load weights written by :meth:`save_ckpt` (weights-only; pickled code is refused).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is corrupt or not a weights-only state dict.
        """
        self.unwrapped_net.load_state_dict(load_state_dict_file(path))

    # -- internals ---------------------------------------------------------------------

    def _accelerator_for(self, mixed_precision: str, cpu: bool, grad_accum: int) -> Accelerator:
        """One Accelerator per configuration; a new configuration resets Accelerate's state.

        Accelerate keeps its state in process-wide singletons that refuse a second
        ``mixed_precision``; resetting them (not the process group) lets one process
        run several fits with different precisions.
        """
        global _accelerator_generation
        config = (mixed_precision, cpu, grad_accum)
        if (self.accelerator is not None and self._accelerator_config == config
                and self._generation == _accelerator_generation):
            return self.accelerator
        if AcceleratorState._shared_state:
            AcceleratorState._reset_state(reset_partial_state=False)
            GradientState._reset_state()
        # Accelerate only sets up multi-process CPU (gloo) training when asked for the
        # CPU; without a GPU there is nothing else, so torchrun works unchanged
        self.accelerator = Accelerator(mixed_precision=mixed_precision,
                                       cpu=cpu or not _has_accelerator_device(),
                                       gradient_accumulation_steps=grad_accum)
        _accelerator_generation += 1
        self._generation = _accelerator_generation
        self._accelerator_config = config
        return self.accelerator

    def _prepare(self, acc: Accelerator, train_dl, val_dl):
        if val_dl is None:
            net, optimizer, train_dl = acc.prepare(self.net, self.optimizer, train_dl)
        else:
            net, optimizer, train_dl, val_dl = acc.prepare(self.net, self.optimizer, train_dl,
                                                           val_dl)
        if isinstance(self.loss_fn, torch.nn.Module):
            self.loss_fn.to(acc.device)  # moved, never wrapped in DDP
        return net, optimizer, train_dl, val_dl

    def _make_epoch_runner(self, net, stage, optimizer, cbs, max_grad_norm=None,
                           interrupt=None, skip_nonfinite=False):
        metrics = {name: _fresh_metric(m, self.accelerator.device, stage)
                   for name, m in self.metrics_dict.items()}
        step = self.step_runner_class(
            net, self.loss_fn, self.accelerator, stage=stage, metrics_dict=metrics,
            optimizer=optimizer, lr_scheduler=self.lr_scheduler if stage == "train" else None,
            max_grad_norm=max_grad_norm, lr_scheduler_interval=self.lr_scheduler_interval,
            skip_nonfinite=skip_nonfinite)
        return self.epoch_runner_class(step, cbs, interrupt=interrupt,
                                       should_stop=lambda: self.stop_training)

    # -- resumable state -----------------------------------------------------------------

    def _save_state(self, path: str, epoch: int, cbs: CallbackList, train_dl) -> None:
        acc = self.accelerator
        extra = {"stopped": self.stop_training}
        generator = getattr(train_dl, "synchronized_generator", None)
        if generator is not None:
            # under several processes Accelerate shuffles with its own generator
            extra["loader_generator"] = generator.get_state()
        # every rank's RNG goes into rank 0's one file
        rng_states = gather_object([get_rng_state()]) if acc.num_processes > 1 \
            else [get_rng_state()]
        if acc.is_main_process:
            save_training_state(
                path, epoch=epoch, net=self.unwrapped_net, optimizer=self.optimizer,
                lr_scheduler=self.lr_scheduler, scaler=acc.scaler,
                history_rows=[], callback_states=[
                    {"class": type(cb).__name__, "state": cb.state_dict()} for cb in cbs],
                rng_states=rng_states, extra=extra)
        acc.wait_for_everyone()

    def _load_state(self, path: str, cbs: CallbackList, train_dl) -> int:
        """Restore a saved state; returns the number of epochs already done."""
        state = load_training_state(path)
        self.unwrapped_net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and state["lr_scheduler"] is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.accelerator.scaler is not None and state["scaler"] is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        saved = state["callbacks"]
        for i, cb in enumerate(cbs):
            if i < len(saved) and saved[i]["class"] == type(cb).__name__:
                cb.load_state_dict(saved[i]["state"])
            elif cb.state_dict():
                warnings.warn(f"resume: no saved state for callback {type(cb).__name__} at "
                              f"position {i}; it starts fresh", UserWarning, stacklevel=3)
        rng = state["rng"]
        set_rng_state(rng[min(self.accelerator.process_index, len(rng) - 1)])
        generator = getattr(train_dl, "synchronized_generator", None)
        if generator is not None and "loader_generator" in state["extra"]:
            generator.set_state(state["extra"]["loader_generator"])
        if state["extra"].get("stopped"):
            # the saved run had finished by early stopping: resuming must not train on
            self.stop_training = True
            warnings.warn(f"resume: the saved run stopped early after epoch {state['epoch']}; "
                          "nothing left to train (fit without resume to train further)",
                          UserWarning, stacklevel=3)
        return int(state["epoch"])

    def _check_scheduler(self, epochs: int, steps_per_epoch: Optional[int],
                         grad_accum: int) -> None:
        """Catch a scheduler that would fail or misbehave mid-run, before training."""
        sched = self.lr_scheduler
        if sched is None:
            return
        step_interval = self.lr_scheduler_interval == "step"
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau) and step_interval:
            raise ValueError("ReduceLROnPlateau needs the monitored value once per epoch; "
                             "received lr_scheduler_interval='step'. Use 'epoch'")
        total = getattr(sched, "total_steps", None)  # OneCycleLR stops after this many
        if total is not None:
            if step_interval and steps_per_epoch is not None:
                needed = epochs * -(-steps_per_epoch // grad_accum)
            else:
                needed = epochs
            if needed > total:
                raise ValueError(
                    f"{type(sched).__name__} allows total_steps={total} steps but this fit "
                    f"would step it {needed} times (lr_scheduler_interval="
                    f"{self.lr_scheduler_interval!r}); pass lr_scheduler_interval='step' "
                    "with total_steps=epochs*len(train_loader), or fewer epochs")

    def _fit_callbacks(self, history, ckpt_path, monitor, mode, patience, quiet, plot, extra,
                       log_dir=None, arguments=None):
        cbs: list = [history]
        if patience is not None:
            cbs.append(EarlyStopping(monitor, patience=patience, mode=mode))
        cbs.append(ModelCheckpoint(ckpt_path, monitor, mode, restore_best_weights=True))
        if not quiet:
            cbs.append(ProgressBar())
        if plot:
            from .callbacks.live_plot import LivePlot
            # with log_dir the run directory's curves.png is the picture outside notebooks
            cbs.append(LivePlot(path=None if log_dir is not None else "curves.png"))
        if extra is not None:
            if isinstance(extra, Callback) or not isinstance(extra, Iterable):
                raise TypeError(f"callbacks must be a list of Callback objects; received "
                                f"{type(extra).__name__}")
            cbs.extend(extra)
        if log_dir is not None:  # last: its confusion matrix sees the restored best weights
            from .callbacks.run_directory import RunDirectory
            cbs.append(RunDirectory(log_dir, monitor=monitor, mode=mode, arguments=arguments,
                                    save_best=ckpt_path is not None))
        return cbs

    def expected_columns(self, has_val: bool) -> list:
        """The history columns a default step produces, known before training."""
        cols = ["epoch", "train_loss", *(f"train_{n}" for n in self.metrics_dict), "lr"]
        if has_val:
            cols += ["val_loss", *(f"val_{n}" for n in self.metrics_dict)]
        return cols

    def _resolve_monitor(self, monitor: str, mode: str, has_val: bool) -> str:
        check_mode(mode)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str column name; received {type(monitor).__name__}")
        if monitor == "val_loss" and not has_val:
            monitor = "train_loss"
        columns = self.expected_columns(has_val)
        # a custom step may log other keys; those are checked after the first epoch
        custom_step = self.step_runner_class.__call__ is not StepRunner.__call__ or \
            self.step_runner_class.train_step is not StepRunner.train_step
        if monitor not in columns and not custom_step:
            raise ValueError(_monitor_message(monitor, columns, has_val))
        metric = self.metrics_dict.get(monitor.split("_", 1)[-1])
        better = getattr(metric, "higher_is_better", None)
        if better is not None and monitor != "train_loss" and (better != (mode == "max")):
            warnings.warn(
                f"monitor {monitor!r} uses mode={mode!r}, but the metric's higher_is_better is "
                f"{better}: pass mode={'max' if better else 'min'!r} unless this is intended",
                UserWarning, stacklevel=3)
        return monitor


_FIT_KEYWORDS = (
    "train_data", "val_data", "epochs", "ckpt_path", "patience", "monitor", "mode",
    "callbacks", "plot", "quiet", "mixed_precision", "cpu", "gradient_accumulation_steps",
    "max_grad_norm", "batch_size", "shuffle", "resume", "state_path", "save_state_every",
    "skip_nonfinite", "fast_data", "compile", "log_dir")


def _state_paths(ckpt_path, state_path, resume, save_state_every):
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
            warnings.warn(f"resume=True: no state at {state_path!r} yet; starting from scratch",
                          UserWarning, stacklevel=3)
    elif isinstance(resume, (str, os.PathLike)):
        resume_path = os.fspath(resume)
        if not os.path.isfile(resume_path):
            raise FileNotFoundError(f"resume={resume_path!r}: no such state file")
        state_path = state_path or resume_path
    else:
        raise TypeError(f"resume must be a bool or a path; received {type(resume).__name__}")
    return (state_path if save_state_every else None), resume_path


def _reject_unknown(unknown: dict, fn: str, known: Iterable[str]) -> None:
    if not unknown:
        return
    name = next(iter(unknown))
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {sorted(known)}"
    raise TypeError(f"{fn}() got an unexpected keyword argument {name!r}{hint}")


def _check_fit_args(epochs, mixed_precision, grad_accum, max_grad_norm, patience) -> None:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1; received {epochs!r}")
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of 'no', 'fp16', 'bf16'; "
                         f"received {mixed_precision!r}")
    if not isinstance(grad_accum, int) or isinstance(grad_accum, bool) or grad_accum < 1:
        raise ValueError(f"gradient_accumulation_steps must be an int >= 1; received {grad_accum!r}")
    if max_grad_norm is not None and not (isinstance(max_grad_norm, (int, float))
                                          and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be None or a number > 0; received {max_grad_norm!r}")
    if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool)
                                 or patience < 0):
        raise ValueError(f"patience must be None or an int >= 0; received {patience!r}")


def _has_accelerator_device() -> bool:
    accel = getattr(torch, "accelerator", None)
    if accel is not None and hasattr(accel, "is_available"):
        return accel.is_available()
    return torch.cuda.is_available()


def _check_not_empty(loader, name: str) -> None:
    if loader is not None and loader_length(loader) == 0:
        raise ValueError(f"{name} has no batches (len(loader) == 0); it must yield at least one")


def _monitor_message(monitor: str, columns: list, has_val: bool) -> str:
    msg = f"monitor {monitor!r} is not a column this run produces; available: {columns}"
    if monitor.startswith("val_") and not has_val:
        msg += ". Validation columns need val_data: pass fit(..., val_data=...)"
    return msg


def _check_metrics(metrics_dict: Optional[dict]) -> dict:
    if metrics_dict is None:
        return {}
    if not isinstance(metrics_dict, dict):
        raise TypeError(f"metrics_dict must be a dict of name -> torchmetrics Metric; received "
                        f"{type(metrics_dict).__name__}")
    for name, metric in metrics_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"metrics_dict keys must be str; received {name!r}")
        if not (isinstance(metric, torchmetrics.Metric) or callable(metric)):
            raise TypeError(f"metrics_dict[{name!r}] must be a torchmetrics Metric or a callable "
                            f"fn(preds, labels); received {type(metric).__name__}")
    return dict(metrics_dict)


def _check_optimizer_params(optimizer, net, loss_fn) -> None:
    """Every optimized tensor must belong to the net (or to a loss_fn module)."""
    known = {id(p) for p in net.parameters()}
    if isinstance(loss_fn, torch.nn.Module):
        known |= {id(p) for p in loss_fn.parameters()}
    stray = [tuple(p.shape) for g in optimizer.param_groups for p in g["params"]
             if id(p) not in known]
    if stray:
        raise ValueError(
            f"the optimizer holds {len(stray)} parameter tensor(s) that are not in net "
            f"(shapes {stray[:3]}{'...' if len(stray) > 3 else ''}); build it from "
            "net.parameters() of the net passed to KerasModel (was it made for another "
            "net instance?)")


def _check_subclass(cls, base: type, what: str) -> type:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{what} must be a subclass of kerastorch.{base.__name__}; received {cls!r}")
    return cls


def _fresh_metric(metric, device, stage: str) -> torchmetrics.Metric:
    """A reset copy per fit and stage, so nothing leaks between stages or fits."""
    if not isinstance(metric, torchmetrics.Metric):
        metric = BatchMeanMetric(metric)
    metric = copy.deepcopy(metric).to(device)
    metric.reset()
    if stage == "val":
        disable_metric_sync(metric)
    return metric


class BatchMeanMetric(torchmetrics.Metric):
    """Wraps ``fn(preds, labels) -> scalar`` as a sample-weighted mean over the epoch."""

    full_state_update = False

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds, labels) -> None:
        value = torch.as_tensor(self.fn(preds, labels)).detach()
        n = labels.shape[0] if isinstance(labels, torch.Tensor) and labels.ndim else 1
        self.total += value.to(self.total.device, torch.float64) * n
        self.count += n

    def compute(self) -> torch.Tensor:
        return self.total / self.count
