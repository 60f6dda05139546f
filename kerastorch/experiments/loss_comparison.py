"""``LossComparison``: the tables of a loss experiment, its seed statistics and its pictures."""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence

import pandas as pd

from .pictures import comparison_figures
from .seed_statistics import summarize, summary_metrics

__all__ = ["LossComparison"]


class LossComparison:
    """What :func:`~kerastorch.experiments.compare_losses` returns.

    It unpacks as ``history, report = compare_losses(...)``, as it did when it was a
    named pair.

    Attributes:
        history: one row per epoch of every run: ``loss``, ``seed``, then ``fit``'s
            history columns; rows ordered by loss (in the order given), then seed.
        report: per class of ``val_data`` at each run's restored weights: ``loss``,
            ``seed``, ``class``, ``precision``, ``recall``, ``f1``, ``support``.
        runs: one row per (loss, seed): ``loss``, ``seed``, ``best_epoch`` (the epoch
            whose weights ``fit`` restored, by its ``monitor``/``mode``),
            ``epochs_run``, then every history column but ``epoch`` at the best epoch.
        baseline: the loss the others are compared with in :meth:`summary`.

    Example:
        >>> runs = pd.DataFrame({"loss": ["ce"] * 3 + ["focal"] * 3, "seed": [0, 1, 2] * 2,
        ...                      "val_acc": [0.90, 0.92, 0.91, 0.93, 0.94, 0.92]})
        >>> result = LossComparison(pd.DataFrame(), pd.DataFrame(), runs, "ce")
        >>> table = result.summary()
        >>> print(table[["loss", "n", "mean", "diff_mean"]].round(3).to_string(index=False))
         loss  n  mean  diff_mean
           ce  3  0.91        NaN
        focal  3  0.93       0.02
        >>> bool(table.loc[1, "diff_ci_low"] < 0.02 < table.loc[1, "diff_ci_high"])
        True
    """

    def __init__(self, history: pd.DataFrame, report: pd.DataFrame, runs: pd.DataFrame,
                 baseline: str):
        self.history, self.report, self.runs, self.baseline = history, report, runs, baseline

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.history, self.report))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index):
        return (self.history, self.report)[index]

    def __repr__(self) -> str:
        losses, seeds = (self.losses, sorted(self.seeds)) if len(self.runs) else ([], [])
        return (f"LossComparison(losses={losses}, seeds={seeds}, baseline={self.baseline!r}, "
                f"runs={len(self.runs)})")

    @property
    def losses(self) -> List[str]:
        """The loss names, in the order given."""
        return list(dict.fromkeys(self.runs["loss"]))

    @property
    def seeds(self) -> List[int]:
        """The seeds, in the order run."""
        return list(dict.fromkeys(int(s) for s in self.runs["seed"]))

    def summary(self, metrics: Optional[Sequence[str]] = None,
                confidence: float = 0.95) -> pd.DataFrame:
        """Mean and spread of each metric over seeds, and the paired difference to the baseline.

        One row per (metric, loss), metrics in the order given, then losses: ``metric``,
        ``loss``, ``n`` (seeds with a value), ``mean``, ``std`` (ddof=1), ``ci_low``,
        ``ci_high`` (the t-interval mean +- t_{(1+c)/2, n-1} * std / sqrt(n)), and against
        :attr:`baseline`, seed by seed: ``diff_mean`` (this loss minus the baseline),
        ``diff_ci_low``, ``diff_ci_high`` (the same t-interval over the per-seed
        differences) and ``p_value`` (the paired t-test, ``scipy.stats.ttest_rel``,
        two-sided). The four difference columns are NaN on the baseline's own rows.
        The values are those of :attr:`runs`, at each run's best epoch.

        Fewer than 3 seeds: with 2 seeds everything is computed, with 1 the std,
        intervals and p-values are NaN (no spread can be estimated); either way a
        UserWarning says the numbers are unreliable below 3 seeds. Use 5 or more
        seeds to tell apart losses whose difference is about the seed-to-seed spread.

        Args:
            metrics: columns of :attr:`runs`; None takes every ``val_*`` column
                (``val_loss`` included). Defaults to None.
            confidence: the level of the intervals, in (0, 1). Defaults to 0.95.

        Returns:
            The summary DataFrame.

        Raises:
            ImportError: scipy is not installed (``pip install "kerastorch[stats]"``).
            TypeError, ValueError: unknown metrics or a confidence outside (0, 1).
        """
        return summarize(self.runs, self.baseline, metrics, confidence)

    def plot(self, metrics: Optional[Sequence[str]] = None) -> Dict[str, object]:
        """The pictures, as backend-free matplotlib Figures.

        * ``"curves"``: the mean learning curve of each loss over seeds, one panel for
          the loss and one per metric, train dashed and val solid, each in a band of
          mean +- one standard deviation over seeds; integer epoch ticks.
        * ``"final"``: per summary metric, each run's value at its best epoch: a box
          per loss and each seed's values joined by a line across losses (paired).

        Args:
            metrics: the metrics of the ``"final"`` picture, as for :meth:`summary`.
                Defaults to None.

        Returns:
            ``{"curves": Figure, "final": Figure}``; save one with
            ``fig.savefig("curves.png")``.
        """
        return comparison_figures(self.history, self.runs, summary_metrics(self.runs, metrics))
