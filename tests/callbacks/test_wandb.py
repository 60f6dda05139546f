"""WandbLogger: one run per fit, the epoch row logged at step=epoch, offline by default."""

import glob
import json
import os
import sys
import types

import pytest
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import WandbLogger


def _fit(callbacks, epochs=2):
    x, y = make_classification(n=16)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    return model.fit(loader(x, y), loader(x, y), epochs=epochs, ckpt_path=None, patience=None,
                     quiet=True, callbacks=callbacks)


class FakeRun:
    def __init__(self, kwargs):
        self.kwargs, self.logged, self.finished = kwargs, [], 0

    def log(self, values, step=None):
        self.logged.append((step, dict(values)))

    def finish(self):
        self.finished += 1


@pytest.fixture
def fake_wandb(monkeypatch):
    """A stand-in wandb module that records what the callback asks of it."""
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        module.runs.append(FakeRun(kwargs))
        return module.runs[-1]

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_logs_each_epoch_row_to_an_offline_run_per_fit(fake_wandb, tmp_path):
    logger = WandbLogger("kt-test", dir=tmp_path / "wb", name="first")
    df = _fit([logger], epochs=3)
    (run,) = fake_wandb.runs
    assert run.kwargs["mode"] == "offline" and run.kwargs["project"] == "kt-test"
    assert run.kwargs["name"] == "first" and run.kwargs["dir"] == str(tmp_path / "wb")
    assert run.kwargs["config"]["optimizer"]["param_groups"][0]["lr"] == 0.001
    expected = [(int(r.epoch), {k: v for k, v in r.items() if k != "epoch"})
                for _, r in df.iterrows()]
    assert run.logged == expected
    assert run.finished == 1 and logger.run is None
    # reused: a second fit is a second run
    _fit([logger], epochs=1)
    assert len(fake_wandb.runs) == 2 and [s for s, _ in fake_wandb.runs[1].logged] == [1]


def test_the_run_is_finished_after_an_error_and_other_processes_log_nothing(fake_wandb):
    from kerastorch.callbacks import Callback

    class Boom(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _fit([WandbLogger(config={"a": 1}), Boom()])
    assert fake_wandb.runs[0].finished == 1 and fake_wandb.runs[0].kwargs["config"] == {"a": 1}

    class NotMain:
        is_main_process = False

    logger = WandbLogger()
    logger.set_model(NotMain())
    logger.on_fit_begin()
    logger.on_epoch_end(1, {"train_loss": 1.0})
    logger.on_fit_end()
    assert len(fake_wandb.runs) == 1


def test_misuse_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="mode must be one of 'offline', 'online', 'disabled'; "
                                         "received 'local'"):
        WandbLogger(mode="local")
    with pytest.raises(TypeError, match="config must be a dict or None; received list"):
        WandbLogger(config=[1])
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ImportError, match="WandbLogger needs the wandb package"):
        WandbLogger().on_fit_begin()


def test_real_wandb_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is optional and not installed")
    monkeypatch.setenv("WANDB_SILENT", "true")
    df = _fit([WandbLogger("kt-test", dir=tmp_path)], epochs=2)
    (run_dir,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert glob.glob(os.path.join(run_dir, "*.wandb"))
    summary = os.path.join(run_dir, "files", "wandb-summary.json")
    if os.path.exists(summary):
        with open(summary) as f:
            assert json.load(f)["train_loss"] == pytest.approx(df["train_loss"].iloc[-1])
