"""Exact resume, SIGKILL mid-epoch, Ctrl-C, NaN handling, and refusing pickled code."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback, EarlyStopping
from kerastorch.state import load_training_state

HERE = os.path.join(os.path.dirname(__file__), "scripts")


def run_script(out, epochs, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": HERE}
    return subprocess.run([sys.executable, os.path.join(HERE, "resume_script.py"), str(out),
                           str(epochs), *args], env=env, capture_output=True, text=True,
                          timeout=180)


def result(out):
    return torch.load(os.path.join(out, "result.pt"), weights_only=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    proc = run_script(out, 6)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return result(out)


def assert_same_run(a, b):
    assert a["history"] == b["history"]
    for key, value in a["weights"].items():
        assert torch.equal(value, b["weights"][key]), key  # bit-identical


def test_three_epochs_then_a_new_process_resumes_to_six_exactly(straight, tmp_path):
    first = run_script(tmp_path, 3)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(result(tmp_path)["history"]["epoch"]) == 3
    second = run_script(tmp_path, 6, "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = result(tmp_path)
    assert resumed["history"]["epoch"] == [1, 2, 3, 4, 5, 6]
    assert_same_run(straight, resumed)
    assert resumed["history"]["lr"] == straight["history"]["lr"]  # the schedule continued


def test_sigkill_mid_epoch_then_resume_matches_the_straight_run(straight, tmp_path):
    killed = run_script(tmp_path, 6, "--kill-at", "4:3")
    assert killed.returncode == -signal.SIGKILL
    state = load_training_state(str(tmp_path / "best.pt.state.pt"))
    assert state["epoch"] == 3  # the last completed epoch
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".kt-tmp")]
    resumed = run_script(tmp_path, 6, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(straight, result(tmp_path))


def test_resume_arguments():
    x, y = make_classification(n=16)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="resume=True needs a state file"):
        model.fit(loader(x, y), epochs=1, ckpt_path=None, resume=True, quiet=True)
    with pytest.raises(FileNotFoundError, match="no such state file"):
        model.fit(loader(x, y), epochs=1, ckpt_path=None, resume="nowhere.state.pt", quiet=True)
    with pytest.raises(TypeError, match="resume must be a bool or a path; received int"):
        model.fit(loader(x, y), epochs=1, ckpt_path=None, resume=1, quiet=True)
    with pytest.raises(ValueError, match="save_state_every must be an int >= 0"):
        model.fit(loader(x, y), epochs=1, ckpt_path=None, save_state_every=-1, quiet=True)


def test_resume_true_without_a_state_yet_starts_fresh(tmp_path):
    x, y = make_classification(n=16)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    with pytest.warns(UserWarning, match="no state at .* yet; starting from scratch"):
        df = model.fit(loader(x, y), epochs=2, ckpt_path=str(tmp_path / "c.pt"), resume=True,
                       quiet=True)
    assert df["epoch"].tolist() == [1, 2]
    assert load_training_state(str(tmp_path / "c.pt.state.pt"))["epoch"] == 2


class InterruptAt(Callback):
    def __init__(self, epoch, step, how="raise"):
        self.epoch, self.step, self.how, self.current = epoch, step, how, None
        self.batches_after = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, step, logs=None):
        if (self.current, step) == (self.epoch, self.step):
            if self.how == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C in a terminal or notebook
        elif self.current == self.epoch and step > self.step:
            self.batches_after += 1


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_ctrl_c_returns_completed_epochs_with_best_weights_and_a_resumable_state(tmp_path, how):
    from conftest import ScriptedScore

    x, y = make_classification(n=64)
    net = TinyNet()
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"score": ScriptedScore([0.5, 0.9, 0.7, 0.6])})
    saved = {}

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved[epoch] = {k: v.clone() for k, v in net.state_dict().items()}

    stopper = InterruptAt(3, 1, how)
    with pytest.warns(UserWarning, match="interrupted during epoch 3"):
        df = model.fit(loader(x, y, 8), loader(x, y), epochs=5, monitor="val_score",
                       mode="max", ckpt_path=str(tmp_path / "best.pt"), quiet=True,
                       callbacks=[Snapshot(), stopper])
    assert df["epoch"].tolist() == [1, 2] and model.history is df and model.interrupted
    assert stopper.batches_after == 0  # stopped right after the batch it was in
    for key, value in net.state_dict().items():  # epoch 2 scored best
        assert torch.equal(value, saved[2][key])
    assert load_training_state(str(tmp_path / "best.pt.state.pt"))["epoch"] == 2
    # the Ctrl-C handler is gone after fit
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_ctrl_c_aborts_immediately():
    from kerastorch.interrupt import AbortTraining

    class DoubleInterrupt(Callback):
        def on_train_batch_end(self, step, logs=None):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    x, y = make_classification(n=32)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    with pytest.raises(AbortTraining):
        model.fit(loader(x, y, 8), epochs=2, ckpt_path=None, quiet=True,
                  callbacks=[DoubleInterrupt()])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class NaNLoss(nn.Module):
    """Cross-entropy, but NaN on the training batches listed (counted over the whole fit)."""

    def __init__(self, nan_calls):
        super().__init__()
        self.nan_calls, self.calls = set(nan_calls), 0

    def forward(self, preds, labels):
        self.calls += torch.is_grad_enabled()  # validation batches do not count
        loss = nn.functional.cross_entropy(preds, labels)
        return loss * float("nan") if self.calls in self.nan_calls else loss


def test_skip_nonfinite_leaves_weights_unchanged_for_that_step():
    x, y = make_classification(n=32)
    torch.manual_seed(0)
    net = TinyNet()
    weights = []

    class Record(Callback):
        def on_train_batch_end(self, step, logs=None):
            weights.append([p.detach().clone() for p in net.parameters()])

    model = KerasModel(net, NaNLoss({3}), optimizer=torch.optim.Adam(net.parameters(), 0.1))
    with pytest.warns(UserWarning, match="epoch 1: skipped 1 step"):
        df = model.fit(loader(x, y, 8), epochs=1, ckpt_path=None, quiet=True,
                       skip_nonfinite=True, callbacks=[Record()])
    assert all(torch.equal(a, b) for a, b in zip(weights[1], weights[2]))   # step 3 skipped
    assert not all(torch.equal(a, b) for a, b in zip(weights[2], weights[3]))
    assert torch.isfinite(torch.tensor(df["train_loss"][0]))  # the NaN batch is not averaged in
    # without the option the NaN poisons the weights and the epoch loss is NaN
    net2 = TinyNet()
    df2 = KerasModel(net2, NaNLoss({3}), optimizer=torch.optim.Adam(net2.parameters(), 0.1)) \
        .fit(loader(x, y, 8), epochs=1, ckpt_path=None, quiet=True)
    assert df2["train_loss"].isna().all()


def test_nan_epoch_never_becomes_the_best_checkpoint_even_if_its_metric_looks_best(tmp_path):
    from conftest import ScriptedScore

    x, y = make_classification(n=16)
    net = TinyNet()
    # the NaN batch is epoch 2's (two batches per epoch): its score 0.99 must not count
    model = KerasModel(net, NaNLoss({3}),
                       metrics_dict={"score": ScriptedScore([0.5, 0.99, 0.6])})
    df = model.fit(loader(x, y, 8), loader(x, y), epochs=3, monitor="val_score", mode="max",
                   patience=None, ckpt_path=str(tmp_path / "best.pt"), quiet=True)
    assert df["train_loss"].isna().tolist() == [False, True, True]
    state = load_training_state(str(tmp_path / "best.pt.state.pt"))
    checkpoint = state["callbacks"][f"ModelCheckpoint[{tmp_path / 'best.pt'}|val_score]"]
    assert checkpoint["best_epoch"] == 1


def test_tampered_checkpoint_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, str(path))
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="weights-only"):
        model.load_ckpt(str(path))
    with pytest.raises(ValueError, match="weights_only=True"):
        load_training_state(str(path))
    assert not marker.exists()


class EpochCounter(Callback):
    """A callback with state: counts the epochs it has seen across resumes."""

    def __init__(self):
        self.seen = []

    def on_fit_begin(self, logs=None):
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(epoch)

    def state_dict(self):
        return {"seen": list(self.seen)}

    def load_state_dict(self, state):
        self.seen = list(state["seen"])


def test_resume_matches_callback_state_by_key_when_the_callback_list_changes(
        tmp_path, recwarn, monkeypatch):
    x, y = make_classification(n=32)
    kwargs = dict(ckpt_path=str(tmp_path / "ck.pt"), quiet=True, patience=None)
    first = EpochCounter()
    KerasModel(TinyNet(), nn.CrossEntropyLoss()).fit(
        loader(x, y, 8), loader(x, y), epochs=2, callbacks=[first], **kwargs)
    assert first.seen == [1, 2]
    # plot=True inserts a LivePlot before the user's callbacks, and an EarlyStopping is added
    second = EpochCounter()
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    monkeypatch.chdir(tmp_path)  # LivePlot writes curves.png into the working directory
    df = model.fit(loader(x, y, 8), loader(x, y), epochs=4, resume=True, plot=True,
                   callbacks=[EarlyStopping(patience=10), second], **kwargs)
    assert second.seen == [1, 2, 3, 4]
    assert df["epoch"].tolist() == [1, 2, 3, 4]
    fresh = [str(w.message) for w in recwarn if "starts fresh" in str(w.message)]
    assert fresh == ["resume: no saved state for callback EarlyStopping[val_loss]; it starts "
                     "fresh"]
