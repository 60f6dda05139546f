"""kerastorch's fit against a hand-written PyTorch loop, and other trainers, doing identical work.

Every column trains the same net (same seed, so the same initial weights) on the
same synthetic data, in the same shuffle order, with the same optimizer and the
same number of steps, computes the same torchmetrics accuracy and accumulates the
epoch loss on the device the way a careful user does (a float64 running sum of
loss * batch size, one host sync per epoch). Both draw a tqdm progress bar into
os.devnull: the raw loop wraps its loader in tqdm, kerastorch runs its real
ProgressBar callback. Because the work is identical, the final loss and accuracy
of the raw loop and kerastorch must be equal to the last bit, and are printed.

Columns (s/epoch and the ratio to ``raw``):
    raw             DataLoader(TensorDataset, shuffle=True) + tqdm, the usual loop
    kerastorch      fit((X, y), ...): the in-memory fast path (fast_data=True)
    raw_sliced      a raw loop that slices the tensors itself (replaying the
                    DataLoader's random draws, so the order is identical)
    kt_dataloader   fit(DataLoader, fast_data=False): the DataLoader path
    raw_dict        the raw loop over a DataLoader of dict samples {"<input>": x,
                    "label": y}, calling net(**inputs)
    kt_dict         fit on that same dict DataLoader; "dict/tuple" is its CPU ratio to
                    raw_dict over kt_dataloader's to raw: what a dict batch adds
    kt_compile      fit(..., compile=True) (with --compile); compile time apart
    kt_cached       kerastorch with Accelerate's per-step lookups cached (with
                    --simulate-fix): what the fix proposed in RESULTS.md saves
    torchkeras, lightning   when importable (not dependencies; skipped otherwise)

Peers (--peers): both workloads gain a validation set (a sixth of the training
size) evaluated after every epoch, and the columns are raw, kerastorch,
kt_dataloader, then
    raw_dataset / kt_dataset     a map-style Dataset that is not a TensorDataset
                                 (so no fast path), num_workers=0
    raw_workers2 / kt_workers2   the same with num_workers=2 (compare wall times:
                                 the workers' CPU time is not this process's)
    poutyne, keras (Keras 3, torch backend, the net in a TorchModuleWrapper),
    torchkeras, lightning, ignite
each with an accuracy metric, the validation pass and its progress bar (into
os.devnull). The ratio to raw is the median of the per-repetition ratios, with
their min-max; "ttfb" is the time from calling fit (or the peer's equivalent) to
the net's first training forward pass. The peers are not dependencies of
kerastorch; they live in a venv of their own (torchkeras also needs IPython):

    python -m venv /work/peers && /work/peers/bin/pip install torch==2.13.0 torchmetrics \
        pandas tqdm accelerate poutyne keras torchkeras lightning pytorch-ignite ipython \
        && /work/peers/bin/pip install -e /work/main --no-deps
    /work/peers/bin/python benchmarks/overhead.py --peers

A peer that does not import is skipped with a printed note.

Runs alternate (raw, kerastorch, raw_sliced, ...) after a warm-up, and the
median epoch time of each column is reported, so load from other processes on a
shared machine hits every column alike. Each epoch is timed twice: wall clock,
and the CPU time of this process (time.process_time), which on a busy machine
leaves out the time spent waiting for a core; with one torch thread (the
default here) the two agree on an idle machine. Output: JSON lines, then a table.

    python benchmarks/overhead.py                 # both workloads, a few minutes
    python benchmarks/overhead.py --smoke         # one tiny epoch of everything
    python benchmarks/overhead.py --compile       # add the torch.compile column
    python benchmarks/overhead.py --scaling       # epoch time vs size, memory vs epochs
    python benchmarks/overhead.py --peers         # the peer table (about 10 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from importlib import metadata

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

import kerastorch
from kerastorch import KerasModel, ProgressBar
from kerastorch.callbacks import Callback

SINK = open(os.devnull, "w")  # noqa: SIM115 - the bars of every run draw here
os.environ.setdefault("KERAS_BACKEND", "torch")  # read when keras is first imported


# -- workloads ---------------------------------------------------------------------

class MnistNet(nn.Module):
    """Seed 000's MNIST CNN (the PyTorch examples' classic), log-probabilities out."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.view(-1, 320)))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def make_workload(name: str, samples: int, val_samples: int = 0) -> dict:
    """Synthetic, learnable data (a fixed generator, so every run sees the same tensors).

    ``val_samples`` > 0 adds ``val_x``/``val_y``, drawn after the training data, so
    the training tensors are the same with or without them.
    """
    g = torch.Generator().manual_seed(1234)
    if name == "mlp":
        x = torch.randn(samples, 784, generator=g)
        teacher = torch.randn(784, 10, generator=g)  # a linear teacher
        val_x = torch.randn(val_samples, 784, generator=g)
        work = {"name": name, "x": x, "y": (x @ teacher).argmax(dim=1), "batch_size": 128,
                "seed": 0, "input_name": "input",  # nn.Sequential.forward(input)
                "net": lambda: nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)),
                "optimizer": lambda net: torch.optim.Adam(net.parameters(), lr=1e-3),
                "keras_optimizer": lambda keras: keras.optimizers.Adam(learning_rate=1e-3,
                                                                       epsilon=1e-8),
                "loss_fn": nn.CrossEntropyLoss}
        val_y = (val_x @ teacher).argmax(dim=1)
    else:
        # ten 28x28 class templates plus noise, normalised like MNIST
        y = torch.randint(0, 10, (samples,), generator=g)
        templates = torch.rand(10, 1, 28, 28, generator=g)
        x = templates[y] + 0.5 * torch.randn(samples, 1, 28, 28, generator=g)
        val_y = torch.randint(0, 10, (val_samples,), generator=g)
        val_x = templates[val_y] + 0.5 * torch.randn(val_samples, 1, 28, 28, generator=g)
        mean, std = x.mean(), x.std()
        work = {"name": name, "x": (x - mean) / std, "y": y, "batch_size": 32, "seed": 0,
                "input_name": "x", "net": MnistNet,
                "optimizer": lambda net: torch.optim.SGD(net.parameters(), lr=0.01,
                                                         momentum=0.5),
                "keras_optimizer": lambda keras: keras.optimizers.SGD(learning_rate=0.01,
                                                                      momentum=0.5),
                "loss_fn": nn.NLLLoss}
        val_x = (val_x - mean) / std
    if val_samples:
        work["val_x"], work["val_y"] = val_x, val_y
    return work


