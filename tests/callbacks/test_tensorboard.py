"""TensorBoard: every history column is a scalar with one event per epoch."""

import glob
import os

import pytest
import torchmetrics
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import TensorBoard

pytest.importorskip("tensorboard")


def read_scalars(event_file):
    """{tag: [(step, value), ...]} from one event file, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_scalars_equal_history(scalars, df):
    assert sorted(scalars) == sorted(c for c in df.columns if c != "epoch")
    for tag, events in scalars.items():
        assert [step for step, _ in events] == df["epoch"].tolist(), tag
        # event files store float32
        assert [v for _, v in events] == pytest.approx(df[tag].tolist(), rel=1e-6), tag


def _fit(callbacks, epochs):
    x, y = make_classification(n=40)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=3)})
    return model.fit(loader(x, y, 16), loader(x, y, 16), epochs=epochs, ckpt_path=None,
                     patience=None, quiet=True, callbacks=callbacks)


def test_event_file_holds_every_column_per_epoch_and_reuse_opens_a_new_file(tmp_path):
    tb = TensorBoard(tmp_path / "tb")
    df = _fit([tb], epochs=3)
    (first,) = glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    assert_scalars_equal_history(read_scalars(first), df)
    assert tb.written == {c: 3 for c in df.columns if c != "epoch"}
    assert tb.writer is None  # closed at fit end

    df2 = _fit([tb], epochs=2)
    files = glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    (second,) = set(files) - {first}
    assert_scalars_equal_history(read_scalars(second), df2)
    assert tb.written == {c: 2 for c in df2.columns if c != "epoch"}


def test_non_scalar_values_are_skipped_and_other_processes_write_nothing(tmp_path):
    tb = TensorBoard(str(tmp_path / "a"))
    tb.on_fit_begin()
    tb.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5, "val_per_class": [0.1, 0.2],
                        "note": "x"})
    tb.on_fit_end()
    (path,) = glob.glob(str(tmp_path / "a" / "events.*"))
    assert read_scalars(path) == {"train_loss": [(1, 0.5)]}

    class NotMain:
        is_main_process = False

    tb = TensorBoard(str(tmp_path / "b"))
    tb.set_model(NotMain())
    tb.on_fit_begin()
    tb.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5})
    tb.on_fit_end()
    assert not os.path.exists(tmp_path / "b")


def test_bad_log_dir():
    with pytest.raises(TypeError, match="log_dir must be a str or os.PathLike path; received "
                                        "NoneType"):
        TensorBoard(None)
