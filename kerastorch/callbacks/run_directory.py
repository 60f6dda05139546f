"""A timestamped run directory: log.log, hparams.json, history, curves, checkpoint, TensorBoard."""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any, Optional, Sequence

from ..batches import predictions_view
from ..checks import check_bool, check_mode, check_monitor, check_path
from ..evaluation import (check_class_names, class_names_of, classification_report,
                          confusion_matrix, predictions_and_classes)
from ..plots import confusion_figure, history_figure, save_png
from ..provenance import describe_fit_arguments, describe_model, versions, write_json
from .base import Callback, CallbackList
from .checkpoint import ModelCheckpoint
from .csv_logger import CSVLogger
from .monitor import MonitorCallback
from .progress import epoch_line, format_value
from .tensorboard import TensorBoard

__all__ = ["RunDirectory", "new_run_dir"]

RUN_LOGGER = "kerastorch.run"


def new_run_dir(log_dir: str) -> str:
    """Create and return ``log_dir/<YYYYmmdd-HHMMSS>``, unique even within one second.

    ``os.mkdir`` either creates the folder or fails, atomically, so two runs that
    start in the same second (or two processes sharing ``log_dir``) get different
    folders: the second gets the suffix ``-1``, the next ``-2``, and so on; names
    still sort in start order.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> first, second = new_run_dir(root), new_run_dir(root)
        >>> first != second and os.path.isdir(first) and os.path.isdir(second)
        True
    """
    log_dir = check_path("log_dir", log_dir, allow_none=False)
    try:
        os.makedirs(log_dir, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"log_dir {os.fspath(log_dir)!r} cannot be created "
                         f"({exc.strerror or exc}); pass a writable directory") from exc
    base = os.path.join(os.fspath(log_dir), time.strftime("%Y%m%d-%H%M%S"))
    for i in itertools.count():
        path = base if i == 0 else f"{base}-{i}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


