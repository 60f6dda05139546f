"""Fifty short fits in one process: memory stays flat and nothing leaks between fits."""

import gc
import signal
import tracemalloc
import warnings

import torch
import torchmetrics
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import EarlyStopping


def test_fifty_fits_keep_memory_flat_and_leave_no_state_behind():
    x, y = make_classification(n=64)
    train, val = loader(x, y, 16), loader(x, y, 32)
    shared_stopper = EarlyStopping("train_loss", patience=3)
    acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
    precisions = ["no", "bf16", "fp16"]
    snapshots = {}
    tracemalloc.start()
    try:
        for i in range(50):
            model = KerasModel(TinyNet(), nn.CrossEntropyLoss(), metrics_dict={"acc": acc})
            precision = precisions[i % 3]
            df = model.fit(train, val if i % 2 else None, epochs=2, ckpt_path=None, quiet=True,
                           mixed_precision=precision, callbacks=[shared_stopper],
                           monitor="train_loss")
            assert len(df) == 2 and df["train_loss"].notna().all()
            # nothing of the fit leaks into the process
            assert AcceleratorState().mixed_precision == precision
            assert not torch.is_autocast_enabled() and torch.is_grad_enabled()
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            assert acc.update_count == 0
            del model, df
            if i in (9, 49):
                gc.collect()
                snapshots[i] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    grown = snapshots[49] - snapshots[9]
    print(f"traced memory after fit 10: {snapshots[9]}, after fit 50: {snapshots[49]}")
    assert grown < 1_000_000, f"memory grew by {grown} bytes over 40 fits"
    gc.collect()
    with warnings.catch_warnings():  # scanning every object touches deprecated attributes
        warnings.simplefilter("ignore")
        alive = [o for o in gc.get_objects() if isinstance(o, Accelerator)]
    assert len(alive) <= 2, f"{len(alive)} Accelerator objects still alive"
