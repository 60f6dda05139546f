"""One (loss, seed) run of a loss experiment: train it, and keep it as a plain JSON-able record.

A record holds the run's history, its per-class report and its best epoch as
lists of Python numbers. Every path (in this process, in a worker process, read
back from an experiment folder) goes through records, so the tables assembled
from them are the same whichever path a run took: JSON writes floats with
``repr``, which reads back bit for bit, NaN included.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional

import pandas as pd
import torch

from ..callbacks.monitor import MonitorCallback
from ..data import as_dataloader
from ..evaluation import per_class_report
from ..kerasmodel import KerasModel

__all__ = ["ExperimentPlan", "train_one", "best_epoch", "assemble_tables"]


@dataclasses.dataclass
class ExperimentPlan:
    """Everything one run needs; built once by ``compare_losses`` and shared by every run.

    ``initial`` maps each seed to the initial weights built under that seed;
    ``save`` (when not None) is called with each finished record, in whichever
    process trained it.
    """

    make_net: Callable[[], torch.nn.Module]
    losses: Dict[str, Any]
    train_data: Any
    val_data: Any
    epochs: int
    metrics_dict: Optional[dict]
    optimizer_fn: Callable
    batch_size: int
    quiet: bool
    fit_kwargs: dict
    monitor: str
    mode: str
    initial: Dict[int, dict] = dataclasses.field(default_factory=dict)
    save: Optional[Callable[[dict], None]] = None


def train_one(plan: ExperimentPlan, name: str, seed: int) -> Optional[dict]:
    """Train the run (loss ``name``, seed ``seed``) and return its record; None if interrupted.

    The run is what a hand-written script does: a net from ``make_net`` loaded with
    the seed's initial weights, a fresh optimizer, ``torch.manual_seed(seed)`` right
    before ``fit`` (so every loss sees the same shuffles and dropout draws), then a
    per-class report of ``val_data`` at the weights ``fit`` restored.
    """
    net = plan.make_net()
    net.load_state_dict(plan.initial[seed])
    loss_fn = plan.losses[name]
    model = KerasModel(net, loss_fn, metrics_dict=plan.metrics_dict,
                       optimizer=plan.optimizer_fn(net.parameters()))
    torch.manual_seed(seed)
    history = model.fit(plan.train_data, plan.val_data, epochs=plan.epochs,
                        batch_size=plan.batch_size, quiet=plan.quiet, **plan.fit_kwargs)
    if model.interrupted:  # an unfinished run is never recorded
        return None
    val_loader = as_dataloader(plan.val_data, batch_size=plan.batch_size, shuffle=False,
                               name="val_data")
    outputs, labels = model.predict(val_loader, with_labels=True)
    report = per_class_report(outputs, labels, loss_fn=loss_fn)
    record = {"loss": name, "seed": seed,
              "best_epoch": best_epoch(history, plan.monitor, plan.mode),
              "history": _columns(history), "report": _columns(report)}
    if plan.save is not None:
        plan.save(record)
    return record


def best_epoch(history: pd.DataFrame, monitor: str, mode: str) -> int:
    """The epoch whose weights ``fit`` restores: the best by ``monitor``/``mode``.

    The rule is the checkpoint's own (:class:`~kerastorch.callbacks.monitor.MonitorCallback`:
    the first strictly better finite score, never an epoch with a NaN loss); when no
    epoch qualifies ``fit`` restores nothing and the last epoch is returned.

    Example:
        >>> rows = pd.DataFrame({"epoch": [1, 2, 3], "val_loss": [0.5, 0.4, 0.4]})
        >>> best_epoch(rows, "val_loss", "min"), best_epoch(rows, "val_loss", "max")
        (2, 1)
    """
    tracker = MonitorCallback(monitor, mode)
    for row in history.to_dict("records"):
        tracker.update_best(int(row["epoch"]), row)
    return int(history["epoch"].iloc[-1]) if tracker.best_epoch is None else tracker.best_epoch


def assemble_tables(records: List[dict]):
    """(history, report, runs) DataFrames from records, in the order of ``records``.

    ``history`` and ``report`` get ``loss`` and ``seed`` as their first columns;
    ``runs`` has one row per record: ``loss``, ``seed``, ``best_epoch``,
    ``epochs_run`` and every history column but ``epoch`` at the best epoch.
    """
    histories, reports, runs = [], [], []
    for record in records:
        keys = {"loss": record["loss"], "seed": record["seed"]}
        history = _frame(keys, record["history"])
        histories.append(history)
        reports.append(_frame(keys, record["report"]))
        best = history[history["epoch"] == record["best_epoch"]].iloc[0]
        values = best.drop(["loss", "seed", "epoch"]).to_dict()
        runs.append({**keys, "best_epoch": record["best_epoch"],
                     "epochs_run": len(history), **values})
    return (pd.concat(histories, ignore_index=True), pd.concat(reports, ignore_index=True),
            pd.DataFrame(runs))


def _columns(frame: pd.DataFrame) -> dict:
    return {str(column): frame[column].tolist() for column in frame.columns}


def _frame(keys: dict, columns: dict) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    frame.insert(0, "seed", keys["seed"])
    frame.insert(0, "loss", keys["loss"])
    return frame
