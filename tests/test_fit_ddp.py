"""model.fit_ddp: two forked CPU processes (gloo) started from a notebook, the result brought back.

The main test executes examples/fit_ddp.ipynb in a real Jupyter kernel, then, in the same
kernel, cells that check fit_ddp against the same training under torchrun
(tests/scripts/ddp_script.py); the error tests run in this process.
"""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import register_this_python_kernel
import torch
from torch import nn

from kerastorch import KerasModel, launcher

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SCRIPTS = Path(__file__).resolve().parent / "scripts"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fit_ddp.ipynb"
needs_fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="fit_ddp forks its processes; no fork here")

CELLS = [
    # the notebook has computed in parallel before the launch: GNU OpenMP's thread pool
    # exists, which a forked process computing with several threads would hang on
    """import json, os, signal, sys, tempfile
import torch, torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from kerastorch import KerasModel
from kerastorch.callbacks import Callback
sys.path.insert(0, SCRIPTS)
from ddp_script import data
example_history, example_model, example_val = history, model, (x_val, y_val)
torch.set_num_threads(2)
_ = (torch.randn(1500, 1500) * 2 + 1).exp().sum()
sigint = signal.getsignal(signal.SIGINT)""",
    """class RecordRanks(Callback):
    '''What each process saw: its rank, the world size and its final weights.'''
    def __init__(self, folder):
        self.folder = folder
    def on_fit_end(self, logs=None):
        acc = self.model.accelerator
        weights = [float(v.double().sum()) for v in self.model.net.state_dict().values()]
        with open(os.path.join(self.folder, f"rank{acc.process_index}.json"), "w") as f:
            json.dump({"world": acc.num_processes, "weights": weights}, f)""",
    # a single-process fit first: the notebook holds an AcceleratorState when fit_ddp starts
    """warm = KerasModel(nn.Linear(4, 3), nn.CrossEntropyLoss())
_ = warm.fit(data(32, 3), epochs=1, ckpt_path=None, quiet=True)""",
    # what ddp_script.py builds, in the same order (the same RNG draws)
    """torch.manual_seed(0)
net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
xt, yt = data(96, 1)
xv, yv = data(37, 2)
model = KerasModel(net, nn.CrossEntropyLoss(),
                   metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass", num_classes=3)},
                   optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
train_dl = DataLoader(TensorDataset(xt, yt), batch_size=8, shuffle=True)
val_dl = DataLoader(TensorDataset(xv, yv), batch_size=8)
before = [float(v.double().sum()) for v in net.state_dict().values()]
first, second, ckpt = tempfile.mkdtemp(), tempfile.mkdtemp(), tempfile.mkdtemp()""",
    """ddp_history = model.fit_ddp(num_processes=2, train_data=train_dl, val_data=val_dl, epochs=3,
                        ckpt_path=os.path.join(ckpt, "best.pt"), monitor="val_acc",
                        mode="max", patience=1, quiet=True, callbacks=[RecordRanks(first)])""",
    """after = [float(v.double().sum()) for v in net.state_dict().values()]
torch.save(net.state_dict(), os.path.join(ckpt, "returned.pt"))
single = model.evaluate(val_dl, quiet=True)""",
    # a single-process fit of this very net, then fit_ddp again: Accelerate must wrap it
    # in DDP again (it marks a net it prepared once); progress shown from rank 0
    """_ = model.fit(train_dl, val_dl, epochs=1, ckpt_path=None, quiet=True)
again = model.fit_ddp(num_processes=2, train_data=train_dl, val_data=val_dl, epochs=2,
                      ckpt_path=None, callbacks=[RecordRanks(second)])""",
    """ranks = {name: [json.load(open(os.path.join(d, f"rank{k}.json"))) for k in range(2)]
         for name, d in (("first", first), ("second", second))}
print(json.dumps({"example": example_history.to_dict(orient="list"),
                  "example_eval": example_model.evaluate(example_val, quiet=True),
                  "history": ddp_history.to_dict(orient="list"), "before": before, "after": after,
                  "single": single, "ranks": ranks, "again": len(again),
                  "model_history_is_returned": model.history is again,
                  "sigint_kept": signal.getsignal(signal.SIGINT) is sigint,
                  "ckpt": ckpt}))""",
]


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec named python3 that starts this interpreter, and the kernel's own TMPDIR."""
    register_this_python_kernel(tmp_path, monkeypatch)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the notebook computes in parallel
    kernel_tmp = tmp_path / "kernel-tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    return kernel_tmp


@pytest.fixture
def torchrun_reference(ddp_script_run):
    """ddp_script.py under torchrun (conftest, once per session): the same training,
    launched the usual way."""
    return ddp_script_run


