"""Launchers on 2 CPU processes (gloo): an `accelerate launch` config, and a two-node torchrun.

Both tests start real launchers as subprocesses (tests/scripts/launch_script.py) and
kill them after 120 s, so a hang fails instead of stalling the suite.

Two facts of Accelerate 1.15 shape the config test:

- ``distributed_type: MULTI_CPU`` makes ``accelerate launch`` start ONE process unless
  an ``mpirun_config`` (mpirun and a hostfile) is given; the launcher that starts N local
  processes is its torchrun path, chosen by ``distributed_type: MULTI_GPU``. Without a
  GPU the processes then train on gloo as MULTI_CPU (kerastorch asks for the CPU when
  there is no accelerator device), which the test asserts.
- a config file has no ``gradient_accumulation_steps`` key outside ``deepspeed_config``
  (Accelerate rejects the file as having an unknown key), and only the DeepSpeed launcher
  exports ``ACCELERATE_GRADIENT_ACCUMULATION_STEPS``. The test sets that variable in the
  launcher's environment, which is what ``Accelerator()`` reads.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch

HERE = os.path.join(os.path.dirname(__file__), "scripts")
SCRIPT = os.path.join(HERE, "launch_script.py")
TIMEOUT_S = 120

CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_processes: 2
num_machines: 1
machine_rank: 0
main_process_port: 0
main_training_function: main
mixed_precision: bf16
use_cpu: false
"""


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": HERE, **extra}


def _start(cmd, env):
    # a session of its own: on a timeout the launcher and its workers are killed together
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _finish(procs):
    """Wait for every launcher; kill all of them when the shared deadline passes."""
    deadline = time.monotonic() + TIMEOUT_S
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for other in procs:
                if other.poll() is None:
                    os.killpg(other.pid, signal.SIGKILL)
            pytest.fail(f"a launcher was still running after {TIMEOUT_S} s (a hang)")
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]
    return outputs


def _ranks(out, tag, n=2):
    return [json.loads((out / f"{tag}-rank{k}.json").read_text()) for k in range(n)]


def _weights(out, tag):
    return torch.load(out / f"{tag}-final.pt", weights_only=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_accelerate_launch_config_is_honoured_by_the_default_accelerator(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(CONFIG)
    launch = _start([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                     str(config), SCRIPT, str(tmp_path), "launch"],
                    _env(ACCELERATE_GRADIENT_ACCUMULATION_STEPS="2"))
    # the same training with the settings passed to fit, under a plain torchrun
    explicit = _start([sys.executable, "-m", "torch.distributed.run", "--standalone",
                       "--nproc_per_node", "2", SCRIPT, str(tmp_path), "explicit",
                       "--explicit"], _env())
    _finish([launch, explicit])

    launched, explicit = _ranks(tmp_path, "launch"), _ranks(tmp_path, "explicit")
    for r in launched:
        assert r["env"]["ACCELERATE_MIXED_PRECISION"] == "bf16"  # from the config file
        assert r["env"]["WORLD_SIZE"] == "2"
        assert r["num_processes"] == 2 and r["distributed_type"] == "MULTI_CPU"
        assert r["mixed_precision"] == "bf16"
        assert r["gradient_accumulation_steps"] == 2
    assert sorted(r["process_index"] for r in launched) == [0, 1]
    assert launched[0]["history"] == launched[1]["history"]
    for r in explicit:
        assert r["env"]["ACCELERATE_MIXED_PRECISION"] is None
        assert (r["mixed_precision"], r["gradient_accumulation_steps"]) == ("bf16", 2)
    # Same program, same ops in the same order on the same CPU build with one thread, and
    # gloo's all-reduce of two addends is a + b, which is commutative in floating point: the
    # runs are the same computation, so equality is exact (torch's reproducibility notes
    # promise this for identical seeds, builds, platforms and deterministic kernels).
    assert launched[0]["history"] == explicit[0]["history"]
    a, b = _weights(tmp_path, "launch"), _weights(tmp_path, "explicit")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_torchrun_nodes_train_as_one_process_on_the_global_batch(tmp_path):
    port, rdzv_id = _free_port(), uuid.uuid4().hex[:12]
    procs = [_start([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                     "--nproc_per_node", "1", "--node_rank", str(node), "--rdzv_backend", "c10d",
                     "--rdzv_endpoint", f"localhost:{port}", "--rdzv_id", rdzv_id,
                     SCRIPT, str(tmp_path), "nodes", "--batch-size", "8", "--no-shuffle",
                     "--launcher", str(node)], _env())
             for node in (0, 1)]
    # meanwhile, in this process: one process on the global batch (2 x 8), same sample order
    sys.path.insert(0, HERE)
    from launch_script import train

    single, single_history = train(batch_size=16, shuffle=False)
    _finish(procs)

    ranks = _ranks(tmp_path, "nodes")
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert all(r["env"]["WORLD_SIZE"] == "2" and r["env"]["LOCAL_WORLD_SIZE"] == "1"
               for r in ranks)
    # one process per node: the rendezvous gave the two launchers node (group) ranks 0
    # and 1 (c10d assigns them in joining order, not by --node_rank), and rank = node rank
    assert sorted(r["launcher"] for r in ranks) == [0, 1]
    assert sorted(r["env"]["GROUP_RANK"] for r in ranks) == ["0", "1"]
    assert all(r["env"]["RANK"] == r["env"]["GROUP_RANK"] for r in ranks)
    # each process took half of every global batch: 96 / (2 x 8) = 6 steps, as the
    # single process's 96 / 16
    assert [r["train_steps"] for r in ranks] == [6, 6] and single.train_steps == 6
    assert ranks[0]["history"] == ranks[1]["history"]

    # DDP averages the two half-batch mean gradients, (g0 + g1) / 2, where the single
    # process takes the mean over all 16 samples: equal in exact arithmetic, different in
    # the order of float32 additions, so the 18 SGD steps drift by a few ulps (~1e-7
    # relative); rtol 1e-5 allows 100 times that and still catches a wrong batch or scale
    distributed = _weights(tmp_path, "nodes")
    reference = single.net.state_dict()
    assert distributed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(distributed[key], reference[key], rtol=1e-5, atol=1e-6)
    for column, values in single_history.to_dict(orient="list").items():
        assert ranks[0]["history"][column] == pytest.approx(values, rel=1e-5, abs=1e-7), column
