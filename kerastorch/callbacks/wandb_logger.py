"""Log every epoch's row to Weights & Biases (offline by default)."""

from __future__ import annotations

import numbers
import os
from typing import Optional

from ..provenance import describe_model
from .base import Callback

__all__ = ["WandbLogger"]


class WandbLogger(Callback):
    """Send each epoch's numbers to a W&B run, one run per ``fit``.

    The run starts in ``on_fit_begin`` (``wandb.init``), receives the epoch row
    with ``step=epoch`` (once per epoch, never per step, so no host syncs), and
    is finished in ``on_fit_end``, also after an error. The default ``mode`` is
    ``"offline"``: the run is stored under ``dir`` and nothing is sent, and no
    login is asked for; ``wandb sync`` uploads it later. Only the main process
    logs. Needs the ``wandb`` package, imported only when a fit starts.

    Args:
        project: the W&B project name; None lets wandb choose. Defaults to None.
        mode: ``"offline"``, ``"online"`` or ``"disabled"``. Defaults to "offline".
        dir: directory for wandb's files; None is wandb's default (``./wandb``).
            Defaults to None.
        config: hyperparameters to attach to the run; None attaches a description
            of the optimizer, the scheduler and the net. Defaults to None.
        **init_kwargs: passed on to ``wandb.init`` (``name``, ``tags``, ...).

    Attributes:
        run: the current ``wandb`` run while a fit runs, else None.
    """

    def __init__(self, project: Optional[str] = None, *, mode: str = "offline",
                 dir: Optional[str] = None, config: Optional[dict] = None, **init_kwargs):
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"mode must be one of 'offline', 'online', 'disabled'; received "
                             f"{mode!r}")
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config must be a dict or None; received {type(config).__name__}")
        self.project = project
        self.mode = mode
        self.dir = None if dir is None else os.fspath(dir)
        self.config = config
        self.init_kwargs = init_kwargs
        self.run = None

    def on_fit_begin(self, logs=None):
        if not self.is_writer():
            return
        try:
            import wandb
        except ImportError as exc:
            raise ImportError("WandbLogger needs the wandb package: pip install wandb") from exc
        config = self.config
        if config is None and self.model is not None:
            config = describe_model(self.model)
        kwargs = {"project": self.project, "mode": self.mode, "config": config,
                  **self.init_kwargs}
        if self.dir is not None:
            os.makedirs(self.dir, exist_ok=True)
            kwargs["dir"] = self.dir
        self.run = wandb.init(**kwargs)

    def on_epoch_end(self, epoch, logs=None):
        if self.run is None:
            return
        values = {k: float(v) for k, v in (logs or {}).items()
                  if k != "epoch" and isinstance(v, numbers.Real)}
        self.run.log(values, step=epoch)

    def on_fit_end(self, logs=None):
        if self.run is not None:
            run, self.run = self.run, None
            run.finish()
