"""kerastorch's fit against a hand-written PyTorch loop doing identical work.

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
    kt_dataloader   fit(DataLoader, fast_data=False): Accelerate's prepared loader
    raw_dict        the raw loop over a DataLoader of dict samples {"<input>": x,
                    "label": y}, calling net(**inputs)
    kt_dict         fit on that same dict DataLoader; "dict/tuple" is its CPU ratio to
                    raw_dict over kt_dataloader's to raw: what a dict batch adds
    kt_compile      fit(..., compile=True) (with --compile); compile time apart
    kt_cached       kerastorch with Accelerate's per-step lookups cached (with
                    --simulate-fix): what the fix proposed in RESULTS.md saves
    torchkeras, lightning   when importable (not dependencies; skipped otherwise)

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
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import inspect
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from kerastorch import KerasModel, ProgressBar
from kerastorch.callbacks import Callback

SINK = open(os.devnull, "w")  # noqa: SIM115 - the bars of every run draw here


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


def make_workload(name: str, samples: int) -> dict:
    """Synthetic, learnable data (a fixed generator, so every run sees the same tensors)."""
    g = torch.Generator().manual_seed(1234)
    if name == "mlp":
        x = torch.randn(samples, 784, generator=g)
        y = (x @ torch.randn(784, 10, generator=g)).argmax(dim=1)  # a linear teacher
        return {"name": name, "x": x, "y": y, "batch_size": 128, "seed": 0,
                "net": lambda: nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)),
                "optimizer": lambda net: torch.optim.Adam(net.parameters(), lr=1e-3),
                "loss_fn": nn.CrossEntropyLoss}
    # ten 28x28 class templates plus noise, normalised like MNIST
    y = torch.randint(0, 10, (samples,), generator=g)
    templates = torch.rand(10, 1, 28, 28, generator=g)
    x = templates[y] + 0.5 * torch.randn(samples, 1, 28, 28, generator=g)
    x = (x - x.mean()) / x.std()
    return {"name": name, "x": x, "y": y, "batch_size": 32, "seed": 0, "net": MnistNet,
            "optimizer": lambda net: torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.5),
            "loss_fn": nn.NLLLoss}


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


class DictSamples(TensorDataset):
    """A TensorDataset whose samples are dicts, as a HuggingFace dataset yields them."""

    def __init__(self, x, y, input_name: str):
        super().__init__(x, y)
        self.input_name = input_name

    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        return {self.input_name: x, "label": y}


# -- the raw loops ---------------------------------------------------------------------

def sliced_batches(x, y, batch_size):
    """What a user who skips the DataLoader writes, with its random draws replayed."""
    torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's base seed
    seed = int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler's
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]


def run_raw(work: dict, epochs: int, sliced: bool = False, probe=None,
            dict_batches: bool = False) -> dict:
    """The hand-written loop; ``probe(epoch)`` (untimed) is called after each epoch."""
    net, optimizer, loss_fn, metric = fresh(work)
    x, y, batch_size = work["x"], work["y"], work["batch_size"]
    if dict_batches:
        input_name = next(iter(inspect.signature(net.forward).parameters))
        loader = DataLoader(DictSamples(x, y, input_name), batch_size=batch_size, shuffle=True)
    else:
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    times, cpu_times = [], []
    for epoch in range(1, epochs + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        net.train()
        total, count = torch.zeros((), dtype=torch.float64), 0
        batches = sliced_batches(x, y, batch_size) if sliced else loader
        for batch in tqdm(batches, total=len(loader), file=SINK):
            if dict_batches:
                labels = batch.pop("label")
                preds = net(**batch)
            else:
                inputs, labels = batch
                preds = net(inputs)
            loss = loss_fn(preds, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(labels)  # on the device: no sync per step
            count += len(labels)
            metric.update(preds.detach(), labels)
        loss_value, acc_value = total.item() / count, metric.compute().item()
        metric.reset()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        if probe is not None:
            probe(epoch)
    return {"epoch_times": times, "epoch_cpu": cpu_times, "final_loss": loss_value,
            "final_acc": acc_value, "weights": weights_digest(net)}


# -- kerastorch ------------------------------------------------------------------------

class EpochClock(Callback):
    """Marks epoch begins (placed first) or ends (placed last) in the callback list."""

    def __init__(self, marks: list, hook: str):
        self.marks, self.hook = marks, hook

    def on_epoch_begin(self, epoch, logs=None):
        if self.hook == "begin":
            self.marks.append((time.perf_counter(), time.process_time()))

    def on_epoch_end(self, epoch, logs=None):
        if self.hook == "end":
            self.marks.append((time.perf_counter(), time.process_time()))


def run_kerastorch(work: dict, epochs: int, fast_data: bool = True,
                   compile: bool = False, probe=None, dict_batches: bool = False) -> dict:
    """``fit`` with the real ProgressBar; ``probe(epoch)`` is called after each epoch."""
    net, optimizer, loss_fn, metric = fresh(work)
    model = KerasModel(net, loss_fn, metrics_dict={"acc": metric}, optimizer=optimizer)
    x, y, batch_size = work["x"], work["y"], work["batch_size"]
    if dict_batches:
        input_name = next(iter(inspect.signature(net.forward).parameters))
        data = DataLoader(DictSamples(x, y, input_name), batch_size=batch_size, shuffle=True)
    elif fast_data:
        data = (x, y)
    else:
        data = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    marks: list = []
    # the bar between the clocks, as the raw loop's tqdm is inside its epoch timing
    callbacks = [EpochClock(marks, "begin"), ProgressBar(file=SINK), EpochClock(marks, "end")]
    if probe is not None:
        callbacks.append(_Probe(probe))
    start = time.perf_counter()
    history = model.fit(data, epochs=epochs, batch_size=batch_size, shuffle=True,
                        ckpt_path=None, quiet=True, callbacks=callbacks,
                        fast_data=fast_data, compile=compile)
    wall = time.perf_counter() - start
    times = [end[0] - begin[0] for begin, end in zip(marks[0::2], marks[1::2])]
    cpu_times = [end[1] - begin[1] for begin, end in zip(marks[0::2], marks[1::2])]
    return {"epoch_times": times, "epoch_cpu": cpu_times, "setup_s": wall - sum(times),
            "final_loss": float(history["train_loss"].iloc[-1]),
            "final_acc": float(history["train_acc"].iloc[-1]), "weights": weights_digest(net)}


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


# -- optional other trainers (not dependencies of kerastorch) -----------------------------

def run_torchkeras(work: dict, epochs: int) -> dict:
    """torchkeras's KerasModel.fit, timed as a whole (it has no per-epoch clock hook)."""
    import torchkeras

    net, optimizer, loss_fn, metric = fresh(work)
    loader = DataLoader(TensorDataset(work["x"], work["y"]), batch_size=work["batch_size"],
                        shuffle=True)
    model = torchkeras.KerasModel(net, loss_fn=loss_fn, metrics_dict={"acc": metric},
                                  optimizer=optimizer)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(SINK), \
            contextlib.redirect_stderr(SINK):
        start, cpu_start = time.perf_counter(), time.process_time()
        history = model.fit(train_data=loader, epochs=epochs, monitor="train_loss",
                            ckpt_path=os.path.join(tmp, "checkpoint.pt"), patience=epochs)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"epoch_times": [wall / epochs] * epochs, "epoch_cpu": [cpu / epochs] * epochs,
            "final_loss": float(history["train_loss"].iloc[-1]),
            "final_acc": float(history["train_acc"].iloc[-1]), "weights": weights_digest(net)}