def fresh(work: dict):
    """The same initial weights for every run and column."""
    torch.manual_seed(work["seed"])
    net = work["net"]()
    # the data order follows the global RNG from here on, identically in every column
    torch.manual_seed(work["seed"] + 1)
    return net, work["optimizer"](net), work["loss_fn"](), accuracy()


def accuracy() -> torchmetrics.Metric:
    return torchmetrics.Accuracy(task="multiclass", num_classes=10)


def weights_digest(net: nn.Module) -> str:
    """A fingerprint of the final weights: identical work gives identical bytes."""
    digest = hashlib.sha256()
    for tensor in net.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class FirstForward:
    """When the net's first training forward pass starts (a pre-hook that then removes
    itself, so later steps pay nothing). Evaluation-mode and no-grad calls (Keras's
    shape inference, a sanity check) do not count."""

    def __init__(self, net: nn.Module):
        self.time = self.cpu_time = math.nan
        self.handle = net.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if module.training and torch.is_grad_enabled():
            self.time, self.cpu_time = time.perf_counter(), time.process_time()
            self.handle.remove()

    def since(self, start: tuple) -> tuple:
        """(wall, CPU) seconds from ``start``, a (perf_counter, process_time) pair."""
        return self.time - start[0], self.cpu_time - start[1]


def clocks() -> tuple:
    return time.perf_counter(), time.process_time()


class EpochMarks:
    """(wall, CPU) marks at epoch begins and ends, for any trainer's hooks to call."""

    def __init__(self):
        self.begins, self.ends = [], []

    def begin(self):
        self.begins.append((time.perf_counter(), time.process_time()))

    def end(self):
        self.ends.append((time.perf_counter(), time.process_time()))

    def result(self, net: nn.Module, ttfb: tuple, **finals) -> dict:
        pairs = list(zip(self.begins, self.ends))
        return {"epoch_times": [end[0] - begin[0] for begin, end in pairs],
                "epoch_cpu": [end[1] - begin[1] for begin, end in pairs],
                "ttfb_s": ttfb[0], "ttfb_cpu_s": ttfb[1], "weights": weights_digest(net),
                **{k: None if v is None else float(v) for k, v in finals.items()}}


# -- data --------------------------------------------------------------------------------

class DictSamples(TensorDataset):
    """A TensorDataset whose samples are dicts, as a HuggingFace dataset yields them."""

    def __init__(self, x, y, input_name: str):
        super().__init__(x, y)
        self.input_name = input_name

    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        return {self.input_name: x, "label": y}


