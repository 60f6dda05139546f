"""StepRunner (one batch) and EpochRunner (one pass over a loader)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch

from . import diagnostics
from .accelerate_compat import bare_optimizer
from .diagnostics import describe
from .errors import add_note
from .scheduler import SchedulerStepper

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
        self.scheduler = SchedulerStepper(lr_scheduler, lr_scheduler_interval)
        self._bare_optimizer = bare_optimizer(optimizer)
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
        first = not self._first_batch_checked
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
        if first:
            # a metric that fails on these outputs must fail before any weight changes
            self.update_metrics(preds, labels)
        acc.backward(loss)
        if self.max_grad_norm is not None and acc.sync_gradients:
            # accelerate unscales fp16 gradients before measuring the norm
            acc.clip_grad_norm_(self.net.parameters(), self.max_grad_norm)
        if self._bare_optimizer is None:
            self.optimizer.step()
        elif acc.sync_gradients:
            self._bare_optimizer.step()
        self.scheduler.after_optimizer_step(acc)
        if self._bare_optimizer is None:
            self.optimizer.zero_grad()
        elif acc.sync_gradients:
            self._bare_optimizer.zero_grad()  # torch defaults to set_to_none=True
        self.batch_size = _batch_len(labels)
        if not first:
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

    def predict_step(self, batch: Any) -> Tuple[Any, Any]:
        """One batch of ``predict``: ``(outputs, labels)``, labels None when the batch has none.

        A tensor, or a tuple/list of one item, is the input alone; anything else goes
        through :meth:`unpack_batch`. Runs :meth:`forward` under no_grad and
        autocast; under several processes both are gathered (``gather_for_metrics``
        drops the padding duplicates of the last batch), so every process gets the
        whole batch. Override it to post-process outputs (Keras's ``predict_step``).
        """
        if isinstance(batch, torch.Tensor):
            inputs, labels = (batch,), None
        elif isinstance(batch, (tuple, list)) and len(batch) == 1:
            inputs, labels = tuple(batch), None
        else:
            inputs, labels = self.unpack_batch(batch)
        acc = self.accelerator
        with torch.no_grad(), acc.autocast():
            preds = self.forward(inputs)
        if labels is None:
            return acc.gather_for_metrics(preds), None
        return acc.gather_for_metrics((preds, labels))

    def update_metrics(self, preds: Any, labels: Any) -> None:
        """``update`` each metric (never its forward, which would compute twice)."""
        if not self.metrics_dict:
            return
        preds = preds.detach() if isinstance(preds, torch.Tensor) else preds
        for name, metric in self.metrics_dict.items():
            try:
                metric.update(preds, labels)
            except Exception as exc:
                add_note(exc, f"raised in metric {name!r}.update (metrics_dict[{name!r}]) with "
                               f"preds {describe(preds)} and labels {describe(labels)}")
                raise

    # -- checks on the first batch only, so they cost nothing per step ----------

    def _check_batch_types(self, inputs, labels) -> None:
        """With the default unpack/forward, inputs and labels must be tensors."""
        cls = type(self)
        custom = (cls.unpack_batch is not StepRunner.unpack_batch
                  or cls.forward is not StepRunner.forward)
        diagnostics.check_batch_types(inputs, labels, custom_unpack=custom)

    def _checked_first_loss(self, preds, labels) -> torch.Tensor:
        """The first training loss, computed and checked by ``diagnostics.checked_first_loss``."""
        default = type(self).compute_loss is StepRunner.compute_loss
        loss = diagnostics.checked_first_loss(self.compute_loss, preds, labels, net=self.net,
                                              loss_fn=self.loss_fn if default else None)
        self._first_batch_checked = True
        return loss

    def _check_batch_sizes(self, preds, labels) -> None:
        diagnostics.check_batch_sizes(preds, labels)

    def _check_first_batch(self, preds, labels, loss) -> None:
        self._first_batch_checked = True
        default = type(self).compute_loss is StepRunner.compute_loss
        diagnostics.check_loss_output(loss, self.compute_loss, preds=preds,
                                      loss_fn=self.loss_fn if default else None,
                                      training=self.stage == "train")


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
                add_note(exc, f"raised in metric {name!r}.compute (metrics_dict[{name!r}])")
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