class RunDirectory(Callback):
    """Give each ``fit`` its own folder ``log_dir/<YYYYmmdd-HHMMSS>`` and fill it.

    ``fit(..., log_dir="runs")`` adds one. The folder (``path``) holds:

    * ``log.log``: the run's lines through :mod:`logging` (logger ``kerastorch.run``):
      the folder, then one line per epoch, the same row the progress bar ends each
      epoch with (``Epoch 2/10: train_loss=0.4123, ...``), then the best epoch.
      Warnings of other ``kerastorch`` loggers (e.g. :class:`TerminateOnNaN`) land
      there too. The terminal keeps showing only the progress bar: ``kerastorch.run``
      does not propagate; add a handler to it to also see the lines elsewhere.
    * ``hparams.json``: ``fit``'s arguments, the optimizer (class and every param
      group's settings), the scheduler, loss, metrics, the net's repr and parameter
      counts, the device, and the versions of Python, torch, kerastorch, accelerate,
      torchmetrics, numpy and pandas.
    * ``history.csv``: rewritten after every epoch (:class:`CSVLogger`); equals the
      DataFrame ``fit`` returns.
    * ``events.out.tfevents.*``: every history column as a TensorBoard scalar
      (:class:`TensorBoard`), when the ``tensorboard`` package is installed.
    * ``curves.png``: loss and each metric, train vs val
      (:func:`kerastorch.plot_history`), rewritten every ``plot_interval`` seconds
      at most and after the last epoch (drawing costs a few tenths of a second).
    * ``best.pt``: the best weights by ``monitor``, written when they improve.
    * ``confusion_matrix.png`` and ``classification_report.csv`` when the task is
      classification (see :func:`kerastorch.evaluation.classification_reason` for
      how that is detected), from ``model.predict`` over the validation data after
      the fit ends, so with the best weights that ``fit`` restores. Written only
      when the fit was not interrupted. The report has scikit-learn's layout: one
      row per class, in class order, then ``accuracy``, ``macro avg`` and
      ``weighted avg``. Classes are named by ``class_names``, else by the names
      the validation (else the training) data carries (see
      :func:`kerastorch.evaluation.class_names_of`: a dataset's ``classes``, a
      HuggingFace ``ClassLabel``), else by their indices; the report's rows and
      the picture's tick labels use the same names.

    Only the main process writes, but under several processes every process takes
    part in the prediction pass (it is sharded and gathered), so pass the callback
    on every process, as ``fit(log_dir=...)`` does: given on the main process
    alone, the others never join that pass and the job waits. A callback reused
    across fits makes one folder per fit. The epoch rows are read from the fit's
    History.

    Args:
        log_dir: the parent folder, created if needed. Defaults to "runs".
        monitor: the column deciding ``best.pt``. Defaults to "val_loss".
        mode: "min" or "max". Defaults to "min".
        save_best: write ``best.pt``. Defaults to True.
        val_data: data for the confusion matrix (the kinds ``fit`` accepts); None
            uses ``arguments["val_data"]``. Defaults to None.
        class_names: one str name per class, in class order, for the confusion
            matrix and the report; None finds them on the data, else uses the class
            indices. Defaults to None.
        arguments: ``fit``'s arguments, recorded in ``hparams.json``. Defaults to None.
        tensorboard: write TensorBoard events: None when the package is installed,
            True always (an ImportError without it), False never. Defaults to None.
        plot_interval: minimum seconds between two rewrites of ``curves.png``.
            Defaults to 5.0.

    Attributes:
        path: the folder of the current (or last) fit; None on other processes.

    Raises:
        TypeError, ValueError: bad arguments; at the end of the fit, ``class_names``
            whose length is not the number of classes the net predicts.
    """

    def __init__(self, log_dir: str = "runs", *, monitor: str = "val_loss", mode: str = "min",
                 save_best: bool = True, val_data: Any = None,
                 class_names: Optional[Sequence[str]] = None, arguments: Optional[dict] = None,
                 tensorboard: Optional[bool] = None, plot_interval: float = 5.0):
        log_dir = check_path("log_dir", log_dir, allow_none=False)
        check_monitor(monitor)
        check_bool("save_best", save_best)
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"arguments must be a dict or None; received "
                            f"{type(arguments).__name__}")
        if tensorboard not in (None, True, False):
            raise ValueError(f"tensorboard must be None, True or False; received "
                             f"{tensorboard!r}")
        self.log_dir = os.fspath(log_dir)
        self.monitor, self.mode = monitor, check_mode(mode)
        self.save_best = save_best
        self.val_data = val_data
        self.class_names = check_class_names(class_names)
        self.arguments = dict(arguments or {})
        self.tensorboard = tensorboard
        self.plot_interval = plot_interval
        self.path: Optional[str] = None
        self._children: Optional[CallbackList] = None
        self._handler: Optional[logging.Handler] = None
        self._in_epoch = False
        self._last_plot: Optional[float] = None
        self._notes: set = set()
        self._plotted_rows = 0
        self.log = logging.getLogger(RUN_LOGGER)

    # -- hooks ---------------------------------------------------------------------

    def on_fit_begin(self, logs=None):
        # reset for reuse: every fit gets a fresh folder
        self.path, self._children = None, None
        self._in_epoch, self._last_plot, self._notes = False, None, set()
        self._plotted_rows = 0
        if not self.is_writer():
            return
        self.path = new_run_dir(self.log_dir)
        self._open_log()
        self.log.info("run directory %s", self.path)
        self._write_hparams()
        self._children = CallbackList(self._make_children(), model=self.model)
        self._children.call("on_fit_begin", logs)
        self._last_plot = time.monotonic()  # the first curves.png after plot_interval seconds

    def on_epoch_begin(self, epoch, logs=None):
        self._in_epoch = True

    def on_epoch_end(self, epoch, logs=None):
        self._in_epoch = False
        if self._children is None:
            return
        self.log.info(epoch_line(epoch, getattr(self.model, "epochs", None), logs or {}))
        self._children.call("on_epoch_end", epoch, logs)
        if time.monotonic() - self._last_plot >= self.plot_interval:
            self._write_curves()

    def on_fit_end(self, logs=None):
        try:
            # every process predicts (its shard), so this runs before the main-only part
            classification = self._classification() if self._finished() else None
            if self._children is not None:
                self._children.call("on_fit_end", logs)
                if self._plotted_rows < len(self.history_rows()):  # not drawn since the last
                    self._write_curves()
            if classification is not None:
                # on every process, so wrong class_names fail everywhere alike, after
                # history.csv and curves.png are complete
                names = self._class_names_for(classification[2])
                if self._children is not None:
                    self._write_classification(*classification, names)
            if self._children is not None:
                self._log_best()
        finally:
            self._close_log()

    def state_dict(self) -> dict:
        return {} if self._children is None else {"children": self._children.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self._children is None:
            return
        self._children.load_state_dict(state.get("children", {}))
        # a resumed run gets a new folder: replay the restored epochs so that its log and
        # TensorBoard events cover the whole run, as history.csv does
        epochs = getattr(self.model, "epochs", None)
        rows = self.history_rows()
        for row in rows:
            self.log.info("%s (restored)", epoch_line(row.get("epoch"), epochs, row))
            for cb in self._children:
                if isinstance(cb, TensorBoard):
                    cb.on_epoch_end(row.get("epoch"), row)
        self.log.info("resumed after epoch %s", rows[-1]["epoch"] if rows else 0)

    # -- pieces --------------------------------------------------------------------

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _open_log(self) -> None:
        self._handler = logging.FileHandler(self._file("log.log"), encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.log.setLevel(logging.INFO)
        self.log.propagate = False  # the terminal shows the progress bar, not these lines
        self.log.addHandler(self._handler)
        logging.getLogger("kerastorch").addHandler(self._handler)  # other kerastorch warnings

    def _close_log(self) -> None:
        if self._handler is None:
            return
        self.log.removeHandler(self._handler)
        logging.getLogger("kerastorch").removeHandler(self._handler)
        self._handler.close()
        self._handler = None

    def _write_hparams(self) -> None:
        hparams = {"run_dir": self.path, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "monitor": self.monitor, "mode": self.mode,
                   "fit": describe_fit_arguments(self.arguments),
                   **describe_model(self.model), "versions": versions()}
        write_json(hparams, self._file("hparams.json"))

    def _make_children(self) -> list:
        children: list = [CSVLogger(self._file("history.csv"))]
        if self.tensorboard is not False:
            try:
                import tensorboard  # noqa: F401
                children.append(TensorBoard(self.path))
            except ImportError:
                if self.tensorboard:
                    raise ImportError("RunDirectory(tensorboard=True) needs the tensorboard "
                                      "package: pip install tensorboard") from None
                self.log.info("note: tensorboard is not installed; no TensorBoard events")
        if self.save_best:
            children.append(ModelCheckpoint(self._file("best.pt"), self.monitor, self.mode))
        return children

    def _write_curves(self) -> None:
        import pandas as pd

        rows = self.history_rows()
        self._last_plot, self._plotted_rows = time.monotonic(), len(rows)
        try:
            fig = history_figure(pd.DataFrame(rows), lr_scheduler_interval=getattr(
                self.model, "lr_scheduler_interval", "epoch"))
        except ImportError:
            self._note_once("matplotlib is not installed: no curves.png or confusion_matrix.png")
            return
        save_png(fig, self._file("curves.png"))

    def _finished(self) -> bool:
        """True when fit ran its epochs (or stopped early) without an error or interrupt."""
        return bool(self.history_rows()) and not self._in_epoch and \
            not getattr(self.model, "interrupted", False)

    def _val_data(self) -> Any:
        return self.val_data if self.val_data is not None else self.arguments.get("val_data")

    def _classification(self) -> Optional[tuple]:
        """``(y_true, y_pred, classes)`` over the validation data, or None (reason logged)."""
        val_data = self._val_data()
        if val_data is None:
            self.log.info("note: no val_data, so no confusion matrix")
            return None
        outputs, labels = self.model.predict(val_data, with_labels=True,
                                             batch_size=self.arguments.get("batch_size", 32))
        if self.model.loss_fn is None:  # a net returning its loss: classes from its logits
            outputs = predictions_view(outputs)
        result = predictions_and_classes(outputs, labels, self.model.loss_fn)
        if isinstance(result, str):
            self.log.info("note: not a classification task (%s): no confusion matrix", result)
            return None
        return result

    def _class_names_for(self, classes: int) -> Optional[list]:
        """``class_names``, else the names the val (else train) data carries, else None."""
        if self.class_names is not None:
            if len(self.class_names) != classes:
                raise ValueError(
                    f"RunDirectory's class_names must hold one name per class: expected "
                    f"{classes} names (the net predicts {classes} classes on val_data), "
                    f"received {len(self.class_names)}: {self.class_names}")
            return self.class_names
        for key, data in (("val_data", self._val_data()),
                          ("train_data", self.arguments.get("train_data"))):
            names = class_names_of(data)
            if names is None:
                continue
            if len(names) == classes:
                return names
            self.log.info("note: %s carries %d class names but the net predicts %d classes; "
                          "the report uses class indices", key, len(names), classes)
            return None
        return None

    def _write_classification(self, y_true, y_pred, classes: int,
                              names: Optional[list]) -> None:
        matrix = confusion_matrix(y_true, y_pred, classes)
        classification_report(matrix, names).to_csv(self._file("classification_report.csv"))
        try:
            save_png(confusion_figure(matrix.numpy(), names, title="Confusion matrix (val_data)"),
                     self._file("confusion_matrix.png"))
        except ImportError:
            self._note_once("matplotlib is not installed: no curves.png or confusion_matrix.png")
        self.log.info("confusion matrix (rows true, columns predicted): %s",
                      matrix.tolist())

    def _best_epoch(self) -> Optional[int]:
        """The epoch a checkpoint calls best (same rules: NaN never best, ties keep the first)."""
        judge = MonitorCallback(self.monitor, self.mode)
        for row in self.history_rows():
            if self.monitor in row:
                judge.update_best(row.get("epoch"), row)
        return judge.best_epoch

    def _log_best(self) -> None:
        best = self._best_epoch()
        if best is not None:
            row = next(r for r in self.history_rows() if r.get("epoch") == best)
            self.log.info("best %s=%s at epoch %s", self.monitor,
                          format_value(row[self.monitor]), best)

    def _note_once(self, message: str) -> None:
        if message not in self._notes:
            self._notes.add(message)
            self.log.info("note: %s", message)
