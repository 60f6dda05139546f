"""summary(): every number checked against scipy.stats on a hand-made runs table."""

import math
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kerastorch.experiments import LossComparison

SEEDS = [0, 1, 2, 3, 4]
VALUES = {  # metric -> loss -> one value per seed
    "val_loss": {"ce": [0.52, 0.48, 0.55, 0.50, 0.47],
                 "focal": [0.50, 0.47, 0.51, 0.49, 0.46],
                 "sce": [0.56, 0.47, 0.60, 0.49, 0.52]},
    "val_acc": {"ce": [0.90, 0.91, 0.88, 0.90, 0.92],
                "focal": [0.91, 0.93, 0.90, 0.90, 0.93],
                "sce": [0.89, 0.92, 0.86, 0.91, 0.90]},
}


def runs_table(seeds=SEEDS):
    rows = []
    for loss in VALUES["val_loss"]:
        for i, seed in enumerate(seeds):
            rows.append({"loss": loss, "seed": seed, "best_epoch": 3, "epochs_run": 5,
                         "train_loss": 0.1 * i, "lr": 1e-3,
                         "val_loss": VALUES["val_loss"][loss][i],
                         "val_acc": VALUES["val_acc"][loss][i]})
    return pd.DataFrame(rows)


def comparison(runs, baseline="ce"):
    return LossComparison(pd.DataFrame(), pd.DataFrame(), runs, baseline)


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_every_number_matches_scipy(confidence):
    table = comparison(runs_table()).summary(confidence=confidence)
    assert list(table.columns) == ["metric", "loss", "n", "mean", "std", "ci_low", "ci_high",
                                   "diff_mean", "diff_ci_low", "diff_ci_high", "p_value"]
    assert table[["metric", "loss"]].values.tolist() == [
        [m, loss] for m in ("val_loss", "val_acc") for loss in ("ce", "focal", "sce")]
    t = stats.t.ppf((1 + confidence) / 2, len(SEEDS) - 1)
    for _, row in table.iterrows():
        x = np.array(VALUES[row["metric"]][row["loss"]])
        base = np.array(VALUES[row["metric"]]["ce"])
        n, mean, s = len(x), x.mean(), x.std(ddof=1)
        assert row["n"] == n
        assert row["mean"] == pytest.approx(mean, rel=1e-12)
        assert row["std"] == pytest.approx(s, rel=1e-12)
        assert row["ci_low"] == pytest.approx(mean - t * s / math.sqrt(n), rel=1e-12)
        assert row["ci_high"] == pytest.approx(mean + t * s / math.sqrt(n), rel=1e-12)
        low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(x))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-12)
        if row["loss"] == "ce":
            assert row[["diff_mean", "diff_ci_low", "diff_ci_high", "p_value"]].isna().all()
            continue
        d = x - base
        test = stats.ttest_rel(x, base)
        assert row["diff_mean"] == pytest.approx(d.mean(), rel=1e-12)
        half = t * d.std(ddof=1) / math.sqrt(n)
        assert row["diff_ci_low"] == pytest.approx(d.mean() - half, rel=1e-12)
        assert row["diff_ci_high"] == pytest.approx(d.mean() + half, rel=1e-12)
        interval = test.confidence_interval(confidence)
        assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(
            (interval.low, interval.high), rel=1e-12)
        assert row["p_value"] == pytest.approx(test.pvalue, rel=1e-12)


def test_the_numbers_a_reader_checks_by_eye():
    table = comparison(runs_table()).summary(["val_loss"]).set_index("loss")
    # focal is below ce on every seed: a clear paired difference, though the intervals overlap
    assert table.loc["focal", "diff_ci_high"] < 0 and table.loc["focal", "p_value"] < 0.05
    assert table.loc["focal", "ci_high"] > table.loc["ce", "ci_low"]
    assert table.loc["sce", "p_value"] > 0.05


