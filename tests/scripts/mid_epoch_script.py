"""Used by test_mid_epoch_resume.py: a fit killed inside epoch 2, and the DDP runs.

    python mid_epoch_script.py OUT CASE --kill-at EPOCH:STEP
    torchrun --nproc_per_node 2 mid_epoch_script.py OUT ddp --straight-then-kill EPOCH:STEP
    torchrun --nproc_per_node 2 mid_epoch_script.py OUT ddp --resume

CASE is "fast" (fit((X, y)), kerastorch's in-memory path), "workers0" or "workers2" (a
shuffled DataLoader over a map-style Dataset that augments with random noise, with that
many worker processes) or "ddp" (a shuffled DataLoader over a TensorDataset, two
processes). The killed fit writes a state every EVERY optimizer steps and SIGKILLs
itself at the end of training step STEP of epoch EPOCH, as a crash or a pre-empted job
would. Under torchrun each rank writes <name><k>.json (history, batches trained per
epoch) and rank 0 <name>.pt (the final weights), for the straight run and the resumed ones.

Under torchrun the sharded path of the state (FSDP, DeepSpeed) runs too, in OUT/sharded:
on this CPU machine Accelerate turns FSDP into DDP, so ``forced_sharding`` makes
``KerasModel.is_sharded`` true and ``SaveStateCollective`` puts an all_reduce into
``Accelerator.save_state``, so a process skipping a save the others make would hang, as
under FSDP. That run stops with an exception inside epoch 2 (the SIGKILL is the plain run's,
after it) and is resumed by the second torchrun.
"""

import contextlib

import json
import os
import signal
import sys

import torch
import torch.distributed as dist
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ddp_script import leave
from kerastorch import KerasModel
from kerastorch.callbacks import Callback

EVERY = {"fast": 4, "workers0": 4, "workers2": 4, "ddp": 3}
FIT = dict(epochs=3, batch_size=8, patience=5, quiet=True)


class Augmented(Dataset):
    """A map-style dataset whose samples get fresh noise from torch's RNG at every read."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index] + 0.05 * torch.randn(self.x.shape[1]), self.y[index]


class KillAt(Callback):
    def __init__(self, epoch, step):
        self.at, self.epoch = (epoch, step), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, step, logs=None):
        if (self.epoch, step) == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


class BatchCount(Callback):
    """The training batches this process ran, per epoch, and the first batch index seen."""

    def __init__(self):
        self.batches, self.first, self.epoch = {}, {}, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, step, logs=None):
        self.batches[self.epoch] = self.batches.get(self.epoch, 0) + 1
        self.first.setdefault(self.epoch, step)


class Crash(BaseException):
    """Not an Exception nor a KeyboardInterrupt: fit lets it through, as a kill would."""


class CrashAt(KillAt):
    def on_train_batch_end(self, step, logs=None):
        if (self.epoch, step) == self.at:
            raise Crash


class SaveStateCollective(Callback):
    """Counts Accelerator.save_state calls through an all_reduce that every process joins."""

    def __init__(self):
        self.counts = []

    def on_fit_begin(self, logs=None):
        acc = self.model.accelerator
        real = acc.save_state

        def save_state(*args, **kwargs):
            count = torch.ones(1)
            dist.all_reduce(count)  # a process that skipped this save would leave us hanging
            self.counts.append(int(count.item()))
            return real(*args, **kwargs)

        acc.save_state = save_state


@contextlib.contextmanager
def forced_sharding():
    saved = KerasModel.__dict__.get("is_sharded")
    KerasModel.is_sharded = property(lambda self: self.accelerator is not None)
    try:
        yield
    finally:
        if saved is None:
            del KerasModel.is_sharded
        else:
            KerasModel.is_sharded = saved


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x[:, 0] + x[:, 1] * x[:, 2] > 0).long()


def build(case, seed=0):
    """(model, train_data, val_data): dropout, shuffling, noise and a per-step schedule all
    draw from or depend on state a resume must restore."""
    xt, yt = _data(96 if case == "ddp" else 80, 1)
    xv, yv = _data(20, 2)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.8)
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=2)},
                       optimizer=optimizer, lr_scheduler=scheduler,
                       lr_scheduler_interval="step")
    if case == "fast":
        return model, (xt, yt), (xv, yv)
    if case == "ddp":
        return (model, DataLoader(TensorDataset(xt, yt), batch_size=8, shuffle=True),
                DataLoader(TensorDataset(xv, yv), batch_size=8))
    workers = int(case[len("workers"):])
    train = DataLoader(Augmented(xt, yt), batch_size=8, shuffle=True, num_workers=workers)
    return model, train, DataLoader(TensorDataset(xv, yv), batch_size=8)


def fit(case, out, seed=0, callbacks=(), **kwargs):
    """One fit of ``case`` with its state under ``out``; the global RNG is seeded first."""
    model, train, val = build(case, seed)
    torch.manual_seed(1)
    history = model.fit(train, val, ckpt_path=os.path.join(out, "best.pt"),
                        callbacks=list(callbacks), **FIT, **kwargs)
    return model, history


def _write(out, name, model, history=None, counter=None, saves=None):
    rank = model.accelerator.process_index
    with open(os.path.join(out, f"{name}{rank}.json"), "w") as f:
        json.dump({"history": None if history is None else history.to_dict(orient="list"),
                   "batches": counter and counter.batches, "first": counter and counter.first,
                   "saves": saves and saves.counts}, f)
    if rank == 0 and history is not None:
        torch.save(model.net.state_dict(), os.path.join(out, f"{name}.pt"))


def _folder(out, name):
    path = os.path.join(out, name)
    os.makedirs(path, exist_ok=True)
    return path


def _sharded_run(out, case, epoch, step):
    """The sharded path's fit, stopped by an exception inside ``epoch``."""
    saves = SaveStateCollective()
    model = None
    with forced_sharding():
        try:
            fit(case, _folder(out, "sharded"), callbacks=[saves, CrashAt(epoch, step)],
                save_state_every_steps=EVERY[case])
        except Crash:
            model = saves.model
    _write(out, "sharded_crashed", model, saves=saves)


def main(args):
    out, case = args[0], args[1]
    torch.set_num_threads(1)
    if "--straight-then-kill" in args:  # torchrun: straight, sharded, then the killed run
        at = args[args.index("--straight-then-kill") + 1]
        counter = BatchCount()
        model, history = fit(case, _folder(out, "straight"), callbacks=[counter])
        _write(out, "straight", model, history, counter)
        _sharded_run(out, case, *(int(v) for v in at.split(":")))
        args = [*args, "--kill-at", at]
    if "--kill-at" in args:
        epoch, step = (int(v) for v in args[args.index("--kill-at") + 1].split(":"))
        fit(case, out, callbacks=[KillAt(epoch, step)], save_state_every_steps=EVERY[case])
        raise SystemExit("the kill step was never reached")
    if "--resume" in args:
        counter = BatchCount()
        model, history = fit(case, out, seed=123, callbacks=[counter], resume=True,
                             save_state_every_steps=EVERY[case])
        _write(out, "resumed", model, history, counter)
        counter, saves = BatchCount(), SaveStateCollective()
        with forced_sharding():
            model, history = fit(case, os.path.join(out, "sharded"), seed=123,
                                 callbacks=[counter, saves], resume=True,
                                 save_state_every_steps=EVERY[case])
        _write(out, "resumed_sharded", model, history, counter, saves)
        leave(model.accelerator)  # a clean gloo shutdown, then no teardown to abort in


if __name__ == "__main__":
    main(sys.argv[1:])