class ArraySamples(Dataset):
    """A map-style dataset that is not a TensorDataset, so kerastorch's fast path does
    not apply: the DataLoader fetches and collates each batch, as for most real data."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def make_loader(work: dict, kind: str = "tensor", train: bool = True) -> DataLoader:
    """The training (shuffled) or validation loader of one data kind:
    ``tensor`` (TensorDataset), ``dict`` (DictSamples), ``dataset`` (ArraySamples) or
    ``workers2`` (ArraySamples, two worker processes)."""
    x, y = (work["x"], work["y"]) if train else (work["val_x"], work["val_y"])
    if kind == "dict":
        dataset = DictSamples(x, y, work["input_name"])
    else:
        dataset = TensorDataset(x, y) if kind == "tensor" else ArraySamples(x, y)
    return DataLoader(dataset, batch_size=work["batch_size"], shuffle=train,
                      num_workers=2 if kind == "workers2" else 0)


def val_loader(work: dict, kind: str = "tensor"):
    return make_loader(work, kind, train=False) if "val_x" in work else None


# -- the raw loops ---------------------------------------------------------------------

def sliced_batches(x, y, batch_size):
    """What a user who skips the DataLoader writes, with its random draws replayed."""
    torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's base seed
    seed = int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler's
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]


def _forward(net, batch):
    """(predictions, labels) of a tuple or dict batch."""
    if isinstance(batch, dict):
        labels = batch.pop("label")
        return net(**batch), labels
    inputs, labels = batch
    return net(inputs), labels


def _raw_validate(net, loss_fn, loader, metric) -> tuple:
    net.eval()
    total, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for batch in loader:
            preds, labels = _forward(net, batch)
            total += loss_fn(preds, labels).double() * len(labels)
            count += len(labels)
            metric.update(preds, labels)
    values = total.item() / count, metric.compute().item()
    metric.reset()
    return values


def run_raw(work: dict, epochs: int, sliced: bool = False, probe=None,
            dict_batches: bool = False, data: str = "tensor") -> dict:
    """The hand-written loop; ``probe(epoch)`` (untimed) is called after each epoch."""
    net, optimizer, loss_fn, metric = fresh(work)
    kind = "dict" if dict_batches else data
    loader, val_batches, val_metric = make_loader(work, kind), val_loader(work, kind), accuracy()
    x, y, batch_size = work["x"], work["y"], work["batch_size"]
    val_loss = val_acc = None
    times, cpu_times = [], []
    first, fit_start = FirstForward(net), clocks()
    for epoch in range(1, epochs + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        net.train()
        total, count = torch.zeros((), dtype=torch.float64), 0
        batches = sliced_batches(x, y, batch_size) if sliced else loader
        for batch in tqdm(batches, total=len(loader), file=SINK):
            preds, labels = _forward(net, batch)
            loss = loss_fn(preds, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(labels)  # on the device: no sync per step
            count += len(labels)
            metric.update(preds.detach(), labels)
        loss_value, acc_value = total.item() / count, metric.compute().item()
        metric.reset()
        if val_batches is not None:
            val_loss, val_acc = _raw_validate(net, loss_fn, val_batches, val_metric)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        if probe is not None:
            probe(epoch)
    return {"epoch_times": times, "epoch_cpu": cpu_times, "final_loss": loss_value,
            "final_acc": acc_value, "val_loss": val_loss, "val_acc": val_acc,
            "ttfb_s": first.since(fit_start)[0], "ttfb_cpu_s": first.since(fit_start)[1],
            "weights": weights_digest(net)}


# -- kerastorch ------------------------------------------------------------------------

class EpochClock(Callback):
    """Marks epoch begins (placed first) or ends (placed last) in the callback list."""

    def __init__(self, marks: EpochMarks, hook: str):
        self.marks, self.hook = marks, hook

    def on_epoch_begin(self, epoch, logs=None):
        if self.hook == "begin":
            self.marks.begin()

    def on_epoch_end(self, epoch, logs=None):
        if self.hook == "end":
            self.marks.end()


def run_kerastorch(work: dict, epochs: int, fast_data: bool = True,
                   compile: bool = False, probe=None, dict_batches: bool = False,
                   data: str | None = None) -> dict:
    """``fit`` with the real ProgressBar; ``probe(epoch)`` is called after each epoch.

    ``data`` None passes ``(X, y)`` arrays (the fast path unless ``fast_data=False``,
    which then gets a TensorDataset DataLoader); else a :func:`make_loader` kind.
    """
    net, optimizer, loss_fn, metric = fresh(work)
    model = KerasModel(net, loss_fn, metrics_dict={"acc": metric}, optimizer=optimizer)
    kind = "dict" if dict_batches else data if data is not None else \
        None if fast_data else "tensor"
    if kind is None:
        train = (work["x"], work["y"])
        val = (work["val_x"], work["val_y"]) if "val_x" in work else None
    else:
        train, val = make_loader(work, kind), val_loader(work, kind)
    marks = EpochMarks()
    # the bar between the clocks, as the raw loop's tqdm is inside its epoch timing
    callbacks = [EpochClock(marks, "begin"), ProgressBar(file=SINK), EpochClock(marks, "end")]
    if probe is not None:
        callbacks.append(_Probe(probe))
    first, start = FirstForward(net), clocks()
    history = model.fit(train, val, epochs=epochs, batch_size=work["batch_size"], shuffle=True,
                        ckpt_path=None, quiet=True, callbacks=callbacks,
                        fast_data=fast_data, compile=compile)
    wall = time.perf_counter() - start[0]
    has_val = "val_loss" in history
    result = marks.result(net, first.since(start), final_loss=history["train_loss"].iloc[-1],
                          final_acc=history["train_acc"].iloc[-1],
                          val_loss=history["val_loss"].iloc[-1] if has_val else None,
                          val_acc=history["val_acc"].iloc[-1] if has_val else None)
    return {**result, "setup_s": wall - sum(result["epoch_times"])}


class _Probe(Callback):
    def __init__(self, probe):
        self.probe = probe

    def on_epoch_end(self, epoch, logs=None):
        self.probe(epoch)


@contextlib.contextmanager
def accelerate_lookups_cached():
    """Accelerate's optimizer wrapper without its per-step lookups (--simulate-fix).

    ``AcceleratedOptimizer.step`` calls ``is_lomo_available()`` twice per step, an
    ``importlib.util.find_spec`` that stats every ``sys.path`` entry, and
    ``zero_grad`` runs ``inspect.signature`` on every call. Answering both from a
    cache measures what the fix proposed in RESULTS.md would save.
    """
    import accelerate.optimizer as accelerated

    wrapper = accelerated.AcceleratedOptimizer
    real_lookup, real_zero_grad = accelerated.is_lomo_available, wrapper.zero_grad
    answer = real_lookup()

    def zero_grad(self, set_to_none=None):
        if self.gradient_state.sync_gradients:  # every torch optimizer takes set_to_none
            self.optimizer.zero_grad(set_to_none=True if set_to_none is None else set_to_none)

    accelerated.is_lomo_available, wrapper.zero_grad = (lambda: answer), zero_grad
    try:
        yield
    finally:
        accelerated.is_lomo_available, wrapper.zero_grad = real_lookup, real_zero_grad


def run_kerastorch_cached(work: dict, epochs: int) -> dict:
    with accelerate_lookups_cached():
        return run_kerastorch(work, epochs)


# -- other trainers (not dependencies of kerastorch) --------------------------------------
# Each gets the raw loop's DataLoaders, net, optimizer and loss, its own accuracy metric,
# validation after every epoch when the workload has a validation set, and its own
# progress bar drawn into os.devnull; everything else is the trainer's default.

@contextlib.contextmanager
def _quiet():
    """Bars and banners written to sys.stdout/sys.stderr go to os.devnull."""
    with contextlib.redirect_stdout(SINK), contextlib.redirect_stderr(SINK):
        yield


def run_poutyne(work: dict, epochs: int) -> dict:
    """poutyne's Model.fit_generator with its progress output, batch metric 'accuracy'."""
    import poutyne

    net, optimizer, loss_fn, _ = fresh(work)
    marks = EpochMarks()

    class Clock(poutyne.Callback):
        def on_epoch_begin(self, epoch_number, logs):
            marks.begin()

        def on_epoch_end(self, epoch_number, logs):
            marks.end()

    model = poutyne.Model(net, optimizer, loss_fn, batch_metrics=["accuracy"])
    loader, val = make_loader(work), val_loader(work)
    first, start = FirstForward(net), clocks()
    with _quiet():
        history = model.fit_generator(loader, val, epochs=epochs, callbacks=[Clock()],
                                      verbose=True)
    last = history[-1]  # poutyne's accuracy is in percent
    return marks.result(net, first.since(start), final_loss=last["loss"],
                        final_acc=last["acc"] / 100, val_loss=last.get("val_loss"),
                        val_acc=last["val_acc"] / 100 if "val_acc" in last else None)


