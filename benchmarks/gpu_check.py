"""GPU check: `PYTHONPATH=. python3 benchmarks/gpu_check.py --out DIR` (< 4 min); CPU: `--smoke`.

Thirteen checks of kerastorch's public API on one CUDA GPU, each recorded as
PASS, FAIL or SKIP with the numbers it measured:

    1  environment          versions, device, free memory
    2  fp32_fit             a small CNN trains on the GPU; evaluate/predict/checkpoints
    3  mixed_precision      fp32, bf16 and fp16 train from one init; bf16 and fp16 end
                            within AMP_LOSS_TOLERANCE of fp32's val loss; weights stay
                            float32, the GradScaler; bf16 -> fp16 -> no on one KerasModel
    4  predict_bf16         dtype/device of predict's output under bf16, .numpy()
    5  fast_path_device     (X, y) batches are sliced on the GPU; the memory guard
                            refuses data bigger than half the free GPU memory
    6  fast_vs_dataloader   fast path and fast_data=False end with the same weights
    7  resume_exact         2 epochs + resume to 4 == 4 straight (deterministic CUDA)
    8  pinned_loader        DataLoader(pin_memory=True, num_workers=2), map-style Dataset;
                            kerastorch's loader moves its batches with non_blocking=True
                            (no synchronizing copy while iterating it)
    9  overhead             epoch time of fit vs a hand-written loop (MLP fast path,
                            MLP DataLoader, CNN); ratios are reported, not judged
    10 gpu_memory           peak allocated memory of fit vs the raw loop (MLP)
    11 no_host_sync         torch.cuda.set_sync_debug_mode("error") over the steps of a
                            steady-state epoch: fast path, pinned and pageable DataLoader
    12 fsdp2_checkpoint     fit(accelerator=Accelerator(fsdp_plugin=FSDP2 plugin)) in a
                            subprocess (1 GPU, world size 1): the best checkpoint and
                            save_ckpt load strict into a plain nn.Module, same predictions
    13 resnet18_amp         epoch time of fit vs a raw loop on ResNet-18 under bf16
                            autocast; the ratio is reported, not judged

The report is the product: a failing check never stops the others, and the FAIL
count is printed last. The exit code is 1 when any check FAILed (a check still
running at the hard deadline counts as failed) and 0 when every check passed or
was skipped. With ``--out DIR`` the Markdown table (``gpu_check.md``, ready to
paste into benchmarks/RESULTS.md) and ``gpu_check.json`` are rewritten after
every check, so a run cut short still leaves the checks it finished.

Device time is scarce, so the run guards itself against hanging: each check
has a time limit (SIGALRM), a check is not started when the time budget could
not hold it, a watchdog thread writes the report and exits 1 at the hard
deadline, and faulthandler kills the process 10 s later if even that thread
cannot run. Check 12's subprocess is killed with its process group when the
check's time runs out.

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out "$OUT"     # on the GPU machine
    python benchmarks/gpu_check.py --smoke                          # CPU: tiny sizes
    python benchmarks/gpu_check.py --smoke --cuda-checks-on-cpu     # also 5, 7, 8, 10-13

On a machine without CUDA, checks 5, 7, 8 and 10-13 are "skipped: no CUDA" and
the CUDA-only assertions of the others are listed as skipped;
``--cuda-checks-on-cpu`` runs those checks on the CPU as well (only to exercise
this script's code before spending GPU time on it: no sync debug mode, no FSDP
sharding there).
"""

from __future__ import annotations

import os
import time

T0 = time.monotonic()  # the budget counts from here: imports and CUDA start-up included

# cuBLAS reads this when its first handle is created, so it must be set before torch
# touches CUDA; check 7 needs it for deterministic matmuls under
# torch.use_deterministic_algorithms(True), and it barely affects the other timings
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse  # noqa: E402
import datetime  # noqa: E402
import faulthandler  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable, Dict, List, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

import kerastorch  # noqa: E402
from kerastorch import KerasModel  # noqa: E402
from kerastorch.callbacks import Callback  # noqa: E402
from kerastorch.data import TensorBatches, fast_loader  # noqa: E402

MiB = 2**20
GiB = 2**30

# -- sizes ------------------------------------------------------------------------------

# GPU sizes: every check but 9 takes seconds on an H100; check 9 about 30 s
FULL_SIZES = dict(cnn_train=4096, cnn_val=1024, cnn_batch=64, fit_epochs=3, mp_epochs=2,
                  fast_samples=4096, eq_samples=2048, resume_train=2048, resume_val=512,
                  loader_samples=4096, mlp_samples=60000, mlp_batch=256,
                  bench_cnn_samples=8192, bench_cnn_batch=64, reps=3, cnn_width=16,
                  lr=2e-3, sync_samples=8192, fsdp_train=2048, fsdp_val=512,
                  resnet_samples=4096, resnet_batch=128, resnet_image=64)
# --smoke: every code path, tiny data (2 CPU cores: the whole run well under a minute)
SMOKE_SIZES = dict(cnn_train=256, cnn_val=64, cnn_batch=32, fit_epochs=3, mp_epochs=2,
                   fast_samples=512, eq_samples=256, resume_train=256, resume_val=64,
                   loader_samples=256, mlp_samples=512, mlp_batch=128,
                   bench_cnn_samples=256, bench_cnn_batch=64, reps=2, cnn_width=4,
                   lr=1e-2, sync_samples=1024, fsdp_train=256, fsdp_val=64,
                   resnet_samples=16, resnet_batch=16, resnet_image=16)

# fit() arguments shared by every check: no files, no bar, no early stopping
FIT = dict(ckpt_path=None, quiet=True, patience=None)


# -- recording ----------------------------------------------------------------------------

class CheckTimeout(BaseException):
    """Raised by the SIGALRM handler when a check runs past its limit.

    A BaseException, so that no ``except Exception`` inside a library swallows it.
    """


@dataclass
class Record:
    """What one check found: its result, numbers, failed expectations and errors."""

    id: int
    name: str
    result: str = "PENDING"
    numbers: Dict[str, Any] = field(default_factory=dict)
    expectations: List[dict] = field(default_factory=list)
    skipped_parts: List[str] = field(default_factory=list)
    reason: str = ""
    error: Optional[str] = None    # the full traceback (JSON only)
    summary: str = ""              # one line for the table: what went wrong, and where
    seconds: float = 0.0
    started: float = 0.0
    warnings: List[str] = field(default_factory=list)

    def num(self, key: str, value: Any) -> None:
        """Record a measured number (or short string) under ``key``."""
        self.numbers[key] = value

    def expect(self, what: str, ok: bool, detail: str = "") -> bool:
        """Record an assertion; a false one makes the check FAIL (after it finishes)."""
        self.expectations.append({"what": what, "ok": bool(ok), "detail": detail})
        return bool(ok)

    def cuda_only(self, what: str) -> None:
        """Note an assertion that needs CUDA and was skipped on this machine."""
        self.skipped_parts.append(what)

    @property
    def failures(self) -> List[str]:
        return [e["what"] + (f" ({e['detail']})" if e["detail"] else "")
                for e in self.expectations if not e["ok"]]

    def finish(self) -> None:
        """Decide PASS/FAIL from the expectations and the error, if not decided yet."""
        if self.result != "PENDING":
            return
        self.result = "FAIL" if (self.error or self.failures) else "PASS"

    def to_json(self) -> dict:
        # copies: the watchdog thread may serialise a record the main thread still fills
        return {"id": self.id, "check": self.name, "result": self.result,
                "numbers": dict(self.numbers), "expectations": list(self.expectations),
                "failures": self.failures, "skipped_parts": self.skipped_parts,
                "reason": self.reason, "error": self.error, "error_summary": self.summary,
                "seconds": round(self.seconds, 3),
                "warnings": self.warnings}


@dataclass
class Context:
    """What every check needs: the device, the sizes, a scratch directory."""

    device: torch.device
    cuda: bool
    smoke: bool
    sizes: dict
    tmp: str
    limit_s: float = 0.0  # the running check's time limit (check 9 paces itself by it)


# -- data and nets -----------------------------------------------------------------------

def cnn_split(n_train: int, n_val: int, seed: int = 1234):
    """Ten 1x28x28 class templates plus noise: learnable, like MNIST, fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    y = torch.randint(0, 10, (n,), generator=g)
    templates = torch.rand(10, 1, 28, 28, generator=g)
    x = templates[y] + 0.5 * torch.randn(n, 1, 28, 28, generator=g)
    x = (x - x.mean()) / x.std()
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def mlp_data(n: int, seed: int = 4321):
    """784 features labelled by a random linear teacher (10 classes)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 784, generator=g)
    y = (x @ torch.randn(784, 10, generator=g)).argmax(dim=1)
    return x, y


# channels of small_cnn's first conv; --smoke narrows it (set in main), because bf16
# convolutions on a CPU are slow and the smoke run only needs the code paths
CNN_WIDTH = 16


