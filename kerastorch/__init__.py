"""kerastorch: a Keras-style high-level trainer for PyTorch, built on Accelerate."""

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
from .experiments import compare_losses
from .kerasmodel import KerasModel
from .plots import plot_confusion_matrix, plot_history, plot_predictions
from .runners import EpochRunner, StepRunner
from .seeding import seed_everything
from .summary import summary
from .version import __version__

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