def run_keras(work: dict, epochs: int) -> dict:
    """Keras 3 (torch backend): the torch net in a TorchModuleWrapper, ``model.fit`` on the
    DataLoaders with its progress bar; the torch loss, Keras's optimizer and accuracy."""
    import keras

    net, _, loss_fn, _ = fresh(work)
    model = keras.Sequential([keras.Input(shape=tuple(work["x"].shape[1:])),
                              keras.layers.TorchModuleWrapper(net)])
    # Keras casts the labels to float32; the torch loss needs class indices back
    model.compile(optimizer=work["keras_optimizer"](keras),
                  loss=lambda y_true, y_pred: loss_fn(y_pred, y_true.long()),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    marks = EpochMarks()

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.begin()

        def on_epoch_end(self, epoch, logs=None):
            marks.end()

    loader, val = make_loader(work), val_loader(work)
    first, start = FirstForward(net), clocks()
    with _quiet():
        history = model.fit(loader, validation_data=val, epochs=epochs, verbose=1,
                            callbacks=[Clock()]).history
    return marks.result(net, first.since(start), final_loss=history["loss"][-1],
                        final_acc=history["acc"][-1],
                        val_loss=history["val_loss"][-1] if val is not None else None,
                        val_acc=history["val_acc"][-1] if val is not None else None)


def run_torchkeras(work: dict, epochs: int) -> dict:
    """torchkeras's KerasModel.fit with its tqdm bars (plot=False). It has no epoch-begin
    hook: an epoch runs from one validation-epoch end (or the fit's start) to the next,
    and so includes the checkpoint torchkeras saves after an improving epoch."""
    with _quiet():  # torchkeras prints its optional imports
        import torchkeras

    net, optimizer, loss_fn, metric = fresh(work)
    marks = EpochMarks()

    class Clock:
        def on_fit_start(self, model):
            marks.begin()

        def on_validation_epoch_end(self, model):
            marks.end()
            marks.begin()

    loader, val = make_loader(work), val_loader(work)
    model = torchkeras.KerasModel(net, loss_fn=loss_fn, metrics_dict={"acc": metric},
                                  optimizer=optimizer)
    first = FirstForward(net)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        start = clocks()
        history = model.fit(train_data=loader, val_data=val, epochs=epochs,
                            monitor="val_loss" if val is not None else "train_loss",
                            ckpt_path=os.path.join(tmp, "checkpoint.pt"), patience=epochs,
                            plot=False, callbacks=[Clock()])
    last = history.iloc[-1]
    return marks.result(net, first.since(start), final_loss=last["train_loss"],
                        final_acc=last["train_acc"], val_loss=last.get("val_loss"),
                        val_acc=last.get("val_acc"))


def run_lightning(work: dict, epochs: int) -> dict:
    """PyTorch Lightning's Trainer.fit with its progress bar, timed per epoch (its
    on_train_epoch_end comes after the epoch's validation). No sanity-check batches:
    they would iterate the validation loader once more, drawing from the global RNG."""
    try:
        import lightning as L
    except ImportError:
        import pytorch_lightning as L

    net, optimizer, loss_fn, _ = fresh(work)
    marks = EpochMarks()

    class Clock(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            marks.begin()

        def on_train_epoch_end(self, trainer, module):
            marks.end()

    loader, val = make_loader(work), val_loader(work)
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)  # its banners, not its bar
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[Clock()])
    first = FirstForward(net)
    with _quiet():
        start = clocks()
        trainer.fit(_lightning_module(L, net, loss_fn, optimizer), loader, val)
    logged = trainer.callback_metrics
    return marks.result(net, first.since(start), final_loss=logged["train_loss"],
                        final_acc=logged["train_acc"], val_loss=logged.get("val_loss"),
                        val_acc=logged.get("val_acc"))


def _lightning_module(L, net, loss_fn, optimizer):
    """The raw loop's step as a LightningModule (the epoch losses logged sample-weighted)."""

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.loss_fn = net, loss_fn
            self.train_metric, self.val_metric = accuracy(), accuracy()

        def training_step(self, batch, batch_idx):
            return self._step(batch, "train", self.train_metric)

        def validation_step(self, batch, batch_idx):
            self._step(batch, "val", self.val_metric)

        def _step(self, batch, stage, metric):
            inputs, labels = batch
            preds = self.net(inputs)
            loss = self.loss_fn(preds, labels)
            metric.update(preds.detach(), labels)
            self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=len(labels))
            return loss

        def on_train_epoch_end(self):
            self.log("train_acc", self.train_metric.compute())
            self.train_metric.reset()

        def on_validation_epoch_end(self):
            self.log("val_acc", self.val_metric.compute())
            self.val_metric.reset()

        def configure_optimizers(self):
            return optimizer

    return Module()


