"""fit(save_state_every_steps=N): states inside an epoch, and resume=True continuing there.

Each case compares against a straight run computed here: bit-identical weights and history,
and the resumed process trains only the batches the killed one had not.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback
from kerastorch.state import load_training_state

HERE = os.path.join(os.path.dirname(__file__), "scripts")
sys.path.insert(0, HERE)
from mid_epoch_script import EVERY, BatchCount, Crash, CrashAt, fit  # noqa: E402

CASES = ["fast", "workers0", "workers2"]
BATCHES = 10  # per epoch: 80 samples in batches of 8
KILL = (2, 6)  # SIGKILL after epoch 2's 7th batch; the last state is 6 batches into epoch 2


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": HERE}


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """One process per case, run side by side, each SIGKILLed inside epoch 2."""
    runs = {}
    for case in CASES:
        out = tmp_path_factory.mktemp(case)
        log = open(out / "log.txt", "w")  # a file, not a pipe: orphaned workers hold no pipe
        cmd = [sys.executable, os.path.join(HERE, "mid_epoch_script.py"), str(out), case,
               "--kill-at", "%d:%d" % KILL]
        runs[case] = (out, log, subprocess.Popen(cmd, env=_env(), stdout=log,
                                                 stderr=subprocess.STDOUT))
    for case, (out, log, proc) in runs.items():
        code = proc.wait(timeout=300)
        log.close()
        assert code == -signal.SIGKILL, (out / "log.txt").read_text()[-3000:]
    return {case: out for case, (out, _, _) in runs.items()}


def assert_same_run(straight, resumed):
    (a, history_a), (b, history_b) = straight, resumed
    assert history_b.equals(history_a), f"\n{history_a}\n{history_b}"
    for key, value in a.net.state_dict().items():
        assert torch.equal(value, b.net.state_dict()[key]), key


@pytest.mark.parametrize("case", CASES)
def test_sigkilled_inside_an_epoch_then_resumed_in_a_new_process_equals_a_straight_run(
        case, killed, tmp_path):
    straight = fit(case, str(tmp_path))
    out = killed[case]
    state = load_training_state(str(out / "best.pt.state.pt"))
    # the state was taken inside epoch 2, after its 6th batch: the 16th optimizer step
    assert state["epoch"] == 1
    assert state["extra"]["mid_epoch"]["epoch"] == 2
    assert state["extra"]["mid_epoch"]["batches"] == 6
    assert state["extra"]["optimizer_steps"] == BATCHES + 6 == 4 * EVERY[case]
    assert not [p for p in os.listdir(out) if p.endswith(".kt-tmp")]
    counter = BatchCount()
    torch.manual_seed(999)  # whatever this process drew before must not matter
    resumed = fit(case, str(out), seed=123, callbacks=[counter], resume=True,
                  save_state_every_steps=EVERY[case])
    assert_same_run(straight, resumed)
    # it continued inside epoch 2: only the batches the killed run had not trained on,
    # with the batch hooks counting on from there
    assert counter.batches == {2: BATCHES - 6, 3: BATCHES}
    assert counter.first == {2: 6, 3: 0}


def _torchrun(out, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(HERE, "mid_epoch_script.py"), str(out), "ddp", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


def test_two_processes_killed_inside_an_epoch_resume_exactly_also_on_the_sharded_path(
        tmp_path):
    # 96 samples, batches of 8, two processes: 6 batches per process per epoch; a state
    # every 3 optimizer steps is taken after epoch 2's 3rd batch, the stop is at its 5th
    first = _torchrun(tmp_path, "--straight-then-kill", "2:4")
    logs = first.stdout[-3000:] + first.stderr[-3000:]
    assert first.returncode != 0 and not (tmp_path / "resumed0.json").exists(), logs
    assert (tmp_path / "straight.pt").exists() and (tmp_path / "sharded_crashed1.json").exists(), logs
    state = load_training_state(str(tmp_path / "best.pt.state.pt"))
    assert (state["epoch"], state["extra"]["mid_epoch"]["batches"]) == (1, 3)
    assert len(state["extra"]["ranks"]) == 2  # each process's sums and metric states
    assert "shards" not in state["extra"] and state["optimizer"] is not None
    # the sharded path: the net gathered into the file, net and optimizer shards in one
    # folder beside it (the older states' folders removed), every save made by both
    sharded = tmp_path / "sharded" / "best.pt.state.pt"
    state = load_training_state(str(sharded))
    assert state["optimizer"] is None and state["extra"]["shards"] == "epoch1-step9"
    assert sorted(os.listdir(f"{sharded}.accelerate")) == ["epoch1-step9"]
    files = set(os.listdir(f"{sharded}.accelerate/epoch1-step9"))
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl",
            "random_states_1.pkl"} <= files, files
    straight_weights = torch.load(tmp_path / "straight.pt", weights_only=True)
    assert sorted(state["net"]) == sorted(straight_weights)
    crashed = [json.loads((tmp_path / f"sharded_crashed{k}.json").read_text()) for k in range(2)]
    # states after steps 3, 6 and epoch 1's end (both after its 6th batch), and 9
    assert crashed[0]["saves"] == crashed[1]["saves"] == [2, 2, 2, 2]

    second = _torchrun(tmp_path, "--resume")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    straight = json.loads((tmp_path / "straight0.json").read_text())
    for name in ("resumed", "resumed_sharded"):
        for k in range(2):
            resumed = json.loads((tmp_path / f"{name}{k}.json").read_text())
            assert resumed["history"] == straight["history"], name
            assert resumed["batches"] == {"2": 3, "3": 6}, name
        weights = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        for key, value in straight_weights.items():
            assert torch.equal(value, weights[key]), (name, key)
    assert sorted(os.listdir(f"{sharded}.accelerate")) == ["epoch3"]


# -- in one process: the combinations, with a crash raised from a callback ---------------

def _model(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    return KerasModel(net, nn.CrossEntropyLoss(), optimizer=optimizer,
                      lr_scheduler=torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.97),
                      lr_scheduler_interval="step")


def _crash_and_resume(tmp_path, train, val, crash_at, every, **kwargs):
    """(straight run, resumed run, the state the crash left, batches run per epoch)."""
    kwargs = dict(epochs=3, quiet=True, patience=5, **kwargs)
    straight = _model()
    torch.manual_seed(1)
    expected = straight.fit(train(), val, ckpt_path=str(tmp_path / "a.pt"), **kwargs)
    crashed = _model()
    torch.manual_seed(1)
    with pytest.raises(Crash):
        crashed.fit(train(), val, ckpt_path=str(tmp_path / "b.pt"),
                    save_state_every_steps=every, callbacks=[CrashAt(*crash_at)], **kwargs)
    state = load_training_state(str(tmp_path / "b.pt.state.pt"))
    counter = BatchCount()
    resumed = _model(seed=5)
    torch.manual_seed(7)
    history = resumed.fit(train(), val, ckpt_path=str(tmp_path / "b.pt"), resume=True,
                          save_state_every_steps=every, callbacks=[counter], **kwargs)
    assert_same_run((straight, expected), (resumed, history))
    return state, counter.batches


@pytest.mark.parametrize("fast", [True, False])
def test_steps_per_epoch_resumes_inside_the_epoch_and_across_a_pass_boundary(tmp_path, fast):
    # 60 samples in batches of 8: 8 batches a pass, 11 an epoch, so epoch 2 holds batches
    # 12-22 of the stream and a new pass begins after its 5th batch; the state after
    # its 6th is in the new pass (with fast=False: a shuffled DataLoader)
    x, y = make_classification(n=60, d=4)
    train = (lambda: (x, y)) if fast else (lambda: loader(x, y, 8, shuffle=True))
    state, batches = _crash_and_resume(tmp_path, train, (x[:20], y[:20]), crash_at=(2, 7),
                                       every=17, steps_per_epoch=11, batch_size=8,
                                       fast_data=fast)
    assert state["extra"]["mid_epoch"]["batches"] == 6
    assert state["extra"]["ranks"][0]["loader_position"]["position"] == 1
    assert batches == {2: 5, 3: 11}


def test_gradient_accumulation_counts_optimizer_steps_and_resumes_inside_an_accumulation(
        tmp_path):
    # 10 batches, 3 per optimizer step: steps after batches 3, 6, 9 and 10 (the pass's
    # last, partial accumulation); a state every 2 steps: after epoch 2's 6th batch
    x, y = make_classification(n=80, d=4)
    state, batches = _crash_and_resume(
        tmp_path, lambda: loader(x, y, 8, shuffle=True), loader(x[:16], y[:16]),
        crash_at=(2, 7), every=2, gradient_accumulation_steps=3)
    assert state["extra"]["optimizer_steps"] == 6
    assert state["extra"]["mid_epoch"]["batches"] == 6
    assert batches == {2: 4, 3: 10}


def test_sample_weights_resume_with_their_summed_weight(tmp_path):
    # the epoch's weight is a tensor here (a sum of sample weights), saved and restored
    x, y = make_classification(n=80, d=4)
    weights = torch.rand(80, generator=torch.Generator().manual_seed(3)) + 0.5
    state, batches = _crash_and_resume(tmp_path, lambda: (x, y), None, crash_at=(2, 4),
                                       every=3, sample_weight=weights, batch_size=8)
    assert isinstance(state["extra"]["ranks"][0]["count"], torch.Tensor)
    assert state["extra"]["mid_epoch"]["batches"] == 2
    assert batches == {2: 8, 3: 10}


class Interrupt(Callback):
    def __init__(self, at):
        self.at, self.epoch = at, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, step, logs=None):
        if (self.epoch, step) == self.at:
            raise KeyboardInterrupt


def test_ctrl_c_on_a_saving_step_writes_nothing_new(tmp_path):
    x, y = make_classification(n=64)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    # 4 batches an epoch, a state every 2 steps: epoch 2's 2nd batch (step 6) wrote one;
    # the interrupt at its 4th (step 8, a saving step) stops the fit before writing
    with pytest.warns(UserWarning, match="interrupted during epoch 2"):
        model.fit(loader(x, y), epochs=3, ckpt_path=str(tmp_path / "c.pt"), quiet=True,
                  save_state_every_steps=2, callbacks=[Interrupt((2, 3))])
    state = load_training_state(str(tmp_path / "c.pt.state.pt"))
    assert state["extra"]["mid_epoch"]["batches"] == 2
    assert state["extra"]["optimizer_steps"] == 6


def test_a_state_saved_without_steps_per_epoch_is_not_continued_with_it(tmp_path):
    x, y = make_classification(n=64)
    path = str(tmp_path / "d.pt")
    with pytest.raises(Crash):
        KerasModel(TinyNet(), nn.CrossEntropyLoss()).fit(
            loader(x, y), epochs=2, ckpt_path=path, quiet=True, save_state_every_steps=1,
            callbacks=[CrashAt(2, 1)])
    with pytest.raises(ValueError, match="inside epoch 2 .* without steps_per_epoch"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss()).fit(
            loader(x, y), epochs=2, ckpt_path=path, quiet=True, resume=True, steps_per_epoch=3)


class Started(Callback):
    def __init__(self):
        self.hooks = []

    def on_fit_begin(self, logs=None):
        self.hooks.append("on_fit_begin")

    def on_train_batch_begin(self, step, logs=None):
        self.hooks.append("on_train_batch_begin")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_bad_save_state_every_steps_is_refused_before_training(bad, tmp_path):
    x, y = make_classification(n=16)
    started = Started()
    with pytest.raises(ValueError, match="save_state_every_steps must be None or an int >= 1; "
                                         f"received {bad!r}"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss()).fit(
            loader(x, y), epochs=1, ckpt_path=str(tmp_path / "e.pt"), quiet=True,
            save_state_every_steps=bad, callbacks=[started])
    assert started.hooks == []
    assert not os.listdir(tmp_path)


def test_save_state_every_steps_needs_a_state_file():
    x, y = make_classification(n=16)
    with pytest.raises(ValueError, match="save_state_every_steps needs a file for the state"):
        KerasModel(TinyNet(), nn.CrossEntropyLoss()).fit(
            loader(x, y), epochs=1, ckpt_path=None, quiet=True, save_state_every_steps=2)