def run_lightning(work: dict, epochs: int) -> dict:
    """PyTorch Lightning's Trainer.fit with its progress bar, timed per epoch."""
    try:
        import lightning as L
    except ImportError:
        import pytorch_lightning as L

    net, optimizer, loss_fn, metric = fresh(work)

    class Clock(L.Callback):
        def __init__(self):
            self.times, self.cpu_times = [], []

        def on_train_epoch_start(self, trainer, module):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer, module):
            self.times.append(time.perf_counter() - self.start)
            self.cpu_times.append(time.process_time() - self.cpu_start)

    clock = Clock()
    loader = DataLoader(TensorDataset(work["x"], work["y"]), batch_size=work["batch_size"],
                        shuffle=True)
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)  # its banners, not its bar
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False,
                        callbacks=[clock])
    with contextlib.redirect_stdout(SINK), contextlib.redirect_stderr(SINK):
        trainer.fit(_lightning_module(L, net, loss_fn, metric, optimizer), loader)
    return {"epoch_times": clock.times, "epoch_cpu": clock.cpu_times,
            "final_loss": float(trainer.callback_metrics["train_loss"]),
            "final_acc": float(trainer.callback_metrics["train_acc"]),
            "weights": weights_digest(net)}


def _lightning_module(L, net, loss_fn, metric, optimizer):
    """The raw loop's step as a LightningModule (the epoch loss logged sample-weighted)."""

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.loss_fn, self.metric = net, loss_fn, metric

        def training_step(self, batch, batch_idx):
            inputs, labels = batch
            preds = self.net(inputs)
            loss = self.loss_fn(preds, labels)
            self.metric.update(preds.detach(), labels)
            self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=len(labels))
            return loss

        def on_train_epoch_end(self):
            self.log("train_acc", self.metric.compute())
            self.metric.reset()

        def configure_optimizers(self):
            return optimizer

    return Module()