def run_ignite(work: dict, epochs: int) -> dict:
    """ignite's supervised trainer and evaluator with its ProgressBar, Accuracy metrics
    and the evaluator's Loss; the training loss is summed per epoch as the raw loop does
    (ignite's default output would be ``loss.item()``, a host sync per step)."""
    from ignite.engine import (
        Events,
        create_supervised_evaluator,
        create_supervised_trainer,
    )
    from ignite.handlers import ProgressBar as IgniteBar
    from ignite.metrics import Accuracy, Loss

    net, optimizer, loss_fn, _ = fresh(work)
    marks, sums = EpochMarks(), {}
    trainer = create_supervised_trainer(
        net, optimizer, loss_fn,
        output_transform=lambda x, y, y_pred, loss: (y_pred.detach(), y, loss.detach()))
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: marks.begin())  # runs first
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: sums.update(
        total=torch.zeros((), dtype=torch.float64), count=0))

    @trainer.on(Events.ITERATION_COMPLETED)
    def accumulate(engine):
        _, labels, loss = engine.state.output
        sums["total"] += loss.double() * len(labels)
        sums["count"] += len(labels)

    Accuracy(output_transform=lambda out: out[:2]).attach(trainer, "acc")
    IgniteBar(file=SINK).attach(trainer)
    loader, val = make_loader(work), val_loader(work)
    evaluator = create_supervised_evaluator(net, metrics={"acc": Accuracy(),
                                                          "loss": Loss(loss_fn)})
    if val is not None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run(val))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: marks.end())  # runs last
    first, start = FirstForward(net), clocks()
    with _quiet():
        trainer.run(loader, max_epochs=epochs)
    scores = evaluator.state.metrics if val is not None else {}
    return marks.result(net, first.since(start),
                        final_loss=sums["total"].item() / sums["count"],
                        final_acc=trainer.state.metrics["acc"], val_loss=scores.get("loss"),
                        val_acc=scores.get("acc"))


RUNNERS = {
    "raw": run_raw,
    "kerastorch": run_kerastorch,
    "raw_sliced": lambda work, epochs: run_raw(work, epochs, sliced=True),
    "kt_dataloader": lambda work, epochs: run_kerastorch(work, epochs, fast_data=False),
    "raw_dict": lambda work, epochs: run_raw(work, epochs, dict_batches=True),
    "kt_dict": lambda work, epochs: run_kerastorch(work, epochs, fast_data=False,
                                                   dict_batches=True),
    "raw_dataset": lambda work, epochs: run_raw(work, epochs, data="dataset"),
    "kt_dataset": lambda work, epochs: run_kerastorch(work, epochs, data="dataset"),
    "raw_workers2": lambda work, epochs: run_raw(work, epochs, data="workers2"),
    "kt_workers2": lambda work, epochs: run_kerastorch(work, epochs, data="workers2"),
    "kt_compile": lambda work, epochs: run_kerastorch(work, epochs, compile=True),
    "kt_cached": run_kerastorch_cached,
    "poutyne": run_poutyne,
    "keras": run_keras,
    "torchkeras": run_torchkeras,
    "lightning": run_lightning,
    "ignite": run_ignite,
}
# each column's own raw loop, for the "x pair" ratio (wall time for the workers' columns)
PAIRS = {"kt_dict": "raw_dict", "kt_dataset": "raw_dataset", "kt_workers2": "raw_workers2"}
WALL_COLUMNS = ("raw_workers2", "kt_workers2")
# (column, modules tried in turn, distribution names for the version record)
PEERS = (("poutyne", ("poutyne",), ("poutyne",)), ("keras", ("keras",), ("keras",)),
         ("torchkeras", ("torchkeras",), ("torchkeras",)),
         ("lightning", ("lightning", "pytorch_lightning"), ("lightning", "pytorch-lightning")),
         ("ignite", ("ignite",), ("pytorch-ignite",)))


def available_columns(args) -> tuple[list, list]:
    """The columns to run, and JSON records for the optional ones that cannot run."""
    if args.peers:
        columns = ["raw", "kerastorch", "kt_dataloader", "raw_dataset", "kt_dataset",
                   "raw_workers2", "kt_workers2"]
        optional = PEERS
    else:
        columns = ["raw", "kerastorch", "raw_sliced", "kt_dataloader", "raw_dict", "kt_dict"]
        optional = [p for p in PEERS if p[0] in ("torchkeras", "lightning")]
    if args.compile:
        columns.append("kt_compile")
    if args.simulate_fix:
        columns.append("kt_cached")
    skipped = []
    if args.columns:
        wanted = ["raw", *(c for c in args.columns.split(",") if c and c != "raw")]
        unknown = [c for c in wanted if c not in RUNNERS]
        if unknown:
            raise SystemExit(f"--columns: unknown {unknown}; choose from {sorted(RUNNERS)}")
        peers = {p[0] for p in PEERS}  # run only when importable, as below
        columns = [c for c in wanted if c not in peers]
        optional = [p for p in PEERS if p[0] in wanted]
    for column, modules, _ in optional:
        problem = _import_problem(modules)
        if problem is None:
            columns.append(column)
        else:
            skipped.append({"kind": "skipped", "variant": column, "reason": problem})
    return columns, skipped


def _import_problem(modules) -> str | None:
    """None when one of ``modules`` imports (keras: with the torch backend), else why not."""
    for module in modules:
        try:
            with _quiet():  # torchkeras prints its optional imports
                imported = __import__(module)
        except Exception:  # noqa: S112 - a broken install is as good as none here
            continue
        if module == "keras" and imported.backend.backend() != "torch":
            return f"keras runs the {imported.backend.backend()} backend (set KERAS_BACKEND=torch)"
        return None
    return f"not installed (import {' / '.join(modules)} failed)"


# -- measuring ----------------------------------------------------------------------------

def measure(work: dict, columns: list, args) -> list:
    """Warm up each column once, then alternate the columns ``args.repeats`` times.

    Each repetition starts one column later than the previous one, so no column
    always follows the same neighbour, and garbage is collected before every run.
    With --smoke (no repeats) the warm-up runs are all there is, and are reported.
    """
    runs = {c: [] for c in columns}
    failed = {}
    for column in columns:
        try:  # warm-up: lazy initialisation, allocator, and torch.compile's compilation
            gc.collect()
            warm = RUNNERS[column](work, 1)
            runs[column].append({**warm, "warmup": True})
        except Exception as exc:  # report and go on (torch.compile without a compiler, ...)
            failed[column] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    live = [c for c in columns if c not in failed]
    for repeat in range(args.repeats):
        shift = repeat % len(live)
        for column in live[shift:] + live[:shift]:
            gc.collect()
            runs[column].append(RUNNERS[column](work, args.epochs))
    return _summarise(work, runs, failed, args)


