"""fit(log_dir=...): the run directory, checked file by file."""

import glob
import json
import logging
import os
import sys

import matplotlib.image as mpimg
import pandas as pd
import pytest
import torch
import torchmetrics
from conftest import TinyNet, loader, make_classification
from test_tensorboard import assert_scalars_equal_history, read_scalars
from torch import nn

import kerastorch
import kerastorch.callbacks.run_directory as run_directory
from kerastorch import KerasModel
from kerastorch.callbacks import Callback, History, RunDirectory

# Inputs are one-hot class codes, so the weights set per epoch fix every prediction.
# val: 4 samples of class 0, 3 of class 1, 2 of class 2.
X = torch.eye(3)[[0, 0, 0, 0, 1, 1, 1, 2, 2]]
Y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2])
WEIGHTS = {  # epoch -> (weight, bias) of a Linear(3, 3)
    1: (torch.zeros(3, 3), torch.tensor([2.0, 0, 0])),  # everything is class 0: acc 4/9
    2: (torch.tensor([[5.0, 0, 0], [0, 5, 5], [0, 0, 0]]), torch.zeros(3)),  # 2 -> 1: acc 7/9
    3: (torch.zeros(3, 3), torch.tensor([0, 2.0, 0])),  # everything is class 1: acc 3/9
}


class SetWeights(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        weight, bias = WEIGHTS[epoch]
        with torch.no_grad():
            self.model.net.fc.weight.copy_(weight)
            self.model.net.fc.bias.copy_(bias)


def _classifier():
    net = TinyNet(d=3, classes=3)
    return KerasModel(net, nn.CrossEntropyLoss(),
                      metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                 num_classes=3)},
                      optimizer=torch.optim.SGD(net.parameters(), lr=0.0))  # weights stay put


def _fit_classifier(log_dir, **kwargs):
    model = _classifier()
    kwargs = {"ckpt_path": None, "quiet": True, "callbacks": [SetWeights()], **kwargs}
    df = model.fit((X, Y), (X, Y), epochs=3, batch_size=4, monitor="val_acc", mode="max",
                   patience=None, log_dir=log_dir, **kwargs)
    return model, df


def _file_handlers():
    """FileHandlers left on kerastorch's loggers (pytest adds capture handlers of its own)."""
    return [h for name in ("kerastorch", "kerastorch.run")
            for h in logging.getLogger(name).handlers if isinstance(h, logging.FileHandler)]


def _only_run(log_dir):
    (run,) = os.listdir(log_dir)
    return os.path.join(log_dir, run)


