"""Used by test_resume.py: one training run in its own process.

    python resume_script.py OUT_DIR EPOCHS [--resume] [--kill-at EPOCH:STEP]

Writes OUT_DIR/result.pt with the final weights and the history. --kill-at sends
SIGKILL to this process at that training step, as a crash or a pre-empted job would.
"""

import os
import signal
import sys

import numpy as np
import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kerastorch import KerasModel
from kerastorch.callbacks import Callback


class KillAt(Callback):
    def __init__(self, epoch, step):
        self.epoch, self.step, self.current = epoch, step, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, step, logs=None):
        if (self.current, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGKILL)


def build():
    """Deterministic data, net, optimizer and scheduler; dropout and shuffling use the RNGs."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] * x[:, 1] + x[:, 2] > 0).long()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.7)
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=2)},
                       optimizer=optimizer, lr_scheduler=scheduler)
    train = DataLoader(TensorDataset(x[:150], y[:150]), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(x[150:], y[150:]), batch_size=16)
    return model, train, val


def main(out, epochs, resume=False, kill_at=None):
    model, train, val = build()
    # a stray draw from each RNG: a resumed run must restore them, not reuse these
    np.random.rand()
    callbacks = [KillAt(*kill_at)] if kill_at else []
    df = model.fit(train, val, epochs=epochs, ckpt_path=os.path.join(out, "best.pt"),
                   patience=10, resume=resume, quiet=True, callbacks=callbacks)
    torch.save({"weights": model.net.state_dict(), "history": df.to_dict(orient="list"),
                "optimizer": model.optimizer.state_dict()}, os.path.join(out, "result.pt"))


if __name__ == "__main__":
    args = sys.argv[1:]
    kill = None
    if "--kill-at" in args:
        kill = tuple(int(v) for v in args[args.index("--kill-at") + 1].split(":"))
    main(args[0], int(args[1]), resume="--resume" in args, kill_at=kill)