def _summarise(work: dict, runs: dict, failed: dict, args) -> list:
    measured = {c: [r for r in rs if not r.get("warmup")] or rs for c, rs in runs.items()
                if c not in failed}
    raw_wall, raw_cpu = _medians(measured["raw"])
    raw_cpu_times = [t for r in measured["raw"] for t in r["epoch_cpu"]]
    raw_final = {_finals(r) for r in measured["raw"]}
    raw_weights = {r["weights"] for r in measured["raw"]}
    rows = []
    for column, column_runs in measured.items():
        wall, cpu = _medians(column_runs)
        cpu_times = [t for r in column_runs for t in r["epoch_cpu"]]
        # each repetition's ratio to the raw run of the same repetition: slow drifts in
        # the machine's load cancel
        per_repeat = _per_repeat(column_runs, measured["raw"], "epoch_cpu")
        per_repeat_wall = _per_repeat(column_runs, measured["raw"], "epoch_times")
        row = {"kind": "overhead", "workload": work["name"], "variant": column,
               "s_per_epoch": wall, "ratio_to_raw": wall / raw_wall,
               "cpu_s_per_epoch": cpu, "cpu_ratio_to_raw": cpu / raw_cpu,
               # load from other processes only ever adds time: the fastest epochs are
               # the least disturbed, so their ratio is a second, less noisy estimate
               "cpu_min_ratio_to_raw": min(cpu_times) / min(raw_cpu_times),
               "spread": _spread(cpu_times),
               "repeat_ratios": per_repeat,
               "repeat_ratio_median": statistics.median(per_repeat),
               "repeat_ratio_min": min(per_repeat), "repeat_ratio_max": max(per_repeat),
               "repeat_wall_ratio_median": statistics.median(per_repeat_wall),
               "ttfb_ms": statistics.median(r["ttfb_s"] for r in column_runs) * 1e3,
               "ttfb_cpu_ms": statistics.median(r["ttfb_cpu_s"] for r in column_runs) * 1e3,
               # the least disturbed of the column's fits: load only ever adds time
               "ttfb_min_ms": min(r["ttfb_s"] for r in column_runs) * 1e3,
               "ttfb_first_ms": runs[column][0]["ttfb_s"] * 1e3,  # the column's first fit
               "epoch_times": [t for r in column_runs for t in r["epoch_times"]],
               "epoch_cpu": cpu_times,
               "final_loss": column_runs[-1]["final_loss"],
               "final_acc": column_runs[-1]["final_acc"],
               "val_loss": column_runs[-1].get("val_loss"),
               "val_acc": column_runs[-1].get("val_acc"),
               # every run of the column ended exactly where every raw run did: the same
               # logged losses and accuracies, and the same weights to the last bit
               "same_as_raw": {_finals(r) for r in column_runs} == raw_final
               and len(raw_final) == 1,
               "same_weights_as_raw": ({r["weights"] for r in column_runs} == raw_weights
                                       and len(raw_weights) == 1),
               "samples": len(work["x"]), "val_samples": len(work.get("val_x", ())),
               "batch_size": work["batch_size"],
               "steps_per_epoch": math.ceil(len(work["x"]) / work["batch_size"]),
               "epochs_per_run": args.epochs, "repeats": args.repeats}
        if "setup_s" in column_runs[-1]:
            row["setup_s"] = statistics.median(r["setup_s"] for r in column_runs)
        pair = PAIRS.get(column)
        if pair in measured:
            key = "epoch_times" if column in WALL_COLUMNS else "epoch_cpu"
            row["pair_ratio"] = statistics.median(_per_repeat(column_runs, measured[pair], key))
        if column == "kt_dict" and "raw_dict" in measured and "kt_dataloader" in measured:
            # kerastorch's cost on dict batches, over the raw loop on the same dict loader,
            # against its cost on tuple batches over the raw loop: what a dict batch adds
            over_raw_dict = cpu / _medians(measured["raw_dict"])[1]
            tuple_over_raw = _medians(measured["kt_dataloader"])[1] / raw_cpu
            row["cpu_ratio_to_raw_dict"] = over_raw_dict
            row["dict_vs_tuple"] = over_raw_dict / tuple_over_raw
        if column == "kt_compile":
            warm = runs[column][0]  # the first compiled fit of the process pays compilation
            row["compile_s"] = warm["epoch_times"][0] + warm["setup_s"] - wall
        rows.append(row)
    rows += [{"kind": "failed", "workload": work["name"], "variant": c, "reason": reason}
             for c, reason in failed.items()]
    return rows


def _finals(run: dict) -> tuple:
    """The losses exactly; the accuracies (a count over a count) to 6 decimals, as a
    float32 and a float64 of the same fraction differ in the last bits."""
    accs = (run["final_acc"], run.get("val_acc"))
    return (run["final_loss"], run.get("val_loss"),
            *(None if a is None else round(a, 6) for a in accs))


def _per_repeat(runs: list, raw_runs: list, key: str) -> list:
    return [statistics.median(r[key]) / statistics.median(raw[key])
            for r, raw in zip(runs, raw_runs)]


def _medians(runs: list) -> tuple:
    return (statistics.median(t for r in runs for t in r["epoch_times"]),
            statistics.median(t for r in runs for t in r["epoch_cpu"]))


def _spread(times: list) -> float:
    """The interquartile range relative to the median: the noise of one column."""
    if len(times) < 4:
        return 0.0
    q = statistics.quantiles(times, n=4)
    return (q[2] - q[0]) / statistics.median(times)