RUNNERS = {
    "raw": run_raw,
    "kerastorch": run_kerastorch,
    "raw_sliced": lambda work, epochs: run_raw(work, epochs, sliced=True),
    "kt_dataloader": lambda work, epochs: run_kerastorch(work, epochs, fast_data=False),
    "raw_dict": lambda work, epochs: run_raw(work, epochs, dict_batches=True),
    "kt_dict": lambda work, epochs: run_kerastorch(work, epochs, fast_data=False,
                                                   dict_batches=True),
    "kt_compile": lambda work, epochs: run_kerastorch(work, epochs, compile=True),
    "kt_cached": run_kerastorch_cached,
    "torchkeras": run_torchkeras,
    "lightning": run_lightning,
}


def available_columns(args) -> tuple[list, list]:
    """The columns to run, and JSON records for the optional ones that cannot run."""
    columns, skipped = ["raw", "kerastorch", "raw_sliced", "kt_dataloader", "raw_dict",
                        "kt_dict"], []
    if args.compile:
        columns.append("kt_compile")
    if args.simulate_fix:
        columns.append("kt_cached")
    for column, modules in (("torchkeras", ("torchkeras",)),
                            ("lightning", ("lightning", "pytorch_lightning"))):
        if any(_importable(m) for m in modules):
            columns.append(column)
        else:
            skipped.append({"kind": "skipped", "variant": column,
                            "reason": f"not installed (import {' / '.join(modules)} failed)"})
    return columns, skipped


def _importable(module: str) -> bool:
    try:
        with contextlib.redirect_stdout(SINK):  # torchkeras prints its optional imports
            __import__(module)
        return True
    except Exception:  # a broken install is as good as none here
        return False


# -- measuring ----------------------------------------------------------------------------

def measure(work: dict, columns: list, args) -> list:
    """Warm up each column once, then alternate the columns ``args.repeats`` times.

    With --smoke (no repeats) the warm-up runs are all there is, and are reported.
    """
    runs = {c: [] for c in columns}
    failed = {}
    for column in columns:
        try:  # warm-up: lazy initialisation, allocator, and torch.compile's compilation
            warm = RUNNERS[column](work, 1)
            runs[column].append({**warm, "warmup": True})
        except Exception as exc:  # report and go on (torch.compile without a compiler, ...)
            failed[column] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    live = [c for c in columns if c not in failed]
    for _ in range(args.repeats):
        for column in live:
            runs[column].append(RUNNERS[column](work, args.epochs))
    return _summarise(work, runs, failed, args)