def test_baseline_and_metrics_choose_the_rows():
    result = comparison(runs_table(), baseline="focal")
    table = result.summary(["val_acc"])
    assert table["metric"].unique().tolist() == ["val_acc"]
    assert table.set_index("loss")["p_value"].isna().tolist() == [False, True, False]
    # identical values on every seed (here train_loss): no difference, and no test
    same = result.summary(["train_loss"]).set_index("loss").loc["ce"]
    assert same["diff_mean"] == same["diff_ci_low"] == same["diff_ci_high"] == 0
    assert pd.isna(same["p_value"])
    with pytest.raises(ValueError, match=r"metrics must name columns.*available: \['best_epoch'"):
        result.summary(["val_f1"])
    with pytest.raises(TypeError, match="metrics must be a list of column names"):
        result.summary("val_loss")
    for bad in (0, 1, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="confidence must be a number strictly between"):
            result.summary(confidence=bad)


def test_two_seeds_compute_everything_and_warn():
    runs = runs_table()[lambda r: r["seed"] < 2]
    with pytest.warns(UserWarning, match=r"from 2 seed\(s\).*computed but unreliable below 3"):
        table = comparison(runs).summary(["val_acc"])
    row = table.set_index("loss").loc["focal"]
    x, base = np.array(VALUES["val_acc"]["focal"][:2]), np.array(VALUES["val_acc"]["ce"][:2])
    assert row["n"] == 2 and row["std"] == pytest.approx(x.std(ddof=1))
    assert row["p_value"] == pytest.approx(stats.ttest_rel(x, base).pvalue)
    low, high = stats.t.interval(0.95, 1, loc=x.mean(), scale=stats.sem(x))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


def test_one_seed_gives_means_and_nan_spread_with_a_warning():
    runs = runs_table()[lambda r: r["seed"] == 3]
    with pytest.warns(UserWarning, match=r"from 1 seed\(s\).*NaN below 3"):
        table = comparison(runs).summary()
    focal = table[(table["loss"] == "focal") & (table["metric"] == "val_loss")].iloc[0]
    assert focal["n"] == 1 and focal["mean"] == 0.49
    assert focal["diff_mean"] == pytest.approx(0.49 - 0.50)
    assert table[["std", "ci_low", "ci_high", "diff_ci_low", "diff_ci_high",
                  "p_value"]].isna().all().all()


def test_three_seeds_are_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        comparison(runs_table()[lambda r: r["seed"] < 3]).summary()


def test_without_scipy_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    with pytest.raises(ImportError, match=r'pip install "kerastorch\[stats\]"'):
        comparison(runs_table()).summary()


def test_summary_record_is_the_tables_numbers_as_plain_values():
    from kerastorch.experiments import format_summary, summary_record

    table = pd.DataFrame([
        {"metric": "val_acc", "loss": "ce", "n": 3, "mean": 0.9, "std": 0.01, "ci_low": 0.88,
         "ci_high": 0.92, "diff_mean": np.nan, "diff_ci_low": np.nan, "diff_ci_high": np.nan,
         "p_value": np.nan},
        {"metric": "val_acc", "loss": "focal", "n": 3, "mean": 0.93, "std": 0.02,
         "ci_low": 0.9, "ci_high": 0.96, "diff_mean": 0.03, "diff_ci_low": 0.01,
         "diff_ci_high": 0.05, "p_value": 0.012345}])
    record = summary_record(table, "val_acc", "ce")
    assert record["losses"] == {"ce": {"mean": 0.9, "ci_low": 0.88, "ci_high": 0.92, "n": 3},
                                "focal": {"mean": 0.93, "ci_low": 0.9, "ci_high": 0.96, "n": 3}}
    assert record["vs_baseline"] == {"focal": {"diff_mean": 0.03, "diff_ci_low": 0.01,
                                               "diff_ci_high": 0.05, "p_value": 0.012345}}
    with pytest.raises(ValueError, match="metric must be one of \\['val_acc'\\]"):
        summary_record(table, "val_f1", "ce")
    text = format_summary(table)
    assert "std" not in text and "0.012" in text and "0.9300" in text
