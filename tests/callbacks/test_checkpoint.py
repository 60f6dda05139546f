"""ModelCheckpoint(save_last=...): the latest weights next to the best ones, every epoch."""

import os

import pytest
import torch
from conftest import EpochWeights, ScriptedScore, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback, ModelCheckpoint
from kerastorch.files import load_state_dict_file


class Tag(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.model.net.tag.fill_(epoch)


class Probe(Callback):
    """Reads last.pt's tag right after each epoch: the file must already hold that epoch."""

    def __init__(self, path):
        self.path, self.tags = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.tags.append(load_state_dict_file(self.path)["tag"].item())


@pytest.mark.parametrize("scores, best_epoch", [
    ([0.5, 0.9, 0.7], 2),
    ([0.9, 0.5, 0.7], 1),
    ([0.1, 0.2, 0.3], 3),
])
def test_save_last_writes_every_epoch_while_best_keeps_the_best(tmp_path, scores, best_epoch):
    x, y = make_classification(n=16)
    ck = ModelCheckpoint(str(tmp_path / "best.pt"), "val_score", "max", save_last=True)
    probe = Probe(str(tmp_path / "last.pt"))
    model = KerasModel(EpochWeights(), nn.CrossEntropyLoss(),
                       metrics_dict={"score": ScriptedScore(scores)})
    model.fit(loader(x, y), loader(x, y), epochs=3, ckpt_path=None, patience=None,
              monitor="val_score", mode="max", quiet=True, callbacks=[Tag(), ck, probe])
    assert probe.tags == [1, 2, 3]
    assert load_state_dict_file(str(tmp_path / "best.pt"))["tag"].item() == best_epoch
    assert load_state_dict_file(str(tmp_path / "last.pt"))["tag"].item() == 3
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]  # no temp files left


@pytest.mark.parametrize("filepath, save_last, expected", [
    ("ck/best.pt", True, os.path.join("ck", "last.pt")),
    ("ck/ep{epoch:02d}.ckpt", True, os.path.join("ck", "last.ckpt")),
    ("checkpoint", True, "last.pt"),
    ("ck/best.pt", "elsewhere/final-{epoch}.pt", "elsewhere/final-{epoch}.pt"),
    (None, "only-last.pt", "only-last.pt"),
    ("ck/best.pt", False, None),
])
def test_where_last_goes(filepath, save_last, expected):
    assert ModelCheckpoint(filepath, save_last=save_last).last_path == expected


def test_save_last_misuse():
    with pytest.raises(ValueError, match="save_last=True names last.pt after filepath, which is "
                                         "None"):
        ModelCheckpoint(None, save_last=True)
    with pytest.raises(ValueError, match="which is filepath itself"):
        ModelCheckpoint("ck/last.pt", save_last=True)
    with pytest.raises(TypeError, match="save_last must be a bool or a str path; received int"):
        ModelCheckpoint("ck/best.pt", save_last=1)


def test_last_path_format_fields_and_only_the_main_process_writes(tmp_path):
    class Model:
        unwrapped_net = nn.Linear(1, 1)
        is_main_process = True

    ck = ModelCheckpoint(None, save_last=str(tmp_path / "last-{epoch}-{val_loss:.1f}.pt"))
    ck.set_model(Model())
    ck.on_fit_begin()
    ck.on_epoch_end(4, {"val_loss": 0.25})
    assert os.listdir(tmp_path) == ["last-4-0.2.pt"]
    saved = load_state_dict_file(str(tmp_path / "last-4-0.2.pt"))
    assert torch.equal(saved["weight"], Model.unwrapped_net.weight)

    Model.is_main_process = False
    ck.on_epoch_end(5, {"val_loss": 0.25})
    assert os.listdir(tmp_path) == ["last-4-0.2.pt"]