def test_run_directory_file_by_file(tmp_path):
    model, df = _fit_classifier(str(tmp_path / "runs"), ckpt_path=str(tmp_path / "ck.pt"))
    run = _only_run(tmp_path / "runs")
    assert len(os.path.basename(run)) == len("20240131-235959")
    files = sorted(os.listdir(run))
    (events,) = [f for f in files if f.startswith("events.out.tfevents.")]
    assert sorted(set(files) - {events}) == [
        "best.pt", "classification_report.csv", "confusion_matrix.png", "curves.png",
        "history.csv", "hparams.json", "log.log"]
    assert df["val_acc"].tolist() == pytest.approx([4 / 9, 7 / 9, 3 / 9])

    # history.csv equals the DataFrame; TensorBoard holds every column per epoch
    pd.testing.assert_frame_equal(pd.read_csv(os.path.join(run, "history.csv")), df,
                                  check_exact=True)
    assert_scalars_equal_history(read_scalars(os.path.join(run, events)), df)

    # the pictures decode
    for picture in ("curves.png", "confusion_matrix.png"):
        image = mpimg.imread(os.path.join(run, picture))
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200

    # best.pt holds epoch 2's weights, which fit restored into the net
    best = torch.load(os.path.join(run, "best.pt"), weights_only=True)
    assert torch.equal(best["fc.weight"], WEIGHTS[2][0])
    assert torch.equal(model.net.fc.weight, WEIGHTS[2][0])

    # the report comes from the best weights (epoch 3's would predict class 1 everywhere)
    report = pd.read_csv(os.path.join(run, "classification_report.csv"), index_col="class")
    assert list(report.columns) == ["precision", "recall", "f1-score", "support"]
    assert report.loc["0"].tolist() == [1.0, 1.0, 1.0, 4.0]
    assert report.loc["1"].tolist() == pytest.approx([3 / 5, 1.0, 0.75, 3.0])
    assert report.loc["2"].tolist() == [0.0, 0.0, 0.0, 2.0]
    assert report.loc["accuracy", "f1-score"] == pytest.approx(7 / 9)

    # hparams.json: fit arguments, optimizer settings, net, versions
    with open(os.path.join(run, "hparams.json")) as f:
        hparams = json.load(f)
    assert hparams["optimizer"]["class"] == "torch.optim.sgd.SGD"
    assert hparams["optimizer"]["param_groups"][0]["lr"] == 0.0
    assert hparams["optimizer"]["param_groups"][0]["num_params"] == 12
    assert hparams["fit"]["epochs"] == 3 and hparams["fit"]["batch_size"] == 4
    assert hparams["fit"]["log_dir"] == str(tmp_path / "runs")
    assert hparams["fit"]["val_data"] == {"type": "tuple", "shapes": [[9, 3], [9]]}
    assert hparams["fit"]["callbacks"] == ["SetWeights"]
    assert (hparams["monitor"], hparams["mode"]) == ("val_acc", "max")
    assert "Linear(in_features=3, out_features=3, bias=True)" in hparams["net"]
    assert hparams["num_parameters"] == 12 and hparams["lr_scheduler"] is None
    assert hparams["versions"]["torch"] == torch.__version__
    assert hparams["versions"]["kerastorch"] == kerastorch.__version__
    assert {"accelerate", "torchmetrics", "python"} <= set(hparams["versions"])

    # log.log: one line per epoch with the numbers the progress bar ends the epoch with
    with open(os.path.join(run, "log.log")) as f:
        lines = f.read().splitlines()
    epoch_lines = [line.split(" INFO ", 1)[1] for line in lines if " INFO Epoch " in line]
    assert epoch_lines == [
        f"Epoch {int(r.epoch)}/3: " + ", ".join(f"{k}={r[k]:.4g}" for k in df.columns[1:])
        for _, r in df.iterrows()]
    assert lines[-1].endswith("best val_acc=0.7778 at epoch 2")
    assert not _file_handlers()  # the file is closed


def test_default_ckpt_path_and_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fit_classifier("runs", ckpt_path="checkpoint")  # the default: best.pt in the run too
    run = _only_run("runs")
    assert os.path.isfile(os.path.join(run, "best.pt")) and os.path.isfile("checkpoint")
    model, _ = _fit_classifier("runs2", ckpt_path=None)  # None: no weights written anywhere
    assert not os.path.exists(os.path.join(_only_run("runs2"), "best.pt"))


def test_binary_logits_with_float_labels_and_probabilities(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(40, 2)
    y = (x[:, :1] > 0).float()  # (N, 1) float 0/1 labels, as in seed 003
    for loss, head, name in ((nn.BCEWithLogitsLoss(), nn.Identity(), "logits"),
                             (nn.BCELoss(), nn.Sigmoid(), "probs")):
        net = nn.Sequential(nn.Linear(2, 1), head)
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor([[4.0, 0.0]]))
            net[0].bias.fill_(-1.0)  # x0 in (0, 0.25] is predicted negative
        model = KerasModel(net, loss, optimizer=torch.optim.SGD(net.parameters(), lr=0.0))
        model.fit((x, y), (x, y), epochs=1, ckpt_path=None, quiet=True, log_dir=tmp_path / name)
        report = pd.read_csv(os.path.join(_only_run(tmp_path / name),
                                          "classification_report.csv"), index_col="class")
        positives = int(y.sum())
        predicted = int((x[:, 0] > 0.25).sum())
        assert report.loc["1", "support"] == positives
        assert report.loc["1", "precision"] == 1.0
        assert report.loc["1", "recall"] == pytest.approx(predicted / positives)