# -- scaling and memory -------------------------------------------------------------------

def scaling(args) -> list:
    """Epoch time of raw and kerastorch at 1x, 2x, 4x the data: it should grow linearly.

    The sizes alternate within each repetition too, so a change in the machine's
    load during the run does not masquerade as a size effect.
    """
    base, factors, columns = args.scaling_base, (1, 2, 4), ("raw", "kerastorch")
    works = {f: make_workload("mlp", base * f) for f in factors}
    runs: dict = {(f, c): [] for f in factors for c in columns}
    if not args.smoke:
        for f, c in runs:  # warm-up at every size
            RUNNERS[c](works[f], 1)
    for _ in range(max(args.repeats, 1)):
        for f, c in runs:
            runs[(f, c)].append(RUNNERS[c](works[f], 1))
    rows = []
    for (f, c), column_runs in runs.items():
        wall, cpu = _medians(column_runs)
        rows.append({"kind": "scaling", "workload": "mlp", "variant": c, "factor": f,
                     "samples": base * f, "s_per_epoch": wall, "cpu_s_per_epoch": cpu,
                     "cpu_us_per_sample": cpu / (base * f) * 1e6,
                     "epoch_cpu": [t for r in column_runs for t in r["epoch_cpu"]]})
    for row in rows:
        first = next(r for r in rows if r["variant"] == row["variant"] and r["factor"] == 1)
        # 1.0 means perfectly linear: CPU time per sample unchanged from the 1x size
        row["linearity"] = row["cpu_us_per_sample"] / first["cpu_us_per_sample"]
    return rows


def memory(args) -> list:
    """Memory after each epoch of one long run, raw loop and kerastorch alike.

    ``rss_mb`` is the process's resident memory (what the OS sees, tensors
    included); ``python_kb`` is what tracemalloc traces of Python's own
    allocations after a garbage collection (a history of per-step tensors or
    floats kept by the trainer would grow it every epoch).
    """
    work = make_workload("mlp", args.scaling_base)
    rows: list = []
    for column in ("raw", "kerastorch"):
        def probe(epoch, column=column):
            gc.collect()
            rows.append({"kind": "memory", "workload": "mlp", "variant": column,
                         "epoch": epoch, "samples": len(work["x"]), "rss_mb": _rss_mb(),
                         "python_kb": tracemalloc.get_traced_memory()[0] / 1024})

        tracemalloc.start()
        try:
            RUNNERS[column](work, args.memory_epochs, probe=probe)
        finally:
            tracemalloc.stop()
    return rows


def _rss_mb() -> float:
    """The current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


# -- output ---------------------------------------------------------------------------------

def config_record(args) -> dict:
    names = ["torch", "accelerate", "torchmetrics", "tqdm", "pandas", "numpy", "kerastorch"]
    names += [d for _, _, dists in PEERS for d in dists]
    return {"kind": "config", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": _cpu_model(), "logical_cpus": os.cpu_count(),
            "python": platform.python_version(), "smoke": args.smoke, "peers": args.peers,
            "epochs": args.epochs, "repeats": args.repeats, "argv": sys.argv[1:],
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": _commit(),
            "kerastorch_from": os.path.dirname(os.path.abspath(kerastorch.__file__)),
            "versions": {n: v for n in names if (v := _version(n)) is not None}}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str:
    """This checkout's commit, with "+dirty" when the kerastorch/ that runs is this
    checkout's and has uncommitted edits (``kerastorch_from`` says which one runs: a
    ``git archive`` of a commit on PYTHONPATH measures that commit alone)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    elsewhere = os.path.dirname(os.path.abspath(kerastorch.__file__)) != os.path.join(
        root, "kerastorch")
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "kerastorch"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty and not elsewhere else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_tables(records: list) -> None:
    overhead = [r for r in records if r["kind"] == "overhead"]
    if any(r["kind"] == "config" and r.get("peers") for r in records):
        print_peer_table(overhead)
    elif overhead:
        print(f"\n{'workload':8} {'column':14} {'wall s/ep':>9} {'x raw':>6} {'cpu s/ep':>9} "
              f"{'x raw':>6} {'IQR':>4} {'min x':>6} {'final loss':>19} {'final acc':>9} "
              f"{'same':>7} {'setup s':>7}")
        for r in overhead:
            setup = f"{r['setup_s']:7.3f}" if "setup_s" in r else f"{'':7}"
            print(f"{r['workload']:8} {r['variant']:14} {r['s_per_epoch']:9.3f} "
                  f"{r['ratio_to_raw']:6.3f} {r['cpu_s_per_epoch']:9.3f} "
                  f"{r['cpu_ratio_to_raw']:6.3f} {r['spread']:4.0%} "
                  f"{r['cpu_min_ratio_to_raw']:6.3f} {r['final_loss']:19.16f} "
                  f"{r['final_acc']:9.6f} {_same(r):>7} {setup}"
                  + (f"  (+{r['compile_s']:.1f} s compiling, once)" if "compile_s" in r else "")
                  + (f"  (cpu {r['cpu_ratio_to_raw_dict']:.3f}x raw_dict; dict/tuple "
                     f"{r['dict_vs_tuple']:.3f})" if "dict_vs_tuple" in r else ""))
    for r in records:
        if r["kind"] in ("skipped", "failed"):
            print(f"{r.get('workload', ''):8} {r['variant']:14} {r['kind']}: {r['reason']}")
    scale = [r for r in records if r["kind"] == "scaling"]
    if scale:
        print(f"\n{'column':11} {'samples':>8} {'wall s/ep':>9} {'cpu s/ep':>9} "
              f"{'cpu us/sample':>13} {'vs 1x':>6}")
        for r in scale:
            print(f"{r['variant']:11} {r['samples']:8d} {r['s_per_epoch']:9.3f} "
                  f"{r['cpu_s_per_epoch']:9.3f} {r['cpu_us_per_sample']:13.2f} "
                  f"{r['linearity']:6.2f}")
    mem = [r for r in records if r["kind"] == "memory"]
    if mem:
        print(f"\n{'column':11} {'epoch':>5} {'RSS MB':>8} {'Python KB':>10}")
        for r in mem:
            print(f"{r['variant']:11} {r['epoch']:5d} {r['rss_mb']:8.1f} {r['python_kb']:10.1f}")


