"""StepRunner (one batch) and EpochRunner (one pass over a loader)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from typing import Any, Optional, Sequence, Tuple

import torch

from . import diagnostics
from .accelerate_compat import bare_optimizer, needs_accumulate, needs_autocast, plain_backward
from .batches import (LABEL_KEYS, SAMPLE_WEIGHT_KEY, call_net, describe_keys, map_tensors,
                      plain,
                      predictions_view, split_mapping, structure_len)
from .diagnostics import describe
from .errors import add_note
from .objectives import Objective, class_sample_weights
from .scheduler import SchedulerStepper

__all__ = ["StepRunner", "EpochRunner"]

STAGES = ("train", "val")


class StepRunner:
    """Runs one batch: forward, loss, and in the ``"train"`` stage backward and update.

    Batch layouts, all without a subclass:

    - ``(x, y)`` or ``(x1, ..., xn, y)``: ``net(x1, ..., xn)``, ``loss_fn(preds, y)``;
    - a mapping (a HuggingFace batch): the value under one of ``label_keys`` is the
      labels, the rest the inputs, called as ``net(**inputs)``; a ``"sample_weight"``
      key holds per-sample weights. Inputs and labels may nest tuples and dicts as
      ``default_collate`` builds them.

    ``loss_fn`` may be one loss, a dict ``{output_name: loss}`` (the net returns a dict,
    the labels are a dict with the same keys; see :class:`kerastorch.objectives.Objective`)
    or None, when the net returns its own loss (``output.loss`` / ``output["loss"]``) and
    the labels stay in what the net is called with. For a different step altogether
    (two optimizers, an extra loss term) override :meth:`train_step` or :meth:`__call__`.

    The step returns ``(step_losses, step_metrics)``: dicts of detached tensors
    keyed ``"<stage>_<name>"`` (``"<stage>_loss"``, and ``"<stage>_<output>_loss"`` per
    output of a dict loss). The :class:`EpochRunner` averages them over the epoch
    weighted by :attr:`batch_size` (the sum of the sample weights when the batch has
    them), so a custom step that returns extra entries gets them as history columns.
    torchmetrics objects in ``metrics_dict`` are only ``update``d here; the epoch
    computes and resets them. Metrics see the labels and the predictions (for an
    output carrying its loss, its ``"logits"``; see ``batches.predictions_view``), and
    are not weighted by sample weights (as Keras's ``metrics``).

    Validation batches are gathered across processes (``gather_for_metrics``,
    which drops the padding samples of the last batch) before the loss and the
    metrics, so validation numbers equal a single-process evaluation.

    Args:
        net: the (prepared) network.
        loss_fn: ``loss_fn(preds, labels)`` returning a scalar tensor, a dict of them,
            or None (see above).
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
        label_keys: the keys of a mapping batch that hold the labels. Defaults to
            ``("label", "labels", "y", "target")``.
        loss_weights: ``{output_name: weight}`` for a dict ``loss_fn``. Defaults to None.
        metric_outputs: metric name -> the output (key of a dict output and dict
            labels) the metric is updated with. Defaults to None.
        weighted_batches: the last item of each tuple batch is the sample weights
            (batches kerastorch built from ``fit(..., sample_weight=...)``). Defaults to False.
        class_weight: a 1-D tensor, class index -> weight, multiplied into the sample
            weights from the labels (``fit(..., class_weight=...)``). Defaults to None.

    Example:
        >>> class DictBatchStep(StepRunner):
        ...     def unpack_batch(self, batch):
        ...         return (batch["image"],), batch["label"]
    """

    def __init__(self, net: torch.nn.Module, loss_fn, accelerator, stage: str = "train",
                 metrics_dict: Optional[dict] = None, optimizer=None, lr_scheduler=None, *,
                 max_grad_norm: Optional[float] = None, lr_scheduler_interval: str = "epoch",
                 skip_nonfinite: bool = False, label_keys: Sequence[str] = LABEL_KEYS,
                 loss_weights: Optional[dict] = None, metric_outputs: Optional[dict] = None,
                 weighted_batches: bool = False, class_weight: Optional[torch.Tensor] = None):
        if stage not in STAGES:
            raise ValueError(f"stage must be 'train' or 'val'; received {stage!r}")
        if stage == "train" and optimizer is None:
            raise ValueError("the train stage needs an optimizer; received optimizer=None")
        self.net = net
        self.loss_fn = loss_fn
        self.objective = Objective(loss_fn, loss_weights)
        self.accelerator = accelerator
        self.stage = stage
        self.metrics_dict = dict(metrics_dict or {})
        self.metric_outputs = dict(metric_outputs or {})
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.max_grad_norm = max_grad_norm
        self.lr_scheduler_interval = lr_scheduler_interval
        self.skip_nonfinite = skip_nonfinite
        self.label_keys = tuple(label_keys)
        self.weighted_batches = weighted_batches
        self.class_weight = class_weight
        self.skipped_steps = 0
        self.scheduler = SchedulerStepper(lr_scheduler, lr_scheduler_interval)
        self._bare_optimizer = bare_optimizer(optimizer)
        # Accelerate's per-step calls that would do nothing here are skipped (see
        # accelerate_compat): autocast without mixed precision, backward's division by 1,
        # gathering in one process
        self._autocast = accelerator.autocast if needs_autocast(accelerator) \
            else contextlib.nullcontext
        self._backward = torch.Tensor.backward if plain_backward(accelerator) \
            else accelerator.backward
        self._gather = accelerator.gather_for_metrics if accelerator.num_processes > 1 \
            else _same
        self.batch_size = 1
        self.loss_parts: dict = {}
        self.example_inputs: Any = None
        self._first_batch_checked = False

    # -- the overridable pieces, in the order a step uses them --------------------

    def unpack_batch(self, batch: Any) -> Tuple[Any, Any]:
        """Split a batch into ``(inputs, labels)``; :meth:`forward` calls the net with the inputs.

        Inputs are a tuple (``net(*inputs)``) or a dict (``net(**inputs)``). With
        ``loss_fn=None`` the labels also stay in the inputs, for the net's own loss.

        Raises:
            TypeError: the batch is neither a mapping nor a tuple/list of at least two items.
            ValueError: a mapping batch holds more than one of ``label_keys``.
        """
        own_loss = self.loss_fn is None
        if isinstance(batch, Mapping):
            inputs, labels = split_mapping(batch, self.label_keys, keep_labels=own_loss)
            if labels is None and not own_loss:
                raise TypeError(
                    f"a dict batch needs its labels under a label key; received keys "
                    f"{describe_keys(batch)} and none of the label keys {list(self.label_keys)}. "
                    "Pass KerasModel(..., label_keys=[...]) naming the key, or loss_fn=None for "
                    "a net that computes its own loss")
            return inputs, labels
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return (tuple(batch) if own_loss else tuple(batch[:-1])), batch[-1]
        if own_loss and isinstance(batch, (tuple, list, torch.Tensor)):
            return (tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)), None
        received = (f"a {type(batch).__name__} of {len(batch)} item(s)"
                    if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}")
        raise TypeError(
            f"a batch must be (x, y), (x1, ..., xn, y) or a dict with a label key "
            f"{list(self.label_keys)}; received {received}. For other layouts subclass "
            "kerastorch.StepRunner, override unpack_batch(batch) to return (inputs, labels), "
            "and pass KerasModel(..., step_runner=YourStep)"
        )

    def forward(self, inputs: Any) -> Any:
        """The net's output for the unpacked inputs: ``net(**inputs)`` for a dict, else
        ``net(*inputs)``. Override it to call the net differently."""
        return call_net(self.net, inputs)

    def compute_loss(self, preds: Any, labels: Any, sample_weight=None) -> torch.Tensor:
        """The loss to minimise; per-output parts of a dict loss go to :attr:`loss_parts`."""
        loss, self.loss_parts = self.objective(preds, labels, sample_weight)
        return loss

    def __call__(self, batch: Any):
        weights = None
        if isinstance(batch, Mapping):
            weights = batch.get(SAMPLE_WEIGHT_KEY)
        elif self.weighted_batches:
            batch, weights = batch[:-1], batch[-1]
        inputs, labels = self.unpack_batch(batch)
        if self.class_weight is not None:
            from_classes = class_sample_weights(self.class_weight, labels)
            weights = from_classes if weights is None else weights * from_classes
        if not self._first_batch_checked:
            self._check_batch_types(inputs, labels, weights)
            self.example_inputs = inputs  # a reference (no copy) for KerasModel.summary()
        if self.stage == "train":
            step = self.train_step
        else:
            step = self.val_step
        if weights is None:
            return step(inputs, labels)
        return step(inputs, labels, weights)

    def _loss(self, preds, labels, weights):
        if weights is None:
            return self.compute_loss(preds, labels)
        return self.compute_loss(preds, labels, sample_weight=weights)

    def train_step(self, inputs, labels, sample_weight=None):
        """Forward, loss, backward and optimizer step for one batch; returns the step logs.

        Called with ``sample_weight`` only when the batch has weights, so an override
        with the two-argument signature keeps working on unweighted data. An override
        sets :attr:`batch_size` (what the epoch weighs its values by) and returns
        ``({"train_loss": loss.detach(), ...}, {})``.
        """
        acc = self.accelerator
        first = not self._first_batch_checked
        with self._autocast():
            preds = self.forward(inputs)
            if self._first_batch_checked:
                loss = self._loss(preds, labels, sample_weight)
            else:
                loss = self._checked_first_loss(preds, labels, sample_weight)
        if self.skip_nonfinite and not torch.isfinite(loss.detach()).all():
            # skipped steps count nowhere: not in the epoch loss, not in the metrics
            self.skipped_steps += 1
            self.batch_size = 0
            return {}, {}
        if first:
            # a metric that fails on these outputs must fail before any weight changes
            self.update_metrics(preds, labels)
        self._backward(loss)
        if self.max_grad_norm is not None and acc.sync_gradients:
            # accelerate unscales fp16 gradients before measuring the norm
            acc.clip_grad_norm_(self.net.parameters(), self.max_grad_norm)
        if self._bare_optimizer is None:
            self.optimizer.step()
        elif acc.sync_gradients:
            self._bare_optimizer.step()
        if self.scheduler.per_step:
            self.scheduler.after_optimizer_step(acc)
        if self._bare_optimizer is None:
            self.optimizer.zero_grad()
        elif acc.sync_gradients:
            self._bare_optimizer.zero_grad()  # torch defaults to set_to_none=True
        self.batch_size = self._weight_of(preds, labels, sample_weight)
        if not first:
            self.update_metrics(preds, labels)
        return self._step_logs(loss), {}

    def val_step(self, inputs, labels, sample_weight=None):
        """Forward and loss without gradients on the batch gathered from all processes;
        updates the metrics and returns the step logs, as :meth:`train_step`."""
        with torch.no_grad():
            with self._autocast():
                preds = plain(self.forward(inputs))
            if self.loss_fn is None:
                loss, preds, labels = self._gathered_own_loss(preds, labels, sample_weight)
            else:
                # every process gets the whole batch, so loss and metrics need no later sync
                if sample_weight is None:
                    preds, labels = self._gather((preds, labels))
                else:
                    preds, labels, sample_weight = self._gather((preds, labels, sample_weight))
                if not self._first_batch_checked:
                    self._check_batch_sizes(preds, labels)  # before the loss trips over them
                with self._autocast():
                    loss = self._loss(preds, labels, sample_weight)
        if not self._first_batch_checked:
            self._check_first_batch(preds, labels, loss)
        self.batch_size = self._weight_of(preds, labels, sample_weight)
        self.update_metrics(preds, labels)
        return self._step_logs(loss), {}

    def _gathered_own_loss(self, preds, labels, sample_weight=None):
        """Validation with the net's own loss: each process's loss is a mean over its own
        samples, so it is gathered once per sample (padding duplicates dropped) and averaged."""
        acc = self.accelerator
        loss = self._loss(preds, labels, sample_weight)  # weights: a clear error, as in training
        self.loss_parts = {}
        view = predictions_view(preds)
        if acc.num_processes == 1:
            return loss, view, labels
        per_sample = loss.detach().float().reshape(1).expand(structure_len(view))
        if labels is None:
            view, per_sample = acc.gather_for_metrics((view, per_sample))
        else:
            view, labels, per_sample = acc.gather_for_metrics((view, labels, per_sample))
        return per_sample.mean(), view, labels

    def _step_logs(self, loss) -> dict:
        logs = {f"{self.stage}_loss": loss.detach()}
        for name, part in self.loss_parts.items():
            logs[f"{self.stage}_{name}_loss"] = part.detach()
        return logs

    def _weight_of(self, preds, labels, sample_weight):
        """What the epoch weighs this step's values by: the sample count, or the weights' sum."""
        if sample_weight is not None:
            return sample_weight.detach().sum()
        return structure_len(preds if labels is None else labels)

    def predict_step(self, batch: Any) -> Tuple[Any, Any]:
        """One batch of ``predict``: ``(outputs, labels)``, labels None when the batch has none.

        A tensor, or a tuple/list of one item, is the input alone; a mapping batch
        leaves out its label keys and ``"sample_weight"`` (so a HuggingFace model
        returns its logits without computing a loss); a tuple ``(x, ..., y)`` leaves
        out ``y``. A custom :meth:`unpack_batch` decides for itself. Runs
        :meth:`forward` under no_grad and autocast; outputs are plain structures
        (a ``ModelOutput`` becomes a dict). Under several processes both are gathered
        (``gather_for_metrics`` drops the padding duplicates of the last batch), so
        every process gets the whole batch. Override it to post-process outputs
        (Keras's ``predict_step``).
        """
        if isinstance(batch, torch.Tensor):
            inputs, labels = (batch,), None
        elif isinstance(batch, (tuple, list)) and len(batch) == 1:
            inputs, labels = tuple(batch), None
        elif type(self).unpack_batch is not StepRunner.unpack_batch:
            inputs, labels = self.unpack_batch(batch)
        elif isinstance(batch, Mapping):
            inputs, labels = split_mapping(batch, self.label_keys)
        elif isinstance(batch, (tuple, list)):
            inputs, labels = tuple(batch[:-1]), batch[-1]
        else:
            inputs, labels = self.unpack_batch(batch)
        acc = self.accelerator
        with torch.no_grad(), acc.autocast():
            preds = plain(self.forward(inputs))
        if labels is None:
            return acc.gather_for_metrics(preds), None
        return acc.gather_for_metrics((preds, labels))

    def update_metrics(self, preds: Any, labels: Any) -> None:
        """``update`` each metric (never its forward, which would compute twice)."""
        if not self.metrics_dict:
            return
        if self.loss_fn is None:
            preds = predictions_view(plain(preds))
        preds = map_tensors(torch.Tensor.detach, preds)
        for name, metric in self.metrics_dict.items():
            output = self.metric_outputs.get(name)
            p, y = (preds, labels) if output is None else (preds[output], labels[output])
            try:
                metric.update(p, y)
            except Exception as exc:
                where = "" if output is None else f" on output {output!r}"
                add_note(exc, f"raised in metric {name!r}.update{where} with preds "
                               f"{describe(p)} and labels {describe(y)}")
                raise

    # -- checks on the first batch only, so they cost nothing per step ----------

    def _check_batch_types(self, inputs, labels, weights=None) -> None:
        """With the default unpack/forward, inputs and labels must be (nests of) tensors."""
        cls = type(self)
        custom = (cls.unpack_batch is not StepRunner.unpack_batch
                  or cls.forward is not StepRunner.forward)
        diagnostics.check_batch_types(inputs, labels, custom_unpack=custom,
                                      labels_optional=self.loss_fn is None)
        if weights is not None:
            diagnostics.check_sample_weight(weights, labels if labels is not None else inputs)

    def _checked_first_loss(self, preds, labels, weights=None) -> torch.Tensor:
        """The first training loss, computed and checked by ``diagnostics.checked_first_loss``."""
        compute = (self.compute_loss if weights is None
                   else functools.partial(self.compute_loss, sample_weight=weights))
        loss = diagnostics.checked_first_loss(
            compute, preds, labels, net=self.net,
            loss_fn=self._plain_loss_fn() if weights is None else None)
        self._first_batch_checked = True
        return loss

    def _check_batch_sizes(self, preds, labels) -> None:
        diagnostics.check_batch_sizes(preds, labels)

    def _check_first_batch(self, preds, labels, loss) -> None:
        self._first_batch_checked = True
        diagnostics.check_loss_output(loss, self.compute_loss, preds=preds,
                                      loss_fn=self._plain_loss_fn(),
                                      training=self.stage == "train")

    def _plain_loss_fn(self):
        """``loss_fn`` when the loss is just ``loss_fn(preds, labels)`` (the default
        compute_loss, one loss), which the loss checks then name and inspect; else None."""
        default = type(self).compute_loss is StepRunner.compute_loss
        one_loss = callable(self.loss_fn) and not isinstance(self.loss_fn, Mapping)
        return self.loss_fn if default and one_loss else None


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
        after_step: called after each batch unless it stopped or interrupted the pass,
            as ``after_step(batches, sums, count, step_logs)``: the batches run so far in
            this pass, the running sums (detached device tensors, by key) and their
            weight (an int, or a device tensor with sample weights), and the step's logs
            (empty when ``skip_nonfinite`` skipped it). ``fit(save_state_every_steps=N)``
            writes its mid-epoch states from here (``state.StepStates``). Defaults to None.

    Returns:
        ``__call__(loader)`` returns a dict of floats keyed ``"<stage>_<name>"``.
    """

    def __init__(self, step_runner: StepRunner, callbacks=None, interrupt=None,
                 should_stop=None, after_step=None):
        self.step_runner = step_runner
        self.stage = step_runner.stage
        self.callbacks = callbacks
        self.interrupt = interrupt
        self.should_stop = should_stop
        self.after_step = after_step
        self._resume: Optional[tuple] = None

    def resume_from(self, batches: int, sums: dict, count) -> None:
        """Make the next pass continue one whose first ``batches`` batches ran already:
        its sums and weight start from ``sums`` and ``count`` (as ``after_step`` saw them)
        and its batch hooks count on from ``batches``. The loader given to that pass
        yields the remaining batches; the metrics keep whatever state they hold."""
        self._resume = (batches, sums, count)

    def __call__(self, dataloader) -> dict:
        step_runner, stage = self.step_runner, self.stage
        step_runner.net.train(stage == "train")
        hook_begin, hook_end = self._batch_hooks()
        accumulate = step_runner.accelerator.accumulate \
            if stage == "train" and needs_accumulate(step_runner.accelerator) else None
        after_step = self.after_step
        sums: dict = {}
        count, steps = 0, 0  # count becomes a device tensor when steps weigh by sample weights
        if self._resume is not None:
            (steps, sums, count), self._resume = self._resume, None
        for steps, batch in enumerate(dataloader, start=steps + 1):
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
            if after_step is not None:
                after_step(steps, sums, count, step_logs)
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
        dtype = sums[keys[0]].dtype
        count = (count.to(device, dtype) if isinstance(count, torch.Tensor)
                 else torch.tensor(float(count), device=device, dtype=dtype))
        totals = torch.stack([sums[k].to(device) for k in keys] + [count])
        if self.stage == "train" and acc.num_processes > 1:
            totals = acc.reduce(totals, reduction="sum")
        totals = totals.tolist()  # the one host sync of the epoch
        count = totals[-1] or float("nan")  # all-zero counts: only skipped steps
        return {k: totals[i] / count for i, k in enumerate(keys)}


def _accumulate(sums: dict, key: str, value: Any, n: int) -> None:
    value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    # float64 so a long epoch's sum loses nothing (MPS has no float64)
    dtype = torch.float32 if value.device.type == "mps" else torch.float64
    if isinstance(n, torch.Tensor):  # a sum of sample weights
        weighted = value.to(dtype) * n.to(dtype)
        if key in sums:
            sums[key].add_(weighted)
        else:
            sums[key] = weighted
    elif key in sums:
        sums[key].add_(value.to(dtype), alpha=n)
    else:
        sums[key] = value.to(dtype) * n


def _to_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.detach().cpu().tolist()
    return value


def _same(value: Any) -> Any:
    """What ``gather_for_metrics`` returns in one process: its argument."""
    return value
