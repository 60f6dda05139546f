"""KerasModel: argument checks, the Accelerator lifecycle, fit/evaluate/predict, checkpoints."""

from __future__ import annotations

import copy
import functools
import inspect
import sys
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import torch

from .accelerate_compat import accelerator_generation, new_accelerator
from .callbacks.base import Callback, CallbackList
from .callbacks.checkpoint import ModelCheckpoint
from .callbacks.early_stopping import EarlyStopping
from .callbacks.history import History
from .callbacks.live_plot import LivePlot
from .callbacks.progress import ProgressBar
from .callbacks.run_directory import RunDirectory
from .callbacks.wandb_logger import WandbLogger
from .batches import LABEL_KEYS, concat_outputs, map_tensors
from .checks import (check_accelerator, check_bool, check_callbacks, check_fit_args,
                     check_initial_epoch, check_label_keys, check_loss_fn, check_metrics,
                     check_mode, check_monitor, check_net, check_optimizer, check_path,
                     check_patience, check_steps, check_subclass, check_validation_freq,
                     loss_modules, monitor_message, reject_unknown, state_paths)
from .data import (FirstBatches, StepsPerEpoch, arrays_dataset, arrays_len, as_dataloader,
                   check_sample_weights, device_loader, fast_loader, is_array_pair, is_arrays,
                   is_weighted_arrays, keras_xy, loader_length, resume_epoch,
                   validation_split_of)
from .files import atomic_save, check_writable, cpu_state_dict, load_state_dict_file
from .interrupt import AbortTraining, InterruptGuard
from .launcher import fit_ddp as launch_fit_ddp
from .metrics import fresh_metric
from .objectives import check_loss_weights, class_weight_table
from .runners import EpochRunner, StepRunner
from .scheduler import SchedulerStepper, check_scheduler, check_scheduler_for_fit
from .schedules import Schedule
from .export import export as export_net
from .lr_finder import LRFinderResult, check_range, lr_grid, range_test
from .state import (StepStates, get_rng_state, load_fit_state, save_fit_state,
                    set_rng_state)
from .summary import summary
from .userwarn import warn_user

if TYPE_CHECKING:
    import pandas as pd
    from accelerate import Accelerator

__all__ = ["KerasModel"]