@needs_fork
def test_notebook_fit_ddp_trains_on_two_processes_and_returns_what_torchrun_gets(
        kernel_env, torchrun_reference, tmp_path):
    nb = nbformat.read(EXAMPLE, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    example = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells.append(nbformat.v4.new_code_cell(f"SCRIPTS = {str(SCRIPTS)!r}"))
    nb.cells += [nbformat.v4.new_code_cell(source) for source in CELLS]
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    printed = [o for o in nb.cells[-1].outputs if o["output_type"] == "stream"]
    result = json.loads(printed[-1]["text"].strip().splitlines()[-1])

    # the example: three epochs shown, and the notebook's model holds the best weights
    shown = [o for o in example[2].outputs if o["output_type"] == "execute_result"]
    assert len(shown) == 1 and "train_acc" in shown[0]["data"]["text/plain"]
    # rank 0's progress reaches the cell, as text (a forked process cannot send widgets)
    progress = "".join(o["text"] for o in example[2].outputs if o["output_type"] == "stream")
    assert "Epoch 3/3: 100%" in progress and "val_acc=" in progress
    assert result["example"]["epoch"] == [1, 2, 3]
    assert result["example_eval"]["val_loss"] == pytest.approx(
        min(result["example"]["val_loss"]), rel=1e-5)

    history = result["history"]
    assert history["epoch"] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(history[c])).all()
               for c in ("train_loss", "val_loss", "train_acc", "val_acc"))
    # the processes ran as two ranks of one group, and DDP kept their weights equal
    for run in ("first", "second"):
        r0, r1 = result["ranks"][run]
        assert r0["world"] == r1["world"] == 2
        assert r0["weights"] == r1["weights"], f"{run}: the ranks trained apart"
    # the notebook's own model now holds the trained weights
    assert result["after"] != result["before"]
    assert result["after"] == result["ranks"]["first"][0]["weights"]
    assert result["again"] == 2 and result["model_history_is_returned"]
    assert result["sigint_kept"], "the elastic launcher's signal handlers were left installed"

    # the same training under torchrun: the same history and the same final weights
    reference = json.loads((torchrun_reference / "rank0.json").read_text())
    assert history == reference["history"]
    expected = torch.load(torchrun_reference / "final.pt", weights_only=True)
    returned = torch.load(Path(result["ckpt"]) / "returned.pt", weights_only=True)
    for key in expected:
        assert torch.equal(returned[key], expected[key]), key
    # validation on two processes equals one process's evaluation of the returned weights
    assert result["single"]["val_acc"] == pytest.approx(reference["evaluate"]["val_acc"],
                                                        abs=1e-7)
    assert result["single"]["val_loss"] == pytest.approx(reference["evaluate"]["val_loss"],
                                                         rel=1e-6)
    # fit_ddp's temporary folders are gone
    assert not [p.name for p in kernel_env.iterdir() if p.name.startswith("kerastorch-fit-ddp-")]


# -- errors, before launching ---------------------------------------------------------

def _model():
    torch.manual_seed(0)
    return KerasModel(nn.Linear(4, 2), nn.CrossEntropyLoss())


def _data(n=32):
    x = torch.randn(n, 4)
    return x, (x[:, 0] > 0).long()


@pytest.mark.parametrize("value, error, text", [
    (0, ValueError, "num_processes must be an int >= 1 (the processes to train on); received 0"),
    (-2, ValueError, "received -2"),
    ("2", TypeError, "received '2' of type str"),
    (True, TypeError, "received True of type bool"),
    (2.0, TypeError, "received 2.0 of type float"),
])
def test_bad_num_processes(value, error, text):
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        _model().fit_ddp(num_processes=value, train_data=_data())


def test_keywords_are_checked_against_fit_before_launching():
    with pytest.raises(TypeError, match="fit_ddp\\(\\) got an unexpected keyword argument "
                                        "'epoch'; did you mean 'epochs'"):
        _model().fit_ddp(2, _data(), epoch=3)
    with pytest.raises(TypeError, match="fit_ddp\\(\\) needs train_data"):
        _model().fit_ddp(2)
    with pytest.raises(ValueError, match="builds each process's Accelerator"):
        from accelerate import Accelerator
        _model().fit_ddp(2, _data(), accelerator=Accelerator(cpu=True))


def test_a_subclass_fit_with_kwargs_keeps_its_bases_keywords():
    class Sub(KerasModel):
        def fit(self, train_data, val_data=None, **kwargs):
            return super().fit(train_data, val_data, **kwargs)

    model = Sub(nn.Linear(4, 2), nn.CrossEntropyLoss())
    launcher.check_launch(model, 1, _data(), None, {"epochs": 1, "ckpt_path": None})
    with pytest.raises(TypeError, match="did you mean 'patience'"):
        launcher.check_launch(model, 1, _data(), None, {"patiense": 1})


