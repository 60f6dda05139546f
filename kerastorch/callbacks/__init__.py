"""Callbacks: objects that react to the training loop (Keras-style hooks)."""

from .base import Callback, CallbackList
from .checkpoint import ModelCheckpoint
from .early_stopping import EarlyStopping
from .history import History
from .monitor import MonitorCallback
from .progress import ProgressBar
from .csv_logger import CSVLogger
from .live_plot import LivePlot
from .lr_monitor import LearningRateMonitor
from .run_directory import RunDirectory, new_run_dir
from .tensorboard import TensorBoard
from .terminate_on_nan import TerminateOnNaN
from .wandb_logger import WandbLogger

__all__ = [
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgressBar",
    "CSVLogger",
    "LivePlot",
    "LearningRateMonitor",
    "RunDirectory",
    "TensorBoard",
    "TerminateOnNaN",
    "WandbLogger",
    "new_run_dir",
]
