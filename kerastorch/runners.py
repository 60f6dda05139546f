"""StepRunner (one batch) and EpochRunner (one pass over a loader)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch

from .losses import check_loss

__all__ = ["StepRunner", "EpochRunner"]

STAGES = ("train", "val")


class StepRunner:
    """Runs one batch: forward, loss, and in the ``"train"`` stage backward and update.

    A batch ``(x, y)`` or ``(x1, ..., xn, y)`` calls ``net(x1, ..., xn)`` and
    ``loss_fn(preds, y)``. For any other batch layout (a dict, a batch without
    labels) override :meth:`unpack_batch`; for a different step altogether (two
    optimizers, an extra loss term) override :meth:`train_step` or :meth:`__call__`.

    The step returns ``(step_losses, step_metrics)``: dicts of detached tensors
    keyed ``"<stage>_<name>"``. The :class:`EpochRunner` averages them over the
    epoch weighted by :attr:`batch_size`, so a custom step that returns extra
    entries gets them as history columns. torchmetrics objects in ``metrics_dict``
    are only ``update``d here; the epoch computes and resets them.

    Validation batches are gathered across processes (``gather_for_metrics``,
    which drops the padding samples of the last batch) before the loss and the
    metrics, so validation numbers equal a single-process evaluation.

    Args:
        net: the (prepared) network.
        loss_fn: ``loss_fn(preds, labels)`` returning a scalar tensor.
        accelerator: the ``accelerate.Accelerator`` of this fit.
        stage: ``"train"`` or ``"val"``. Defaults to ``"train"``.
        metrics_dict: name -> torchmetrics ``Metric``. Defaults to None.
        optimizer: required in the train stage. Defaults to None.
        lr_scheduler: stepped here only when ``lr_scheduler_interval="step"``. Defaults to None.
        max_grad_norm: clip the gradient norm when gradients sync; None never clips.
            Defaults to None.
        lr_scheduler_interval: ``"epoch"`` or ``"step"``. Defaults to ``"epoch"``.
        skip_nonfinite: skip the update of a step whose loss is NaN/inf, leaving the
            weights and optimizer state unchanged. Costs one host sync per step
            (the decision needs the loss value). Defaults to False.

    Example:
        >>> class DictBatchStep(StepRunner):
        ...     def unpack_batch(self, batch):
        ...         return (batch["image"],), batch["label"]
    """

    def __init__(self, net: torch.nn.Module, loss_fn, accelerator, stage: str = "train",
                 metrics_dict: Optional[dict] = None, optimizer=None, lr_scheduler=None, *,
                 max_grad_norm: Optional[float] = None, lr_scheduler_interval: str = "epoch",
                 skip_nonfinite: bool = False):
        if stage not in STAGES:
            raise ValueError(f"stage must be 'train' or 'val'; received {stage!r}")
        if stage == "train" and optimizer is None:
            raise ValueError("the train stage needs an optimizer; received optimizer=None")
        self.net = net
        self.loss_fn = loss_fn
        self.accelerator = accelerator
        self.stage = stage
        self.metrics_dict = dict(metrics_dict or {})
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.max_grad_norm = max_grad_norm
        self.lr_scheduler_interval = lr_scheduler_interval
        self.skip_nonfinite = skip_nonfinite
        self.skipped_steps = 0
        self._bare_optimizer = _bare_optimizer(optimizer)
        self.batch_size = 1
        self._first_batch_checked = False

    # -- the overridable pieces, in the order a step uses them --------------------

    def unpack_batch(self, batch: Any) -> Tuple[Sequence[Any], Any]:
        """Split a batch into ``(inputs, labels)``; ``net(*inputs)`` is called.

        Override this for dict batches or other layouts.

        Raises:
            TypeError: the batch is not a tuple/list of at least two items.
        """
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return tuple(batch[:-1]), batch[-1]
        if isinstance(batch, dict):
            received = f"a dict with keys {sorted(batch)}"
        elif isinstance(batch, (tuple, list)):
            received = f"a {type(batch).__name__} of {len(batch)} item(s)"
        else:
            received = f"a {type(batch).__name__}"
        raise TypeError(
            f"a batch must be (x, y) or (x1, ..., xn, y); received {received}. "
            "For other layouts subclass kerastorch.StepRunner, override unpack_batch(batch) "
            "to return (inputs_tuple, labels), and pass KerasModel(..., step_runner=YourStep)"
        )

    def forward(self, inputs: Sequence[Any]) -> Any:
        return self.net(*inputs)

    def compute_loss(self, preds: Any, labels: Any) -> torch.Tensor:
        return self.loss_fn(preds, labels)

    def __call__(self, batch: Any):
        inputs, labels = self.unpack_batch(batch)
        if not self._first_batch_checked:
            self._check_batch_types(inputs, labels)
        if self.stage == "train":
            return self.train_step(inputs, labels)
        return self.val_step(inputs, labels)

    def train_step(self, inputs, labels):
        acc = self.accelerator
        with acc.autocast():
            preds = self.forward(inputs)
            if self._first_batch_checked:
                loss = self.compute_loss(preds, labels)
            else:
                loss = self._checked_first_loss(preds, labels)
        if self.skip_nonfinite and not torch.isfinite(loss.detach()).all():
            # skipped steps count nowhere: not in the epoch loss, not in the metrics
            self.skipped_steps += 1
            self.batch_size = 0
            return {}, {}
        acc.backward(loss)
        if self.max_grad_norm is not None and acc.sync_gradients:
            # accelerate unscales fp16 gradients before measuring the norm
            acc.clip_grad_norm_(self.net.parameters(), self.max_grad_norm)
        if self._bare_optimizer is None:
            self.optimizer.step()
        elif acc.sync_gradients:
            self._bare_optimizer.step()
        if (self.lr_scheduler is not None and self.lr_scheduler_interval == "step"
                and acc.sync_gradients and not acc.optimizer_step_was_skipped):
            self.lr_scheduler.step()
        if self._bare_optimizer is None:
            self.optimizer.zero_grad()
        elif acc.sync_gradients:
            self._bare_optimizer.zero_grad()  # torch defaults to set_to_none=True
        self.batch_size = _batch_len(labels)
        self.update_metrics(preds, labels)
        return {f"{self.stage}_loss": loss.detach()}, {}

    def val_step(self, inputs, labels):
        acc = self.accelerator
        with torch.no_grad():
            with acc.autocast():
                preds = self.forward(inputs)
            # every process gets the whole batch, so loss and metrics need no later sync
            preds, labels = acc.gather_for_metrics((preds, labels))
            if not self._first_batch_checked:
                self._check_batch_sizes(preds, labels)  # before the loss trips over them
            with acc.autocast():
                loss = self.compute_loss(preds, labels)
        if not self._first_batch_checked:
            self._check_first_batch(preds, labels, loss)
        self.batch_size = _batch_len(labels)
        self.update_metrics(preds, labels)
        return {f"{self.stage}_loss": loss.detach()}, {}

    def update_metrics(self, preds: Any, labels: Any) -> None:
        """``update`` each metric (never its forward, which would compute twice)."""
        if not self.metrics_dict:
            return
        preds = preds.detach() if isinstance(preds, torch.Tensor) else preds
        for name, metric in self.metrics_dict.items():
            try:
                metric.update(preds, labels)
            except Exception as exc:
                _add_note(exc, f"raised in metric {name!r}.update (metrics_dict[{name!r}]) with "
                               f"preds {_describe(preds)} and labels {_describe(labels)}")
                raise

    # -- checks on the first batch only, so they cost nothing per step ----------

    def _check_batch_types(self, inputs, labels) -> None:
        """With the default unpack/forward, inputs and labels must be tensors."""
        cls = type(self)
        if cls.unpack_batch is not StepRunner.unpack_batch or cls.forward is not StepRunner.forward:
            return
        for where, item in [*((f"input {i}", x) for i, x in enumerate(inputs)),
                            ("the label (last item)", labels)]:
            if not isinstance(item, torch.Tensor):
                raise TypeError(
                    f"the default StepRunner expects every batch item to be a tensor; {where} is "
                    f"{_describe(item)}. Convert it in the Dataset or the DataLoader's "
                    "collate_fn, or subclass StepRunner and override unpack_batch/forward"
                )

    def _checked_first_loss(self, preds, labels) -> torch.Tensor:
        """The first training loss, computed through ``losses.check_loss``.

        check_loss warns about log-softmax/softmax outputs fed to cross-entropy,
        and raises for wrong target dtypes/shapes, non-scalar losses and losses with
        no gradient path to the net; it returns the loss it computed, so the first
        batch costs one loss evaluation as usual.
        """
        self._check_batch_sizes(preds, labels)
        if type(self).compute_loss is StepRunner.compute_loss:
            # the frames between check_loss and the user's fit call: train_step,
            # StepRunner.__call__, EpochRunner.__call__, KerasModel._run_epoch, fit,
            # counted from check_loss
            loss = check_loss(self.loss_fn, preds, labels, net=self.net, stacklevel=8)
        else:
            loss = self.compute_loss(preds, labels)
        self._check_first_batch(preds, labels, loss)
        return loss

    def _check_batch_sizes(self, preds, labels) -> None:
        if isinstance(preds, torch.Tensor) and isinstance(labels, torch.Tensor) \
                and preds.ndim > 0 and labels.ndim > 0 and preds.shape[0] != labels.shape[0]:
            raise ValueError(
                f"the net's output has batch size {preds.shape[0]} but the labels have "
                f"{labels.shape[0]} (output shape {tuple(preds.shape)}, labels shape "
                f"{tuple(labels.shape)})"
            )

    def _check_first_batch(self, preds, labels, loss) -> None:
        self._first_batch_checked = True
        if not isinstance(loss, torch.Tensor):
            raise TypeError(
                f"loss_fn must return a scalar torch.Tensor; received {type(loss).__name__}"
            )
        if loss.numel() != 1:
            raise ValueError(
                f"loss_fn must return a scalar (use reduction='mean'); received a tensor of "
                f"shape {tuple(loss.shape)}"
            )
        if self.stage == "train" and not loss.requires_grad:
            raise ValueError(
                "loss_fn returned a tensor without grad: it has no gradient path to the net "
                "(was it computed from .detach(), .item(), numpy or under torch.no_grad?)"
            )


def _bare_optimizer(optimizer):
    """The optimizer inside Accelerate's wrapper when the wrapper would add nothing.

    AcceleratedOptimizer.step/zero_grad only forward to the inner optimizer when
    gradients sync, unless a GradScaler, XLA or a LOMO optimizer is involved; but
    they pay two uncached importlib look-ups and an inspect.signature per step
    (about 0.4 ms here, a third of a tiny MLP's step). Only that plain case is
    bypassed; anything else (DeepSpeed's wrapper included) keeps the wrapper.
    """
    try:
        from accelerate.optimizer import AcceleratedOptimizer
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return None
    if type(optimizer) is not AcceleratedOptimizer or optimizer.scaler is not None:
        return None
    inner = optimizer.optimizer
    if getattr(optimizer, "accelerator_state", None) is not None and \
            str(getattr(optimizer.accelerator_state, "distributed_type", "")).endswith("XLA"):
        return None
    if type(inner).__module__.startswith("lomo_optim"):
        return None
    return inner


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)) and value:
        return f"a {type(value).__name__} of {type(value[0]).__name__}"
    return f"a {type(value).__name__}"


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(note)


def _batch_len(labels: Any) -> int:
    if isinstance(labels, torch.Tensor):
        return int(labels.shape[0]) if labels.ndim > 0 else 1
    try:
        return len(labels)
    except TypeError:
        return 1


class EpochRunner:
    """Runs one pass of a :class:`StepRunner` over a loader and returns the epoch's logs.

    Per step it fires the batch hooks (only when some callback overrides them),
    enters gradient accumulation in the train stage, and adds each returned
    value times the batch size to a detached device tensor. Nothing becomes a
    Python float until the epoch ends, so the loop never waits for the device.

    At the end the losses are sample-weighted means over the epoch (summed
    across processes in the train stage; validation batches are already
    gathered), each metric is computed once and reset.

    Args:
        step_runner: the :class:`StepRunner` to call per batch.
        callbacks: a ``CallbackList`` for the batch hooks. Defaults to None.
        interrupt: an object whose ``requested`` flag, once set, stops the pass
            after the current batch with ``KeyboardInterrupt``. Defaults to None.
        should_stop: called after each batch; True ends the pass there and the epoch's
            logs cover the batches run (a callback setting ``model.stop_training``
            mid-epoch, as in Keras). Defaults to None.

    Returns:
        ``__call__(loader)`` returns a dict of floats keyed ``"<stage>_<name>"``.
    """

    def __init__(self, step_runner: StepRunner, callbacks=None, interrupt=None,
                 should_stop=None):
        self.step_runner = step_runner
        self.stage = step_runner.stage
        self.callbacks = callbacks
        self.interrupt = interrupt
        self.should_stop = should_stop

    def __call__(self, dataloader) -> dict:
        step_runner, stage = self.step_runner, self.stage
        step_runner.net.train(stage == "train")
        hook_begin, hook_end = self._batch_hooks()
        accumulate = step_runner.accelerator.accumulate if stage == "train" else None
        sums: dict = {}
        count, steps = 0, 0
        for steps, batch in enumerate(dataloader, start=1):
            if hook_begin:
                self.callbacks.call(f"on_{stage}_batch_begin", steps - 1, {})
            if accumulate is not None:
                with accumulate(step_runner.net):
                    step_losses, step_metrics = step_runner(batch)
            else:
                step_losses, step_metrics = step_runner(batch)
            n = step_runner.batch_size
            step_logs = {**step_losses, **step_metrics}
            for key, value in step_logs.items():
                _accumulate(sums, key, value, n)
            count += n
            if hook_end:
                self.callbacks.call(f"on_{stage}_batch_end", steps - 1, step_logs)
            if self.interrupt is not None and self.interrupt.requested:
                raise KeyboardInterrupt(f"interrupted after {stage} step {steps - 1}")
            if self.should_stop is not None and self.should_stop():
                break
        if steps == 0:
            raise ValueError(f"the {stage} loader yielded no batches; it must yield at least one")
        logs = self._epoch_means(sums, count)
        for name, metric in step_runner.metrics_dict.items():
            try:
                logs[f"{stage}_{name}"] = _to_float(metric.compute())
            except Exception as exc:
                _add_note(exc, f"raised in metric {name!r}.compute (metrics_dict[{name!r}])")
                raise
            metric.reset()
        return logs

    def _batch_hooks(self):
        if self.callbacks is None:
            return False, False
        return (self.callbacks.wants(f"on_{self.stage}_batch_begin"),
                self.callbacks.wants(f"on_{self.stage}_batch_end"))

    def _epoch_means(self, sums: dict, count: int) -> dict:
        if not sums:  # every step was skipped
            return {f"{self.stage}_loss": float("nan")}
        acc = self.step_runner.accelerator
        keys = list(sums)
        device = sums[keys[0]].device
        totals = torch.stack([sums[k].to(device) for k in keys]
                             + [torch.tensor(float(count), device=device, dtype=sums[keys[0]].dtype)])
        if self.stage == "train" and acc.num_processes > 1:
            totals = acc.reduce(totals, reduction="sum")
        totals = totals.tolist()  # the one host sync of the epoch
        count = totals[-1] or float("nan")  # all-zero counts: only skipped steps
        return {k: totals[i] / count for i, k in enumerate(keys)}


def _accumulate(sums: dict, key: str, value: Any, n: int) -> None:
    value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    # float64 so a long epoch's sum loses nothing (MPS has no float64)
    dtype = torch.float32 if value.device.type == "mps" else torch.float64
    if key in sums:
        sums[key].add_(value.to(dtype), alpha=n)
    else:
        sums[key] = value.to(dtype) * n


def _to_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.detach().cpu().tolist()
    return value
