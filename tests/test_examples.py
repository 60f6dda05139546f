"""Every example runs on tiny settings in a subprocess, and its outputs are checked."""

import concurrent.futures
import gzip
import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args, cwd=None, timeout=300):
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-2 if "--log-dir" in args else -1])
    return proc, result


def test_iris_classification(tmp_path):
    import matplotlib.image as mpimg

    proc, result = run_example("iris_classification.py", "--epochs", "40", "--quiet",
                               "--log-dir", str(tmp_path))
    assert result["val_acc"] >= 0.9 and result["micro_auc"] >= 0.95
    (run_dir,) = list(tmp_path.iterdir())
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == result["epochs_run"] <= 40
    assert list(history.columns) == ["epoch", "train_loss", "train_acc", "lr", "val_loss",
                                     "val_acc"]
    for picture in ("curves.png", "roc.png"):
        image = mpimg.imread(run_dir / picture)
        assert image.ndim == 3 and image.shape[0] > 100
    assert (run_dir / "best.pt").exists()
    assert "epoch" in proc.stdout and proc.stderr.count("Epoch ") == 0  # --quiet: no bars


# -- the other examples ------------------------------------------------------------------
#
# A process spends ~8 s importing torch, kerastorch and torch.optim's compiler hooks before
# a smoke run trains for a few seconds. So the single-process examples run in two child
# processes, one script after another, each as `python examples/<script> ...` would run
# it (its own sys.argv, __name__ == "__main__"); these and the torchrun job start together,
# two at a time (this machine has 2 cores), when the first test that needs one asks.

_SEQUENCE = r"""
import contextlib, io, json, runpy, sys, traceback
done = {}
for key, script, args in json.loads(sys.argv[1]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [script, *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    done[key] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(done))
"""


