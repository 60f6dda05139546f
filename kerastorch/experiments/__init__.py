"""Loss experiments: train the same net under several losses and seeds, and state the uncertainty.

``compare_losses`` runs every (loss, seed) pair from the seed's shared start (in
this process or in worker processes, resumable through a fixed ``log_dir``) and
returns a ``LossComparison``: the histories, per-class reports, one row per run,
t-intervals over seeds with paired tests against a baseline, and pictures.

Modules: ``comparison`` (``compare_losses``), ``run_record`` (one run as a record),
``worker_pool`` (runs in processes), ``experiment_folder`` (``log_dir``),
``loss_comparison`` (the result), ``seed_statistics`` (scipy), ``pictures``.
"""

from ..evaluation import per_class_report
from .comparison import compare_losses
from .loss_comparison import LossComparison
from .seed_statistics import format_summary, summary_record

__all__ = ["compare_losses", "LossComparison", "format_summary", "per_class_report",
           "summary_record"]
