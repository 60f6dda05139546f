"""Run under torchrun by test_distributed.py: fit, evaluate and predict on 2 CPU processes.

Each rank writes what it saw to <out>/rank<k>.json; rank 0 also writes the final weights.
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


def main(out):
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
    df = model.fit(train_dl, val_dl, epochs=3, ckpt_path=os.path.join(out, "best.pt"),
                   monitor="val_acc", mode="max", patience=1, quiet=True)
    logs = model.evaluate(val_dl, quiet=True)
    preds = model.predict(val_dl)
    rank = model.accelerator.process_index
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"history": df.to_dict(orient="list"), "evaluate": logs,
                   "num_processes": model.accelerator.num_processes,
                   "preds": preds.tolist()}, f)
    if rank == 0:
        torch.save(model.net.state_dict(), os.path.join(out, "final.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