def run_examples_in_sequence(runs, timeout=300):
    """{key: (script, args)} -> {key: CompletedProcess}, all run in one child process."""
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "examples")}  # what sys.path[0] is for `python script`
    plan = [[key, str(ROOT / "examples" / script), list(args)]
            for key, (script, args) in runs.items()]
    proc = subprocess.run([sys.executable, "-c", _SEQUENCE, json.dumps(plan)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    return {key: subprocess.CompletedProcess(runs[key][0], *done[key]) for key in runs}


def load_example(name):
    """Import an example script as a module (for its helpers; main() is not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", ROOT / "examples" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_idx(path, array, compress=False):
    """Write a uint8 array in the IDX format MNIST ships in (optionally gzipped)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) \
        + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    Path(path).write_bytes(gzip.compress(data) if compress else data)


def digits_as_mnist(start, count):
    """scikit-learn digits upsampled to 28x28 uint8, so the MNIST code path has a real task."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x[start:start + count], dtype=torch.float32).reshape(-1, 1, 8, 8)
    x = torch.nn.functional.interpolate(x / 16.0, size=(28, 28), mode="bilinear")
    return (x[:, 0] * 255).round().clamp(0, 255).byte().numpy(), y[start:start + count]


def read_outputs(proc):
    """The printed JSON line and the run directory of a run made with --log-dir."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith(("pictures and histor", "run directory written to"))
    return json.loads(lines[-2]), Path(lines[-1].rsplit(" ", 1)[-1])


def assert_pictures(run_dir, *names):
    import matplotlib.image as mpimg

    for name in names:
        image = mpimg.imread(run_dir / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100, name


def assert_seed_summary(summary, metric, names, seeds=2):
    """The JSON's seed statistics: every loss over ``seeds`` seeds, every number finite."""
    assert summary["metric"] == metric and summary["baseline"] == names[0]
    stats = summary.get("losses", summary.get("variants"))
    assert list(stats) == list(names)
    for name, row in stats.items():
        assert row["n"] == seeds, name
        assert all(np.isfinite(row[k]) for k in ("mean", "ci_low", "ci_high")), name
        assert row["ci_low"] <= row["mean"] <= row["ci_high"], name
    assert list(summary["vs_baseline"]) == list(names[1:])
    for name, row in summary["vs_baseline"].items():
        assert all(np.isfinite(v) for v in row.values()), name
        assert row["diff_ci_low"] <= row["diff_mean"] <= row["diff_ci_high"], name
        assert 0 <= row["p_value"] <= 1, name
        assert row["diff_mean"] == pytest.approx(stats[name]["mean"] - stats[names[0]]["mean"],
                                                 abs=1e-9)


def assert_summary_printed(proc, names, seeds=(0, 1)):
    """The summary table is printed, one line per (metric, loss)."""
    assert f"over seeds {list(seeds)}" in proc.stdout
    assert " metric " in proc.stdout and "diff_mean" in proc.stdout and "p_value" in proc.stdout


def torchrun(*args, timeout=240):
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(ROOT / "examples" / "ddp_train.py"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """name -> the completed process of each example's smoke run (waits for it)."""

    def smoke(script, name):
        return script, ("--smoke", "--quiet", "--log-dir", str(tmp_path_factory.mktemp(name)))

    first = {"segmentation": smoke("segmentation_dice.py", "segmentation"),
             "custom_step": smoke("custom_step.py", "custom"),
             "mnist": smoke("mnist_custom_loss.py", "mnist")}
    second = {"focal": smoke("focal_regularization.py", "focal"),
              "noisy": smoke("noisy_labels_sce.py", "noisy")}
    ddp_dir = str(tmp_path_factory.mktemp("ddp"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        batches = [pool.submit(run_examples_in_sequence, first),
                   pool.submit(torchrun, "--smoke", "--quiet", "--log-dir", ddp_dir),
                   pool.submit(run_examples_in_sequence, second)]

        def result(name):
            if name == "ddp":
                return batches[1].result()
            return (batches[0] if name in first else batches[2]).result()[name]

        yield result


def test_mnist_custom_loss_trades_precision_of_9_for_recall(smoke_runs):
    proc = smoke_runs("mnist")
    result, run_dir = read_outputs(proc)
    assert (result["dataset"], result["train_size"], result["val_size"]) == ("digits", 1257, 540)
    assert result["seeds"] == [0, 1] and result["workers"] == 1
    ce, cost = result["ce"], result["cost"]
    assert ce["val_acc"] >= 0.75 and cost["val_acc"] >= 0.7
    # the costly class is found more often, seed by seed, at the price of more false 9s
    assert all(c > e for c, e in zip(cost["recall_9_per_seed"], ce["recall_9_per_seed"]))
    assert cost["precision_9"] < ce["precision_9"]
    assert_seed_summary(result["summary"], "val_recall9", ["ce", "cost"])
    assert result["summary"]["vs_baseline"]["cost"]["diff_mean"] > 0
    assert_seed_summary(result["precision_9_summary"], "val_precision9", ["ce", "cost"])
    assert_seed_summary(result["val_acc_summary"], "val_acc", ["ce", "cost"])
    assert_summary_printed(proc, ["ce", "cost"])
    history = pd.read_csv(run_dir / "history.csv")
    assert history.groupby(["loss", "seed"]).size().to_dict() == {
        ("ce", 0): ce["epochs_run"][0], ("ce", 1): ce["epochs_run"][1],
        ("cost", 0): cost["epochs_run"][0], ("cost", 1): cost["epochs_run"][1]}
    assert {"val_acc", "val_recall9", "train_recall9"} <= set(history.columns)
    report = pd.read_csv(run_dir / "report.csv").set_index(["loss", "seed", "class"])
    assert report.loc[("cost", 0, 9), "recall"] == pytest.approx(cost["recall_9_per_seed"][0])
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary.groupby("loss")["n"].min().to_dict() == {"ce": 2, "cost": 2}
    assert (run_dir / "summary.md").exists()
    assert_pictures(run_dir, "curves.png", "final.png", "predictions_ce.png",
                    "predictions_cost.png")


def test_mnist_custom_loss_reads_mnist_idx_files(tmp_path, capsys):
    # in this process: the subprocess runs cover the script as a program, and a second
    # process would spend ~10 s importing
    images, labels = digits_as_mnist(0, 300)  # the training files gzipped, the test files not
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, compress=True)
    images, labels = digits_as_mnist(300, 100)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    example = load_example("mnist_custom_loss.py")
    with pytest.warns(UserWarning, match="unreliable below 3 seeds"):  # --smoke: 2 seeds
        result = example.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--smoke",
                               "--quiet"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert (result["dataset"], result["train_size"], result["val_size"]) == ("mnist", 300, 100)
    assert result["ce"]["val_acc"] >= 0.5  # 0.73-0.84 over seeds 0-3, after 4 epochs of 10 steps
    assert result["seeds"] == [0, 1] and result["summary"]["losses"]["ce"]["n"] == 2


def test_idx_reader_round_trips_and_rejects_bad_files(tmp_path, monkeypatch):
    example = load_example("mnist_custom_loss.py")
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a", images)
    write_idx(tmp_path / "b.gz", images, compress=True)
    for name in ("a", "b.gz"):
        np.testing.assert_array_equal(example.read_idx(str(tmp_path / name)), images)
    (tmp_path / "short").write_bytes((tmp_path / "a").read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"announces shape \(7, 28, 28\) \(5488 bytes\) but "
                                         r"5483 bytes follow"):
        example.read_idx(str(tmp_path / "short"))
    (tmp_path / "text").write_bytes(b"P5\n28 28\n")
    with pytest.raises(ValueError, match="is not an IDX file"):
        example.read_idx(str(tmp_path / "text"))
    # torchvision's layout, root/MNIST/raw, is found too
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(3))
    assert example.find_idx(str(tmp_path), "t10k", "labels") == str(raw / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match="no MNIST train images file.*--download"):
        example.find_idx(str(tmp_path), "train", "images")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed
    with pytest.raises(SystemExit, match="--download needs torchvision, which is not installed"):
        example.download_mnist(str(tmp_path))


def test_focal_regularization_both_variants(smoke_runs):
    proc = smoke_runs("focal")
    result, run_dir = read_outputs(proc)
    assert (result["train_size"], result["val_size"]) == (980, 420)
    assert result["seeds"] == [0, 1]
    for variant in ("penalty", "weight-decay"):
        scores = result[variant]
        # 6 in 7 points are negative: always answering "negative" scores 0.857
        assert scores["val_auc"] >= 0.93 and scores["val_acc"] > 6 / 7
        assert min(scores["val_auc_per_seed"]) >= 0.93
        history = pd.read_csv(run_dir / f"history_{variant}.csv")  # the first seed's
        assert list(history.columns) == ["epoch", "train_loss", "train_auc", "lr", "val_loss",
                                         "val_auc"]
        # early stopping on val_auc with patience 3: the run ends 3 epochs after its best,
        # or at the 20-epoch limit; the weights evaluated are the best epoch's
        assert len(history) == scores["epochs_run"][0]
        for best, run in zip(scores["best_epoch"], scores["epochs_run"]):
            assert run in (20, best + 3)
        assert history["val_auc"].max() == pytest.approx(scores["val_auc_per_seed"][0], abs=1e-6)
    # the two ways of applying L2 score alike: no robust sign to the difference
    assert_seed_summary(result["summary"], "val_auc", ["penalty", "weight-decay"])
    assert abs(result["summary"]["vs_baseline"]["weight-decay"]["diff_mean"]) < 0.02
    assert_seed_summary(result["val_acc_summary"], "val_acc", ["penalty", "weight-decay"])
    assert_summary_printed(proc, ["penalty", "weight-decay"])
    runs = pd.read_csv(run_dir / "runs.csv")
    assert runs.groupby("loss").size().to_dict() == {"penalty": 2, "weight-decay": 2}
    assert_pictures(run_dir, "scatter.png", "curves_penalty.png", "curves_weight-decay.png")


def test_weight_decay_variant_takes_the_steps_of_the_l2_penalty():
    import argparse

    from kerastorch.losses import RegularizedLoss

    example = load_example("focal_regularization.py")
    args = argparse.Namespace(l1=0.0, l2=1e-2, lr=0.01)
    torch.manual_seed(0)
    nets = [example.Net(), example.Net()]
    nets[1].load_state_dict(nets[0].state_dict())
    penalty, decay = (example.make_model(v, net, args) for v, net in
                      zip(("penalty", "weight-decay"), nets))
    assert isinstance(penalty.loss_fn, RegularizedLoss) and penalty.loss_fn.l2 == 1e-2
    groups = decay.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [2e-2, 0.0]
    assert all(p.ndim == 2 for p in groups[0]["params"])  # weights only; biases decay-free
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64, 1)).float()
    for _ in range(3):
        for model in (penalty, decay):
            model.optimizer.zero_grad()
            model.loss_fn(model.net(x), y).backward()
            model.optimizer.step()
    for a, b in zip(*(net.parameters() for net in nets)):
        torch.testing.assert_close(a, b)


def test_noisy_labels_sce_beats_cross_entropy_on_clean_test_labels(smoke_runs):
    proc = smoke_runs("noisy")
    result, run_dir = read_outputs(proc)
    assert result["noise"] == pytest.approx(0.4, abs=1 / result["train_size"])
    assert result["seeds"] == [0, 1] and result["workers"] == 1
    ce, sce = result["ce"], result["sce"]
    # measured over seeds 0-4: CE 0.84-0.88, SCE 0.93-0.97, SCE ahead by 0.04-0.13; CE
    # reproduces 14-19% of the flipped labels, SCE 2-3%
    assert sce["clean_test_acc"] >= 0.9 and ce["clean_test_acc"] >= 0.75
    for s, c in zip(sce["clean_test_acc_per_seed"], ce["clean_test_acc_per_seed"]):
        assert s >= c + 0.02  # seed by seed
    assert ce["memorized"] >= 2 * sce["memorized"]
    assert_seed_summary(result["summary"], "val_acc", ["ce", "sce"])
    assert result["summary"]["vs_baseline"]["sce"]["diff_mean"] >= 0.02
    assert_seed_summary(result["memorized_summary"], "memorized", ["ce", "sce"])
    assert result["memorized_summary"]["vs_baseline"]["sce"]["diff_ci_high"] < 0
    assert_summary_printed(proc, ["ce", "sce"])
    history = pd.read_csv(run_dir / "history.csv")
    assert history.groupby("loss").size().to_dict() == {"ce": 30, "sce": 30}  # never stopped
    runs = pd.read_csv(run_dir / "runs.csv").set_index(["loss", "seed"])
    assert runs.loc[("sce", 1), "memorized"] == pytest.approx(
        history[(history["loss"] == "sce") & (history["seed"] == 1)]
        .set_index("epoch").loc[runs.loc[("sce", 1), "best_epoch"], "memorized"])
    assert_pictures(run_dir, "accuracy.png", "curves.png", "final.png")


def test_noisy_labels_flips_exactly_the_requested_share_to_other_classes():
    example = load_example("noisy_labels_sce.py")
    x_train, y_train, y_noisy, x_test, y_test = example.load_data(seed=3, noise=0.4)
    flipped = y_noisy != y_train
    assert flipped.sum() == round(0.4 * len(y_train))
    again = example.load_data(seed=3, noise=0.4)
    np.testing.assert_array_equal(again[2], y_noisy)  # seeded
    # symmetric: the wrong labels are spread over the other nine classes
    offsets = (y_noisy[flipped] - y_train[flipped]) % 10
    assert set(np.unique(offsets)) == set(range(1, 10))
    assert np.bincount(offsets, minlength=10)[1:].min() >= 0.5 * flipped.sum() / 9
    assert len(y_test) == 540 and len(x_test) == 540


def test_segmentation_dice_compares_four_losses(smoke_runs):
    proc = smoke_runs("segmentation")
    result, run_dir = read_outputs(proc)
    assert 0.1 < result["foreground"] < 0.3
    assert result["seeds"] == [0, 1] and result["workers"] == 1
    names = ["dice", "dice_bce", "jaccard", "focal"]
    for name in names:
        scores = result[name]
        assert min(scores["val_iou_per_seed"]) >= 0.65, name  # 0.78-0.84 over seeds 0-5
        # Dice = 2 IoU / (1 + IoU) for the same thresholded masks, run by run
        for iou, dice in zip(scores["val_iou_per_seed"], scores["dice_per_seed"]):
            assert dice == pytest.approx(2 * iou / (1 + iou), abs=1e-4)
    assert_seed_summary(result["summary"], "val_iou", names)
    assert_summary_printed(proc, names)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["loss"].unique().tolist() == names
    assert sorted(history["seed"].unique().tolist()) == [0, 1]
    assert {"train_iou", "val_iou"} <= set(history.columns)
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary.groupby("loss")["n"].min().to_dict() == dict.fromkeys(names, 2)
    assert_pictures(run_dir, "curves.png", "final.png", "predictions.png")


def test_synthetic_shapes_are_brighter_where_the_mask_is():
    example = load_example("segmentation_dice.py")
    images, masks = example.make_shapes(64, 24, np.random.default_rng(0))
    assert images.shape == masks.shape == (64, 1, 24, 24)
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert images[masks == 1].mean() == pytest.approx(1.0, abs=0.05)
    assert images[masks == 0].mean() == pytest.approx(0.0, abs=0.05)


def test_custom_step_gan_learns_the_ring_and_logs_its_columns(smoke_runs):
    proc = smoke_runs("custom_step")
    result, run_dir = read_outputs(proc)
    gan = result["gan"]
    assert gan["columns"] == ["epoch", "train_loss", "train_d_loss", "train_d_real",
                              "train_d_fake", "lr"]
    assert gan["generated_at_start"]["radius_mean"] < 0.5  # an untrained generator
    assert abs(gan["generated"]["radius_mean"] - 2.0) < 0.3
    assert gan["generated"]["sectors_covered"] >= 0.9  # the whole ring, not one arc
    two_input = result["two_input"]
    assert two_input["columns"] == ["epoch", "train_loss", "train_acc", "lr", "val_loss",
                                    "val_acc"]
    assert two_input["val_acc"] >= 0.3
    history = pd.read_csv(run_dir / "history_gan.csv")
    assert len(history) == gan["epochs_run"] == 25
    assert (history["train_d_real"].between(0, 1) & history["train_d_fake"].between(0, 1)).all()
    assert_pictures(run_dir, "gan_samples.png", "gan_curves.png", "two_input_curves.png")


def test_ddp_train_under_torchrun_two_processes_agree(smoke_runs):
    proc = smoke_runs("ddp")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result, run_dir = read_outputs(proc)
    assert result["num_processes"] == 2 and result["epochs_run"] == 3
    # only the main process prints: one table, one JSON line
    assert proc.stdout.count(" epoch  train_loss") == 1 and proc.stdout.count('"ranks"') == 1
    rank0, rank1 = result["ranks"]
    assert (rank0["rank"], rank1["rank"]) == (0, 1)
    assert rank0["last_row"] == rank1["last_row"]
    assert rank0["weights_sum"] == rank1["weights_sum"]
    history = pd.read_csv(run_dir / "history.csv")
    assert history.iloc[-1].to_dict() == pytest.approx(rank0["last_row"])
    assert result["val_acc"] == pytest.approx(history["val_acc"].max())  # best weights restored
    assert result["val_acc"] >= 0.7  # 0.85 on 2 processes, 0.89 on one, after 3 epochs
    assert {"best.pt", "hparams.json", "log.log"} <= {p.name for p in run_dir.iterdir()}
    assert_pictures(run_dir, "curves.png", "confusion_matrix.png")
