"""Callbacks: objects that react to the training loop (Keras-style hooks)."""

from .base import Callback, CallbackList
from .checkpoint import ModelCheckpoint
from .early_stopping import EarlyStopping
from .monitor import MonitorCallback
from .progress import ProgressBar

__all__ = [
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgressBar",
]
