"""ModelCheckpoint: save_last, save_top_k and best_model_path, every_n_steps, resume."""

import os

import pytest
import torch
from conftest import EpochWeights, ScriptedScore, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback, ModelCheckpoint
from kerastorch.files import cpu_state_dict, load_state_dict_file


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


# -- save_top_k, best_model_path, every_n_steps ------------------------------------------

NAN = float("nan")


class Snapshots(Callback):
    """The net's weights at each epoch end, and after each optimizer step."""

    def __init__(self):
        self.epochs, self.steps = {}, []

    def on_fit_begin(self, logs=None):
        self.epochs, self.steps = {}, []

    def on_train_batch_end(self, step, logs=None):
        if self.model.accelerator.sync_gradients:
            self.steps.append(cpu_state_dict(self.model.unwrapped_net))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[epoch] = cpu_state_dict(self.model.unwrapped_net)


def same_weights(path, expected):
    saved = load_state_dict_file(str(path))
    return saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k])
                                                   for k in saved)


def epoch_scored_fit(table, ck, epochs=None, **fit_kwargs):
    """Fit EpochWeights where val_score of epoch e is table[e - 1], whichever fit runs it
    (the score reads the epoch from the net's tag, so a resumed fit scores the same)."""
    x, y = make_classification(n=16)
    torch.manual_seed(0)
    net = EpochWeights()
    snapshots = Snapshots()

    def score(preds, labels):
        return torch.tensor(table[int(net.tag.item()) - 1], dtype=torch.float64)

    model = KerasModel(net, nn.CrossEntropyLoss(), metrics_dict={"score": score})
    fit_kwargs = {"ckpt_path": None, "patience": None, "monitor": "val_score", "mode": "max",
                  "quiet": True, **fit_kwargs}
    model.fit(loader(x, y, 4), loader(x, y), epochs=epochs or len(table),
              callbacks=[Tag(), ck, snapshots], **fit_kwargs)
    return snapshots


def ranked_name(epoch, score, stem="best", monitor="val_score"):
    return f"{stem}-epoch={epoch:02d}-{monitor}={score:.4f}.pt"


@pytest.mark.parametrize("k, mode, table, kept, best", [
    # k best of a table; NaN never counts; a tie keeps the earlier epoch
    (2, "max", [0.5, 0.9, 0.7, 0.95, 0.6], [2, 4], 4),
    (3, "max", [0.5, NAN, 0.7, 0.7, 0.4], [1, 3, 4], 3),
    (2, "max", [0.7, 0.7, 0.7], [1, 2], 1),
    (2, "min", [0.5, 0.9, 0.7, 0.95, 0.6], [1, 5], 1),
    (-1, "max", [0.5, NAN, 0.7, 0.1], [1, 3, 4], 3),
    (0, "max", [0.5, 0.9], [], None),
])
def test_save_top_k_keeps_the_k_best_epochs_bitwise(tmp_path, k, mode, table, kept, best):
    ck = ModelCheckpoint(str(tmp_path / "best.pt"), "val_score", mode, save_top_k=k,
                         save_last=True)
    snapshots = epoch_scored_fit(table, ck, mode=mode)
    names = {ranked_name(e, table[e - 1]): e for e in kept}
    assert sorted(os.listdir(tmp_path)) == sorted([*names, "last.pt"])
    for name, epoch in names.items():
        assert same_weights(tmp_path / name, snapshots.epochs[epoch])
    assert ck.best_k_models == {str(tmp_path / n): table[e - 1] for n, e in names.items()}
    if best is None:
        assert ck.best_model_path is None and ck.best_score is None
    else:
        assert ck.best_model_path == str(tmp_path / ranked_name(best, table[best - 1]))
        assert ck.best_score == table[best - 1]


def test_save_top_k_1_keeps_the_single_file_and_reports_it(tmp_path):
    ck = ModelCheckpoint(str(tmp_path / "best.pt"), "val_score", "max")
    snapshots = epoch_scored_fit([0.5, 0.9, 0.7], ck)
    assert os.listdir(tmp_path) == ["best.pt"]
    assert same_weights(tmp_path / "best.pt", snapshots.epochs[2])
    assert ck.best_model_path == str(tmp_path / "best.pt") and ck.best_score == 0.9
    assert ck.best_k_models == {str(tmp_path / "best.pt"): 0.9}


def test_best_model_path_never_names_a_file_a_later_epoch_overwrote(tmp_path):
    class Model:
        unwrapped_net = nn.Linear(1, 1)
        is_main_process = True

    ck = ModelCheckpoint(str(tmp_path / "m.pt"), save_best_only=False)
    ck.set_model(Model())
    ck.on_fit_begin()
    ck.on_epoch_end(1, {"val_loss": 0.5})
    assert ck.best_model_path == str(tmp_path / "m.pt") and ck.best_score == 0.5
    ck.on_epoch_end(2, {"val_loss": 0.7})
    assert ck.best_model_path is None and ck.best == 0.5


