"""Statistics over seeds for a loss experiment: t-intervals and paired t-tests (scipy).

scipy is optional: it is imported when a summary is asked for, and its absence
is an ImportError that says ``pip install "kerastorch[stats]"``.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from ..userwarn import warn_user

__all__ = ["summarize", "summary_metrics", "import_scipy_stats", "format_summary",
           "summary_record", "SUMMARY_COLUMNS", "MIN_RELIABLE_SEEDS"]

SUMMARY_COLUMNS = ["metric", "loss", "n", "mean", "std", "ci_low", "ci_high", "diff_mean",
                   "diff_ci_low", "diff_ci_high", "p_value"]
MIN_RELIABLE_SEEDS = 3


def import_scipy_stats():
    """``scipy.stats``, or an ImportError that says how to install it."""
    try:
        from scipy import stats
    except ImportError as exc:
        raise ImportError('the seed statistics of compare_losses need scipy: '
                          'pip install "kerastorch[stats]"') from exc
    return stats


def summary_metrics(runs: pd.DataFrame, metrics: Optional[Sequence[str]] = None) -> List[str]:
    """The metric columns to summarize: ``metrics`` checked, or every ``val_*`` column.

    Raises:
        TypeError: ``metrics`` is not a list of column names.
        ValueError: a name that is not a numeric column of ``runs``.
    """
    numeric = [c for c in runs.columns if c not in ("loss", "seed")
               and pd.api.types.is_numeric_dtype(runs[c])]
    if metrics is None:
        metrics = [c for c in numeric if c.startswith("val_")]
        if not metrics:
            raise ValueError(f"the runs table has no val_* column to summarize; pass metrics=, "
                             f"from {numeric}")
        return metrics
    if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
        raise TypeError(f"metrics must be a list of column names; received {metrics!r}")
    unknown = [m for m in metrics if m not in numeric]
    if unknown or not metrics:
        raise ValueError(f"metrics must name columns of the runs table; received {list(metrics)}"
                         f", available: {numeric}")
    return list(metrics)


def summarize(runs: pd.DataFrame, baseline: str, metrics: Optional[Sequence[str]] = None,
              confidence: float = 0.95) -> pd.DataFrame:
    """One row per (metric, loss): the spread over seeds and the paired difference to ``baseline``.

    See :meth:`kerastorch.experiments.LossComparison.summary`, which calls this.

    Raises:
        ImportError: scipy is not installed.
        ValueError, TypeError: bad ``metrics``, ``confidence`` or ``baseline``.
    """
    stats = import_scipy_stats()
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number strictly between 0 and 1; received "
                         f"{confidence!r}")
    losses = list(dict.fromkeys(runs["loss"]))
    if baseline not in losses:
        raise ValueError(f"baseline must be one of the losses {losses}; received {baseline!r}")
    rows = []
    for metric in summary_metrics(runs, metrics):
        wide = runs.pivot(index="seed", columns="loss", values=metric)
        for loss in losses:
            row = {"metric": metric, "loss": loss,
                   **_spread(stats, wide[loss].dropna().to_numpy(float), confidence)}
            row.update(_paired(stats, wide[loss], wide[baseline], confidence)
                       if loss != baseline else dict.fromkeys(SUMMARY_COLUMNS[7:], math.nan))
            rows.append(row)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    fewest = int(table["n"].min())
    if fewest < MIN_RELIABLE_SEEDS:
        warn_user(f"seed statistics from {fewest} seed(s): the std, intervals and p-values are "
                  f"{'NaN' if fewest < 2 else 'computed but unreliable'} below "
                  f"{MIN_RELIABLE_SEEDS} seeds; pass seeds=5 or more to compare_losses")
    return table


def format_summary(table: pd.DataFrame) -> str:
    """A summary table as compact text: no ``std`` column, 4 decimals, p-values to 2 digits.

    Example:
        >>> table = pd.DataFrame([{"metric": "val_acc", "loss": "ce", "n": 5, "mean": 0.9,
        ...     "std": 0.01, "ci_low": 0.89, "ci_high": 0.91, "diff_mean": math.nan,
        ...     "diff_ci_low": math.nan, "diff_ci_high": math.nan, "p_value": math.nan}])
        >>> print(format_summary(table))
         metric loss  n   mean  ci_low  ci_high diff_mean diff_ci_low diff_ci_high p_value
        val_acc   ce  5 0.9000  0.8900   0.9100                                          
    """
    return table.drop(columns=["std"]).to_string(
        index=False, float_format=lambda v: f"{v:.4f}",
        formatters={"p_value": lambda v: f"{v:.2g}"}, na_rep="")


def summary_record(table: pd.DataFrame, metric: str, baseline: str) -> dict:
    """One metric of a summary table as plain JSON values.

    Returns:
        ``{"metric", "baseline", "losses": {loss: {mean, ci_low, ci_high, n}},
        "vs_baseline": {loss: {diff_mean, diff_ci_low, diff_ci_high, p_value}}}``,
        the baseline absent from ``vs_baseline``.

    Raises:
        ValueError: ``metric`` is not in the table.
    """
    rows = table[table["metric"] == metric].to_dict("records")
    if not rows:
        raise ValueError(f"metric must be one of {sorted(set(table['metric']))}; received "
                         f"{metric!r}")
    out: dict = {"metric": metric, "baseline": baseline, "losses": {}, "vs_baseline": {}}
    for row in rows:
        out["losses"][row["loss"]] = {**{k: float(row[k]) for k in ("mean", "ci_low",
                                                                       "ci_high")},
                                      "n": int(row["n"])}
        if row["loss"] != baseline:
            out["vs_baseline"][row["loss"]] = {k: float(row[k]) for k in (
                "diff_mean", "diff_ci_low", "diff_ci_high", "p_value")}
    return out


def _spread(stats, values: np.ndarray, confidence: float) -> dict:
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    low, high, std = _t_interval(stats, values, confidence)
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high}


def _paired(stats, values: pd.Series, base: pd.Series, confidence: float) -> dict:
    both = values.notna() & base.notna()
    x, y = values[both].to_numpy(float), base[both].to_numpy(float)
    diff = x - y
    low, high, _ = _t_interval(stats, diff, confidence)
    p_value = float(stats.ttest_rel(x, y).pvalue) if len(diff) >= 2 else math.nan
    return {"diff_mean": float(diff.mean()) if len(diff) else math.nan, "diff_ci_low": low,
            "diff_ci_high": high, "p_value": p_value}


def _t_interval(stats, values: np.ndarray, confidence: float):
    """(low, high, std): mean +- t_{(1+c)/2, n-1} * s / sqrt(n), s with ddof=1; NaN for n < 2."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    mean = float(values.mean())
    return mean - half, mean + half, std