def small_cnn() -> nn.Module:
    """Two conv blocks and a dropout (so the CUDA RNG matters for checks 6 and 7)."""
    w = CNN_WIDTH
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(2 * w * 7 * 7, 64), nn.ReLU(),
        nn.Linear(64, 10))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def seeded(builder: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """The same initial weights for every run that passes the same seed."""
    torch.manual_seed(seed)
    return builder()


# Adam's learning rate for the checks that expect the loss to fall (--smoke: fewer
# steps, so a larger one); set in main
LR = 2e-3


def make_model(net: nn.Module, lr: Optional[float] = None,
               accuracy: bool = False) -> KerasModel:
    metrics = None
    if accuracy:
        import torchmetrics

        metrics = {"acc": torchmetrics.Accuracy(task="multiclass", num_classes=10)}
    return KerasModel(net, nn.CrossEntropyLoss(), metrics_dict=metrics,
                      optimizer=torch.optim.Adam(net.parameters(), lr=lr or LR))


def history_finite(history) -> bool:
    values = history.drop(columns=["epoch"]).to_numpy(dtype=float)
    return bool(np.isfinite(values).all())


def snapshot(net: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def max_abs_diff(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
               for k in a)


def sync(ctx: Context) -> None:
    if ctx.cuda:
        torch.cuda.synchronize()


class EpochClock(Callback):
    """Epoch times measured between on_epoch_begin and on_epoch_end (GPU synced)."""

    def __init__(self, cuda: bool):
        self.cuda, self.times, self._start = cuda, [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        if self.cuda:
            torch.cuda.synchronize()  # queued work of the previous epoch is not ours
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


# -- 1. environment ---------------------------------------------------------------------------

def check_environment(ctx: Context, rec: Record) -> None:
    """Check 1: versions (torch, CUDA, cuDNN, accelerate, torchmetrics, kerastorch), the device.

    Every check function takes the same two arguments.

    Args:
        ctx: the device, sizes and scratch directory of the run.
        rec: where the check writes its numbers and expectations.
    """
    import accelerate
    import torchmetrics

    rec.num("torch", torch.__version__)
    rec.num("cuda", torch.version.cuda or "none")
    if ctx.cuda:
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info()
        rec.num("device", torch.cuda.get_device_name(0))
        rec.num("capability", f"{props.major}.{props.minor}")
        rec.num("gpus", torch.cuda.device_count())
        rec.num("gpu_total_GiB", total / GiB)
        rec.num("gpu_free_GiB", free / GiB)
        rec.num("cudnn", torch.backends.cudnn.version())
        rec.num("bf16_supported", torch.cuda.is_bf16_supported())
    else:
        rec.num("device", "cpu (no CUDA)")
        rec.cuda_only("GPU properties")
    rec.num("accelerate", accelerate.__version__)
    rec.num("torchmetrics", torchmetrics.__version__)
    rec.num("kerastorch", getattr(kerastorch, "__version__", "?"))
    rec.num("python", platform.python_version())
    rec.num("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""))
    commit = _git_commit()
    if commit:
        rec.num("commit", commit)
    # the run is only meaningful if it tests this checkout, not an installed copy
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rec.num("kerastorch_from", os.path.relpath(os.path.dirname(kerastorch.__file__), here))


def _git_commit() -> str:
    """The checkout's commit (a short timeout: git may be absent or slow there)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5,
                               cwd=os.path.dirname(os.path.abspath(__file__)))
        if out.returncode:
            return ""
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


# -- 2. fp32 fit ------------------------------------------------------------------------------

def check_fp32_fit(ctx: Context, rec: Record) -> None:
    """Check 2: a full-precision fit of the small CNN on the device.

    Expects the parameters on cuda afterwards, a finite history, a validation
    loss below the untrained one, float32 predictions on the CPU, and a
    checkpoint that reloads into a fresh net with the same evaluation.
    """
    s = ctx.sizes
    train, val = cnn_split(s["cnn_train"], s["cnn_val"])
    net = seeded(small_cnn)
    model = make_model(net, accuracy=True)
    before = model.evaluate(val, quiet=True, batch_size=s["cnn_batch"])["val_loss"]
    torch.manual_seed(1)
    start = time.perf_counter()
    history = model.fit(train, val, epochs=s["fit_epochs"], batch_size=s["cnn_batch"], **FIT)
    sync(ctx)
    rec.num("fit_s", time.perf_counter() - start)
    losses = history["val_loss"].tolist()
    rec.num("val_loss", f"{before:.3f} -> " + " -> ".join(f"{v:.3f}" for v in losses))
    rec.num("val_acc", float(history["val_acc"].iloc[-1]))
    rec.expect("history finite", history_finite(history))
    rec.expect("val loss decreases", losses[-1] < before, f"{before:.4f} then {losses}")
    devices = sorted({p.device.type for p in net.parameters()})
    rec.num("param_device", ",".join(devices))
    if ctx.cuda:
        rec.expect("parameters on cuda", devices == ["cuda"], str(devices))
    else:
        rec.cuda_only("parameters on cuda")

    preds = model.predict(val[0], batch_size=s["cnn_batch"])
    rec.num("predict", f"{tuple(preds.shape)} {str(preds.dtype).replace('torch.', '')} "
                       f"{preds.device.type}")
    rec.expect("predict rows/device/dtype",
               preds.shape == (len(val[0]), 10) and preds.device.type == "cpu"
               and preds.dtype == torch.float32, f"{preds.shape} {preds.dtype} {preds.device}")

    # a checkpoint written from the GPU loads into a fresh CPU net and evaluates the same
    path = os.path.join(ctx.tmp, "fp32.pt")
    model.save_ckpt(path)
    after = model.evaluate(val, quiet=True, batch_size=s["cnn_batch"])["val_loss"]
    other = make_model(seeded(small_cnn, seed=5), accuracy=True)
    other.load_ckpt(path)
    rec.expect("load_ckpt restores the weights", max_abs_diff(snapshot(net),
                                                               snapshot(other.net)) == 0.0)
    again = other.evaluate(val, quiet=True, batch_size=s["cnn_batch"])["val_loss"]
    rec.num("ckpt_eval_diff", abs(again - after))
    rec.expect("evaluate after load_ckpt agrees", abs(again - after) <= 1e-5,
               f"{after} vs {again}")


# -- 3. mixed precision ---------------------------------------------------------------------

def _grad_scaler_type():
    return getattr(getattr(torch, "amp", None), "GradScaler", None) or torch.cuda.amp.GradScaler


# how close a mixed-precision fit must end to the fp32 fit of the same net, init, data
# order and dropout draws: |val_loss(amp) - val_loss(fp32)| <= abs + rel * val_loss(fp32).
# bf16 keeps 8 bits of mantissa in the autocast ops, so the two runs drift apart step by
# step; on the GPU sizes fp32 ends near 0.02, giving about 0.05 nats of room, far below
# the 2.3 nats an AMP run that failed to train would show
AMP_LOSS_TOLERANCE = dict(abs=0.05, rel=0.10)


def check_mixed_precision(ctx: Context, rec: Record) -> None:
    """Check 3: bf16 and fp16 fits train to fp32's loss, keep float32 weights, use the right scaler.

    fp32, bf16 and fp16 fits start from one init with one seed; the AMP ones must
    end within ``AMP_LOSS_TOLERANCE`` of fp32's validation loss. fp16 must have
    Accelerate's GradScaler and bf16 none. Then one KerasModel is fitted under
    bf16, fp16 and no in turn (Accelerate's process-wide state is rebuilt each
    time) and must keep training.
    """
    s = ctx.sizes
    train, val = cnn_split(s["cnn_train"], s["cnn_val"])
    scaler_type = _grad_scaler_type()
    final = {}
    for precision in ("no", "bf16", "fp16"):
        net = seeded(small_cnn)
        model = make_model(net)
        before = model.evaluate(val, quiet=True, batch_size=s["cnn_batch"])["val_loss"]
        torch.manual_seed(1)
        start = time.perf_counter()
        history = model.fit(train, val, epochs=s["mp_epochs"], batch_size=s["cnn_batch"],
                            mixed_precision=precision, **FIT)
        sync(ctx)
        after = final[precision] = float(history["val_loss"].iloc[-1])
        rec.num(f"{precision}_val_loss", f"{before:.3f} -> {after:.3f}")
        rec.num(f"{precision}_fit_s", time.perf_counter() - start)
        rec.expect(f"{precision} history finite", history_finite(history))
        rec.expect(f"{precision} val loss decreases", after < before, f"{before} -> {after}")
        dtypes = sorted({str(p.dtype).replace("torch.", "") for p in net.parameters()})
        rec.expect(f"{precision} parameters stay float32", dtypes == ["float32"], str(dtypes))
        scaler = model.accelerator.scaler
        rec.num(f"{precision}_scaler", type(scaler).__name__ if scaler is not None else "None")
        if not ctx.cuda:
            rec.cuda_only(f"{precision} GradScaler")
        elif precision == "fp16":
            rec.expect("fp16 uses a GradScaler", isinstance(scaler, scaler_type),
                       type(scaler).__name__)
        else:
            rec.expect(f"{precision} has no GradScaler", scaler is None, type(scaler).__name__)
    tolerance = AMP_LOSS_TOLERANCE["abs"] + AMP_LOSS_TOLERANCE["rel"] * final["no"]
    rec.num("amp_loss_tolerance", tolerance)
    for precision in ("bf16", "fp16"):
        gap = abs(final[precision] - final["no"])
        rec.num(f"{precision}_minus_fp32_val_loss", final[precision] - final["no"])
        rec.expect(f"{precision} val loss within {tolerance:.3g} of fp32's", gap <= tolerance,
                   f"{final[precision]:.4f} vs {final['no']:.4f}")

    # one KerasModel through every precision in turn: Accelerate's process-wide state
    # must be rebuilt between fits
    net = seeded(small_cnn)
    model = make_model(net)
    before = model.evaluate(val, quiet=True, batch_size=s["cnn_batch"])["val_loss"]
    steps = []
    torch.manual_seed(1)
    for precision in ("bf16", "fp16", "no"):
        history = model.fit(train, val, epochs=1, batch_size=s["cnn_batch"],
                            mixed_precision=precision, **FIT)
        acc = model.accelerator
        loss = float(history["val_loss"].iloc[-1])
        steps.append(f"{precision}:{loss:.3f}")
        rec.expect(f"switch to {precision}: history finite", history_finite(history))
        rec.expect(f"switch to {precision}: accelerator precision",
                   acc.mixed_precision == precision, str(acc.mixed_precision))
        if ctx.cuda:
            rec.expect(f"switch to {precision}: scaler",
                       (acc.scaler is not None) == (precision == "fp16"),
                       type(acc.scaler).__name__)
    if not ctx.cuda:
        rec.cuda_only("scaler while switching")
    rec.num("switch_val_loss", f"{before:.3f} -> " + " -> ".join(steps))
    rec.expect("switching keeps training", loss < before, f"{before} -> {loss}")
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in net.parameters()})
    rec.expect("float32 after switching", dtypes == ["float32"], str(dtypes))
    preds = model.predict(val[0], batch_size=s["cnn_batch"])
    rec.expect("predict after switching back to 'no' is float32", preds.dtype == torch.float32,
               str(preds.dtype))


# -- 4. predict under bf16 ---------------------------------------------------------------------

def check_predict_bf16(ctx: Context, rec: Record) -> None:
    """Check 4: what ``predict`` returns after a bf16 fit (dtype, device, ``.numpy()``).

    PASS means one row per sample, on the CPU; a bfloat16 output is recorded as
    the known issue it is, not failed.
    """
    s = ctx.sizes
    train, val = cnn_split(s["cnn_train"], s["cnn_val"])
    model = make_model(seeded(small_cnn))
    torch.manual_seed(1)
    model.fit(train, val, epochs=1, batch_size=s["cnn_batch"], mixed_precision="bf16", **FIT)
    preds = model.predict(val[0], batch_size=s["cnn_batch"])
    rec.num("dtype", str(preds.dtype).replace("torch.", ""))
    rec.num("device", preds.device.type)
    rec.num("shape", str(tuple(preds.shape)))
    rec.expect("one row per sample", preds.shape[0] == len(val[0]),
               f"{preds.shape[0]} vs {len(val[0])}")
    rec.expect("returned on the CPU", preds.device.type == "cpu", preds.device.type)
    try:
        preds.numpy()
        rec.num("numpy_works", True)
    except (TypeError, RuntimeError) as exc:  # numpy has no bfloat16
        rec.num("numpy_works", False)
        rec.num("numpy_error", str(exc).splitlines()[0][:80])
    # known issue, recorded not judged: a user expects float32 outputs as with fp32
    rec.num("known_issue_bf16_output", preds.dtype == torch.bfloat16)
    pair = model.predict(val, batch_size=s["cnn_batch"])  # an (X, y) pair: labels dropped
    rec.expect("(X, y) pair gives the same rows", pair.shape == preds.shape,
               f"{tuple(pair.shape)}")


# -- 5. fast path on the device ------------------------------------------------------------------

class MemoryAtEpochBegin(Callback):
    """GPU memory in use when the first epoch starts (the data is on the device by then)."""

    def __init__(self, cuda: bool):
        self.cuda, self.allocated = cuda, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.allocated is None and self.cuda:
            self.allocated = torch.cuda.memory_allocated()


def check_fast_path(ctx: Context, rec: Record) -> None:
    """Check 5: in-memory data is sliced on the GPU, and the memory guard holds.

    ``fit((X, y))`` must hold the data on the GPU while training (the memory in use
    rises by its size before the first step); ``fast_loader`` must return
    ``TensorBatches`` on cuda for a TensorDataset loader and keep any other
    DataLoader; and data bigger than half the free GPU memory must stay a
    DataLoader without a byte allocated.
    """
    s = ctx.sizes
    x, y = mlp_data(s["fast_samples"])
    data_bytes = x.nelement() * x.element_size() + y.nelement() * y.element_size()
    net = seeded(mlp)
    model = make_model(net)
    probe = MemoryAtEpochBegin(ctx.cuda)
    if ctx.cuda:
        gc.collect()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
    history = model.fit((x, y), epochs=1, batch_size=256, callbacks=[probe], **FIT)
    rec.expect("fit on (X, y) finite", history_finite(history))
    if ctx.cuda:
        # the net is ~1 MB and Adam's state does not exist yet, so a rise of at least the
        # data's size means fit copied (X, y) to the GPU once, as the fast path should
        rise = (probe.allocated if probe.allocated is not None else base) - base
        rec.num("data_MiB", data_bytes / MiB)
        rec.num("gpu_rise_at_epoch1_MiB", rise / MiB)
        rec.expect("(X, y) resident on the GPU during fit", rise >= data_bytes,
                   f"{rise / MiB:.1f} MiB < {data_bytes / MiB:.1f} MiB")
    else:
        rec.cuda_only("(X, y) resident on the GPU")

    loader = DataLoader(TensorDataset(x, y), batch_size=256, shuffle=True)
    batches = fast_loader(loader, model.accelerator)
    rec.num("fast_loader", type(batches).__name__)
    if rec.expect("fast_loader gives TensorBatches", isinstance(batches, TensorBatches),
                  type(batches).__name__):
        devices = sorted({t.device.type for t in batches.tensors})
        first = next(iter(batches))
        rec.num("tensors_on", ",".join(devices))
        rec.num("batch_on", first[0].device.type)
        rec.expect("tensors and batches on the accelerator's device",
                   devices == [model.accelerator.device.type]
                   and first[0].device.type == model.accelerator.device.type,
                   f"{devices}, batch {first[0].device}")
        if ctx.cuda:
            rec.expect("tensors on cuda", devices == ["cuda"], str(devices))
    # anything but a TensorDataset keeps the DataLoader
    other = DataLoader(MapDataset(x, y), batch_size=256)
    rec.expect("a map-style Dataset keeps its DataLoader",
               fast_loader(other, model.accelerator) is other)

    if not ctx.cuda:
        rec.cuda_only("memory guard")
        return
    _check_memory_guard(ctx, rec, model.accelerator)


def _check_memory_guard(ctx: Context, rec: Record, accelerator) -> None:
    """Data of 3/4 of the free GPU memory must stay a DataLoader, with nothing allocated."""
    free, _total = torch.cuda.mem_get_info()
    width = 4096
    rows = int(free * 0.75) // (width * 4) + 1
    need = rows * width * 4 + rows * 8
    rec.num("free_GiB", free / GiB)
    rec.num("guard_data_GiB", need / GiB)
    try:
        # meta tensors have a size and no storage: _fits_on's byte count works on them,
        # and nothing is allocated anywhere if the guard holds
        tensors = (torch.empty(rows, width, device="meta"),
                   torch.empty(rows, dtype=torch.long, device="meta"))
        loader = DataLoader(TensorDataset(*tensors), batch_size=256, shuffle=True)
        kind = "meta"
    except Exception as exc:  # noqa: BLE001 - fall back to an untouched host tensor
        available = _host_available_bytes()
        if available is None or available < 1.2 * need:
            rec.num("guard_skipped", f"meta tensors failed ({type(exc).__name__}); host RAM "
                                     f"{(available or 0) / GiB:.0f} GiB too small")
            rec.cuda_only("memory guard (no way to build data that big)")
            return
        # torch.empty does not touch the pages, so this costs no real host memory
        tensors = (torch.empty(rows, width), torch.empty(rows, dtype=torch.long))
        loader = DataLoader(TensorDataset(*tensors), batch_size=256, shuffle=True)
        kind = "cpu"
    rec.num("guard_data_kind", kind)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    try:
        result = fast_loader(loader, accelerator)
    except Exception as exc:  # noqa: BLE001 - a copy attempt of a meta tensor lands here
        rec.expect("memory guard refuses data > half the free memory", False,
                   f"fast_loader tried to copy it: {type(exc).__name__}: {exc}"[:200])
        return
    torch.cuda.synchronize()
    grown = torch.cuda.memory_allocated() - before
    rec.num("guard_allocated_MiB", grown / MiB)
    rec.expect("memory guard keeps the DataLoader", result is loader, type(result).__name__)
    rec.expect("memory guard allocates nothing", grown < MiB, f"{grown / MiB:.1f} MiB")
    del result, loader, tensors


def _host_available_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class MapDataset(Dataset):
    """A plain map-style Dataset (not a TensorDataset): one sample per __getitem__."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index], self.y[index]


# -- 6. fast path vs DataLoader ------------------------------------------------------------------

def check_fast_vs_dataloader(ctx: Context, rec: Record) -> None:
    """Check 6: the fast path and ``fast_data=False`` train to the same weights.

    Same init and seed, cuDNN deterministic; the maximum weight difference is
    reported, and must be within 1e-5 (it is 0 when the batches are identical).
    """
    s = ctx.sizes
    (x, y), _ = cnn_split(s["eq_samples"], 0)
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    # cuDNN may otherwise pick a nondeterministic backward, and the two runs must only
    # differ in the data path
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        weights, losses, times = {}, {}, {}
        for fast in (True, False):
            net = seeded(small_cnn)
            model = make_model(net)
            torch.manual_seed(1)  # the same shuffle order and dropout masks in both runs
            clock = EpochClock(ctx.cuda)
            history = model.fit((x, y), epochs=2, batch_size=s["cnn_batch"], fast_data=fast,
                                callbacks=[clock], **FIT)
            weights[fast] = snapshot(net)
            losses[fast] = history["train_loss"].tolist()
            times[fast] = clock.times[-1]
            rec.expect(f"fast_data={fast} history finite", history_finite(history))
        diff = max_abs_diff(weights[True], weights[False])
        loss_diff = max(abs(a - b) for a, b in zip(losses[True], losses[False]))
        rec.num("max_abs_weight_diff", diff)
        rec.num("bit_identical", diff == 0.0)
        rec.num("max_loss_diff", loss_diff)
        rec.num("epoch_s_fast", times[True])
        rec.num("epoch_s_dataloader", times[False])
        rec.expect("same weights (tolerance 1e-5)", diff <= 1e-5, f"{diff:.3g}")
        rec.expect("same losses (tolerance 1e-6)", loss_diff <= 1e-6, f"{loss_diff:.3g}")
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


# -- 7. exact resume -----------------------------------------------------------------------------

def check_resume(ctx: Context, rec: Record) -> None:
    """Check 7: 2 epochs, then a new KerasModel resuming to 4, equals 4 straight epochs.

    Runs under ``torch.use_deterministic_algorithms(True)`` (CUBLAS_WORKSPACE_CONFIG
    is set at import); if an op has no deterministic CUDA kernel, it is named and
    the runs are repeated with ``warn_only=True``. The weights must be bit-identical.
    """
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        try:
            torch.use_deterministic_algorithms(True)
            _resume_runs(ctx, rec)
            rec.num("deterministic", "strict")
        except RuntimeError as exc:
            if "deterministic" not in str(exc):
                raise
            # an op without a deterministic CUDA kernel: say which, then measure anyway
            rec.expectations.clear()
            rec.num("deterministic", "warn_only")
            rec.num("nondeterministic_op", str(exc).split(" does not have")[0][-80:])
            torch.use_deterministic_algorithms(True, warn_only=True)
            _resume_runs(ctx, rec)
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def _resume_runs(ctx: Context, rec: Record) -> None:
    """The three fits of check 7 and their comparison."""
    s = ctx.sizes
    train, val = cnn_split(s["resume_train"], s["resume_val"])
    kw = dict(batch_size=s["cnn_batch"], **FIT)

    net = seeded(small_cnn)
    torch.manual_seed(1)
    straight = make_model(net).fit(train, val, epochs=4, **kw)
    straight_weights = snapshot(net)

    state = os.path.join(ctx.tmp, "resume.state.pt")
    if os.path.exists(state):
        os.remove(state)
    net = seeded(small_cnn)
    torch.manual_seed(1)
    make_model(net).fit(train, val, epochs=2, state_path=state, **kw)
    rec.num("state_MiB", os.path.getsize(state) / MiB)

    # a different init and RNG state: only the state file can make the runs agree
    net = seeded(small_cnn, seed=7)
    torch.manual_seed(999)
    resumed = make_model(net).fit(train, val, epochs=4, resume=state, **kw)
    resumed_weights = snapshot(net)

    diff = max_abs_diff(straight_weights, resumed_weights)
    columns = [c for c in straight.columns if c in resumed.columns and c != "epoch"]
    history_diff = float(np.nanmax(np.abs(straight[columns].to_numpy(dtype=float)
                                          - resumed[columns].to_numpy(dtype=float))))
    rec.num("epochs", f"{len(straight)} straight, {len(resumed)} resumed")
    rec.num("max_abs_weight_diff", diff)
    rec.num("exactly_0", diff == 0.0)
    rec.num("max_history_diff", history_diff)
    rec.expect("resumed history has 4 epochs", len(resumed) == 4, str(len(resumed)))
    rec.expect("weights bit-identical to 4 straight epochs", diff == 0.0, f"{diff:.3g}")
    rec.expect("history identical", history_diff == 0.0, f"{history_diff:.3g}")


# -- 8. pinned memory, workers -------------------------------------------------------------------

def check_pinned_loader(ctx: Context, rec: Record) -> None:
    """Check 8: a map-style Dataset through ``DataLoader(pin_memory=True, num_workers=2)``.

    It must train (finite, falling loss) and stay a DataLoader (no fast path);
    the epoch times include starting the workers, as users see them. Then the
    transfers must be non-blocking (see ``_check_non_blocking_transfers``).
    """
    s = ctx.sizes
    (x, y), _ = cnn_split(s["loader_samples"], 0)
    # timeout: a stuck worker raises instead of hanging the run
    loader = DataLoader(MapDataset(x, y), batch_size=s["cnn_batch"], shuffle=True,
                        num_workers=2, pin_memory=True, timeout=60)
    if ctx.cuda:
        first = next(iter(loader))
        rec.num("host_batch_pinned", bool(first[0].is_pinned()))
        rec.expect("the DataLoader pins its batches", first[0].is_pinned())
    else:
        rec.cuda_only("pinned batches")
    net = seeded(small_cnn)
    model = make_model(net)
    clock = EpochClock(ctx.cuda)
    torch.manual_seed(1)
    history = model.fit(loader, epochs=2, callbacks=[clock], **FIT)
    losses = history["train_loss"].tolist()
    rec.num("train_loss", " -> ".join(f"{v:.3f}" for v in losses))
    rec.num("epoch_s", " / ".join(f"{t:.3f}" for t in clock.times))
    rec.expect("history finite", history_finite(history))
    rec.expect("train loss decreases", losses[-1] < losses[0], str(losses))
    rec.expect("a map-style DataLoader is not replaced by the fast path",
               fast_loader(loader, model.accelerator) is loader)
    if ctx.cuda:
        rec.expect("parameters on cuda", {p.device.type for p in net.parameters()} == {"cuda"})
    _check_non_blocking_transfers(ctx, rec, loader, model.accelerator)


def _check_non_blocking_transfers(ctx: Context, rec: Record, loader, accelerator) -> None:
    """The batches of a pinned loader reach the GPU by non-blocking copies.

    kerastorch's single-process loader (``kerastorch.data.device_loader``, giving
    ``DeviceBatches``) is what fit iterates; it must say ``non_blocking`` for a
    pinned loader, and iterating it under ``set_sync_debug_mode("error")`` must
    raise nothing: a blocking host-to-device copy goes through
    ``at::cuda::memcpy_and_sync``, which the sync debug mode reports, while a
    non-blocking one is a ``cudaMemcpyAsync`` on the stream. Before kerastorch had
    its own loader, fit used Accelerate's prepared loader, whose copies are
    blocking unless ``DataLoaderConfiguration(non_blocking=True)``: then the path
    and that setting are recorded, not judged. The profiler's counts of CUDA
    runtime calls while iterating are recorded as a second view.
    """
    device_loader = getattr(kerastorch.data, "device_loader", None)
    if device_loader is None:
        config = getattr(accelerator, "dataloader_config", None)
        rec.num("device_move", "Accelerate's prepared loader (kerastorch has no device_loader)")
        rec.num("accelerate_non_blocking", bool(getattr(config, "non_blocking", False)))
        return
    moved = device_loader(loader, accelerator)
    rec.num("device_move", type(moved).__name__)
    rec.num("non_blocking", getattr(moved, "non_blocking", None))
    rec.expect("kerastorch moves a pinned loader's batches with non_blocking=True",
               getattr(moved, "non_blocking", None) is True, type(moved).__name__)
    if not ctx.cuda:
        rec.cuda_only("no synchronizing copy while iterating (sync debug mode)")
        return
    batches = iter(moved)
    next(batches)  # starts the workers; the first copy is outside the window
    torch.cuda.synchronize()
    error = ""
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in zip(range(8), batches):
            pass
    except RuntimeError as exc:
        error = f"{str(exc).strip().splitlines()[0][:160]} ({_where(exc)})"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    rec.expect("no synchronizing copy while iterating kerastorch's loader", not error, error)
    try:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in zip(range(4), batches):
                pass
        names = [event.name for event in prof.events()]
        rec.num("profiled_cudaMemcpyAsync", sum(n == "cudaMemcpyAsync" for n in names))
        rec.num("profiled_stream_syncs", sum(n == "cudaStreamSynchronize" for n in names))
    except Exception as exc:  # noqa: BLE001 - the profiler's view is extra information
        rec.num("profiler_error", f"{type(exc).__name__}: {str(exc)[:80]}")
    del batches


# -- 9. overhead ----------------------------------------------------------------------------------

def sliced_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    """What a user who skips the DataLoader writes, replaying the DataLoader's draws.

    The base seed, the RandomSampler's seed and its randperm come from the global
    RNG as in the DataLoader, so the raw loop sees kerastorch's batches in
    kerastorch's order and both do the same work.
    """
    torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's base seed
    seed = int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler's
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x.index_select(0, index), y.index_select(0, index)


def raw_loop(ctx: Context, builder, x, y, batch_size: int, epochs: int, fast: bool,
             lr: float = 1e-3, autocast: Optional[torch.dtype] = None) -> tuple:
    """The hand-written loop: per-epoch times and the last epoch's mean loss.

    ``autocast`` runs forward and loss under ``torch.autocast`` in that dtype, as
    a user writes AMP by hand (and as Accelerate's bf16 does).
    """
    net = seeded(builder).to(ctx.device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(1)
    if fast:
        x, y = x.to(ctx.device), y.to(ctx.device)  # once, as kerastorch's fast path does
    else:
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    times, value = [], float("nan")
    for _ in range(epochs):
        sync(ctx)
        start = time.perf_counter()
        net.train()
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        count = 0
        for inputs, labels in (sliced_batches(x, y, batch_size) if fast else loader):
            if not fast:
                inputs, labels = inputs.to(ctx.device), labels.to(ctx.device)
            if autocast is None:
                loss = loss_fn(net(inputs), labels)
            else:
                with torch.autocast(ctx.device.type, dtype=autocast):
                    loss = loss_fn(net(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(labels)  # on the device: no sync per step
            count += len(labels)
        value = total.item() / count  # the one host sync of the epoch
        sync(ctx)
        times.append(time.perf_counter() - start)
    return times, value, net


def kt_fit(ctx: Context, builder, x, y, batch_size: int, epochs: int, fast: bool,
           lr: float = 1e-3, callbacks=None, mixed_precision: Optional[str] = None) -> tuple:
    """kerastorch's fit on the same work: per-epoch times and the last epoch's loss."""
    net = seeded(builder)
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       optimizer=torch.optim.Adam(net.parameters(), lr=lr))
    torch.manual_seed(1)
    data = (x, y) if fast else DataLoader(TensorDataset(x, y), batch_size=batch_size,
                                          shuffle=True)
    clock = EpochClock(ctx.cuda)
    history = model.fit(data, epochs=epochs, batch_size=batch_size, shuffle=True,
                        fast_data=fast, callbacks=[clock, *(callbacks or [])],
                        mixed_precision=mixed_precision, **FIT)
    return clock.times, float(history["train_loss"].iloc[-1]), model


def check_overhead(ctx: Context, rec: Record) -> None:
    """Check 9: one epoch of ``fit`` against a hand-written loop doing the same work.

    Three workloads: the MLP via the fast path (the raw loop slices tensors on the
    device), the MLP through a DataLoader (``fast_data=False``; the raw loop
    iterates the same DataLoader) and the CNN via the fast path. Each run trains
    2 epochs and times the second; medians of interleaved repetitions. The
    ratios are reported, not judged; the check fails only if the two did not do
    the same work (final losses apart) or a loss is not finite.
    """
    s, limit_s = ctx.sizes, ctx.limit_s
    x_mlp, y_mlp = mlp_data(s["mlp_samples"])
    (x_cnn, y_cnn), _ = cnn_split(s["bench_cnn_samples"], 0)
    # the last item: how far apart the final losses of raw and kerastorch may be. The
    # MLP's GEMMs repeat bit for bit; cuDNN's default (nondeterministic) convolution
    # backward may sum in another order each run, so the CNN gets more room
    workloads = [("mlp_fast", mlp, x_mlp, y_mlp, s["mlp_batch"], True, 1e-4),
                 ("mlp_dataloader", mlp, x_mlp, y_mlp, s["mlp_batch"], False, 1e-4),
                 ("cnn_fast", small_cnn, x_cnn, y_cnn, s["bench_cnn_batch"], True, 1e-3)]
    start = time.monotonic()
    for name, builder, x, y, batch_size, fast, tolerance in workloads:
        times: Dict[str, list] = {"raw": [], "kt": []}
        losses: Dict[str, list] = {"raw": [], "kt": []}
        for rep in range(s["reps"]):
            # interleaved, so a drift in the machine's speed hits both columns alike;
            # stop adding repetitions when the check's own budget is running out
            if rep and time.monotonic() - start > 0.75 * limit_s:
                rec.num(f"{name}_reps_cut", rep)
                break
            for column in ("raw", "kt"):
                run = raw_loop if column == "raw" else kt_fit
                # 2 epochs: the first warms up (kernels, allocator, workers), the second is timed
                epoch_times, loss, _ = run(ctx, builder, x, y, batch_size, 2, fast)
                times[column].append(epoch_times[-1])
                losses[column].append(loss)
                gc.collect()
        raw_s, kt_s = statistics.median(times["raw"]), statistics.median(times["kt"])
        rec.num(f"{name}_raw_s", raw_s)
        rec.num(f"{name}_kt_s", kt_s)
        rec.num(f"{name}_ratio", kt_s / raw_s)
        # the same batches, init and optimizer: equal losses show the work was identical
        loss_gap = abs(losses["raw"][-1] - losses["kt"][-1])
        rec.num(f"{name}_loss_gap", loss_gap)
        rec.expect(f"{name} losses finite", all(np.isfinite(losses["raw"] + losses["kt"])))
        rec.expect(f"{name} raw and kerastorch did the same work (loss gap <= {tolerance:g})",
                   loss_gap <= tolerance, f"{loss_gap:.3g}")
    rec.num("steps_per_epoch", f"mlp {-(-s['mlp_samples'] // s['mlp_batch'])}, "
                               f"cnn {-(-s['bench_cnn_samples'] // s['bench_cnn_batch'])}")


# -- 10. GPU memory -------------------------------------------------------------------------

def check_gpu_memory(ctx: Context, rec: Record) -> None:
    """Check 10: peak GPU memory of a one-epoch MLP fit against the raw loop's.

    Both hold the data on the GPU (the fast path and the raw loop alike); the
    DataLoader path and what a finished fit still holds are reported too.
    kerastorch's peak must stay within 1.5x the raw loop's + 32 MiB.
    """
    s = ctx.sizes
    x, y = mlp_data(s["mlp_samples"])
    rec.num("data_MiB", (x.nelement() * 4 + y.nelement() * 8) / MiB)
    if not ctx.cuda:
        rec.cuda_only("peak memory")
        kt_fit(ctx, mlp, x, y, s["mlp_batch"], 1, True)
        raw_loop(ctx, mlp, x, y, s["mlp_batch"], 1, True)
        return

    def clean() -> int:
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()

    peaks = {}
    for name, fast in (("kt_fast", True), ("kt_dataloader", False)):
        base = clean()
        _times, _loss, model = kt_fit(ctx, mlp, x, y, s["mlp_batch"], 1, fast)
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated() - base
        # what the finished fit still holds while the model object lives (data copies?)
        rec.num(f"{name}_retained_after_fit_MiB", (torch.cuda.memory_allocated() - base) / MiB)
        del model, _times
    base = clean()
    _times, _loss, net = raw_loop(ctx, mlp, x, y, s["mlp_batch"], 1, True)
    torch.cuda.synchronize()
    peaks["raw"] = torch.cuda.max_memory_allocated() - base
    del net
    clean()
    for name, value in peaks.items():
        rec.num(f"{name}_peak_MiB", value / MiB)
    rec.num("kt_fast_over_raw", peaks["kt_fast"] / max(peaks["raw"], 1))
    rec.expect("kerastorch's peak <= 1.5x the raw loop's + 32 MiB",
               peaks["kt_fast"] <= 1.5 * peaks["raw"] + 32 * MiB,
               f"{peaks['kt_fast'] / MiB:.1f} vs {peaks['raw'] / MiB:.1f} MiB")


# -- 11. no host sync per step --------------------------------------------------------------

class SyncTrap(Callback):
    """``set_sync_debug_mode("error")`` from the first step of epoch ``epoch`` to its last.

    The window holds the steps and the fetches of batches 2..n (a DataLoader's
    copies to the device included); it leaves out the epoch's first fetch (a
    fast-path epoch moves its shuffle order to the GPU there) and the one host
    sync at the epoch's end, where the losses become floats.
    """

    def __init__(self, epoch: int, steps: int):
        self.epoch, self.steps = epoch, steps
        self.current, self.armed = 0, False

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, step, logs=None):
        if self.current == self.epoch and not self.armed:
            torch.cuda.synchronize()  # the work queued before the window is not its business
            self.armed = True
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, step, logs=None):
        if self.armed and step == self.steps - 1:
            self.disarm()

    def on_fit_end(self, logs=None):
        self.disarm()

    def disarm(self) -> None:
        if self.armed:
            torch.cuda.set_sync_debug_mode(0)
            self.armed = False


def check_no_host_sync(ctx: Context, rec: Record) -> None:
    """Check 11: no synchronizing CUDA call in the steps of a steady-state epoch.

    An MLP fits 2 epochs; over the steps of the second (after the first-batch
    diagnostics and the warm-up) ``torch.cuda.set_sync_debug_mode("error")``
    makes any synchronizing call raise (``.item()``, a blocking copy, a
    ``cudaStreamSynchronize``). Three data paths: the fast path on ``(X, y)``; a
    map-style DataLoader with ``pin_memory=True``; the same without pinning. The
    fast path must pass; the pinned DataLoader must pass once kerastorch moves
    pinned batches itself (``kerastorch.data.device_loader``), and is recorded
    before that; a pageable copy to the GPU is synchronous in CUDA itself, so
    that path is recorded, not judged. Which paths pass is reported.
    """
    s = ctx.sizes
    x, y = mlp_data(s["sync_samples"])
    batch_size = 256
    steps = -(-len(x) // batch_size)
    own_loader = getattr(kerastorch.data, "device_loader", None) is not None
    paths = [("fast_path", lambda: (x, y), True),
             ("dataloader_pinned", lambda: DataLoader(MapDataset(x, y), batch_size=batch_size,
                                                      shuffle=True, pin_memory=ctx.cuda),
              own_loader),
             ("dataloader_pageable", lambda: DataLoader(MapDataset(x, y),
                                                        batch_size=batch_size, shuffle=True),
              False)]
    passing = []
    if not ctx.cuda:
        rec.cuda_only("sync debug mode (the fits run without it)")
    for name, data, judged in paths:
        model = make_model(seeded(mlp))
        trap = [SyncTrap(epoch=2, steps=steps)] if ctx.cuda else []
        error = ""
        try:
            history = model.fit(data(), epochs=2, batch_size=batch_size, callbacks=trap, **FIT)
            rec.expect(f"{name}: history finite", history_finite(history))
        except RuntimeError as exc:
            if "synchroniz" not in str(exc):
                raise
            error = f"{str(exc).strip().splitlines()[0][:120]} ({_where(exc)})"
        finally:
            if ctx.cuda:
                trap[0].disarm()
                torch.cuda.set_sync_debug_mode(0)
        if not error:
            passing.append(name)
        rec.num(name, "no sync" if not error else "SYNC: " + error)
        if judged and ctx.cuda:
            rec.expect(f"{name}: no host sync inside the epoch's steps", not error, error)
    rec.num("passing", ",".join(passing) if ctx.cuda else "not measured (no CUDA)")
    rec.num("steps_in_window", steps)


# -- 12. FSDP2 checkpoints ------------------------------------------------------------------

def fsdp2_unavailable(cuda: bool) -> str:
    """Why FSDP2 cannot run here ("" when it can): torch's fully_shard, accelerate's plugin."""
    import accelerate

    if not torch.distributed.is_available():
        return "torch.distributed is not available in this torch build"
    import torch.distributed.fsdp as fsdp

    if not hasattr(fsdp, "fully_shard"):  # FSDP2's public home since torch 2.6
        return f"torch {torch.__version__} has no torch.distributed.fsdp.fully_shard (FSDP2)"
    try:
        from accelerate import FullyShardedDataParallelPlugin
    except ImportError:
        return f"accelerate {accelerate.__version__} has no FullyShardedDataParallelPlugin"
    if "fsdp_version" not in getattr(FullyShardedDataParallelPlugin, "__dataclass_fields__", {}):
        return f"accelerate {accelerate.__version__}'s FSDP plugin has no fsdp_version (FSDP2)"
    if cuda and not torch.distributed.is_nccl_available():
        return "NCCL is not available in this torch build"
    return ""


def check_fsdp2(ctx: Context, rec: Record) -> None:
    """Check 12: FSDP2 on one GPU writes checkpoints a plain ``nn.Module`` loads.

    Runs :func:`fsdp_worker` in a subprocess with a one-process distributed
    environment (RANK=0, WORLD_SIZE=1, LOCAL_RANK=0, a free MASTER_PORT), so the
    NCCL process group and Accelerate's FSDP state never touch this process; the
    subprocess is killed with its process group if the check's time runs out.
    SKIP, with the reason, when torch or accelerate lack FSDP2.
    """
    reason = fsdp2_unavailable(ctx.cuda)
    if reason:
        rec.result, rec.reason = "SKIP", "skipped: " + reason
        return
    out = os.path.join(ctx.tmp, "fsdp2")
    os.makedirs(out, exist_ok=True)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, os.path.abspath(__file__), "--fsdp-worker", out]
    cmd += ["--smoke"] if ctx.smoke else []
    cmd += ["--cpu"] if not ctx.cuda else []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output = proc.communicate(timeout=max(5.0, ctx.limit_s - 5))[0]
    finally:
        if proc.poll() is None:  # timed out, or this check's alarm fired
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rec.num("subprocess_s", time.perf_counter() - start)
    path = os.path.join(out, "fsdp2.json")
    if not os.path.exists(path):
        raise RuntimeError(f"the FSDP2 worker wrote no report (exit {proc.returncode}): "
                           + " | ".join(output.strip().splitlines()[-3:])[-400:])
    with open(path) as f:
        found = json.load(f)
    rec.numbers.update(found["numbers"])
    rec.expectations.extend(found["expectations"])
    rec.skipped_parts.extend(found["skipped_parts"])
    if found["result"] == "SKIP":
        rec.result, rec.reason = "SKIP", found["reason"]
    if found["error"]:
        rec.error, rec.summary = found["error"], "in the FSDP2 worker: " + found["error_summary"]
    rec.expect("the FSDP2 worker exited cleanly", proc.returncode == 0, f"exit {proc.returncode}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fsdp_worker(out: str, smoke: bool, cuda: bool) -> int:
    """Check 12's subprocess: an FSDP2 fit, its two checkpoint files, a plain net loading them.

    Writes ``<out>/fsdp2.json`` (a :class:`Record`) whatever happens, then
    returns 0 (the record carries the result).
    """
    rec = Record(12, "fsdp2_checkpoint")
    try:
        _fsdp_fit_and_load(out, rec, SMOKE_SIZES if smoke else FULL_SIZES, cuda)
    except Exception as exc:  # noqa: BLE001 - reported through the record
        rec.error = traceback.format_exc()
        rec.summary = f"{type(exc).__name__}: {str(exc).strip()[:240]} ({_where(exc)})"
    finally:
        _atomic_write(os.path.join(out, "fsdp2.json"), json.dumps(rec.to_json(), default=str))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # no NCCL teardown warnings at exit
    return 0


def _fsdp_fit_and_load(out: str, rec: Record, sizes: dict, cuda: bool) -> None:
    """The body of :func:`fsdp_worker`."""
    from accelerate import Accelerator, FullyShardedDataParallelPlugin

    global CNN_WIDTH, LR
    CNN_WIDTH, LR = sizes["cnn_width"], sizes["lr"]
    try:
        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True,
                                                auto_wrap_policy="size_based_wrap",
                                                min_num_params=1000)
    except ImportError as exc:  # the plugin checks accelerate's FSDP2 floor of torch
        rec.result, rec.reason = "SKIP", f"skipped: {exc}"
        return
    acc = Accelerator(fsdp_plugin=plugin, cpu=not cuda)
    rec.num("distributed_type", acc.distributed_type.value)
    rec.num("is_fsdp2", bool(getattr(acc, "is_fsdp2", False)))
    if cuda:
        rec.expect("Accelerate runs FSDP2", bool(getattr(acc, "is_fsdp2", False)),
                   acc.distributed_type.value)
    else:
        rec.cuda_only("FSDP2 sharding (Accelerate applies FSDP on GPUs only)")
    train, val = cnn_split(sizes["fsdp_train"], sizes["fsdp_val"])
    net = seeded(small_cnn)
    model = make_model(net)
    best = os.path.join(out, "best.pt")
    try:
        history = model.fit(train, val, epochs=2, batch_size=sizes["cnn_batch"],
                            accelerator=acc, ckpt_path=best, quiet=True, patience=None)
    except Exception as exc:  # noqa: BLE001 - the files written so far are still checked
        rec.expect("fit completes under FSDP2", False,
                   f"{type(exc).__name__}: {str(exc).strip()[:200]} ({_where(exc)})")
        if not os.path.exists(best):
            return
    else:
        rec.num("val_loss", " -> ".join(f"{v:.3f}" for v in history["val_loss"]))
        rec.expect("history finite", history_finite(history))
    rec.num("state_dict_types", ",".join(sorted({type(v).__name__
                                                  for v in net.state_dict().values()})))
    saved = os.path.join(out, "saved.pt")
    model.save_ckpt(saved)
    # the trained net's own outputs (fit loaded the best weights back into it)
    inputs = val[0][:256].to(acc.device)
    net.eval()
    with torch.no_grad():
        reference = net(inputs).float().cpu()
    for name, path in (("best_ckpt", best), ("save_ckpt", saved)):
        _load_into_plain_net(rec, name, path, inputs, reference)
    try:  # not asked of FSDP2 by the issue: recorded
        preds = model.predict(val[0][:256], batch_size=sizes["cnn_batch"])
        rec.num("predict_max_abs_diff", float((preds.float() - reference).abs().max()))
    except Exception as exc:  # noqa: BLE001
        rec.num("predict_error", f"{type(exc).__name__}: {str(exc).strip()[:120]}")


# the plain net runs the same kernels as the FSDP2 net on one GPU (the all-gather of one
# shard is the tensor itself), so the outputs should agree bit for bit; the tolerance only
# covers cuDNN choosing another convolution algorithm for the other module
PREDICTION_ATOL = 1e-4


def _load_into_plain_net(rec: Record, name: str, path: str, inputs, reference) -> None:
    """``load_state_dict(strict=True)`` of the file into a fresh ``small_cnn``, then compare."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        rec.num(f"{name}_value_types", ",".join(sorted({type(v).__name__
                                                         for v in state.values()})))
        plain = seeded(small_cnn, seed=9)
        plain.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - the failure is the finding
        rec.expect(f"{name} loads strict into a plain nn.Module", False,
                   f"{type(exc).__name__}: {str(exc).strip()[:200]}")
        return
    rec.expect(f"{name} loads strict into a plain nn.Module", True)
    plain.to(inputs.device).eval()
    with torch.no_grad():
        outputs = plain(inputs).float().cpu()
    diff = float((outputs - reference).abs().max())
    rec.num(f"{name}_max_abs_pred_diff", diff)
    rec.expect(f"{name}: the plain net predicts as the trained one (atol {PREDICTION_ATOL:g})",
               diff <= PREDICTION_ATOL, f"{diff:.3g}")


# -- 13. ResNet-18 under bf16 autocast --------------------------------------------------------

def resnet18() -> nn.Module:
    """torchvision's ResNet-18 (10 classes) if importable, else the same net built here."""
    try:
        from torchvision.models import resnet18 as torchvision_resnet18
    except ImportError:
        return _ResNet18()
    return torchvision_resnet18(num_classes=10)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _ResNet18(nn.Sequential):
    """torchvision's ResNet-18 layout (stem, 4 stages of 2 basic blocks, 11.2 M parameters)."""

    def __init__(self, num_classes: int = 10):
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        super().__init__(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                         nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1), *blocks,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))


def check_resnet18_amp(ctx: Context, rec: Record) -> None:
    """Check 13: one epoch of ``fit(mixed_precision="bf16")`` vs a raw bf16-autocast loop.

    ResNet-18 on random images (3 x ``resnet_image``^2, 10 classes), data held on
    the device by both (kerastorch's fast path; the raw loop slices the same
    batches in the same order), Adam; 2 epochs per run, the second timed,
    medians of interleaved repetitions. The ratio is reported, not judged; the
    check fails only if a loss is not finite or the final losses are further
    apart than ``0.05``: bf16 rounding and cuDNN's nondeterministic backward make
    the two runs drift slightly, different work would not stay that close.
    """
    s = ctx.sizes
    g = torch.Generator().manual_seed(77)
    side = s["resnet_image"]
    x = torch.randn(s["resnet_samples"], 3, side, side, generator=g)
    y = torch.randint(0, 10, (s["resnet_samples"],), generator=g)
    net = resnet18()
    rec.num("net", "torchvision resnet18" if not isinstance(net, _ResNet18)
            else "ResNet-18 built here (no torchvision)")
    rec.num("params_M", sum(p.numel() for p in net.parameters()) / 1e6)
    del net
    # a CPU without native bf16 runs bf16 autocast ~20x slower than fp32 (27 s per
    # step here): without CUDA the code is exercised in fp32
    precision = "bf16" if ctx.cuda else "no"
    rec.num("precision", precision)
    if not ctx.cuda:
        rec.cuda_only("bf16 autocast (the CPU run is fp32)")
    reps = 1 if ctx.smoke else s["reps"]
    times: Dict[str, list] = {"raw": [], "kt": []}
    losses: Dict[str, list] = {"raw": [], "kt": []}
    start = time.monotonic()
    for rep in range(reps):
        if rep and time.monotonic() - start > 0.7 * ctx.limit_s:
            rec.num("reps_cut", rep)
            break
        for column in ("raw", "kt"):
            if column == "raw":
                epoch_times, loss, _ = raw_loop(
                    ctx, resnet18, x, y, s["resnet_batch"], 2, True,
                    autocast=torch.bfloat16 if precision == "bf16" else None)
            else:
                epoch_times, loss, _ = kt_fit(ctx, resnet18, x, y, s["resnet_batch"], 2, True,
                                              mixed_precision=precision)
            times[column].append(epoch_times[-1])
            losses[column].append(loss)
            gc.collect()
    raw_s, kt_s = statistics.median(times["raw"]), statistics.median(times["kt"])
    rec.num("raw_s", raw_s)
    rec.num("kt_s", kt_s)
    rec.num("ratio", kt_s / raw_s)
    rec.num("steps_per_epoch", -(-s["resnet_samples"] // s["resnet_batch"]))
    gap = abs(losses["raw"][-1] - losses["kt"][-1])
    rec.num("loss_gap", gap)
    rec.expect("losses finite", all(np.isfinite(losses["raw"] + losses["kt"])))
    rec.expect("raw and kerastorch did the same work (loss gap <= 0.05)", gap <= 0.05,
               f"{gap:.3g}")


# -- the runner ---------------------------------------------------------------------------------

@dataclass
class Check:
    id: int
    name: str
    fn: Callable
    cuda_only: bool
    est_s: float     # typical seconds on an H100: a check is only started if it fits
    limit_s: float   # hard limit of the check (SIGALRM)


CHECKS = [
    Check(1, "environment", check_environment, False, 2, 30),
    Check(2, "fp32_fit", check_fp32_fit, False, 8, 45),
    Check(3, "mixed_precision", check_mixed_precision, False, 12, 60),
    Check(4, "predict_bf16", check_predict_bf16, False, 3, 30),
    Check(5, "fast_path_device", check_fast_path, True, 4, 30),
    Check(6, "fast_vs_dataloader", check_fast_vs_dataloader, False, 5, 40),
    Check(7, "resume_exact", check_resume, True, 8, 60),
    Check(8, "pinned_loader", check_pinned_loader, True, 8, 60),
    Check(9, "overhead", check_overhead, False, 40, 90),
    Check(10, "gpu_memory", check_gpu_memory, True, 5, 40),
    Check(11, "no_host_sync", check_no_host_sync, True, 5, 45),
    Check(12, "fsdp2_checkpoint", check_fsdp2, True, 30, 100),
    Check(13, "resnet18_amp", check_resnet18_amp, True, 25, 75),
]


class Runner:
    """Runs the checks in order under the time budget and keeps the report current."""

    def __init__(self, args, ctx: Context):
        self.args, self.ctx = args, ctx
        self.records: List[Record] = []
        self.current: Optional[Record] = None
        self.lock = threading.Lock()
        self.finished = False

    def elapsed(self) -> float:
        return time.monotonic() - T0

    def run(self) -> None:
        signal.signal(signal.SIGALRM, _on_alarm)
        for check in CHECKS:
            if self.args.only and check.id not in self.args.only:
                continue
            rec = Record(check.id, check.name)
            with self.lock:
                self.current = rec
            try:
                self._run_one(check, rec)
            except CheckTimeout:
                # the alarm fired in _run_one's own handlers, between the check and the
                # timer's reset: still only this check's failure
                signal.setitimer(signal.ITIMER_REAL, 0)
                rec.result, rec.error = "FAIL", rec.error or "timed out"
                rec.summary = rec.summary or "timed out"
            with self.lock:
                self.records.append(rec)
                self.current = None
            print(f"[{self.elapsed():6.1f} s] {check.id}. {check.name}: {rec.result} "
                  f"({rec.seconds:.1f} s){' - ' + rec.reason if rec.reason else ''}"
                  f"{' - ' + '; '.join(rec.failures)[:300] if rec.failures else ''}"
                  f"{' - ERROR: ' + rec.summary if rec.error else ''}",
                  flush=True)
            self.write()

    def _run_one(self, check: Check, rec: Record) -> None:
        ctx = self.ctx
        if check.cuda_only and not ctx.cuda and not self.args.cuda_checks_on_cpu:
            rec.result, rec.reason = "SKIP", "skipped: no CUDA"
            return
        remaining = self.args.budget - self.elapsed()
        if check.est_s > remaining:
            rec.result = "SKIP"
            rec.reason = (f"skipped: time budget ({remaining:.0f} s left of "
                          f"{self.args.budget:.0f} s, needs ~{check.est_s:.0f} s)")
            return
        # never past the hard deadline, where the watchdog takes over
        limit = max(5.0, min(check.limit_s, self.args.hard_deadline - self.elapsed() - 5))
        rec.started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                ctx.limit_s = limit
                check.fn(ctx, rec)
        except CheckTimeout as exc:
            rec.error = traceback.format_exc()
            rec.summary = f"timed out after {limit:.0f} s, {_where(exc)}"
        except Exception as exc:  # noqa: BLE001 - one check must not stop the others
            rec.error = traceback.format_exc()
            rec.summary = f"{type(exc).__name__}: {str(exc).strip()[:240]} ({_where(exc)})"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            rec.seconds = time.perf_counter() - rec.started
        rec.warnings = sorted({f"{w.category.__name__}: {w.message}"[:200] for w in caught})[:5]
        if ctx.cuda:
            try:
                gc.collect()
                torch.cuda.empty_cache()  # the next check starts with the memory free
            except Exception:  # noqa: BLE001 - a broken context shows in the next check
                pass
        rec.finish()

    # -- output --------------------------------------------------------------------------------

    def snapshot_records(self, hung: bool = False) -> List[Record]:
        records = list(self.records)
        if hung and self.current is not None:
            rec = self.current
            rec.result = "FAIL"
            rec.seconds = time.perf_counter() - rec.started
            rec.error = rec.error or "hung"
            rec.summary = (f"hung: still running at the hard deadline "
                           f"({self.args.hard_deadline:.0f} s)")
            records.append(rec)
            done = {r.id for r in records}
            for check in CHECKS:
                if check.id not in done and (not self.args.only or check.id in self.args.only):
                    left = Record(check.id, check.name, result="SKIP",
                                  reason="not run: the hard deadline came first")
                    records.append(left)
        return records

    def write(self, hung: bool = False, final: bool = False) -> str:
        records = self.snapshot_records(hung)
        text = markdown(records, self.ctx, self.elapsed(), final or hung)
        if self.args.out:
            os.makedirs(self.args.out, exist_ok=True)
            _atomic_write(os.path.join(self.args.out, "gpu_check.md"), text)
            payload = {"started": STARTED, "elapsed_s": round(self.elapsed(), 1),
                       "smoke": self.ctx.smoke, "device": str(self.ctx.device),
                       "complete": final, "hung": hung,
                       "fail_count": sum(r.result == "FAIL" for r in records),
                       "sizes": self.ctx.sizes, "argv": sys.argv[1:],
                       "checks": [r.to_json() for r in records]}
            _atomic_write(os.path.join(self.args.out, "gpu_check.json"),
                          json.dumps(payload, indent=2, default=str))
        return text


def _on_alarm(signum, frame):
    raise CheckTimeout("check time limit")


def _where(exc: BaseException) -> str:
    """The innermost frame of the exception, as ``file.py:line in function``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.name != "_on_alarm"]
    if not frames:
        return "unknown place"

    def fmt(frame) -> str:
        return f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"

    where = f"at {fmt(frames[-1])}"
    # and the innermost line of kerastorch or of this script, when that is elsewhere
    ours = [f for f in frames if "kerastorch" in f.filename or f.filename == __file__]
    if ours and ours[-1] is not frames[-1]:
        where += f", from {fmt(ours[-1])}"
    return where


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(records: List[Record], ctx: Context, elapsed: float, final: bool) -> str:
    """The report: a heading, one table row per check, the FAIL count."""
    env = next((r.numbers for r in records if r.id == 1), {})
    device = env.get("device", str(ctx.device))
    fails = sum(r.result == "FAIL" for r in records)
    command = "".join(" " + a for a in sys.argv[1:])
    lines = [f"### GPU check: {device}, {STARTED[:16].replace('T', ' ')} UTC"
             f"{' (smoke sizes)' if ctx.smoke else ''}",
             "",
             f"torch {env.get('torch', torch.__version__)} (CUDA {env.get('cuda', '?')}), "
             f"accelerate {env.get('accelerate', '?')}, torchmetrics "
             f"{env.get('torchmetrics', '?')}, kerastorch {env.get('kerastorch', '?')}"
             f"{', commit ' + env['commit'] if 'commit' in env else ''}; "
             f"`python benchmarks/gpu_check.py{command}`, "
             f"{elapsed:.0f} s{'' if final else ' (incomplete)'}.",
             "",
             "| check | result | numbers |",
             "| --- | --- | --- |"]
    for r in records:
        parts = [f"{k}={_fmt(v)}" for k, v in r.numbers.items()]
        if r.failures:
            parts.append("FAILED: " + "; ".join(r.failures))
        if r.error:
            parts.append("ERROR: " + (r.summary or r.error.strip().splitlines()[-1][:300]))
        if r.skipped_parts:
            parts.append("skipped (no CUDA): " + ", ".join(r.skipped_parts))
        if r.reason:
            parts.append(r.reason)
        if r.result not in ("SKIP",):
            parts.append(f"{r.seconds:.1f} s")
        lines.append(f"| {r.id}. {r.name} | {r.result} | {_cell('; '.join(parts))} |")
    lines += ["", f"**FAIL count: {fails}** (PASS {sum(r.result == 'PASS' for r in records)}, "
                  f"SKIP {sum(r.result == 'SKIP' for r in records)}, of {len(records)} checks)",
              ""]
    return "\n".join(lines)


STARTED = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="directory for gpu_check.md and gpu_check.json")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes: exercises every code path in well under a minute")
    p.add_argument("--cpu", action="store_true", help="ignore CUDA even when present")
    p.add_argument("--cuda-checks-on-cpu", action="store_true",
                   help="without CUDA, run checks 5, 7, 8, 10-13 on the CPU too (script testing)")
    p.add_argument("--fsdp-worker", metavar="DIR", help=argparse.SUPPRESS)  # check 12's child
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; --smoke without CUDA: 1, "
                        "since a second thread on a small shared CPU mostly waits)")
    p.add_argument("--only", type=lambda v: {int(i) for i in v.split(",")},
                   help="comma-separated check numbers to run, e.g. 2,7")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds after which no check is started (default 200; smoke 100, "
                        "180 with --cuda-checks-on-cpu)")
    p.add_argument("--hard-deadline", type=float, default=None,
                   help="seconds after which the report is written and the process exits "
                        "(default 225; smoke 150, 230 with --cuda-checks-on-cpu)")
    args = p.parse_args(argv)
    # --cuda-checks-on-cpu adds checks 5, 7, 8 and 10-13 to a CPU smoke run (12 starts a
    # subprocess, 13 trains a ResNet-18): more room, and no GPU time is at stake
    extra = 80.0 if args.smoke and args.cuda_checks_on_cpu else 0.0
    if args.budget is None:
        args.budget = (100.0 + extra) if args.smoke else 200.0
    if args.hard_deadline is None:
        args.hard_deadline = (150.0 + extra) if args.smoke else 225.0
    args.hard_deadline = max(args.hard_deadline, args.budget + 5)
    if args.threads is None and args.smoke and not torch.cuda.is_available():
        args.threads = 1
    return args


def main(argv=None) -> int:
    """Run the checks; 1 when any check FAILed, else 0 (all passed or skipped)."""
    args = parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    if args.fsdp_worker:
        return fsdp_worker(args.fsdp_worker, args.smoke, cuda)
    device = torch.device("cuda") if cuda else torch.device("cpu")
    if not cuda and not args.smoke:
        print("no CUDA: running the CPU-capable checks at full size (use --smoke for a "
              "quick run)", flush=True)
    tmp = tempfile.mkdtemp(prefix="gpu_check_")
    ctx = Context(device=device, cuda=cuda, smoke=args.smoke,
                  sizes=dict(SMOKE_SIZES if args.smoke else FULL_SIZES), tmp=tmp)
    global CNN_WIDTH, LR
    CNN_WIDTH, LR = ctx.sizes["cnn_width"], ctx.sizes["lr"]
    if args.threads:
        torch.set_num_threads(args.threads)
    runner = Runner(args, ctx)

    def on_hard_deadline() -> None:
        # the main thread is stuck (a check past its alarm, e.g. blocked in C code):
        # report what is known and leave with 1, the stuck check being a FAIL
        with runner.lock:
            if runner.finished:
                return
            runner.finished = True
            try:
                text = runner.write(hung=True)
            except Exception as exc:  # noqa: BLE001 - still exit: the device time is running
                text = f"gpu_check: writing the report failed at the deadline: {exc!r}"
        print(text, flush=True)
        print(f"gpu_check: hard deadline of {args.hard_deadline:.0f} s reached; exiting",
              flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
        os._exit(1)

    watchdog = threading.Timer(max(1.0, args.hard_deadline - runner.elapsed()), on_hard_deadline)
    watchdog.daemon = True
    watchdog.start()
    # the last resort if the watchdog thread cannot run either (the GIL held in C code)
    faulthandler.dump_traceback_later(max(1.0, args.hard_deadline + 10 - runner.elapsed()),
                                      exit=True)
    print(f"gpu_check: device {device}, {'smoke' if args.smoke else 'full'} sizes, budget "
          f"{args.budget:.0f} s, hard deadline {args.hard_deadline:.0f} s "
          f"(imports took {runner.elapsed():.1f} s)", flush=True)
    try:
        runner.run()
    finally:
        with runner.lock:
            if runner.finished:  # the watchdog is already reporting and exiting
                return 1
            runner.finished = True
            watchdog.cancel()
            faulthandler.cancel_dump_traceback_later()
            text = runner.write(final=True)
    print()
    print(text, flush=True)
    fails = sum(r.result == "FAIL" for r in runner.records)
    print(f"gpu_check: {fails} FAIL{'' if fails == 1 else 's'}"
          f"{' - see the table above' if fails else ''}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if fails else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter teardown (CUDA context, DataLoader workers): nothing left to do,
    # and a teardown that blocks would cost device time
    os._exit(code)
