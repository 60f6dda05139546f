"""CSVLogger: the file equals the history DataFrame after every epoch."""

import os

import pandas as pd
import pytest
import torchmetrics
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback, CSVLogger, History


def _fit(callbacks, epochs=3, **kwargs):
    x, y = make_classification(n=40)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=3)})
    df = model.fit(loader(x, y, 16), loader(x, y, 16), epochs=epochs, ckpt_path=None,
                   patience=None, quiet=True, callbacks=callbacks, **kwargs)
    return model, df


def _read(path, sep=","):
    return pd.read_csv(path, sep=sep)


class ReadBack(Callback):
    """Reads the CSV right after each epoch (it comes after the logger in the list)."""

    def __init__(self, path):
        self.path, self.lengths = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.lengths.append(len(_read(self.path)))


def test_csv_equals_the_history_dataframe_after_every_epoch(tmp_path):
    path = tmp_path / "logs" / "history.csv"  # the directory is created
    probe = ReadBack(path)
    _, df = _fit([CSVLogger(path), probe])
    assert probe.lengths == [1, 2, 3]
    pd.testing.assert_frame_equal(_read(path), df, check_exact=True)
    assert list(_read(path).columns) == ["epoch", "train_loss", "train_acc", "lr", "val_loss",
                                         "val_acc"]
    assert os.listdir(path.parent) == ["history.csv"]  # no temp file left behind


def test_one_instance_reused_across_fits_and_append(tmp_path):
    path = tmp_path / "h.csv"
    logger = CSVLogger(path, separator=";")
    _, first = _fit([logger], epochs=2)
    _, second = _fit([logger], epochs=3)
    # a second fit starts the file afresh
    pd.testing.assert_frame_equal(_read(path, ";"), second, check_exact=True)

    appending = CSVLogger(path, separator=";", append=True)
    _, third = _fit([appending], epochs=2)
    expected = pd.concat([second, third], ignore_index=True)
    pd.testing.assert_frame_equal(_read(path, ";"), expected, check_exact=True)
    assert _read(path, ";")["epoch"].tolist() == [1, 2, 3, 1, 2]


def test_only_the_main_process_writes(tmp_path):
    class NotMain:
        is_main_process = False
        history_callback = History()

    logger = CSVLogger(tmp_path / "h.csv")
    logger.set_model(NotMain())
    logger.on_fit_begin()
    NotMain.history_callback.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5})
    logger.on_epoch_end(1, {"epoch": 1, "train_loss": 0.5})
    assert os.listdir(tmp_path) == []
    assert logger.to_frame()["train_loss"].tolist() == [0.5]


def test_bad_arguments():
    with pytest.raises(TypeError, match="filename must be a str or os.PathLike path; received "
                                        "int"):
        CSVLogger(3)
    with pytest.raises(ValueError, match="separator must be a single character; received ';;'"):
        CSVLogger("h.csv", separator=";;")


def test_a_resumed_fit_continues_the_file(tmp_path):
    x, y = make_classification(n=40)
    kwargs = dict(ckpt_path=str(tmp_path / "ck.pt"), patience=None, quiet=True)

    def model():
        return KerasModel(TinyNet(), nn.CrossEntropyLoss())

    model().fit(loader(x, y, 16), epochs=2, callbacks=[CSVLogger(tmp_path / "h.csv")], **kwargs)
    df = model().fit(loader(x, y, 16), epochs=4, resume=True,
                     callbacks=[CSVLogger(tmp_path / "h.csv")], **kwargs)
    assert df["epoch"].tolist() == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(_read(tmp_path / "h.csv"), df, check_exact=True)


def test_a_callback_adds_a_column_through_history_update_last(tmp_path):
    class Doubled(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.history_callback.update_last({"double_loss": 2 * logs["train_loss"]})

    x, y = make_classification(n=32)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    df = model.fit(loader(x, y, 8), epochs=2, ckpt_path=None, quiet=True,
                   callbacks=[Doubled(), CSVLogger(tmp_path / "h.csv")])
    assert df["double_loss"].tolist() == [2 * v for v in df["train_loss"]]
    pd.testing.assert_frame_equal(_read(tmp_path / "h.csv"), df, check_exact=True)
    history = model.history_callback
    with pytest.raises(TypeError, match="values must be a dict of str column names"):
        history.update_last([1])
    history.on_fit_begin()
    with pytest.raises(ValueError, match="update_last needs a finished epoch"):
        history.update_last({"a": 1})
