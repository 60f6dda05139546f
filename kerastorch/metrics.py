"""Metrics that torchkeras users import from ``torchkeras.metrics``, on torchmetrics; the
per-fit copies of ``metrics_dict``.

``AUCROC``, ``Accuracy`` and ``BatchMeanMetric`` live in :mod:`kerastorch.metric_classes`
and are imported from there on first use (PEP 562): they subclass torchmetrics, which takes
seconds to import and which a fit without torchmetrics metrics never needs.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from .checks import is_torchmetrics_metric

if TYPE_CHECKING:
    import torchmetrics

    from .metric_classes import AUCROC, Accuracy, BatchMeanMetric

__all__ = ["AUCROC", "Accuracy", "BatchMeanMetric", "disable_metric_sync", "fresh_metric"]

_ON_FIRST_USE = ("AUCROC", "Accuracy", "BatchMeanMetric")


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        from .metric_classes import AUCROC, Accuracy, BatchMeanMetric

        # later lookups skip this hook
        globals().update(AUCROC=AUCROC, Accuracy=Accuracy, BatchMeanMetric=BatchMeanMetric)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_ON_FIRST_USE))


def disable_metric_sync(metric: torchmetrics.Metric) -> None:
    """Stop torchmetrics from syncing across processes at ``compute``.

    Used for validation metrics, which are updated with already-gathered batches.
    """
    for module in metric.modules():
        if is_torchmetrics_metric(module):
            module.sync_on_compute = False
            module._to_sync = False


def fresh_metric(metric, device, stage: str) -> torchmetrics.Metric:
    """A reset copy per fit and stage, so nothing leaks between stages or fits."""
    if not is_torchmetrics_metric(metric):
        from .metric_classes import BatchMeanMetric

        metric = BatchMeanMetric(metric)
    metric = copy.deepcopy(metric).to(device)
    metric.reset()
    if stage == "val":
        disable_metric_sync(metric)
    return metric
