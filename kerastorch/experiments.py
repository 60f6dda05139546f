"""One-line loss experiments: train the same net from the same start under several losses."""

from __future__ import annotations

import copy
from typing import Callable, Dict, NamedTuple, Optional

import pandas as pd
import torch

from .data import as_dataloader
from .evaluation import per_class_report
from .kerasmodel import KerasModel

__all__ = ["compare_losses", "LossComparison", "per_class_report"]


class LossComparison(NamedTuple):
    """What :func:`compare_losses` returns; unpacks as ``history, report = ...``."""

    history: pd.DataFrame
    report: pd.DataFrame


def compare_losses(make_net: Callable[[], torch.nn.Module], losses: Dict[str, Callable],
                   train_data, val_data, *, epochs: int = 10, metrics_dict: Optional[dict] = None,
                   optimizer_fn: Optional[Callable] = None, seed: int = 0, batch_size: int = 32,
                   quiet: bool = True, **fit_kwargs) -> LossComparison:
    """Train a fresh net per loss from identical initial weights and data order.

    The net is built once under ``torch.manual_seed(seed)``; every run starts from a
    copy of those weights and re-seeds the RNGs before ``fit``, so the runs differ
    only in the loss. Each run keeps ``fit``'s usual behaviour: the weights it ends
    with are its best epoch by ``monitor`` (its own ``val_loss`` by default).

    Args:
        make_net: builds the net, e.g. ``lambda: nn.Linear(64, 10)``.
        losses: name -> loss function, e.g. ``{"ce": nn.CrossEntropyLoss(), ...}``.
        train_data: as for ``fit``.
        val_data: as for ``fit``; also used for the per-class report.
        epochs: epochs per run. Defaults to 10.
        metrics_dict: as for ``KerasModel``; copied per run. Defaults to None.
        optimizer_fn: ``optimizer_fn(parameters)`` -> optimizer; None is Adam(lr=1e-3).
            Defaults to None.
        seed: seed for the initial weights and the data order. Defaults to 0.
        batch_size: as for ``fit`` when the data are ``(X, y)`` pairs. Defaults to 32.
        quiet: passed to ``fit``. Defaults to True.
        **fit_kwargs: anything else ``fit`` takes (``ckpt_path`` defaults to None here).

    Returns:
        ``LossComparison(history, report)``: ``history`` has a ``loss`` column followed by
        the history columns, one block of rows per loss; ``report`` has ``loss``,
        ``class``, ``precision``, ``recall``, ``f1``, ``support`` per class of ``val_data``.

    Raises:
        TypeError, ValueError: an empty or non-dict ``losses``, or what ``fit`` raises.

    Example:
        >>> from torch import nn
        >>> X, y = torch.randn(60, 4), torch.randint(0, 3, (60,))
        >>> history, report = compare_losses(
        ...     lambda: nn.Linear(4, 3),
        ...     {"ce": nn.CrossEntropyLoss(), "smoothed": nn.CrossEntropyLoss(label_smoothing=0.1)},
        ...     (X, y), (X, y), epochs=2)
        >>> history["loss"].tolist()
        ['ce', 'ce', 'smoothed', 'smoothed']
        >>> sorted(report["class"].unique().tolist())
        [0, 1, 2]
    """
    if not isinstance(losses, dict) or not losses:
        raise TypeError(f"losses must be a non-empty dict of name -> loss; received "
                        f"{type(losses).__name__} {losses!r}"[:200])
    fit_kwargs.setdefault("ckpt_path", None)
    torch.manual_seed(seed)
    initial = copy.deepcopy(make_net().state_dict())
    val_loader = as_dataloader(val_data, batch_size=batch_size, shuffle=False, name="val_data")
    histories, reports = [], []
    for name, loss_fn in losses.items():
        net = make_net()
        net.load_state_dict(initial)
        optimizer = (optimizer_fn or (lambda p: torch.optim.Adam(p, lr=1e-3)))(net.parameters())
        model = KerasModel(net, loss_fn, metrics_dict=metrics_dict, optimizer=optimizer)
        torch.manual_seed(seed)  # same shuffles and dropout draws for every loss
        history = model.fit(train_data, val_data, epochs=epochs, batch_size=batch_size,
                            quiet=quiet, **fit_kwargs)
        histories.append(history.assign(loss=name))
        outputs, labels = model.predict(val_loader, with_labels=True)
        report = per_class_report(outputs, labels, loss_fn=loss_fn)
        reports.append(report.assign(loss=name))
    history = pd.concat(histories, ignore_index=True)
    report = pd.concat(reports, ignore_index=True)
    return LossComparison(history[["loss", *(c for c in history.columns if c != "loss")]],
                          report[["loss", *(c for c in report.columns if c != "loss")]])
