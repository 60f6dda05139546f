"""Log a fit to MLflow: its settings as params, every epoch's row as metrics, the best weights."""

from __future__ import annotations

import numbers
import os
import re
import time
from typing import Any, Optional, Union

from ..provenance import describe_fit_arguments, describe_model, versions
from ..version import __version__
from .base import Callback
from .checkpoint import ModelCheckpoint

__all__ = ["MLflowLogger"]

PARAM_LIMIT = 6000  # MLflow's longest param value; longer ones it truncates with a warning
ARTIFACT_FOLDER = "checkpoints"


class MLflowLogger(Callback):
    """Record each ``fit`` as an MLflow run: params, per-epoch metrics, the best checkpoint.

    The run starts when the first epoch begins (after a resumed fit has restored the
    run's id, so that a resumed fit continues the same run) and receives:

    * params: what ``hparams.json`` holds (see :class:`RunDirectory`), flattened with
      dots: ``fit.<argument>`` for each of ``fit``'s arguments (read from
      ``model.fit_arguments`` when the model has it; else ``fit.epochs`` alone), then
      the optimizer (``optimizer.class``, ``optimizer.param_groups.0.lr``, ...), the
      scheduler, ``loss_fn``, ``metrics.<name>``, ``net_class``, ``num_parameters``,
      ``trainable_parameters``, ``net``, ``accelerator.*`` and ``versions.*``. Values
      are strings of at most 6000 characters (MLflow's limit). A resumed run keeps
      the params it was started with (MLflow refuses to change a param; ``fit.resume``
      would).
    * metrics: every number of the epoch row (the history columns but ``epoch``) at
      ``step=epoch``, once per epoch (never per step, so no host syncs). NaN (an
      epoch without validation) is logged as NaN; MLflow's SQL stores keep an
      infinite value as the largest float.
    * the artifact ``checkpoints/<file>``: at the end of the fit, the best-weights
      file of the fit (``fit``'s ``ckpt_path`` and each :class:`ModelCheckpoint`'s
      ``best_model_path`` among ``fit``'s callbacks, found in ``model.fit_arguments``),
      or the file ``log_checkpoint`` names, when it exists.

    The run ends in ``on_fit_end`` with status ``FINISHED``, ``KILLED`` after an
    interrupt, ``FAILED`` after an error. Only the main process talks to MLflow.
    The run's id is part of :meth:`state_dict`: ``fit(..., resume=True)`` reopens
    that run and appends the remaining epochs (an epoch logged after the last saved
    state is logged again at the same step). A callback reused across fits makes
    one run per fit. Talks to MLflow through ``mlflow.tracking.MlflowClient``, so
    the active run and tracking URI of the ``mlflow`` module are left alone. Needs
    the ``mlflow`` package (``pip install kerastorch[mlflow]``), imported only when
    a fit starts.

    Args:
        tracking_uri: where runs are stored, e.g. ``"sqlite:///mlflow.db"`` or a
            server's ``"http://host:5000"``; None is MLflow's default
            (``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working
            directory with MLflow 3). Defaults to None.
        experiment: the experiment name, created when missing. Defaults to "kerastorch".
        run_name: the run's name; None lets MLflow make one up. Defaults to None.
        log_checkpoint: True logs the fit's best-weights file (see above), False none,
            a path that file. Defaults to True.
        artifact_location: where a new experiment stores its artifacts; None is
            MLflow's default (``./mlruns`` beside an SQL store). Defaults to None.

    Attributes:
        run_id: the MLflow run of the current (or last) fit; None on other processes.
        client: the ``MlflowClient`` while a fit runs, else None.

    Raises:
        TypeError: bad arguments.
        ImportError: at fit begin, when mlflow is not installed.
        ValueError: on resume, when the saved run is not in ``tracking_uri``.
    """

    def __init__(self, tracking_uri: Optional[str] = None, experiment: str = "kerastorch",
                 run_name: Optional[str] = None,
                 log_checkpoint: Union[bool, str, os.PathLike] = True, *,
                 artifact_location: Optional[str] = None):
        for name, value in (("tracking_uri", tracking_uri), ("run_name", run_name),
                            ("artifact_location", artifact_location)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a str or None; received "
                                f"{type(value).__name__}")
        if not isinstance(experiment, str) or not experiment:
            raise TypeError(f"experiment must be a non-empty str; received {experiment!r}")
        if not isinstance(log_checkpoint, (bool, str, os.PathLike)):
            raise TypeError(f"log_checkpoint must be a bool or a file path; received "
                            f"{type(log_checkpoint).__name__}")
        self.tracking_uri = None if tracking_uri is None else os.fspath(tracking_uri)
        self.experiment = experiment
        self.run_name = run_name
        self.log_checkpoint = (log_checkpoint if isinstance(log_checkpoint, bool)
                               else os.fspath(log_checkpoint))
        self.artifact_location = (None if artifact_location is None
                                  else os.fspath(artifact_location))
        self.run_id: Optional[str] = None
        self.client: Any = None
        self._entities: Any = None
        self._started = False

    def on_fit_begin(self, logs=None):
        self.run_id, self.client, self._started = None, None, False  # reset for reuse
        if not self.is_writer():
            return
        try:
            import mlflow.entities
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ImportError("MLflowLogger needs the mlflow package: pip install mlflow "
                              "(or kerastorch[mlflow])") from exc
        self._entities = mlflow.entities
        self.client = MlflowClient(self.tracking_uri)

    def state_dict(self) -> dict:
        return {} if self.run_id is None else {"run_id": self.run_id}

    def load_state_dict(self, state: dict) -> None:
        # before the first epoch, so the run starts as this saved one
        self.run_id = state.get("run_id")

    def on_epoch_begin(self, epoch, logs=None):
        self._start()

    def on_epoch_end(self, epoch, logs=None):
        if self.client is None:
            return
        metric = self._entities.Metric
        timestamp = _now_ms()
        metrics = [metric(_key(k), float(v), timestamp, int(epoch))
                   for k, v in (logs or {}).items()
                   if k != "epoch" and isinstance(v, numbers.Real) and not isinstance(v, bool)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_fit_end(self, logs=None):
        if self.client is None:
            return
        logs = logs or {}
        try:
            self._start()  # a fit that ends before its first epoch is recorded too
            for path in self._checkpoints():
                self.client.log_artifact(self.run_id, path, artifact_path=ARTIFACT_FOLDER)
        finally:
            status = ("FAILED" if logs.get("error") is not None
                      else "KILLED" if logs.get("interrupted") else "FINISHED")
            client, self.client = self.client, None
            if self._started:
                client.set_terminated(self.run_id, status=status)

    # -- pieces --------------------------------------------------------------------

    def _start(self) -> None:
        if self.client is None or self._started:
            return
        if self.run_id is not None:  # resumed: continue the saved run
            self._reopen()
        else:
            run = self.client.create_run(self._experiment_id(), run_name=self.run_name,
                                         tags={"kerastorch.version": __version__})
            self.run_id = run.info.run_id
            param = self._entities.Param
            self.client.log_batch(self.run_id, params=[
                param(key, value) for key, value in self._params().items()])
        self._started = True

    def _reopen(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(self.run_id)
        except MlflowException as exc:
            raise ValueError(f"MLflowLogger cannot continue the saved run {self.run_id!r}: it "
                             f"is not in tracking_uri {self.client.tracking_uri!r}; pass the "
                             "tracking_uri of the interrupted fit") from exc
        self.client.update_run(self.run_id, status="RUNNING")

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(self.experiment,
                                             artifact_location=self.artifact_location)

    def _params(self) -> dict:
        """``hparams.json``'s content (fit's arguments, the model, the versions), flat."""
        arguments = getattr(self.model, "fit_arguments", None)
        fit = (describe_fit_arguments(arguments) if isinstance(arguments, dict)
               else {"epochs": getattr(self.model, "epochs", None)})
        described = {"fit": fit, **describe_model(self.model), "versions": versions()}
        return {_key(k): v[:PARAM_LIMIT] for k, v in _flatten(described).items()}

    def _checkpoints(self) -> list:
        """The best-weights files to log that exist, each once."""
        if self.log_checkpoint is False:
            return []
        if self.log_checkpoint is True:
            arguments = getattr(self.model, "fit_arguments", None) or {}
            paths = [arguments.get("ckpt_path")]
            paths += [cb.best_model_path for cb in arguments.get("callbacks") or ()
                      if isinstance(cb, ModelCheckpoint)]
        else:
            paths = [self.log_checkpoint]
        found = [os.fspath(p) for p in paths if p is not None and os.path.isfile(p)]
        return list(dict.fromkeys(found))


def _flatten(value: Any, prefix: str = "") -> dict:
    """Nested dicts as ``{"a.b": "value"}``; every other value as its string."""
    if isinstance(value, dict) and value:
        out: dict = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):  # the optimizer's param groups
            out.update(_flatten(item, f"{prefix}.{i}"))
        return out
    return {prefix: str(value)}


def _key(name: str) -> str:
    """A param or metric name MLflow accepts (letters, digits and ``_-. /``)."""
    return re.sub(r"[^\w\-. /]", "_", str(name))


def _now_ms() -> int:
    return int(time.time() * 1000)
