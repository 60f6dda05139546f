"""Run by test_launch.py under `accelerate launch` or torchrun: one fit, and what each process saw.

    launch_script.py OUT TAG [--explicit] [--batch-size B] [--no-shuffle] [--launcher K]

Each process writes <OUT>/<TAG>-rank<k>.json: the launcher's environment variables, the
Accelerator kerastorch used (processes, precision, accumulation, distributed type) and
the history; rank 0 also writes the final weights to <OUT>/<TAG>-final.pt.
--explicit passes mixed_precision="bf16" and gradient_accumulation_steps=2 to fit, the
settings the test's launch config gives through the environment instead; --launcher K
records which launcher invocation started the process (the multi-node test).
"""

import json
import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ddp_script import data, leave
from kerastorch import KerasModel

# what the launchers set, recorded to show who ran what
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                    "ACCELERATE_MIXED_PRECISION", "ACCELERATE_GRADIENT_ACCUMULATION_STEPS")


def train(batch_size=8, shuffle=True, epochs=3, **fit_kwargs):
    """One fit of a small MLP with SGD; also the single-process reference of the test.

    Returns:
        The model and its history DataFrame.
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    xt, yt = data(96, 1)
    xv, yv = data(37, 2)
    train_dl = DataLoader(TensorDataset(xt, yt), batch_size=batch_size, shuffle=shuffle)
    val_dl = DataLoader(TensorDataset(xv, yv), batch_size=batch_size)
    history = model.fit(train_dl, val_dl, epochs=epochs, ckpt_path=None, patience=None,
                        quiet=True, **fit_kwargs)
    return model, history


def main(out, tag, explicit=False, batch_size=8, shuffle=True, launcher=None):
    fit_kwargs = dict(mixed_precision="bf16", gradient_accumulation_steps=2) if explicit else {}
    model, history = train(batch_size, shuffle, **fit_kwargs)
    acc = model.accelerator
    record = {"env": {name: os.environ.get(name) for name in LAUNCH_VARIABLES},
              "launcher": launcher, "num_processes": acc.num_processes,
              "process_index": acc.process_index, "mixed_precision": str(acc.mixed_precision),
              "gradient_accumulation_steps": acc.gradient_accumulation_steps,
              "distributed_type": acc.distributed_type.value, "device": str(acc.device),
              "train_steps": model.train_steps, "history": history.to_dict(orient="list")}
    with open(os.path.join(out, f"{tag}-rank{acc.process_index}.json"), "w") as f:
        json.dump(record, f)
    if acc.is_main_process:
        torch.save(model.net.state_dict(), os.path.join(out, f"{tag}-final.pt"))
    # a clean gloo shutdown: exiting with the process group alive can abort in C++ teardown
    leave(acc)


if __name__ == "__main__":
    args = sys.argv[1:]

    def value(flag, default):
        return int(args[args.index(flag) + 1]) if flag in args else default

    main(args[0], args[1], explicit="--explicit" in args, batch_size=value("--batch-size", 8),
         shuffle="--no-shuffle" not in args, launcher=value("--launcher", None))
