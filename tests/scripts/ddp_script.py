"""Run under torchrun by test_distributed.py: fit, evaluate and predict on 2 CPU processes.

    ddp_script.py OUT [--epochs N] [--resume] [--crash]

Each rank writes what it saw to <out>/rank<k>.json; rank 0 also writes the final weights.
--crash makes rank 1's loss raise on its first batch.
"""

import json
import os
import sys

import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kerastorch import KerasModel


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def main(out, epochs=3, resume=False, crash=False):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    xt, yt = data(96, 1)
    xv, yv = data(37, 2)  # 37 = 2*16 + 5: the last batch is padded on one rank
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=3)},
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    train_dl = DataLoader(TensorDataset(xt, yt), batch_size=8, shuffle=True)
    val_dl = DataLoader(TensorDataset(xv, yv), batch_size=8)
    rank = int(os.environ["RANK"])
    if crash and rank == 1:
        def failing_loss(preds, labels):
            raise RuntimeError("injected failure on rank 1")

        model.loss_fn = failing_loss
    df = model.fit(train_dl, val_dl, epochs=epochs, ckpt_path=os.path.join(out, "best.pt"),
                   monitor="val_acc", mode="max", patience=1, quiet=True, resume=resume)
    logs = model.evaluate(val_dl, quiet=True)
    preds = model.predict(val_dl)
    rank = model.accelerator.process_index
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"history": df.to_dict(orient="list"), "evaluate": logs,
                   "num_processes": model.accelerator.num_processes,
                   "loss_fn": type(model.loss_fn).__name__,
                   "metric_types": sorted({type(m).__name__ for m in model.metrics_dict.values()}),
                   "preds": preds.tolist()}, f)
    if rank == 0:
        torch.save(model.net.state_dict(), os.path.join(out, "final.pt"))
    # a clean gloo shutdown: exiting with the process group alive can abort in C++ teardown
    leave(model.accelerator)


def leave(accelerator):
    """End a torchrun worker whose results are written: a clean gloo shutdown, then an
    exit that skips the interpreter's and C++'s teardown, where gloo's threads can still
    abort the process ("terminate called without an active exception") after all the
    work is done, failing the launch."""
    accelerator.end_training()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    args = sys.argv[1:]
    epochs = int(args[args.index("--epochs") + 1]) if "--epochs" in args else 3
    main(args[0], epochs, resume="--resume" in args, crash="--crash" in args)
