"""TerminateOnNaN: stops after the epoch whose loss went non-finite, naming epoch and step."""

import logging

import pytest
from conftest import TinyNet, loader, make_classification
from test_runners import _count_host_syncs
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import TerminateOnNaN

STEPS_PER_EPOCH = 4  # 32 samples in batches of 8


class ScriptedBadLoss(nn.Module):
    """Cross-entropy, times ``bad`` at one training step (epoch, step); val losses stay finite
    unless ``val_bad`` is set."""

    def __init__(self, at=None, bad=float("nan"), val_bad=None):
        super().__init__()
        self.at, self.bad, self.val_bad = at, bad, val_bad
        self.train_calls = 0

    def forward(self, preds, labels):
        loss = nn.functional.cross_entropy(preds, labels)
        if not preds.requires_grad:  # validation
            return loss * self.val_bad if self.val_bad is not None else loss
        step, self.train_calls = self.train_calls, self.train_calls + 1
        if self.at is not None and step == (self.at[0] - 1) * STEPS_PER_EPOCH + self.at[1]:
            return loss * self.bad
        return loss


def _fit(loss, callbacks, epochs=4, **kwargs):
    x, y = make_classification(n=32)
    model = KerasModel(TinyNet(), loss)
    df = model.fit(loader(x, y, 8), loader(x, y, 16), epochs=epochs, ckpt_path=None,
                   patience=None, quiet=True, callbacks=callbacks, **kwargs)
    return model, df


@pytest.mark.parametrize("at, bad, epochs_run, message", [
    ((2, 3), float("nan"), 2,
     "train_loss is nan at epoch 2 (first non-finite step: 3); training stopped"),
    ((1, 0), float("inf"), 1,
     "train_loss is nan at epoch 1 (first non-finite step: 0); training stopped"),
    ((3, 1), float("inf"), 3,
     "train_loss is nan at epoch 3 (first non-finite step: 1); training stopped"),
    (None, None, 4, None),
])
# the core warns about a non-finite loss on the very first batch; that is the (1, 0) case
@pytest.mark.filterwarnings("ignore:ScriptedBadLoss returned a non-finite loss")
def test_stops_after_the_bad_epoch_and_names_it(at, bad, epochs_run, message):
    # an inf loss makes inf - inf = nan gradients, so later steps (and the epoch mean) are nan
    cb = TerminateOnNaN()
    model, df = _fit(ScriptedBadLoss(at, bad), [cb])
    assert len(df) == epochs_run
    assert cb.message == message
    if at is None:
        assert cb.stopped_epoch is None and not model.stop_training
    else:
        assert (cb.stopped_epoch, cb.bad_key, cb.bad_step) == (at[0], "train_loss", at[1])
        assert model.stop_training


def test_a_non_finite_val_loss_stops_without_a_step():
    cb = TerminateOnNaN()
    _, df = _fit(ScriptedBadLoss(val_bad=float("nan")), [cb])
    assert len(df) == 1
    assert (cb.bad_key, cb.bad_step) == ("val_loss", None)
    assert cb.message == "val_loss is nan at epoch 1; training stopped"


def test_reused_instance_starts_clean_and_logs_a_warning(caplog):
    cb = TerminateOnNaN()
    with caplog.at_level(logging.WARNING, logger="kerastorch"):
        _fit(ScriptedBadLoss((1, 2)), [cb])
    assert cb.stopped_epoch == 1
    (record,) = [r for r in caplog.records if r.name.startswith("kerastorch")]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "TerminateOnNaN: " + cb.message
    _, df = _fit(ScriptedBadLoss(), [cb], epochs=2)
    assert len(df) == 2 and cb.stopped_epoch is None and cb.message is None


def test_the_message_lands_in_the_run_log(tmp_path):
    cb = TerminateOnNaN()
    _fit(ScriptedBadLoss((2, 1)), [cb], log_dir=tmp_path)
    (run,) = tmp_path.iterdir()
    lines = (run / "log.log").read_text().splitlines()
    (warning,) = [line for line in lines if " WARNING " in line]
    assert warning.endswith("TerminateOnNaN: train_loss is nan at epoch 2 (first non-finite "
                            "step: 1); training stopped")
    assert sum(" INFO Epoch " in line for line in lines) == 2


def test_python_float_step_losses_are_checked_too():
    class M:
        stop_training = False

    cb, model = TerminateOnNaN(), M()
    cb.set_model(model)
    cb.on_fit_begin()
    cb.on_epoch_begin(1)
    for step, loss in enumerate([0.3, 0.2, float("inf"), float("nan")]):
        cb.on_train_batch_end(step, {"train_loss": loss, "train_acc": float("nan")})
    cb.on_epoch_end(1, {"train_loss": float("inf"), "train_acc": 0.5})
    assert (cb.bad_key, cb.bad_step) == ("train_loss", 2) and model.stop_training


def test_no_host_sync_per_step(monkeypatch):
    """Checking each step stays on the device: the syncs do not grow with the step count."""
    x, y = make_classification(n=256)

    def run(batch_size):
        model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
        return lambda: model.fit(loader(x, y, batch_size), epochs=2, ckpt_path=None,
                                 quiet=True, callbacks=[TerminateOnNaN()])

    few = _count_host_syncs(monkeypatch, run(128))  # 2 steps per epoch
    many = _count_host_syncs(monkeypatch, run(8))  # 32 steps per epoch
    assert many == few
    baseline = _count_host_syncs(monkeypatch, lambda: KerasModel(
        TinyNet(), nn.CrossEntropyLoss()).fit(loader(x, y, 8), epochs=2, ckpt_path=None,
                                              quiet=True))
    assert many == baseline  # and a finite run costs no sync at all
