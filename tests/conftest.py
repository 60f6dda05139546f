"""Shared fixtures: tiny synthetic data, a recording callback, a scripted metric."""

import pytest
import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kerastorch.callbacks import Callback

# the test nets are tiny: one thread avoids paying thread hand-offs on every op
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_accelerate_state():
    """Each test starts from a clean Accelerate state, as a fresh process would."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield


def make_classification(n=64, d=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, classes, generator=g)
    y = (x @ w).argmax(dim=1)
    return x, y


def loader(x, y, batch_size=16, shuffle=False):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


class RecordingCallback(Callback):
    """Records every hook call as (hook, arg) so tests can assert the exact order."""

    def __init__(self):
        self.calls = []

    def on_fit_begin(self, logs=None):
        self.calls.append(("on_fit_begin", None))

    def on_fit_end(self, logs=None):
        self.calls.append(("on_fit_end", None))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("on_epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("on_epoch_end", epoch))

    def on_train_batch_begin(self, step, logs=None):
        self.calls.append(("on_train_batch_begin", step))

    def on_train_batch_end(self, step, logs=None):
        self.calls.append(("on_train_batch_end", step))

    def on_val_batch_begin(self, step, logs=None):
        self.calls.append(("on_val_batch_begin", step))

    def on_val_batch_end(self, step, logs=None):
        self.calls.append(("on_val_batch_end", step))


class ScriptedMetric(torchmetrics.Metric):
    """Returns preset values, one per compute() call, so stopping tests read as tables.

    The trainer works on fresh copies per fit and stage, so the train and val
    copies each walk the same script from its start.
    """

    full_state_update = False

    higher_is_better = None

    def __init__(self, values):
        super().__init__()
        self.values = [float(v) for v in values]
        self.computes = 0
        self.add_state("seen", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds, target):
        self.seen += 1

    def compute(self):
        value = self.values[min(self.computes, len(self.values) - 1)]
        self.computes += 1
        return torch.tensor(value, dtype=torch.float64)


class ScriptedScore(ScriptedMetric):
    """A scripted metric that declares higher values better."""

    higher_is_better = True


@pytest.fixture
def recorder():
    return RecordingCallback()


class TinyNet(nn.Module):
    def __init__(self, d=4, classes=3):
        super().__init__()
        self.fc = nn.Linear(d, classes)

    def forward(self, x):
        return self.fc(x)


class EpochWeights(nn.Module):
    """A net whose single weight is set to the epoch number by a callback, so the
    restored weight tells which epoch's weights are in the net."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.tag = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, x):
        return self.fc(x)


@pytest.fixture(scope="session")
def ddp_script_run(tmp_path_factory):
    """tests/scripts/ddp_script.py under ``torchrun --nproc_per_node 2``, run once for the
    session (test_distributed and test_fit_ddp both compare against it): its output folder."""
    import os
    import subprocess
    import sys

    scripts = os.path.join(os.path.dirname(__file__), "scripts")
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": scripts}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", os.path.join(scripts, "ddp_script.py"),
                           str(out)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def register_this_python_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec named python3 that starts *this* interpreter, first on JUPYTER_PATH, so
    a notebook run through nbclient uses the virtualenv the tests run in (where kerastorch is
    installed), whatever kernels the user or the system registered. Returns its name."""
    import json
    import sys

    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"