@pytest.mark.parametrize("case, error, text", [
    ("no fork", RuntimeError, "no fork start method .*torchrun"),
    ("torchrun", RuntimeError, "already one of a multi-process run \\(WORLD_SIZE=2"),
    ("cuda initialized", RuntimeError, "CUDA was initialized in this process before fit_ddp.*"
                                       "restart the kernel"),
    ("one gpu", ValueError, "num_processes=2 but this machine has 1 GPU\\(s\\).*cpu=True"),
])
def test_what_the_platform_must_allow(monkeypatch, case, error, text):
    if case == "no fork":
        monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    elif case == "torchrun":
        monkeypatch.setenv("WORLD_SIZE", "2")
    elif case == "cuda initialized":
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    else:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(error, match=text):
        _model().fit_ddp(2, _data(), epochs=1)
    if case == "one gpu":  # CPU processes are not limited by the GPUs
        launcher.check_launch(_model(), 2, _data(), None, {"cpu": True})


def test_where_processes_are_spawned_what_cannot_be_pickled_is_named(monkeypatch):
    monkeypatch.setattr(launcher, "_start_method", lambda: "spawn")
    model = KerasModel(nn.Linear(4, 2), lambda p, y: nn.functional.cross_entropy(p, y))
    with pytest.raises(TypeError, match="'spawn'.*the model cannot be pickled.*no lambdas"):
        model.fit_ddp(2, _data(), epochs=1)
    launcher.check_launch(_model(), 2, _data(), None, {"epochs": 1})  # a plain model pickles


def test_one_process_is_a_plain_fit():
    model = _model()
    history = model.fit_ddp(1, _data(), epochs=2, ckpt_path=None, quiet=True)
    assert list(history["epoch"]) == [1, 2] and model.history is history


# -- errors in the processes ----------------------------------------------------------

def _in_a_fresh_interpreter(request) -> bool:
    """Run this test again in a new pytest process (True: done there, passed).

    These tests fork from the test process itself. Late in a full suite that process
    has computed with several threads and started and ended process groups, and
    children forked from it have hung; a fresh interpreter starts as a notebook does,
    and the timeout turns any hang into a failure."""
    if os.environ.get("KERASTORCH_FRESH_TEST") == "1":
        return False
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
        env={**os.environ, "KERASTORCH_FRESH_TEST": "1"}, cwd=str(request.config.rootpath),
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return True


def _fails_on_rank_1(preds, labels):
    if os.environ.get("RANK") == "1":
        raise ValueError("injected failure on rank 1")
    return nn.functional.cross_entropy(preds, labels)


class LibraryError(Exception):
    pass


def _raises_own_type(preds, labels):
    raise LibraryError("not a built-in")


@needs_fork
@pytest.mark.parametrize("loss_fn, fit_kwargs, error, message, rank", [
    (_fails_on_rank_1, {"epochs": 2}, ValueError, "injected failure on rank 1", 1),
    (nn.CrossEntropyLoss(), {"epochs": 0}, ValueError, "epochs must be an int >= 1; received 0",
     None),
    (_raises_own_type, {"epochs": 1}, RuntimeError, "LibraryError: not a built-in",
     None),
])
def test_an_exception_in_a_process_is_raised_here_with_its_message(
        request, monkeypatch, tmp_path, loss_fn, fit_kwargs, error, message, rank):
    if _in_a_fresh_interpreter(request):
        return
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    handler = signal.getsignal(signal.SIGINT)
    model = KerasModel(nn.Linear(4, 2), loss_fn)
    with pytest.raises(error, match=message) as raised:
        model.fit_ddp(2, _data(), ckpt_path=None, quiet=True, **fit_kwargs)
    note = "\n".join(raised.value.__notes__)
    assert f"raised in fit_ddp's training process of rank {rank if rank is not None else ''}" \
        in note
    assert "(of 2); its traceback" in note and "in fit" in note
    assert signal.getsignal(signal.SIGINT) is handler
    # fit_ddp's temporary folder is removed (torch's elastic launcher leaves its own logs)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("kerastorch-fit-ddp-")]


def _interrupts_the_notebook(preds, labels):
    """Rank 0 sends Ctrl-C to the notebook (the launcher's process), then keeps training."""
    if os.environ.get("RANK") == "0" and not getattr(_interrupts_the_notebook, "sent", False):
        _interrupts_the_notebook.sent = True
        os.kill(os.getppid(), signal.SIGINT)
    time.sleep(0.5)
    return nn.functional.cross_entropy(preds, labels)


@needs_fork
def test_ctrl_c_stops_the_processes_and_leaves_the_model_unchanged(request):
    if _in_a_fresh_interpreter(request):
        return
    handler = signal.getsignal(signal.SIGINT)
    model = KerasModel(nn.Linear(4, 2), _interrupts_the_notebook)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match="fit_ddp was interrupted"):
        model.fit_ddp(2, _data(64), epochs=5, batch_size=4, ckpt_path=None, quiet=True)
    assert time.monotonic() - started < 30  # not the 80 steps of half a second
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    assert model.history is None
    assert signal.getsignal(signal.SIGINT) is handler
