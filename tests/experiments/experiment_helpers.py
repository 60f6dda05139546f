"""Small digits data, nets and callbacks for the loss-experiment tests (seconds per experiment)."""

import functools

import torch
from torch import nn

from kerastorch.callbacks import Callback


@functools.lru_cache(maxsize=1)
def small_digits():
    """300 training and 120 validation images of scikit-learn's 8x8 digits, as float tensors."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x / 16.0, dtype=torch.float32)
    y = torch.as_tensor(y)
    return (x[:300], y[:300]), (x[300:420], y[300:420])


def mlp():
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 10))


def two_losses():
    return {"ce": nn.CrossEntropyLoss(), "smooth": nn.CrossEntropyLoss(label_smoothing=0.2)}


class InterruptRun(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) in the second batch of runs of ``loss_fn``,
    from the ``after``-th such run on (counted in this process)."""

    def __init__(self, loss_fn, after=1):
        self.loss_fn, self.after, self.seen = loss_fn, after, 0

    def on_fit_begin(self, logs=None):
        if self.model.loss_fn is self.loss_fn:
            self.seen += 1

    def on_train_batch_end(self, step, logs=None):
        if self.model.loss_fn is self.loss_fn and self.seen >= self.after and step >= 1:
            raise KeyboardInterrupt


class CountFits(Callback):
    """Counts the fits it takes part in."""

    def __init__(self):
        self.fits = 0

    def on_fit_begin(self, logs=None):
        self.fits += 1