# Accelerate's distributed types whose nets hold only a shard of their weights per process
SHARDED = ("FSDP", "DEEPSPEED")
FLAGS = ("plot", "quiet", "cpu", "shuffle", "skip_nonfinite", "fast_data", "compile")


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
            optimizer step with ``lr_scheduler_interval="step"``. Or a recipe from
            :mod:`kerastorch.schedules` (``one_cycle``, ``warmup_cosine``), which each
            fit builds for its own number of optimizer steps and steps per optimizer
            step. Defaults to None.
        step_runner: a :class:`StepRunner` subclass to use instead of the class
            attribute ``step_runner_class``. Defaults to None.
        epoch_runner: an :class:`EpochRunner` subclass, likewise. Defaults to None.
        lr_scheduler_interval: ``"epoch"`` or ``"step"``. Defaults to ``"epoch"``.
        loss_weights: ``{output_name: weight}`` for a dict ``loss_fn``; the training loss is
            the weighted sum of the per-output losses (missing outputs weigh 1.0).
            Defaults to None.
        label_keys: the keys that hold the labels in a dict batch. Defaults to
            ``("label", "labels", "y", "target")``.

    ``loss_fn`` may also be a dict ``{output_name: loss}`` (the net returns a dict of
    outputs and the labels are a dict with the same keys; the history gets
    ``train_<output>_loss`` columns beside the weighted total ``train_loss``, and
    ``metrics_dict`` may nest ``{output_name: {metric_name: metric}}``), or None when
    the net computes its own loss (a HuggingFace model returning ``.loss``; the labels
    stay in the batch it is called with).

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
                 lr_scheduler_interval: str = "epoch", loss_weights: Optional[dict] = None,
                 label_keys: Sequence[str] = LABEL_KEYS):
        self.net = check_net(net)
        self.loss_fn = check_loss_fn(loss_fn)
        self.loss_weights = check_loss_weights(self.loss_fn, loss_weights)
        self.label_keys = check_label_keys(label_keys)
        self.outputs = list(self.loss_fn) if isinstance(self.loss_fn, dict) else []
        self.metrics_dict, self.metric_outputs = check_metrics(metrics_dict, self.outputs)
        if optimizer is None:
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        self.optimizer = check_optimizer(optimizer, net, loss_fn)
        self.lr_scheduler_interval = lr_scheduler_interval
        self._set_scheduler(lr_scheduler)
        if step_runner is not None:
            self.step_runner_class = check_subclass(step_runner, StepRunner, "step_runner")
        if epoch_runner is not None:
            self.epoch_runner_class = check_subclass(epoch_runner, EpochRunner, "epoch_runner")
        self.accelerator: Optional[Accelerator] = None
        self._accelerator_config: Optional[tuple] = None
        self._generation = -1
        self.history: Optional[pd.DataFrame] = None
        self.history_callback: Optional[History] = None
        self.stop_training = False
        self.interrupted = False
        self.epochs: Optional[int] = None
        self.train_steps: Optional[int] = None
        self.validated = True  # whether the current epoch ran validation (validation_freq)
        self._validation_freq = 1
        self._example_inputs = None  # the first batch's inputs of the last fit/evaluate
        self._prepared_net: Optional[torch.nn.Module] = None  # the last fit's prepared net
        self.fit_arguments: Optional[dict] = None  # the running fit's arguments, for loggers
        # (set while fit runs, None after it)

    # -- properties used by callbacks ---------------------------------------------

    @property
    def unwrapped_net(self) -> torch.nn.Module:
        """The user's net (never the DDP or autocast wrapper)."""
        return self.net

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def is_sharded(self) -> bool:
        """Whether the last fit split the net's weights across processes (FSDP or
        DeepSpeed), so that reading them whole is a collective every process joins."""
        acc = self.accelerator
        return acc is not None and acc.distributed_type in SHARDED

    def full_state_dict(self) -> dict:
        """The net's weights, whole, as a CPU state dict that loads into a plain net.

        Under FSDP or DeepSpeed the shards are gathered with Accelerate's
        ``get_state_dict`` (the plugin's full-state-dict settings): every process must
        call this, and the main process gets the whole dict (FSDP leaves the others an
        empty one). Otherwise it is a copy of the net's ``state_dict()``.
        """
        if not self.is_sharded:
            return cpu_state_dict(self.unwrapped_net)
        net = self._prepared_net if self._prepared_net is not None else self.net
        state = self.accelerator.get_state_dict(net)
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    def load_full_state_dict(self, state: dict) -> None:
        """Load what :meth:`full_state_dict` returned into the net (every process calls
        it). Under FSDP2 the main process's whole dict is broadcast into the shards."""
        acc = self.accelerator
        if self.is_sharded and getattr(acc, "is_fsdp2", False):
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 set_model_state_dict)
            set_model_state_dict(self.net, state, options=StateDictOptions(
                full_state_dict=True, broadcast_from_rank0=True))
        elif self.is_sharded and not state:  # FSDP1: only the main process holds it
            warn_user("the best weights cannot be loaded back into an FSDP1-sharded net "
                      "in place; they are in the checkpoint file (load it into a plain net)")
        else:
            self.unwrapped_net.load_state_dict(state)

    # -- fit -------------------------------------------------------------------

    def fit(self, train_data, val_data=None, epochs: int = 10, *,
            ckpt_path: Optional[str] = "checkpoint", patience: Optional[int] = 5,
            monitor: str = "val_loss", mode: str = "min",
            callbacks: Optional[Iterable[Callback]] = None, plot: bool = False,
            quiet: bool = False, mixed_precision: Optional[str] = None, cpu: bool = False,
            gradient_accumulation_steps: int = 1, max_grad_norm: Optional[float] = None,
            batch_size: int = 32, shuffle: bool = True, resume=False,
            state_path: Optional[str] = None, save_state_every: int = 1,
            skip_nonfinite: bool = False, fast_data: bool = True, compile: bool = False,
            log_dir: Optional[str] = None, wandb: bool = False, sample_weight=None,
            class_weight: Optional[dict] = None, validation_split: float = 0.0,
            initial_epoch: int = 0, steps_per_epoch: Optional[int] = None,
            validation_steps: Optional[int] = None, validation_freq=1,
            validation_data=None, verbose=None, validation_batch_size: Optional[int] = None,
            lr_scheduler=None, accelerator: Optional[Accelerator] = None,
            save_state_every_steps: Optional[int] = None, **unknown) -> pd.DataFrame:
        """Train for up to ``epochs`` epochs and return the history DataFrame.

        Each epoch trains on ``train_data``, then evaluates ``val_data`` (if given),
        and appends one row: ``epoch``, ``train_loss``, ``train_<metric>``, ``lr``
        (the learning rate the epoch used), ``val_loss``, ``val_<metric>``.
        ``patience`` epochs without improvement of ``monitor`` stop training; the
        best weights by ``monitor`` are written to ``ckpt_path`` whenever they
        improve and are loaded back into the net when ``fit`` ends. With no
        ``val_data`` the default monitor ``"val_loss"`` becomes ``"train_loss"``.

        Keras's call ``fit(X, y, ...)`` works too: when ``train_data`` and ``val_data`` are
        both arrays (or dicts of arrays) of one length they are ``x`` and ``y``.

        Args:
            train_data: a DataLoader, a Dataset (a HuggingFace ``datasets.Dataset``
                included), or an ``(X, y)`` pair of tensors/arrays (X and y may be
                dicts of them). Batches may be tuples ``(x1, ..., xn, y)`` or dicts
                (see :class:`StepRunner`).
            val_data: the same kinds, an ``(X, y, sample_weight)`` triple (Keras's
                ``validation_data``), or None. Defaults to None.
            epochs: the number of the last epoch (>= 1); with ``initial_epoch`` it trains
                ``epochs - initial_epoch`` epochs, as in Keras. Defaults to 10.
            ckpt_path: file for the best weights; None writes nothing. Defaults to "checkpoint".
            patience: epochs without improvement before stopping; None never stops
                early. Defaults to 5.
            monitor: the history column that decides "best". Defaults to "val_loss".
            mode: "min" or "max". Defaults to "min".
            callbacks: extra ``Callback`` objects. Defaults to None.
            plot: draw the history live (see ``kerastorch.callbacks``). Defaults to False.
            quiet: write nothing to the terminal. Defaults to False.
            mixed_precision: "no", "fp16" (CUDA only; ignored on the CPU) or "bf16";
                None takes what ``accelerate launch``/``accelerate config`` set (the
                ``ACCELERATE_MIXED_PRECISION`` variable), else "no". Defaults to None.
            cpu: force the CPU even when a GPU is present. Defaults to False.
            gradient_accumulation_steps: batches per optimizer step (an ``accelerate
                launch`` config's value wins, as in Accelerate). Defaults to 1.
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
            wandb: torchkeras's keyword: True adds a :class:`kerastorch.callbacks.WandbLogger`
                (offline by default; needs the wandb package). Defaults to False.
            sample_weight: Keras's per-sample weights for an ``(X, y)`` pair, one per
                sample (a dict batch may instead carry a ``"sample_weight"`` key). The
                loss becomes the sample-weighted mean ``sum(w * l) / sum(w)`` of the
                per-sample losses (a loss with ``reduction="sum"`` gives ``sum(w * l)``),
                computed from the loss with its reduction turned off; the epoch loss is
                the sample-weighted mean over the epoch. Metrics are not weighted.
                Defaults to None.
            class_weight: Keras's ``{class_index: weight}``: each training sample weighs
                its class's weight (absent classes 1.0); labels may be class indices or
                one-hot. Training only, as in Keras; not with ``sample_weight``.
                Defaults to None.
            validation_split: Keras's fraction of an ``(X, y)`` pair held out for
                validation: the last ``floor``-rounded part, taken before shuffling.
                Ignored, with a warning, when ``val_data`` is given. Defaults to 0.0.
            initial_epoch: the epoch to start after (history rows are numbered from
                ``initial_epoch + 1``). Defaults to 0.
            steps_per_epoch: make every epoch this many training batches, continuing the
                loader where the last epoch stopped (a new pass starts when it ends).
                Defaults to None (one pass per epoch).
            validation_steps: validate on the first this-many batches of ``val_data``
                in each validation pass. Defaults to None (all).
            validation_freq: validate every this-many epochs (an int), or on the listed
                epoch numbers; epochs without validation have NaN ``val_`` columns and are
                skipped by early stopping, checkpointing and an epoch scheduler that watch a
                ``val_`` column. Defaults to 1.
            validation_data: Keras's name for ``val_data``, for the Keras call
                ``fit(X, y, validation_data=(X_val, y_val))``. Defaults to None.
            verbose: Keras's ``verbose``: 0 is ``quiet=True``; 1, 2 or ``"auto"`` show the
                progress bar. Defaults to None (``quiet`` decides).
            validation_batch_size: batch size of the validation data when it is not already
                a DataLoader. Defaults to None (``batch_size``).
            lr_scheduler: the same as ``KerasModel(..., lr_scheduler=...)``, set from this
                fit on: a torch scheduler, or a :mod:`kerastorch.schedules` recipe such as
                ``one_cycle(max_lr)``, which is built for this fit's number of optimizer
                steps (``(epochs - initial_epoch)`` x batches per epoch / accumulation, per
                process) and stepped after every optimizer step. Defaults to None (keep
                the model's).
            accelerator: an ``accelerate.Accelerator`` you configured (FSDP or DeepSpeed
                plugins, ``kwargs_handlers`` such as DDP's ``find_unused_parameters``,
                a ``gradient_accumulation_plugin``, a project configuration), used as
                given; ``evaluate``, ``predict`` and ``save_ckpt`` use it too until a fit
                without it. ``mixed_precision``, ``cpu`` and ``gradient_accumulation_steps``
                must then be left at their defaults or agree with it. Defaults to None
                (kerastorch builds one from those three settings, which also honours an
                ``accelerate launch`` config).
            save_state_every_steps: also write the resumable state every this many
                optimizer steps (synced steps with gradient accumulation; counted over
                the fit and kept in the state), into the same file, during training
                (before the epoch's validation). ``resume=True`` from such a state
                continues inside that epoch: its running loss sums and metric states are
                restored, and the epoch's pass over the data is replayed from the RNG
                states it began with, loading and discarding the batches already trained
                on, so resuming costs the loading time of those batches (no steps). Each
                write costs a host sync and a ``torch.save`` of the net and optimizer.
                Works with ``steps_per_epoch``; a resume needs the same number of
                processes. See docs/guides/resume-and-faults.md. Needs a ``state_path``
                (or ``ckpt_path``). Defaults to None (epoch ends only).

        Returns:
            The history ``pandas.DataFrame``, one row per epoch; also ``self.history``.
            After Ctrl-C (or a ``KeyboardInterrupt`` raised in a callback) training stops
            after the current batch, the best weights are restored and the rows of the
            completed epochs are returned; a second Ctrl-C aborts at once.

        Raises:
            TypeError, ValueError: bad arguments, detected before the first batch.
        """
        arguments = dict(locals())  # recorded in the run directory's hparams.json
        self.fit_arguments = arguments  # what logger callbacks (MLflow) record
        reject_unknown(unknown, "fit", self._fit_keywords())
        for flag in FLAGS:
            check_bool(flag, arguments[flag])
        check_bool("wandb", wandb)
        ckpt_path, state_path = check_path("ckpt_path", ckpt_path), check_path("state_path",
                                                                             state_path)
        log_dir = check_path("log_dir", log_dir)
        check_fit_args(epochs, mixed_precision, gradient_accumulation_steps, max_grad_norm)
        check_patience(patience)
        extra_callbacks = check_callbacks(callbacks, Callback)
        initial_epoch = check_initial_epoch(initial_epoch, epochs)
        steps_per_epoch = check_steps("steps_per_epoch", steps_per_epoch)
        validation_steps = check_steps("validation_steps", validation_steps)
        check_steps("validation_batch_size", validation_batch_size)
        self._validation_freq = check_validation_freq(validation_freq)
        self._val_columns = None  # the val_ columns, once a validation has run
        class_table = class_weight_table(class_weight)
        quiet = _quiet_from_verbose(verbose, quiet)
        if validation_data is not None:
            if val_data is not None and not (is_arrays(train_data) and is_arrays(val_data)):
                raise ValueError("val_data and validation_data (Keras's name for it) were both "
                                 "given; pass the validation data once")
            train_data, val_data = keras_xy(train_data, val_data)[0], validation_data
        else:
            train_data, val_data = keras_xy(train_data, val_data)
        train_dl, val_dl, train_weighted, val_weighted = self._fit_data(
            train_data, val_data, batch_size, shuffle, sample_weight, class_table,
            validation_split, validation_batch_size)
        monitor = self._resolve_monitor(monitor, mode, has_val=val_dl is not None)
        if lr_scheduler is not None:
            self._set_scheduler(lr_scheduler)
        acc = self._accelerator_for(mixed_precision, cpu, gradient_accumulation_steps,
                                    accelerator)
        gradient_accumulation_steps = acc.gradient_accumulation_steps  # a launch config's
        if self.schedule is None:
            check_scheduler_for_fit(self.lr_scheduler, self.lr_scheduler_interval,
                                    epochs - initial_epoch,
                                    steps_per_epoch or loader_length(train_dl),
                                    gradient_accumulation_steps)
        state_path, resume_path = state_paths(ckpt_path, state_path, resume, save_state_every)
        save_state_every_steps = check_steps("save_state_every_steps", save_state_every_steps)
        if save_state_every_steps is not None and state_path is None:
            raise ValueError("save_state_every_steps needs a file for the state: a state_path "
                             "(or a ckpt_path) and save_state_every >= 1; received "
                             f"ckpt_path={ckpt_path!r}, state_path={arguments['state_path']!r}, "
                             f"save_state_every={save_state_every!r}")
        for name, path in (("ckpt_path", ckpt_path), ("state_path", state_path)):
            if path is not None:
                check_writable(path, name)
        if wandb:
            extra_callbacks.append(WandbLogger())

        train_dl, val_dl = (fast_loader(dl, acc, enabled=fast_data) for dl in (train_dl, val_dl))
        net, optimizer, train_dl, val_dl = self._prepare(acc, train_dl, val_dl)
        self._prepared_net = net  # what get_state_dict gathers a sharded net's weights from
        if self.schedule is not None:  # sized now: the prepared loader is this process's share
            self.lr_scheduler = self.schedule.build(self.optimizer, _optimizer_steps(
                epochs - initial_epoch, steps_per_epoch or loader_length(train_dl),
                gradient_accumulation_steps, self.schedule))
        if steps_per_epoch is not None:
            train_dl = StepsPerEpoch(train_dl, steps_per_epoch)
        if validation_steps is not None and val_dl is not None:
            val_dl = FirstBatches(val_dl, validation_steps)
        net = torch.compile(net) if compile else net  # compiles lazily, at the first batch
        history = self.history_callback = History()
        cbs = CallbackList(self._fit_callbacks(history, ckpt_path, monitor, mode, patience,
                                               quiet, plot, extra_callbacks, log_dir,
                                               arguments),
                           model=self)
        guard = InterruptGuard(message=not quiet and acc.is_main_process)
        train_epoch = self._make_epoch_runner(net, "train", optimizer, cbs, max_grad_norm,
                                              guard, skip_nonfinite, weighted=train_weighted,
                                              class_weight=class_table)
        val_epoch = (self._make_epoch_runner(net, "val", None, cbs, interrupt=guard,
                                             weighted=val_weighted)
                     if val_dl is not None else None)
        self.epochs, self.train_steps = epochs, loader_length(train_dl)
        self.stop_training = self.interrupted = False
        try:
            cbs.call("on_fit_begin", {})
            step_states = None  # save_state_every_steps: the writer of mid-epoch states
            if save_state_every_steps is not None:
                step_states = train_epoch.after_step = StepStates(
                    self, state_path, save_state_every_steps, cbs, train_dl, train_epoch)
            done, resumed = initial_epoch, None
            if resume_path is not None:
                done, resumed = load_fit_state(self, resume_path, cbs, train_dl,
                                               epoch_runner=train_epoch,
                                               step_states=step_states)
            with guard:
                for epoch in range(done + 1, epochs + 1 if not self.stop_training else 0):
                    self._run_epoch(epoch, cbs, train_epoch, train_dl, val_epoch, val_dl,
                                    monitor, resumed, step_states)
                    resumed = None  # only the first epoch can continue a saved one
                    if state_path is not None and epoch % save_state_every == 0:
                        save_fit_state(self, state_path, epoch, cbs, train_dl,
                                       step_states=step_states)
                    if self.stop_training:
                        break
        except AbortTraining:
            raise
        except KeyboardInterrupt:
            self.interrupted = True
            warn_user(f"training interrupted during epoch {len(history.rows) + 1}; "
                      "returning the completed epochs with the best weights restored"
                      + (f"; resume from {state_path}" if state_path else ""))
        finally:
            try:
                cbs.call("on_fit_end", {"epochs_completed": len(history.rows),
                                        "stopped_early": self.stop_training,
                                        "interrupted": self.interrupted,
                                        "error": sys.exc_info()[1]})
            finally:
                self.history = history.to_frame()
                self._remember_inputs(train_epoch)
                self.fit_arguments = None  # holds the data and the model itself: not kept
                acc.unwrap_model(net, keep_fp32_wrapper=False)
        return self.history

    def _run_epoch(self, epoch, cbs, train_epoch, train_dl, val_epoch, val_dl, monitor,
                   resumed=None, step_states=None):
        if resumed is None:
            cbs.call("on_epoch_begin", epoch, {})
            lr, batches, pass_start = self.optimizer.param_groups[0]["lr"], train_dl, None
        else:
            # the rest of the epoch a mid-epoch state was taken in: the callbacks' states
            # are those of that moment; on_epoch_begin runs again for the per-epoch setup
            cbs.call("on_epoch_begin", epoch, {"resumed_batches": resumed["batches"]})
            lr, pass_start = resumed["lr"], resumed["pass_start"]
            batches = resume_epoch(train_dl, resumed["batches"], pass_start, resumed["rng"])
        if step_states is not None:
            step_states.begin_epoch(epoch, lr, pass_start)
        row = {"epoch": epoch, **train_epoch(batches), "lr": lr}
        self.validated = val_epoch is None or _validates(epoch, self._validation_freq)
        if val_epoch is not None and self.validated:
            cbs.call("on_val_begin", epoch, dict(row))
            val_logs = val_epoch(val_dl)
            cbs.call("on_val_end", epoch, dict(val_logs))
            self._val_columns = list(val_logs)
            row.update(val_logs)
        elif val_epoch is not None:  # validation_freq: this epoch has no validation
            columns = self._val_columns or [
                c for c in self.expected_columns(True) if c.startswith("val_")]
            row.update({c: float("nan") for c in columns})
        if monitor not in row:
            raise ValueError(monitor_message(monitor, sorted(row), has_val=val_dl is not None))
        monitored = row[monitor] if self.validated or not monitor.startswith("val_") else None
        SchedulerStepper(self.lr_scheduler, self.lr_scheduler_interval).after_epoch(monitored)
        skipped = train_epoch.step_runner.skipped_steps
        if skipped:
            train_epoch.step_runner.skipped_steps = 0
            warn_user(f"epoch {epoch}: skipped {skipped} step(s) whose loss was not finite")
        cbs.call("on_epoch_end", epoch, row)

    # -- evaluate / predict --------------------------------------------------------

    def evaluate(self, val_data, y=None, quiet: bool = False, *, batch_size: int = 32,
                 verbose=None) -> dict:
        """Evaluate on ``val_data`` and return ``{"val_loss": ..., "val_<metric>": ...}`` floats.

        ``val_data`` takes what ``fit`` does, including an ``(X, y, sample_weight)``
        triple; Keras's ``evaluate(X, y)`` works too (``y`` the labels; a bool there is
        the older positional ``quiet``). Uses the precision and device of the last
        ``fit`` (or full precision).
        """
        if isinstance(y, bool):  # evaluate(data, True): quiet given positionally
            y, quiet = None, y
        if y is not None:
            if not (is_arrays(val_data) and is_arrays(y)):
                raise TypeError(f"evaluate(x, y) takes two arrays; received "
                                f"{type(val_data).__name__} and {type(y).__name__}. For other "
                                "data pass evaluate(data) alone")
            val_data = keras_xy(val_data, y)[0]
        quiet = _quiet_from_verbose(verbose, quiet)
        check_bool("quiet", quiet)
        weighted = is_weighted_arrays(val_data)
        val_dl = as_dataloader(val_data, batch_size=batch_size, shuffle=False, name="val_data",
                               weighted=weighted)
        acc = self._last_accelerator()
        net, val_dl = acc.prepare(self.net, device_loader(fast_loader(val_dl, acc), acc))
        try:
            cbs = CallbackList([] if quiet else [ProgressBar()], model=self)
            runner = self._make_epoch_runner(net, "val", None, cbs, weighted=weighted)
            logs = runner(val_dl)
            self._remember_inputs(runner)
        finally:
            acc.unwrap_model(net, keep_fp32_wrapper=False)
        return logs

    def predict(self, data, *, batch_size: int = 32, with_labels: bool = False):
        """The net's outputs for ``data``, concatenated on the CPU in dataset order.

        ``data`` is a DataLoader (batches ``(x, ..., y)`` have their last item
        dropped as labels, dict batches their label keys; a batch of one tensor is the
        input), a Dataset, a tensor or array (or dict of them) of inputs, or an
        ``(X, y)`` pair. Each batch goes through :meth:`StepRunner.predict_step`
        (eval mode, no grad, the last fit's precision). Under several processes
        every process must call it: the data are sharded and the outputs gathered,
        without the padding duplicates of the last batch.

        The result has the structure of the net's output: a tensor, or a tuple, list
        or dict of them (a HuggingFace ``ModelOutput`` comes back as a dict of its set
        fields), each concatenated along the batch dimension. Floating-point outputs
        come back in the net's parameter dtype (float32 for a float32 net) even
        after a mixed-precision fit, so ``.numpy()`` works on them.

        Args:
            data: what to predict on.
            batch_size: batch size when ``data`` is not a DataLoader. Defaults to 32.
            with_labels: also return the labels of each batch, concatenated the same
                way (every batch must have labels). Defaults to False.

        Returns:
            The outputs, or ``(outputs, labels)`` with ``with_labels=True``.
        """
        check_bool("with_labels", with_labels)
        if is_arrays(data) and not isinstance(data, (tuple, list)):
            data = arrays_dataset(data, "data")
        loader = as_dataloader(data, batch_size=batch_size, shuffle=False, name="data")
        acc = self._last_accelerator()
        net, loader = acc.prepare(self.net, device_loader(fast_loader(loader, acc), acc))
        step = self.step_runner_class(net, self.loss_fn, acc, stage="val",
                                      **self._structure_kwargs())
        dtype = _parameter_dtype(self.net)
        to_host = functools.partial(_to_host, dtype=dtype)
        outputs, labels = [], []
        was_training = self.net.training
        try:
            net.eval()
            for batch in loader:
                preds, batch_labels = step.predict_step(batch)
                outputs.append(map_tensors(to_host, preds))
                if with_labels:
                    if batch_labels is None:
                        raise TypeError("predict(with_labels=True) needs batches with labels, "
                                        "(x, ..., y) or a dict with a label key; received a "
                                        "batch of inputs only")
                    labels.append(map_tensors(torch.Tensor.cpu, batch_labels))
        finally:
            self.net.train(was_training)
            acc.unwrap_model(net, keep_fp32_wrapper=False)
        outputs = concat_outputs(outputs)
        return (outputs, concat_outputs(labels)) if with_labels else outputs

    def lr_find(self, train_data, start_lr: float = 1e-7, end_lr: float = 10.0,
                num_steps: int = 100, *, smooth: float = 0.98, diverge: Optional[float] = 4.0,
                batch_size: int = 32, shuffle: bool = True,
                mixed_precision: Optional[str] = None,
                cpu: bool = False, gradient_accumulation_steps: int = 1,
                max_grad_norm: Optional[float] = None, fast_data: bool = True,
                **unknown) -> LRFinderResult:
        """fastai's learning-rate range test: one training step per learning rate, from
        ``start_lr`` to ``end_lr`` in log steps, recording the loss.

        The loss is smoothed with fastai's bias-corrected moving average (``smooth``)
        and the run stops early once the smoothed loss passes ``diverge`` times its
        best. The suggestion is the lr where the smoothed loss falls fastest against
        log(lr) (see :func:`kerastorch.lr_finder.steepest`), the rule fastai and
        Lightning use; a value somewhat below it is a common choice for ``fit``, and
        ``one_cycle(max_lr=...)`` takes it as the peak.

        Afterwards the net's weights and buffers, the optimizer (state and lr), the
        scheduler, the AMP scaler and the RNG states are exactly what they were
        before, bit for bit, also when the test fails or is interrupted.

        Args:
            train_data: what ``fit`` takes as ``train_data``.
            start_lr: the first learning rate. Defaults to 1e-7.
            end_lr: the last learning rate. Defaults to 10.
            num_steps: the number of steps (one batch each; the loader restarts when it
                ends). Defaults to 100.
            smooth: the moving average's beta. Defaults to 0.98.
            diverge: stop when the smoothed loss exceeds this times its best; None runs
                every step. Defaults to 4.
            batch_size: as in ``fit``. Defaults to 32.
            shuffle: as in ``fit``. Defaults to True.
            mixed_precision: as in ``fit``. Defaults to None.
            cpu: as in ``fit``. Defaults to False.
            gradient_accumulation_steps: as in ``fit``. Defaults to 1.
            max_grad_norm: as in ``fit``. Defaults to None.
            fast_data: as in ``fit``. Defaults to True.

        Returns:
            A :class:`kerastorch.lr_finder.LRFinderResult`: ``.history`` (lr, loss,
            smoothed loss), ``.suggestion`` and ``.plot()``.
        """
        reject_unknown(unknown, "lr_find", inspect.signature(KerasModel.lr_find).parameters)
        check_range(start_lr, end_lr, num_steps, smooth, diverge)
        check_fit_args(1, mixed_precision, gradient_accumulation_steps, max_grad_norm)
        for flag, value in (("shuffle", shuffle), ("cpu", cpu), ("fast_data", fast_data)):
            check_bool(flag, value)
        loader = as_dataloader(keras_xy(train_data, None)[0], batch_size=batch_size,
                               shuffle=shuffle, name="train_data")
        acc = self._accelerator_for(mixed_precision, cpu, gradient_accumulation_steps)
        saved = self._snapshot(acc, loader)
        net = None
        try:
            batches = device_loader(fast_loader(loader, acc, enabled=fast_data), acc,
                                    signal_end=acc.gradient_accumulation_steps > 1)
            net, optimizer, batches = acc.prepare(self.net, self.optimizer, batches)
            for module in loss_modules(self.loss_fn):
                module.to(acc.device)
            step = self.step_runner_class(net, self.loss_fn, acc, stage="train",
                                          optimizer=optimizer, max_grad_norm=max_grad_norm,
                                          **self._structure_kwargs())
            net.train()
            history = range_test(step, batches, lr_grid(start_lr, end_lr, num_steps),
                                 self.optimizer, acc, beta=smooth, diverge=diverge)
        finally:
            if net is not None:
                acc.unwrap_model(net, keep_fp32_wrapper=False)
            self._restore(acc, loader, saved)
        return LRFinderResult(history)

    def fit_ddp(self, num_processes: int = 2, train_data=None, val_data=None,
                **fit_kwargs) -> pd.DataFrame:
        """torchkeras's ``fit_ddp``: ``fit`` on ``num_processes`` processes started from a notebook.

        Accelerate's ``notebook_launcher`` forks the processes (one per GPU; on the CPU
        they talk over gloo, one thread each). Each process inherits the model and data
        as they are in the notebook (nothing is pickled, so lambdas are fine) and runs
        ``fit(train_data, val_data, **fit_kwargs)`` on its share of the batches. When
        they end, this model holds rank 0's final weights (the best ones, restored, as
        after ``fit``), its optimizer state and the history, which is returned. An
        exception in a process is re-raised here with its message and rank. Accelerate's
        process-wide state is cleared first, so an Accelerator built in the notebook
        before is not usable after (kerastorch builds new ones). Needs the ``fork``
        start method (Linux, macOS) and CUDA untouched in the notebook before the call.

        Args:
            num_processes: the processes to train on; 1 is a plain ``fit``. Defaults to 2.
            train_data: as in ``fit``. Defaults to None (required).
            val_data: as in ``fit``. Defaults to None.
            **fit_kwargs: ``fit``'s other arguments (``epochs``, ``ckpt_path``, ...),
                except ``accelerator``.

        Returns:
            The history ``pandas.DataFrame``; also ``self.history``.

        Raises:
            TypeError, ValueError: bad ``num_processes``, an unknown keyword, more
                processes than GPUs; before any process starts.
            RuntimeError: no ``fork`` (Windows), CUDA initialized before the call, or
                already inside ``torchrun``/``accelerate launch``.

        Example (in a notebook)::

            history = model.fit_ddp(num_processes=2, train_data=train_dl,
                                    val_data=val_dl, epochs=3, ckpt_path=None)
        """
        return launch_fit_ddp(self, num_processes, train_data, val_data, **fit_kwargs)

    def export(self, path, example_input=None, *, format: str = "onnx") -> str:
        """Write the net for serving: ``"onnx"`` (dynamic batch dimension),
        ``"torchscript"`` or ``"safetensors"`` (the weights, which :meth:`load_ckpt`
        reads back). See :func:`kerastorch.export.export`.

        Returns:
            What wrote the file, e.g. ``"torch.onnx.export(dynamo=True)"``.
        """
        return export_net(self, path, example_input, format=format)

    def _snapshot(self, acc, loader) -> dict:
        """Everything a trial run changes, copied (state_dict() returns live references)."""
        generators = [g for g in (getattr(loader, "generator", None),
                                  getattr(getattr(loader, "sampler", None), "generator", None))
                      if isinstance(g, torch.Generator)]
        return {
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "training": self.net.training,
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": None if self.lr_scheduler is None
            else copy.deepcopy(self.lr_scheduler.state_dict()),
            "scaler": None if acc.scaler is None else copy.deepcopy(acc.scaler.state_dict()),
            "rng": get_rng_state(),
            "generators": [(g, g.get_state()) for g in generators],
        }

    def _restore(self, acc, loader, saved: dict) -> None:
        self.net.load_state_dict(saved["net"])
        self.net.train(saved["training"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if saved["scheduler"] is not None:
            self.lr_scheduler.load_state_dict(saved["scheduler"])
        if saved["scaler"] is not None:
            acc.scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"])
        for generator, state in saved["generators"]:
            generator.set_state(state)

    def summary(self, input_data=None, *, print_table: bool = True) -> pd.DataFrame:
        """Keras's ``model.summary()``: the net's layers, output shapes and parameter counts.

        Runs :func:`kerastorch.summary` on ``input_data`` (a tensor, a tuple of
        positional inputs or a dict of keyword inputs), or, when None, on the inputs of
        the first batch of the last ``fit`` or ``evaluate``.

        Raises:
            TypeError: no ``input_data`` and no fit/evaluate yet.
        """
        if input_data is None:
            if self._example_inputs is None:
                raise TypeError(
                    "model.summary() needs an example input to trace output shapes: pass "
                    "model.summary(input_data=one_batch_of_inputs), or call it after fit or "
                    "evaluate, which remember their first batch")
            input_data = self._example_inputs
        return summary(self, input_data=input_data, print_table=print_table)

    def __repr__(self) -> str:
        """What a notebook cell shows: the net, loss, optimizer, metrics and training state."""
        params = list(self.net.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        group = self.optimizer.param_groups[0]
        if isinstance(self.loss_fn, dict):
            loss = "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in self.loss_fn.items()) + "}"
            if self.loss_weights:
                loss += f" weighted {self.loss_weights}"
        else:
            loss = "None (the net returns its loss)" if self.loss_fn is None \
                else _short(self.loss_fn)
        if self.history is None or self.history.empty:
            state = "not fitted"
        else:
            last = self.history.iloc[-1]
            shown = [c for c in ("train_loss", "val_loss") if c in self.history.columns]
            state = f"fitted {len(self.history)} epoch(s); last " + ", ".join(
                f"{c}={last[c]:.4g}" for c in shown)
        lines = [
            f"net:          {type(self.net).__name__} ({total:,} parameters, "
            f"{trainable:,} trainable)",
            f"loss_fn:      {loss}",
            f"optimizer:    {type(self.optimizer).__name__} (lr={group.get('lr')})",
            f"metrics:      {list(self.metrics_dict) or 'none'}",
            f"lr_scheduler: {self.schedule!r}" if self.schedule is not None else
            f"lr_scheduler: {type(self.lr_scheduler).__name__ if self.lr_scheduler else 'none'}",
            f"state:        {state}",
        ]
        return "KerasModel(\n" + "".join(f"  {line}\n" for line in lines) + ")"

    def _remember_inputs(self, epoch_runner) -> None:
        inputs = getattr(epoch_runner.step_runner, "example_inputs", None)
        if inputs is not None:
            self._example_inputs = inputs

    # -- checkpoints -----------------------------------------------------------------

    def save_ckpt(self, path: str) -> None:
        """Write the net's weights to ``path`` atomically (the main process writes; under
        FSDP or DeepSpeed every process must call it, to gather the shards)."""
        if self.is_sharded:
            state = self.full_state_dict()
            if self.is_main_process:
                atomic_save(state, path)
        elif self.is_main_process:
            atomic_save(self.unwrapped_net.state_dict(), path)

    def load_ckpt(self, path: str) -> None:
        """Load weights written by :meth:`save_ckpt` (weights-only; pickled code is refused).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is corrupt or not a weights-only state dict.
        """
        self.unwrapped_net.load_state_dict(load_state_dict_file(path))

    # -- internals ---------------------------------------------------------------------

    def _accelerator_for(self, mixed_precision: Optional[str], cpu: bool, grad_accum: int,
                         accelerator: Optional[Accelerator] = None) -> Accelerator:
        """The user's ``accelerator`` (checked against the three settings), or one
        Accelerator per configuration; a new configuration resets Accelerate's state
        (see ``kerastorch.accelerate_compat.new_accelerator``)."""
        if accelerator is not None:
            check_accelerator(accelerator, mixed_precision, cpu, grad_accum)
            self.accelerator, self._accelerator_config = accelerator, None
            return accelerator
        config = (mixed_precision, cpu, grad_accum)
        if (self.accelerator is not None and self._accelerator_config == config
                and self._generation == accelerator_generation()):
            return self.accelerator
        # Accelerate only sets up multi-process CPU (gloo) training when asked for the
        # CPU; without a GPU there is nothing else, so torchrun works unchanged
        self.accelerator = new_accelerator(mixed_precision=mixed_precision,
                                           cpu=cpu or not _has_accelerator_device(),
                                           gradient_accumulation_steps=grad_accum)
        self._generation = accelerator_generation()
        self._accelerator_config = config
        return self.accelerator

    def _last_accelerator(self) -> Accelerator:
        """The Accelerator of the last fit: the user's, or one of the last fit's
        configuration (Accelerate's defaults before any fit)."""
        if self.accelerator is not None and self._accelerator_config is None:
            return self.accelerator  # given to fit(accelerator=...)
        return self._accelerator_for(*(self._accelerator_config or (None, False, 1)))

    def _prepare(self, acc: Accelerator, train_dl, val_dl):
        # one process: the user's DataLoader is iterated as it is (data.DeviceBatches);
        # several: Accelerate shards it
        train_dl = device_loader(train_dl, acc, signal_end=acc.gradient_accumulation_steps > 1)
        val_dl = device_loader(val_dl, acc)
        if val_dl is None:
            net, optimizer, train_dl = acc.prepare(self.net, self.optimizer, train_dl)
        else:
            net, optimizer, train_dl, val_dl = acc.prepare(self.net, self.optimizer, train_dl,
                                                           val_dl)
        for module in loss_modules(self.loss_fn):
            module.to(acc.device)  # moved, never wrapped in DDP
        return net, optimizer, train_dl, val_dl

    def _set_scheduler(self, lr_scheduler) -> None:
        """A torch scheduler is used as is; a ``schedules.Schedule`` is kept as
        :attr:`schedule` and built by each fit, stepped per optimizer step."""
        if isinstance(lr_scheduler, Schedule):
            self.schedule, self.lr_scheduler = lr_scheduler, None
            self.lr_scheduler_interval = "step"
        else:
            check_scheduler(lr_scheduler, self.lr_scheduler_interval)
            self.schedule, self.lr_scheduler = None, lr_scheduler

    def _structure_kwargs(self) -> dict:
        """What every StepRunner of this model needs to read dict batches and outputs."""
        return {"label_keys": self.label_keys, "loss_weights": self.loss_weights,
                "metric_outputs": self.metric_outputs}

    def _fit_data(self, train_data, val_data, batch_size, shuffle, sample_weight, class_table,
                  validation_split, validation_batch_size=None):
        """The loaders of a fit, with Keras's sample_weight/class_weight/validation_split
        applied to array data: ``(train_dl, val_dl, train_weighted, val_weighted)``."""
        if (sample_weight is not None or class_table is not None) and self.loss_fn is None:
            raise ValueError("sample_weight and class_weight need loss_fn: a net that computes "
                             "its own loss (loss_fn=None) cannot be weighted per sample")
        if class_table is not None:
            if sample_weight is not None:
                raise ValueError("class_weight and sample_weight cannot be used together (as in "
                                 "Keras): multiply the class weights into sample_weight")
            if self.outputs:
                raise ValueError("class_weight needs a single-output model; loss_fn has outputs "
                                 f"{self.outputs} (weigh them with sample_weight)")
        arrays = is_array_pair(train_data) and len(train_data) == 2
        if sample_weight is not None:
            if not arrays:
                raise ValueError(
                    "sample_weight= weighs an (X, y) pair of arrays (as in Keras); received "
                    f"train_data of type {type(train_data).__name__}. A DataLoader or Dataset "
                    "carries weights in its batches: a dict batch with a 'sample_weight' key")
            weights = check_sample_weights(sample_weight, arrays_len(train_data[1]))
            # weights of all ones are the unweighted loss by definition: use the loss as is
            # (a loss's own mean can differ in the last bit from a mean of its per-sample values)
            sample_weight = None if bool((weights == 1).all()) else weights
            if sample_weight is not None:
                train_data = (*train_data, sample_weight)
        if not (isinstance(validation_split, (int, float)) and not isinstance(
                validation_split, bool) and validation_split == 0):
            if not arrays:
                raise ValueError(
                    "validation_split is only supported for an (X, y) pair of arrays (as in "
                    f"Keras); received train_data of type {type(train_data).__name__}")
            if val_data is not None:
                validation_split_of(train_data, validation_split)  # still a valid value
                warn_user("val_data is given, so validation_split is ignored (as in Keras)")
            else:
                train_data, val_data = validation_split_of(train_data, validation_split)
        train_weighted = sample_weight is not None
        val_weighted = is_weighted_arrays(val_data)
        # what the run directory predicts on: the validation data as fit resolved it
        self._fit_val_data = tuple(val_data[:2]) if val_weighted else val_data
        train_dl = as_dataloader(train_data, batch_size=batch_size, shuffle=shuffle,
                                 name="train_data", weighted=train_weighted)
        val_dl = None if val_data is None else as_dataloader(
            val_data, batch_size=batch_size if validation_batch_size is None
            else validation_batch_size, shuffle=False, name="val_data",
            weighted=val_weighted)
        return train_dl, val_dl, train_weighted, val_weighted

    def _make_epoch_runner(self, net, stage, optimizer, cbs, max_grad_norm=None,
                           interrupt=None, skip_nonfinite=False, weighted=False,
                           class_weight=None):
        metrics = {name: fresh_metric(m, self.accelerator.device, stage)
                   for name, m in self.metrics_dict.items()}
        step = self.step_runner_class(
            net, self.loss_fn, self.accelerator, stage=stage, metrics_dict=metrics,
            optimizer=optimizer, lr_scheduler=self.lr_scheduler if stage == "train" else None,
            max_grad_norm=max_grad_norm, lr_scheduler_interval=self.lr_scheduler_interval,
            skip_nonfinite=skip_nonfinite, **self._structure_kwargs(),
            weighted_batches=weighted, class_weight=class_weight)
        # only a training pass ends early on stop_training (as in Keras); validation and
        # evaluate always see every batch, also after a fit that stopped early
        should_stop = (lambda: self.stop_training) if stage == "train" else None
        return self.epoch_runner_class(step, cbs, interrupt=interrupt, should_stop=should_stop)

    # -- resumable state -----------------------------------------------------------------

    def _fit_callbacks(self, history, ckpt_path, monitor, mode, patience, quiet, plot, extra,
                       log_dir=None, arguments=None):
        cbs: list = [history]
        if patience is not None:
            cbs.append(EarlyStopping(monitor, patience=patience, mode=mode))
        cbs.append(ModelCheckpoint(ckpt_path, monitor, mode, restore_best_weights=True))
        if not quiet:
            cbs.append(ProgressBar())
        if plot:
            # with log_dir the run directory's curves.png is the picture outside notebooks
            cbs.append(LivePlot(path=None if log_dir is not None else "curves.png"))
        cbs.extend(extra)
        if log_dir is not None:  # last: its confusion matrix sees the restored best weights
            cbs.append(RunDirectory(log_dir, monitor=monitor, mode=mode, arguments=arguments,
                                    save_best=ckpt_path is not None,
                                    val_data=getattr(self, "_fit_val_data", None)))
        return cbs

    def expected_columns(self, has_val: bool) -> list:
        """The history columns a default step produces, known before training."""
        names = [*(f"{o}_loss" for o in self.outputs), *self.metrics_dict]
        cols = ["epoch", "train_loss", *(f"train_{n}" for n in names), "lr"]
        if has_val:
            cols += ["val_loss", *(f"val_{n}" for n in names)]
        return cols

    @classmethod
    def _fit_keywords(cls) -> tuple:
        """``fit``'s keyword names, read from its signature (so a new keyword needs no list)."""
        params = inspect.signature(cls.fit).parameters.values()
        return tuple(p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def _resolve_monitor(self, monitor: str, mode: str, has_val: bool) -> str:
        check_mode(mode)
        check_monitor(monitor)
        if monitor == "val_loss" and not has_val:
            monitor = "train_loss"
        columns = self.expected_columns(has_val)
        # a custom step may log other keys; those are checked after the first epoch
        custom_step = self.step_runner_class.__call__ is not StepRunner.__call__ or \
            self.step_runner_class.train_step is not StepRunner.train_step
        if monitor not in columns and not custom_step:
            raise ValueError(monitor_message(monitor, columns, has_val))
        metric = self.metrics_dict.get(monitor.split("_", 1)[-1])
        better = getattr(metric, "higher_is_better", None)
        if better is not None and monitor != "train_loss" and (better != (mode == "max")):
            warn_user(
                f"monitor {monitor!r} uses mode={mode!r}, but the metric's higher_is_better is "
                f"{better}: pass mode={'max' if better else 'min'!r} unless this is intended")
        return monitor


def _has_accelerator_device() -> bool:
    accel = getattr(torch, "accelerator", None)
    if accel is not None and hasattr(accel, "is_available"):
        return accel.is_available()
    return torch.cuda.is_available()


def _validates(epoch: int, validation_freq) -> bool:
    """Keras's rule: every ``validation_freq`` epochs, or on the listed epoch numbers."""
    if isinstance(validation_freq, int):
        return epoch % validation_freq == 0
    return epoch in validation_freq


def _parameter_dtype(net: torch.nn.Module) -> Optional[torch.dtype]:
    """The dtype of the net's first floating-point parameter, or None."""
    for param in net.parameters():
        if param.is_floating_point():
            return param.dtype
    return None


def _to_host(tensor: torch.Tensor, dtype: Optional[torch.dtype]) -> torch.Tensor:
    """A prediction on the CPU; autocast's lower-precision floats back in the net's dtype."""
    tensor = tensor.cpu()
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor


def _quiet_from_verbose(verbose, quiet: bool) -> bool:
    """``quiet`` from Keras's ``verbose`` (0 silent; 1, 2 or "auto" show the bar)."""
    if verbose is None:
        return quiet
    if verbose not in (0, 1, 2, "auto") or isinstance(verbose, bool):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto' (Keras's values); received "
                         f"{verbose!r}")
    if quiet:
        raise ValueError("quiet=True and verbose were both given; pass one (verbose=0 is "
                         "quiet=True)")
    return verbose == 0


def _short(value) -> str:
    """A loss's repr on one line, cut to a readable length."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _optimizer_steps(epochs: int, batches: Optional[int], grad_accum: int, schedule) -> int:
    """How many optimizer steps a fit takes: per epoch, the batches over the accumulation
    (rounded up: the last, partial accumulation of a pass steps too)."""
    if batches is None:
        raise ValueError(f"{schedule!r} needs the number of batches per epoch, and the training "
                         "loader has no length (an IterableDataset): pass steps_per_epoch=")
    return epochs * -(-batches // grad_accum)