def test_regression_skips_and_missing_sklearn_keeps_the_classification_files(tmp_path,
                                                                             monkeypatch):
    x = torch.randn(16, 3)
    model = KerasModel(nn.Linear(3, 1), nn.MSELoss())
    model.fit((x, x[:, :1]), (x, x[:, :1]), epochs=1, ckpt_path=None, quiet=True,
              log_dir=tmp_path / "reg")
    run = _only_run(tmp_path / "reg")
    assert "confusion_matrix.png" not in os.listdir(run)
    with open(os.path.join(run, "log.log")) as f:
        assert "not a classification task (binary outputs, but the labels are not all 0 or 1)" \
            in f.read()

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    _fit_classifier(str(tmp_path / "nosk"))  # the report is computed without scikit-learn
    run = _only_run(tmp_path / "nosk")
    assert {"confusion_matrix.png", "classification_report.csv", "history.csv", "curves.png",
            "hparams.json"} <= set(os.listdir(run))

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # no pictures without matplotlib
    _fit_classifier(str(tmp_path / "nompl"))
    run = _only_run(tmp_path / "nompl")
    assert not [f for f in os.listdir(run) if f.endswith(".png")]
    with open(os.path.join(run, "log.log")) as f:
        assert f.read().count("note: matplotlib is not installed") == 1