def test_save_top_k_with_a_user_pattern_and_name_clashes(tmp_path):
    ck = ModelCheckpoint(str(tmp_path / "ck-{epoch}-{val_score:.2f}.pt"), "val_score", "max",
                         save_top_k=2)
    epoch_scored_fit([0.5, 0.9, 0.7], ck)
    assert sorted(os.listdir(tmp_path)) == ["ck-2-0.90.pt", "ck-3-0.70.pt"]
    # a pattern without {epoch}: equal names get -v1, -v2 and never overwrite a kept file
    ck = ModelCheckpoint(str(tmp_path / "s{val_score:.0f}.pt"), "val_score", "max", save_top_k=3)
    snapshots = epoch_scored_fit([1.0, 1.2, 0.9, 0.2], ck)
    assert ck.best_k_models == {str(tmp_path / "s1.pt"): 1.0, str(tmp_path / "s1-v1.pt"): 1.2,
                                str(tmp_path / "s1-v2.pt"): 0.9}
    for name, epoch in [("s1.pt", 1), ("s1-v1.pt", 2), ("s1-v2.pt", 3)]:
        assert same_weights(tmp_path / name, snapshots.epochs[epoch])
    assert ck.best_model_path == str(tmp_path / "s1-v1.pt")


def test_epochs_without_validation_are_not_ranked(tmp_path):
    ck = ModelCheckpoint(str(tmp_path / "best.pt"), "val_score", "max", save_top_k=2)
    # validation_freq=2: epochs 2 and 4 validate; 1 and 3 carry NaN and are skipped
    epoch_scored_fit([0.9, 0.5, 0.9, 0.6], ck, validation_freq=2)
    assert sorted(os.listdir(tmp_path)) == [ranked_name(2, 0.5), ranked_name(4, 0.6)]


def test_every_n_steps_counts_optimizer_steps_across_epochs(tmp_path):
    # 4 batches per epoch, 2 accumulated per optimizer step: 2 steps per epoch, 6 in all
    ck = ModelCheckpoint(str(tmp_path / "ck" / "best.pt"), "val_score", "max", every_n_steps=2,
                         save_top_k=0)
    snapshots = epoch_scored_fit([0.5, 0.9, 0.7], ck, gradient_accumulation_steps=2)
    assert len(snapshots.steps) == 6
    assert sorted(os.listdir(tmp_path / "ck")) == ["best-step=000002.pt", "best-step=000004.pt",
                                                   "best-step=000006.pt"]
    for step in (2, 4, 6):
        assert same_weights(tmp_path / "ck" / f"best-step={step:06d}.pt",
                            snapshots.steps[step - 1])
    assert ck.optimizer_steps == 6 and ck.best_k_models == {}
    # with format fields in filepath the step files sit beside it, named by the step alone
    ck = ModelCheckpoint(str(tmp_path / "p" / "e{epoch}.pt"), "val_score", "max",
                         every_n_steps=3, save_top_k=1)
    epoch_scored_fit([0.5, 0.9], ck)
    assert sorted(os.listdir(tmp_path / "p")) == ["e1.pt", "e2.pt", "step=000003.pt",
                                                  "step=000006.pt"]


def test_every_n_steps_direct_skipped_steps_and_other_processes():
    class Accelerator:
        sync_gradients = True

    class Model:
        unwrapped_net = nn.Linear(1, 1)
        accelerator = Accelerator()
        is_main_process = False

    ck = ModelCheckpoint("never/best.pt", every_n_steps=1)
    ck.set_model(Model())
    ck.on_fit_begin()
    ck.on_train_batch_end(0, {"train_loss": torch.tensor(1.0)})
    ck.on_train_batch_end(1, {})  # skip_nonfinite skipped it: no optimizer step
    Accelerator.sync_gradients = False
    ck.on_train_batch_end(2, {"train_loss": torch.tensor(1.0)})
    assert ck.optimizer_steps == 1 and not os.path.exists("never")


