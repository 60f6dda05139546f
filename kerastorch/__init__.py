"""kerastorch: a Keras-style high-level trainer for PyTorch, built on Accelerate."""

from . import callbacks, metrics
from .callbacks import Callback, EarlyStopping, ModelCheckpoint, ProgressBar
from .history import History
from .kerasmodel import KerasModel
from .plots import plot_history
from .runners import EpochRunner, StepRunner
from .summary import summary

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "EarlyStopping",
    "EpochRunner",
    "History",
    "KerasModel",
    "ModelCheckpoint",
    "ProgressBar",
    "StepRunner",
    "callbacks",
    "metrics",
    "plot_history",
    "summary",
    "__version__",
]
