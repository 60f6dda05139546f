"""Callbacks: objects that react to the training loop (Keras-style hooks)."""

from .base import Callback, CallbackList
from .checkpoint import ModelCheckpoint
from .early_stopping import EarlyStopping
from .ema import EMA, AveragedWeightsCallback
from .history import History
from .lambda_callback import LambdaCallback
from .monitor import MonitorCallback
from .progress import ProgressBar
from .csv_logger import CSVLogger
from .live_plot import LivePlot
from .lr_monitor import LearningRateMonitor
from .mlflow_logger import MLflowLogger
from .reduce_lr import ReduceLROnPlateau
from .run_directory import RunDirectory, new_run_dir
from .swa import SWA
from .tensorboard import TensorBoard
from .terminate_on_nan import TerminateOnNaN
from .wandb_logger import WandbLogger

__all__ = [
    "AveragedWeightsCallback",
    "Callback",
    "CallbackList",
    "EMA",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "MLflowLogger",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgressBar",
    "CSVLogger",
    "LivePlot",
    "LearningRateMonitor",
    "ReduceLROnPlateau",
    "RunDirectory",
    "SWA",
    "TensorBoard",
    "TerminateOnNaN",
    "WandbLogger",
    "new_run_dir",
]
