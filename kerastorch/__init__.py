"""kerastorch: a Keras-style high-level trainer for PyTorch, built on Accelerate."""

from typing import TYPE_CHECKING

from . import callbacks, losses, metrics, schedules
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LearningRateMonitor,
    LivePlot,
    ModelCheckpoint,
    ProgressBar,
    RunDirectory,
    TensorBoard,
    TerminateOnNaN,
    WandbLogger,
)
from .kerasmodel import KerasModel
from .plots import plot_confusion_matrix, plot_history, plot_predictions
from .runners import EpochRunner, StepRunner
from .seeding import seed_everything
from .summary import summary
from .version import __version__

if TYPE_CHECKING:
    from .experiments import compare_losses

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "EpochRunner",
    "History",
    "KerasModel",
    "LearningRateMonitor",
    "LivePlot",
    "ModelCheckpoint",
    "ProgressBar",
    "RunDirectory",
    "StepRunner",
    "TensorBoard",
    "TerminateOnNaN",
    "WandbLogger",
    "__version__",
    "callbacks",
    "compare_losses",
    "losses",
    "metrics",
    "plot_confusion_matrix",
    "plot_history",
    "plot_predictions",
    "schedules",
    "seed_everything",
    "summary",
]

_ON_FIRST_USE = ("compare_losses", "experiments")


def __getattr__(name: str):
    # the experiments package loads pandas and a process pool's machinery: only for its users
    if name in _ON_FIRST_USE:
        # this import also binds the submodule kerastorch.experiments, as any import does
        from .experiments import compare_losses

        globals()["compare_losses"] = compare_losses  # later lookups skip this hook
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_ON_FIRST_USE))