def _summarise(work: dict, runs: dict, failed: dict, args) -> list:
    measured = {c: [r for r in rs if not r.get("warmup")] or rs for c, rs in runs.items()
                if c not in failed}
    raw_wall, raw_cpu = _medians(measured["raw"])
    raw_cpu_times = [t for r in measured["raw"] for t in r["epoch_cpu"]]
    raw_final = {(r["final_loss"], r["final_acc"]) for r in measured["raw"]}
    raw_weights = {r["weights"] for r in measured["raw"]}
    rows = []
    for column, column_runs in measured.items():
        wall, cpu = _medians(column_runs)
        cpu_times = [t for r in column_runs for t in r["epoch_cpu"]]
        finals = {(r["final_loss"], r["final_acc"]) for r in column_runs}
        row = {"kind": "overhead", "workload": work["name"], "variant": column,
               "s_per_epoch": wall, "ratio_to_raw": wall / raw_wall,
               "cpu_s_per_epoch": cpu, "cpu_ratio_to_raw": cpu / raw_cpu,
               # load from other processes only ever adds time: the fastest epochs are
               # the least disturbed, so their ratio is a second, less noisy estimate
               "cpu_min_ratio_to_raw": min(cpu_times) / min(raw_cpu_times),
               "spread": _spread(cpu_times),
               "epoch_times": [t for r in column_runs for t in r["epoch_times"]],
               "epoch_cpu": cpu_times,
               "final_loss": column_runs[-1]["final_loss"],
               "final_acc": column_runs[-1]["final_acc"],
               # every run of the column ended exactly where every raw run did: the same
               # logged loss and accuracy, and the same weights to the last bit
               "same_as_raw": finals == raw_final and len(raw_final) == 1,
               "same_weights_as_raw": ({r["weights"] for r in column_runs} == raw_weights
                                       and len(raw_weights) == 1),
               "samples": len(work["x"]), "batch_size": work["batch_size"],
               "steps_per_epoch": math.ceil(len(work["x"]) / work["batch_size"]),
               "epochs_per_run": args.epochs, "repeats": args.repeats}
        if "setup_s" in column_runs[-1]:
            row["setup_s"] = statistics.median(r["setup_s"] for r in column_runs)
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
    return {"kind": "config", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": _cpu_model(), "logical_cpus": os.cpu_count(),
            "python": platform.python_version(), "smoke": args.smoke, "epochs": args.epochs,
            "repeats": args.repeats, "argv": sys.argv[1:]}


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
    if overhead:
        print(f"\n{'workload':8} {'column':14} {'wall s/ep':>9} {'x raw':>6} {'cpu s/ep':>9} "
              f"{'x raw':>6} {'IQR':>4} {'min x':>6} {'final loss':>19} {'final acc':>9} "
              f"{'same':>7} {'setup s':>7}")
        for r in overhead:
            setup = f"{r['setup_s']:7.3f}" if "setup_s" in r else f"{'':7}"
            same = ("-" if r["variant"] == "raw" else
                    f"{'yes' if r['same_as_raw'] else 'no'}/"
                    f"{'yes' if r['same_weights_as_raw'] else 'no'}")
            print(f"{r['workload']:8} {r['variant']:14} {r['s_per_epoch']:9.3f} "
                  f"{r['ratio_to_raw']:6.3f} {r['cpu_s_per_epoch']:9.3f} "
                  f"{r['cpu_ratio_to_raw']:6.3f} {r['spread']:4.0%} "
                  f"{r['cpu_min_ratio_to_raw']:6.3f} {r['final_loss']:19.16f} "
                  f"{r['final_acc']:9.6f} {same:>7} {setup}"
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny data, one epoch, one repeat: checks the script in seconds")
    p.add_argument("--workloads", default="mlp,cnn",
                   help="comma-separated: mlp, cnn; empty with --scaling runs only that")
    p.add_argument("--samples", type=int, default=6000, help="CNN samples (28x28)")
    p.add_argument("--mlp-samples", type=int, default=60000, help="MLP samples (784 features)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run")
    p.add_argument("--repeats", type=int, default=5, help="alternating runs per column")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 keeps a shared machine's noise low (default 1)")
    p.add_argument("--compile", action="store_true", help="add fit(..., compile=True)")
    p.add_argument("--simulate-fix", action="store_true",
                   help="add kt_cached: Accelerate's per-step lookups cached")
    p.add_argument("--scaling", action="store_true",
                   help="also epoch time vs data size and memory vs epochs")
    p.add_argument("--scaling-base", type=int, default=15000, help="MLP samples at 1x")
    p.add_argument("--memory-epochs", type=int, default=10)
    args = p.parse_args(argv)
    if args.smoke:
        args.samples, args.mlp_samples, args.epochs, args.repeats = 256, 1024, 1, 0
        args.scaling, args.scaling_base, args.memory_epochs = True, 512, 3
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
        emit(measure(make_workload(name, samples), columns, args))
    if args.scaling:
        emit(scaling(args))
        emit(memory(args))
    print_tables(records)
    return records


if __name__ == "__main__":
    main()