def test_resume_keeps_the_top_k_bookkeeping(tmp_path):
    # epoch 2's file is in the top 2 when the first fit stops after epoch 3; the resumed
    # fit must know it to delete it when epochs 5 and 6 beat it
    table = [0.5, 0.9, 0.3, 0.7, 0.95, 0.92]

    def run(folder, splits):
        for i, epochs in enumerate(splits):
            ck = ModelCheckpoint(str(folder / "best.pt"), "val_score", "max", save_top_k=2,
                                 every_n_steps=5)
            epoch_scored_fit(table, ck, epochs=epochs, resume=i > 0,
                             state_path=str(tmp_path / f"{folder.name}.state.pt"))
        return ck

    straight = run(tmp_path / "straight", [6])
    resumed = run(tmp_path / "resumed", [3, 6])
    names = sorted(os.listdir(tmp_path / "straight"))
    assert names == [ranked_name(5, 0.95), ranked_name(6, 0.92), "best-step=000005.pt",
                     "best-step=000010.pt", "best-step=000015.pt", "best-step=000020.pt"]
    assert sorted(os.listdir(tmp_path / "resumed")) == names
    for name in names:  # the resumed run trained the same weights
        assert same_weights(tmp_path / "resumed" / name,
                            load_state_dict_file(str(tmp_path / "straight" / name)))
    assert os.path.basename(resumed.best_model_path) == ranked_name(5, 0.95)
    assert resumed.best_score == straight.best_score == 0.95
    assert resumed.optimizer_steps == straight.optimizer_steps == 24


def test_top_k_writes_the_new_file_before_removing_the_old(tmp_path, monkeypatch):
    from kerastorch.callbacks import checkpoint

    class Model:
        unwrapped_net = nn.Linear(1, 1)
        is_main_process = True

    events = []
    real_save, real_remove = checkpoint.atomic_save, os.remove

    def save(obj, path):
        if len(events) == 4:
            raise OSError("disk full")  # a crash mid-write: nothing is removed
        real_save(obj, path)
        events.append(("save", os.path.basename(path)))

    def remove(path):
        events.append(("remove", os.path.basename(path)))
        real_remove(path)

    monkeypatch.setattr(checkpoint, "atomic_save", save)
    monkeypatch.setattr(checkpoint.os, "remove", remove)
    ck = ModelCheckpoint(str(tmp_path / "m.pt"), save_top_k=2)
    ck.set_model(Model())
    ck.on_fit_begin()
    for epoch, loss in enumerate([0.5, 0.4, 0.3], start=1):
        ck.on_epoch_end(epoch, {"val_loss": loss})
    assert events == [("save", "m-epoch=01-val_loss=0.5000.pt"),
                      ("save", "m-epoch=02-val_loss=0.4000.pt"),
                      ("save", "m-epoch=03-val_loss=0.3000.pt"),
                      ("remove", "m-epoch=01-val_loss=0.5000.pt")]
    kept = dict(ck.best_k_models)
    with pytest.raises(OSError, match="disk full"):
        ck.on_epoch_end(4, {"val_loss": 0.2})
    # the failed write changed nothing: the k files and their bookkeeping stand
    assert ck.best_k_models == kept and len(events) == 4
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in kept)
    assert all(load_state_dict_file(p) for p in kept)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"save_top_k": "3"}, TypeError, "save_top_k must be an int .*received str '3'"),
    ({"save_top_k": True}, TypeError, "save_top_k must be an int .*received bool True"),
    ({"save_top_k": -2}, ValueError, "save_top_k must be -1 .*received -2"),
    ({"save_top_k": 2, "filepath": None}, ValueError,
     "save_top_k=2 keeps files named after filepath, which is None"),
    ({"save_top_k": 2, "save_best_only": False}, ValueError,
     "save_best_only=False .* save_top_k=1 only; received save_top_k=2"),
    ({"every_n_steps": 2.0}, TypeError,
     "every_n_steps must be None or an int >= 1; received float 2.0"),
    ({"every_n_steps": 0}, ValueError, "every_n_steps must be None or an int >= 1; received 0"),
    ({"every_n_steps": 5, "filepath": None}, ValueError,
     "every_n_steps names its files after filepath, which is None"),
])
def test_top_k_and_step_misuse(kwargs, error, message):
    with pytest.raises(error, match=message):
        ModelCheckpoint(**{"filepath": "ck/best.pt", **kwargs})


def test_save_top_k_0_needs_no_filepath():
    assert ModelCheckpoint(None, save_top_k=0).save_top_k == 0
    assert ModelCheckpoint(None).best_model_path is None


def test_the_per_batch_hook_runs_only_with_every_n_steps():
    """fit's own checkpoint must not put a call on every batch (it has nothing to do there)."""
    from kerastorch.callbacks import CallbackList

    assert not CallbackList([ModelCheckpoint(None)]).wants("on_train_batch_end")
    assert not CallbackList([ModelCheckpoint("best.pt", save_top_k=3)]).wants(
        "on_train_batch_end")
    assert CallbackList([ModelCheckpoint("best.pt", every_n_steps=5)]).wants(
        "on_train_batch_end")
