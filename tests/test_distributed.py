"""Two CPU processes (torchrun, gloo): identical histories, and validation equal to one process."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kerastorch import KerasModel

HERE = os.path.join(os.path.dirname(__file__), "scripts")


def _torchrun(out, *args, timeout=180):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": HERE}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(HERE, "ddp_script.py"), str(out), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ddp_run(ddp_script_run):
    out = ddp_script_run  # run once per session (conftest), shared with test_fit_ddp
    ranks = [json.loads((out / f"rank{k}.json").read_text()) for k in range(2)]
    return out, ranks


def test_two_processes_train_and_agree_on_history(ddp_run):
    out, (r0, r1) = ddp_run
    assert r0["num_processes"] == r1["num_processes"] == 2
    # only the net is wrapped for DDP; the loss and metric modules are used as given
    assert r0["loss_fn"] == "CrossEntropyLoss" and r0["metric_types"] == ["MulticlassAccuracy"]
    assert r0["history"] == r1["history"]
    assert list(r0["history"]) == ["epoch", "train_loss", "train_acc", "lr", "val_loss", "val_acc"]
    assert r0["evaluate"] == r1["evaluate"]
    assert (out / "best.pt").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".kt-tmp")]


def test_distributed_validation_equals_single_process_evaluation(ddp_run):
    out, (r0, _) = ddp_run
    sys.path.insert(0, HERE)
    from ddp_script import data

    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    net.load_state_dict(torch.load(out / "final.pt", weights_only=True))
    xv, yv = data(37, 2)
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=3)})
    single = model.evaluate(DataLoader(TensorDataset(xv, yv), batch_size=8), quiet=True)
    assert r0["evaluate"]["val_acc"] == pytest.approx(single["val_acc"], abs=1e-7)
    assert r0["evaluate"]["val_loss"] == pytest.approx(single["val_loss"], rel=1e-6)
    with torch.no_grad():
        expected = net(xv)
    preds = torch.tensor(r0["preds"])
    assert preds.shape == (37, 3)  # no padding duplicates
    torch.testing.assert_close(preds, expected, rtol=1e-5, atol=1e-6)


def test_resume_under_two_processes_matches_the_straight_run(ddp_run, tmp_path):
    _, (straight, _) = ddp_run
    first = _torchrun(tmp_path, "--epochs", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = _torchrun(tmp_path, "--epochs", "3", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in range(2)]
    assert resumed[0]["history"] == resumed[1]["history"] == straight["history"]
    out, _ = ddp_run
    a = torch.load(out / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "final.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_an_exception_on_one_rank_ends_all_ranks_with_the_error_shown(tmp_path):
    proc = _torchrun(tmp_path, "--crash", timeout=120)  # a hang would hit the timeout
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stdout + proc.stderr
    assert not (tmp_path / "rank0.json").exists()
