"""Weights of a sharded net (FSDP, DeepSpeed) are gathered through Accelerate before any
file is written or the best weights are kept, with every process taking part.

FSDP needs a GPU (on the CPU Accelerate makes it DDP), so the multi-process test forces
the sharded code path on DDP with a gathering that is a real collective; the GPU side
is benchmarks/gpu_check.py's FSDP check.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from kerastorch import KerasModel
from kerastorch.files import load_state_dict_file

HERE = os.path.join(os.path.dirname(__file__), "scripts")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One torchrun: a plain DDP fit, then the same fit on the forced sharded path."""
    out = tmp_path_factory.mktemp("sharded")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": HERE}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", os.path.join(HERE, "sharded_script.py"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tuple((out / kind, [json.loads((out / kind / f"rank{k}.json").read_text())
                               for k in range(2)]) for kind in ("plain", "sharded"))


def _plain_net():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_every_process_joins_every_gathering_and_training_is_unchanged(runs):
    (_, plain), (_, sharded) = runs
    assert plain[0]["gatherings"] == []  # DDP: no gathering
    # 3 epochs: the best-weights copy when val_loss improves (shared by the files of that
    # epoch), the every_n_steps files (8 batches/2 ranks = 4 steps per epoch -> steps 3, 6,
    # 9, 12) and save_ckpt; all counted 2 = both processes took part
    assert len(sharded[0]["gatherings"]) == len(sharded[1]["gatherings"]) >= 5
    assert set(sharded[0]["gatherings"]) == {2}
    assert sharded[0]["history"] == plain[0]["history"]
    assert sharded[0]["weights"] == plain[0]["weights"] == sharded[1]["weights"]


def test_the_files_load_into_a_plain_single_process_net(runs):
    (plain_dir, plain), (sharded_dir, sharded) = runs
    final = {k: torch.tensor(v) for k, v in sharded[0]["weights"].items()}
    for name in ("best.pt", "saved.pt"):
        net = _plain_net()
        net.load_state_dict(load_state_dict_file(str(sharded_dir / name)))  # strict
        assert all(torch.equal(net.state_dict()[k], final[k]) for k in final)
        assert all(torch.equal(a, b) for a, b in zip(
            load_state_dict_file(str(sharded_dir / name)).values(),
            load_state_dict_file(str(plain_dir / name)).values()))
    steps = sorted(p for p in os.listdir(sharded_dir) if "step=" in p)
    assert steps == ["top-step=000003.pt", "top-step=000006.pt", "top-step=000009.pt",
                     "top-step=000012.pt"]
    assert sharded[0]["top"] == plain[0]["top"] and len(sharded[0]["top"]) == 2
    for name in sharded[0]["top"]:
        _plain_net().load_state_dict(load_state_dict_file(str(sharded_dir / name)))


def test_single_process_full_state_dict_is_a_cpu_copy():
    torch.manual_seed(0)
    model = KerasModel(_plain_net(), nn.CrossEntropyLoss())
    assert model.is_sharded is False
    state = model.full_state_dict()
    assert state.keys() == model.net.state_dict().keys()
    assert all(torch.equal(state[k], v) and state[k].data_ptr() != v.data_ptr()
               for k, v in model.net.state_dict().items())
    with torch.no_grad():
        model.net[0].weight.add_(1.0)
    model.load_full_state_dict(state)
    assert torch.equal(model.net[0].weight, state["0.weight"])