def test_two_runs_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(run_directory.time, "strftime", lambda fmt, *a: "20240131-235959")
    folders = [run_directory.new_run_dir(tmp_path) for _ in range(3)]
    assert [os.path.basename(f) for f in folders] == [
        "20240131-235959", "20240131-235959-1", "20240131-235959-2"]
    # one RunDirectory reused across two fits writes two complete runs; curves.png is
    # redrawn during the fit only when plot_interval has passed, and always at the end
    class CurvesSeen(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.seen.append(os.path.isfile(os.path.join(self.runs.path, "curves.png")))

    x = torch.randn(8, 3)
    for interval, fits, seen in ((0, 2, [True, True]), (3600, 1, [False, False])):
        runs = RunDirectory(tmp_path / f"every{interval}", plot_interval=interval)
        probe = CurvesSeen()
        probe.runs = runs
        for _ in range(fits):
            probe.seen = []
            KerasModel(nn.Linear(3, 1), nn.MSELoss()).fit(
                (x, x[:, :1]), (x, x[:, :1]), epochs=2, ckpt_path=None, quiet=True,
                callbacks=[runs, probe])
            assert probe.seen == seen
            assert len(pd.read_csv(os.path.join(runs.path, "history.csv"))) == 2
            assert os.path.isfile(os.path.join(runs.path, "curves.png"))
        assert sorted(os.listdir(tmp_path / f"every{interval}")) == [
            "20240131-235959", "20240131-235959-1"][:fits]


def test_quiet_with_log_dir_prints_nothing_and_no_log_dir_writes_nothing(tmp_path, capfd,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fit_classifier("runs", quiet=True)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert os.listdir(tmp_path) == ["runs"]
    os.rename("runs", os.path.join(os.pardir, tmp_path.name + "-runs"))
    x, y = make_classification(n=16)
    KerasModel(TinyNet(), nn.CrossEntropyLoss()).fit(loader(x, y), loader(x, y), epochs=2,
                                                     ckpt_path=None, quiet=True)
    assert os.listdir(tmp_path) == []


def test_terminal_shows_the_progress_bar_not_the_log_lines(tmp_path, capfd):
    _fit_classifier(str(tmp_path / "runs"), quiet=False)
    out, err = capfd.readouterr()
    assert out == ""
    assert err.count("Epoch 3/3") >= 1 and "INFO" not in err and "run directory" not in err


def test_an_interrupted_fit_keeps_its_rows_but_writes_no_confusion_matrix(tmp_path):
    class Interrupt(Callback):
        def on_train_batch_end(self, step, logs=None):
            if self.model.epochs and step == 1 and len(self.rows) == 1:
                raise KeyboardInterrupt

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append(epoch)

    stop = Interrupt()
    stop.rows = []
    with pytest.warns(UserWarning, match="training interrupted during epoch 2"):
        _, df = _fit_classifier(str(tmp_path / "runs"), callbacks=[SetWeights(), stop])
    run = _only_run(tmp_path / "runs")
    assert len(df) == 1 and len(pd.read_csv(os.path.join(run, "history.csv"))) == 1
    assert "confusion_matrix.png" not in os.listdir(run)
    assert "curves.png" in os.listdir(run)
    assert not _file_handlers()


def test_other_processes_write_nothing_and_misuse(tmp_path):
    class NotMain:
        is_main_process = False
        epochs = 1
        history_callback = History()

    runs = RunDirectory(tmp_path / "runs")
    runs.set_model(NotMain())
    runs.on_fit_begin({})
    runs.on_epoch_begin(1)
    runs.on_epoch_end(1, {"epoch": 1, "val_loss": 0.5})
    runs.on_fit_end({})
    assert runs.path is None and not os.path.exists(tmp_path / "runs")

    with pytest.raises(TypeError, match="log_dir must be a str or os.PathLike path; received int"):
        RunDirectory(3)
    with pytest.raises(TypeError, match="fit\\(\\) got an unexpected keyword argument 'logdir'; "
                                        "did you mean 'log_dir'"):
        _classifier().fit((X, Y), logdir="runs")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="log_dir .* cannot be created"):
        _fit_classifier(str(tmp_path / "file" / "runs"))
    assert not _file_handlers()


def test_a_resumed_fit_gets_a_complete_new_run_directory(tmp_path):
    def model():
        torch.manual_seed(1)
        return _classifier()

    kwargs = dict(batch_size=4, patience=None, quiet=True, ckpt_path=str(tmp_path / "ck.pt"),
                  log_dir=str(tmp_path / "runs"), callbacks=[SetWeights()])
    model().fit((X, Y), (X, Y), epochs=2, **kwargs)
    df = model().fit((X, Y), (X, Y), epochs=3, resume=True, **kwargs)
    assert df["epoch"].tolist() == [1, 2, 3]
    first, second = sorted(os.listdir(tmp_path / "runs"))
    run = os.path.join(tmp_path / "runs", second)
    pd.testing.assert_frame_equal(pd.read_csv(os.path.join(run, "history.csv")), df,
                                  check_exact=True)
    (events,) = glob.glob(os.path.join(run, "events.out.tfevents.*"))
    assert_scalars_equal_history(read_scalars(events), df)
    with open(os.path.join(run, "log.log")) as f:
        lines = [line.split(" INFO ", 1)[1] for line in f.read().splitlines()
                 if " INFO Epoch " in line]
    assert [line.split(":")[0] for line in lines] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert lines[0].endswith(" (restored)") and not lines[2].endswith(" (restored)")


DDP_SCRIPT = '''
import os, sys
import torch, torchmetrics
from torch import nn
from kerastorch import KerasModel

torch.manual_seed(0)
x, y = torch.randn(48, 4), torch.randint(0, 3, (48,))
net = nn.Linear(4, 3)
model = KerasModel(net, nn.CrossEntropyLoss(), metrics_dict={
    "acc": torchmetrics.Accuracy(task="multiclass", num_classes=3)})
df = model.fit((x, y), (x, y), epochs=2, batch_size=8, ckpt_path=os.path.join(sys.argv[1], "ck.pt"),
               quiet=True, log_dir=os.path.join(sys.argv[1], "runs"), cpu=True)
df.to_csv(os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.csv"), index=False)
model.accelerator.end_training()
'''


def test_under_two_processes_only_the_main_one_writes_a_run_directory(tmp_path):
    import subprocess

    script = tmp_path / "script.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = _only_run(tmp_path / "runs")
    df = pd.read_csv(tmp_path / "rank0.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "rank1.csv"), df)
    pd.testing.assert_frame_equal(pd.read_csv(os.path.join(run, "history.csv")), df)
    assert {"best.pt", "classification_report.csv", "confusion_matrix.png", "curves.png",
            "hparams.json", "log.log"} <= set(os.listdir(run))
    with open(os.path.join(run, "hparams.json")) as f:
        assert json.load(f)["accelerator"]["num_processes"] == 2
    # the report covers the whole validation set, once
    report = pd.read_csv(os.path.join(run, "classification_report.csv"), index_col="class")
    assert report.loc["macro avg", "support"] == 48
    with open(os.path.join(run, "log.log")) as f:
        assert sum(" INFO Epoch " in line for line in f) == 2


class Shapes(torch.utils.data.TensorDataset):
    """A torchvision-like dataset: X, Y above plus a ``classes`` list."""

    def __init__(self, classes=("circle", "square", "triangle")):
        super().__init__(X, Y)
        self.classes = list(classes)


class HFLike(torch.utils.data.Dataset):
    """Duck-types a HuggingFace dataset: ``(x, label)`` items, a ``ClassLabel``-like feature."""

    def __init__(self, names):
        self.features = {"x": object(), "label": type("ClassLabel", (), {"names": names})()}

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return X[i], Y[i]


def _spy_confusion_figures(monkeypatch):
    """The confusion figures RunDirectory draws, kept for their tick labels."""
    figures, draw = [], run_directory.confusion_figure

    def spy(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(run_directory, "confusion_figure", spy)
    return figures


def _report_and_ticks(run, figures):
    report = pd.read_csv(os.path.join(run, "classification_report.csv"), index_col="class")
    (fig,) = figures
    ax = fig.axes[0]
    ticks = ([t.get_text() for t in ax.get_xticklabels()],
             [t.get_text() for t in ax.get_yticklabels()])
    return report, ticks


SHAPES = ["circle", "square", "triangle"]
REPORT_ROWS = ["accuracy", "macro avg", "weighted avg"]


@pytest.mark.parametrize("wrap", [
    lambda ds: torch.utils.data.DataLoader(ds, batch_size=4),
    lambda ds: ds,
    lambda ds: torch.utils.data.Subset(ds, range(len(ds))),
])
def test_class_names_come_from_the_val_datas_classes(tmp_path, monkeypatch, wrap):
    figures = _spy_confusion_figures(monkeypatch)
    model = _classifier()
    model.fit((X, Y), wrap(Shapes()), epochs=3, batch_size=4, monitor="val_acc", mode="max",
              patience=None, ckpt_path=None, quiet=True, callbacks=[SetWeights()],
              log_dir=str(tmp_path / "runs"))
    report, ticks = _report_and_ticks(_only_run(tmp_path / "runs"), figures)
    assert report.index.tolist() == SHAPES + REPORT_ROWS
    # the numbers are those of the unnamed report (epoch 2's best weights), row for row
    assert report.loc["circle"].tolist() == [1.0, 1.0, 1.0, 4.0]
    assert report.loc["square"].tolist() == pytest.approx([3 / 5, 1.0, 0.75, 3.0])
    assert report.loc["triangle"].tolist() == [0.0, 0.0, 0.0, 2.0]
    assert ticks == (SHAPES, SHAPES)


def test_explicit_class_names_win_and_train_data_names_are_the_fallback(tmp_path, monkeypatch):
    figures = _spy_confusion_figures(monkeypatch)
    # val_data is an (X, y) pair without names: the train data's ClassLabel names are used
    model = _classifier()
    model.fit(HFLike(["c0", "c1", "c2"]), (X, Y), epochs=3, batch_size=4, monitor="val_acc",
              mode="max", patience=None, ckpt_path=None, quiet=True,
              callbacks=[SetWeights()], log_dir=str(tmp_path / "hf"))
    report, ticks = _report_and_ticks(_only_run(tmp_path / "hf"), figures)
    assert report.index.tolist()[:3] == ["c0", "c1", "c2"] and ticks[0] == ["c0", "c1", "c2"]

    figures.clear()
    runs = RunDirectory(tmp_path / "explicit", class_names=("A", "B", "C"),
                        arguments={"val_data": Shapes(), "batch_size": 4})
    _classifier().fit((X, Y), Shapes(), epochs=3, batch_size=4, monitor="val_acc", mode="max",
                      patience=None, ckpt_path=None, quiet=True,
                      callbacks=[SetWeights(), runs])
    report, ticks = _report_and_ticks(runs.path, figures)
    assert report.index.tolist() == ["A", "B", "C"] + REPORT_ROWS
    assert report.loc["A"].tolist() == [1.0, 1.0, 1.0, 4.0]
    assert ticks == (["A", "B", "C"], ["A", "B", "C"])


def test_no_names_keeps_class_indices_and_a_wrong_count_of_found_names_is_a_note(tmp_path,
                                                                                 monkeypatch):
    figures = _spy_confusion_figures(monkeypatch)
    _fit_classifier(str(tmp_path / "plain"))
    report, ticks = _report_and_ticks(_only_run(tmp_path / "plain"), figures)
    assert report.index.tolist() == ["0", "1", "2"] + REPORT_ROWS
    assert ticks == (["0", "1", "2"], ["0", "1", "2"])

    figures.clear()
    model = _classifier()
    model.fit((X, Y), Shapes(["odd", "even"]), epochs=3, batch_size=4, monitor="val_acc",
              mode="max", patience=None, ckpt_path=None, quiet=True, callbacks=[SetWeights()],
              log_dir=str(tmp_path / "two"))
    run = _only_run(tmp_path / "two")
    report, ticks = _report_and_ticks(run, figures)
    assert report.index.tolist() == ["0", "1", "2"] + REPORT_ROWS
    with open(os.path.join(run, "log.log")) as f:
        assert "note: val_data carries 2 class names but the net predicts 3 classes; the " \
               "report uses class indices" in f.read()


def test_bad_class_names(tmp_path):
    with pytest.raises(TypeError, match="class_names must be a list or tuple of str, one per "
                                        "class, or None; received str"):
        RunDirectory(tmp_path, class_names="abc")
    with pytest.raises(TypeError, match="class_names must hold str names; received int 0 at "
                                        "index 0"):
        RunDirectory(tmp_path, class_names=[0, 1, 2])
    with pytest.raises(ValueError, match="class_names must hold distinct names"):
        RunDirectory(tmp_path, class_names=["a", "a", "b"])

    # the count is known only once the net has predicted: checked at the end of the fit,
    # after history.csv and curves.png are complete
    runs = RunDirectory(tmp_path / "runs", class_names=["a", "b"],
                        arguments={"val_data": (X, Y)})
    with pytest.raises(ValueError, match=r"RunDirectory's class_names must hold one name per "
                                         r"class: expected 3 names \(the net predicts 3 classes "
                                         r"on val_data\), received 2: \['a', 'b'\]"):
        _classifier().fit((X, Y), (X, Y), epochs=3, batch_size=4, monitor="val_acc", mode="max",
                          patience=None, ckpt_path=None, quiet=True,
                          callbacks=[SetWeights(), runs])
    assert {"history.csv", "curves.png"} <= set(os.listdir(runs.path))
    assert "classification_report.csv" not in os.listdir(runs.path)
    assert len(pd.read_csv(os.path.join(runs.path, "history.csv"))) == 3
    assert not _file_handlers()


def test_curves_have_whole_epoch_ticks_and_name_the_lr_under_a_step_schedule(tmp_path,
                                                                             monkeypatch):
    figures, draw = [], run_directory.history_figure

    def spy(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(run_directory, "history_figure", spy)
    for interval in ("epoch", "step"):
        figures.clear()
        net = TinyNet(d=3, classes=3)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=optimizer,
                           lr_scheduler=torch.optim.lr_scheduler.LambdaLR(
                               optimizer, lambda step: 0.5 ** step),
                           lr_scheduler_interval=interval)
        df = model.fit((X, Y), (X, Y), epochs=3, batch_size=4, ckpt_path=None, quiet=True,
                       log_dir=str(tmp_path / interval))
        ax_lr = figures[-1].axes[-1]
        assert ax_lr.get_title() == {"epoch": "lr", "step": "lr at epoch start"}[interval]
        # 3 batches per epoch: the lr each epoch starts with halves once or three times
        per_epoch = 0.5 if interval == "epoch" else 0.125
        assert df["lr"].tolist() == pytest.approx([0.1, 0.1 * per_epoch, 0.1 * per_epoch ** 2])
        assert list(ax_lr.lines[0].get_ydata()) == df["lr"].tolist()
        for ax in figures[-1].axes:
            low, high = ax.get_xlim()
            assert [t for t in ax.get_xticks() if low <= t <= high] == [1, 2, 3]