def _same(row: dict) -> str:
    """numbers/weights equal to the raw loop's: "yes/yes", "no/yes", ..."""
    if row["variant"] == "raw":
        return "-"
    return (f"{'yes' if row['same_as_raw'] else 'no'}/"
            f"{'yes' if row['same_weights_as_raw'] else 'no'}")


def print_peer_table(rows: list) -> None:
    """CPU s/epoch with the median (min-max) of the per-repetition ratios to raw, wall
    time, the ratio to the column's own raw loop ("w": of wall times), the time to the
    first batch (wall: median and min of the measured fits; CPU: median; the column's
    first fit in the process, wall), the final numbers and whether they and the
    weights equal raw's."""
    print(f"\n{'workload':8} {'column':13} {'cpu s/ep':>8} {'x raw':>6} {'(min-max)':>11} "
          f"{'wall s/ep':>9} {'x raw':>6} {'x pair':>7} {'ttfb ms':>7} {'min':>5} {'cpu':>5} {'first':>5} "
          f"{'train loss':>18} {'train acc':>9} {'val loss':>10} {'val acc':>7} {'same':>7}")
    for r in rows:
        pair = (f"{r['pair_ratio']:6.3f}{'w' if r['variant'] in WALL_COLUMNS else ' '}"
                if "pair_ratio" in r else "")
        val_loss = f"{r['val_loss']:10.6f}" if r["val_loss"] is not None else f"{'-':>10}"
        val_acc = f"{r['val_acc']:7.4f}" if r["val_acc"] is not None else f"{'-':>7}"
        spread = f"({r['repeat_ratio_min']:.2f}-{r['repeat_ratio_max']:.2f})"
        print(f"{r['workload']:8} {r['variant']:13} {r['cpu_s_per_epoch']:8.3f} "
              f"{r['repeat_ratio_median']:6.3f} {spread:>11} {r['s_per_epoch']:9.3f} "
              f"{r['repeat_wall_ratio_median']:6.3f} {pair:>7} {r['ttfb_ms']:7.1f} "
              f"{r['ttfb_min_ms']:5.0f} {r['ttfb_cpu_ms']:5.0f} {r['ttfb_first_ms']:5.0f} {r['final_loss']:18.15f} {r['final_acc']:9.6f} "
              f"{val_loss} {val_acc} {_same(r):>7}")
    for workload in dict.fromkeys(r["workload"] for r in rows):
        same = [r["variant"] for r in rows if r["workload"] == workload
                and r["variant"] != "raw" and r["same_weights_as_raw"]]
        print(f"{workload}: final weights bit-identical to raw's: {', '.join(same) or 'none'}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny data, one epoch, one repeat: checks the script in seconds")
    p.add_argument("--peers", action="store_true",
                   help="the peer table: validation every epoch, the Dataset and worker "
                        "columns, poutyne, keras, torchkeras, lightning, ignite")
    p.add_argument("--workloads", default="mlp,cnn",
                   help="comma-separated: mlp, cnn; empty with --scaling runs only that")
    p.add_argument("--samples", type=int, default=None,
                   help="CNN samples (28x28; default 6000, 3000 with --peers)")
    p.add_argument("--mlp-samples", type=int, default=None,
                   help="MLP samples (784 features; default 60000, 30000 with --peers)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run (default 2; 1 with --peers)")
    p.add_argument("--repeats", type=int, default=None,
                   help="alternating runs per column (default 5; 6 with --peers)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 keeps a shared machine's noise low (default 1)")
    p.add_argument("--columns", default="",
                   help="comma-separated columns to run instead of the default set (raw is "
                        "always run: the ratios are to it), e.g. kt_dataloader,lightning")
    p.add_argument("--compile", action="store_true", help="add fit(..., compile=True)")
    p.add_argument("--simulate-fix", action="store_true",
                   help="add kt_cached: Accelerate's per-step lookups cached")
    p.add_argument("--scaling", action="store_true",
                   help="also epoch time vs data size and memory vs epochs")
    p.add_argument("--scaling-base", type=int, default=15000, help="MLP samples at 1x")
    p.add_argument("--memory-epochs", type=int, default=10)
    args = p.parse_args(argv)
    if args.samples is None:
        args.samples = 3000 if args.peers else 6000
    if args.mlp_samples is None:
        args.mlp_samples = 30000 if args.peers else 60000
    if args.epochs is None:
        args.epochs = 1 if args.peers else 2
    if args.repeats is None:
        args.repeats = 6 if args.peers else 5
    if args.smoke:
        args.samples, args.mlp_samples, args.epochs, args.repeats = 256, 1024, 1, 0
        args.scaling, args.scaling_base, args.memory_epochs = not args.peers, 512, 3
    return args


def main(argv=None) -> list:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    records: list = []

    def emit(new_records: list) -> None:
        # JSON lines as each part finishes, so a long run shows its progress
        for record in new_records:
            print(json.dumps(record), flush=True)
        records.extend(new_records)

    columns, skipped = available_columns(args)
    emit([config_record(args), *skipped])
    for name in filter(None, args.workloads.split(",")):  # --workloads "": scaling only
        samples = args.mlp_samples if name == "mlp" else args.samples
        emit(measure(make_workload(name, samples, samples // 6 if args.peers else 0),
                     columns, args))
    if args.scaling:
        emit(scaling(args))
        emit(memory(args))
    print_tables(records)
    return records


if __name__ == "__main__":
    main()
