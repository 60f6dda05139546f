"""log_dir: a killed experiment called again runs only the missing runs and ends where an
uninterrupted one ends; another definition is refused; the result files are written."""

import json
import os
import warnings

import matplotlib.image as mpimg
import pandas as pd
import pytest
import torch
from experiment_helpers import CountFits, InterruptRun, mlp, small_digits, two_losses
from torch import nn

from kerastorch.experiments import compare_losses
from kerastorch.experiments.experiment_folder import ExperimentFolder, describe

SETUP = dict(epochs=2, seeds=3)


def test_an_interrupted_experiment_resumes_to_the_uninterrupted_result(tmp_path):
    train, val = small_digits()
    losses = two_losses()
    # runs go seed by seed: (ce, 0), (smooth, 0), (ce, 1), (smooth, 1) <- Ctrl-C in its 2nd batch
    with pytest.warns(UserWarning, match="training interrupted"):
        with pytest.raises(KeyboardInterrupt, match=r"\(loss 'smooth', seed 1\); 3 of 6 runs "
                                                    r"finished; the finished runs are kept"):
            compare_losses(mlp, losses, train, val, log_dir=tmp_path, **SETUP,
                           callbacks=[InterruptRun(losses["smooth"], after=2)])
    assert len(os.listdir(tmp_path / "runs")) == 3
    assert not (tmp_path / "summary.csv").exists()
    counter = CountFits()  # callbacks are not part of the definition
    resumed = compare_losses(mlp, losses, train, val, log_dir=tmp_path, **SETUP,
                             callbacks=[counter])
    assert counter.fits == 3  # only the missing runs trained
    whole = compare_losses(mlp, losses, train, val, **SETUP)
    for name in ("history", "report", "runs"):
        pd.testing.assert_frame_equal(getattr(resumed, name), getattr(whole, name))
    pd.testing.assert_frame_equal(resumed.summary(), whole.summary())
    again = CountFits()
    compare_losses(mlp, losses, train, val, log_dir=tmp_path, **SETUP, callbacks=[again])
    assert again.fits == 0  # every run finished: nothing trains


def test_a_changed_definition_is_refused_and_names_what_differs(tmp_path):
    train, val = small_digits()
    compare_losses(mlp, {"ce": nn.CrossEntropyLoss()}, train, val, epochs=1, log_dir=tmp_path)
    changes = [
        (dict(losses={"ce": nn.CrossEntropyLoss(label_smoothing=0.1)}),
         r"losses\['ce'\]\['settings'\]\['label_smoothing'\]: '0.0' -> '0.1'"),
        (dict(losses={"ce": nn.CrossEntropyLoss(), "ls": nn.CrossEntropyLoss()}),
         r"losses\['ls'\]: '\(absent\)'"),
        (dict(seeds=2), r"seeds: \[0\] -> \[0, 1\]"),
        (dict(epochs=2), "epochs: 1 -> 2"),
        (dict(patience=1), r"fit\['patience'\]: '\(absent\)' -> '1'"),
        (dict(optimizer_fn=lambda p: torch.optim.Adam(p, lr=0.01)), "optimizer: "),
        (dict(train_data=(train[0] + 0.01, train[1])), r"train_data\['sha256'\]"),
        (dict(make_net=lambda: nn.Sequential(nn.Linear(64, 10))), "net: "),
    ]
    for change, match in changes:
        arguments = dict(make_net=mlp, losses={"ce": nn.CrossEntropyLoss()}, train_data=train,
                         val_data=val, epochs=1, log_dir=tmp_path)
        arguments.update(change)
        with pytest.raises(ValueError, match="holds a different experiment") as caught:
            compare_losses(arguments.pop("make_net"), arguments.pop("losses"),
                           arguments.pop("train_data"), arguments.pop("val_data"), **arguments)
        assert caught.match(match)
    assert len(os.listdir(tmp_path / "runs")) == 1  # nothing else was written
    # what does not define the runs may change
    compare_losses(mlp, {"ce": nn.CrossEntropyLoss()}, train, val, epochs=1, log_dir=tmp_path,
                   quiet=False, callbacks=[CountFits()])


def test_the_result_files(tmp_path):
    train, val = small_digits()
    result = compare_losses(mlp, two_losses(), train, val, log_dir=tmp_path, **SETUP,
                            baseline="smooth")
    assert sorted(os.listdir(tmp_path)) == [
        "curves.png", "experiment.json", "final.png", "history.csv", "report.csv", "runs",
        "runs.csv", "summary.csv", "summary.md"]
    for name in ("history", "report", "runs"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / f"{name}.csv"),
                                      getattr(result, name), check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "summary.csv"), result.summary(),
                                  check_exact=False, rtol=1e-12)
    for picture in ("curves.png", "final.png"):
        assert mpimg.imread(tmp_path / picture).shape[0] > 100
    definition = json.loads((tmp_path / "experiment.json").read_text())
    assert definition["seeds"] == [0, 1, 2] and definition["train_data"]["size"] == 300
    assert set(definition["losses"]) == {"ce", "smooth"}
    text = (tmp_path / "summary.md").read_text()
    assert "baseline `smooth`" in text and "| metric | loss | n | mean |" in text
    table = result.summary()
    ce = table[(table["metric"] == "val_loss") & (table["loss"] == "ce")].iloc[0]
    assert (f"- ce: {ce['mean']:.4g} [{ce['ci_low']:.4g}, {ce['ci_high']:.4g}] vs baseline: "
            f"{ce['diff_mean']:+.4g} [{ce['diff_ci_low']:+.4g}, {ce['diff_ci_high']:+.4g}], "
            f"p={ce['p_value']:.4g}") in text
    assert "- smooth: " in text and "(baseline)" in text


def test_fewer_than_three_seeds_are_noted_in_summary_md_not_warned(tmp_path):
    train, val = small_digits()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_losses(mlp, two_losses(), train, val, epochs=1, seeds=2, log_dir=tmp_path)
    assert "> seed statistics from 2 seed(s)" in (tmp_path / "summary.md").read_text()


def test_run_files_are_checked_and_named_safely(tmp_path):
    folder = ExperimentFolder(tmp_path)
    record = {"loss": "a/b c", "seed": 2, "best_epoch": 1, "history": {}, "report": {}}
    folder.save(record)
    path = folder.run_path("a/b c", 2)
    assert os.path.dirname(path) == str(tmp_path / "runs") and "/" not in os.path.basename(path)
    assert folder.load("a/b c", 2) == record and folder.load("a/b c", 3) is None
    os.replace(path, folder.run_path("a/b c", 3))
    with pytest.raises(ValueError, match=r"holds the run \('a/b c', 2\), expected"):
        folder.load("a/b c", 3)
    assert os.listdir(tmp_path / "runs") == [os.path.basename(folder.run_path("a/b c", 3))]


def test_describe_tells_loss_settings_and_tensors_apart():
    weighted = nn.CrossEntropyLoss(weight=torch.ones(3))
    assert describe(weighted) == describe(nn.CrossEntropyLoss(weight=torch.ones(3)))
    assert describe(weighted) != describe(nn.CrossEntropyLoss(weight=torch.arange(3.0)))
    assert "0x" not in json.dumps(describe(lambda y, t: y))
