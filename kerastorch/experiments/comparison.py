"""``compare_losses``: train the same net under several losses and seeds, paired by seed."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import numbers
import os
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

from ..checks import check_bool, check_path
from ..data import as_dataloader
from ..files import check_writable
from ..kerasmodel import KerasModel
from .experiment_folder import (UNRECORDED_FIT_KEYWORDS, ExperimentFolder, data_fingerprint,
                                describe, tensor_digest)
from .loss_comparison import LossComparison
from .run_record import ExperimentPlan, assemble_tables, train_one
from .seed_statistics import import_scipy_stats
from .worker_pool import run_in_workers, start_method

__all__ = ["compare_losses"]

_REFUSED_FIT_KEYWORDS = ("resume", "state_path")  # an experiment resumes by log_dir


def compare_losses(make_net: Callable[[], torch.nn.Module], losses: Dict[str, Callable],
                   train_data, val_data, *, epochs: int = 10, metrics_dict: Optional[dict] = None,
                   optimizer_fn: Optional[Callable] = None, seed: int = 0,
                   seeds: Union[int, Sequence[int]] = 1, batch_size: int = 32,
                   quiet: bool = True, workers: int = 1, log_dir: Optional[str] = None,
                   baseline: Optional[str] = None, **fit_kwargs) -> LossComparison:
    """Train a fresh net per (loss, seed); within a seed every loss has the same start.

    For each seed the net is built once under ``torch.manual_seed(seed)``; each loss's
    run loads a copy of those weights into a net from ``make_net``, gets a fresh
    optimizer and re-seeds torch right before ``fit``, so within a seed the runs
    differ only in the loss (same initial weights, shuffles and dropout draws): the
    comparison is paired by seed. A run equals, bit for bit, a ``KerasModel(...).fit``
    set up by hand the same way. Each run keeps ``fit``'s behaviour: it ends with the
    weights of its best epoch by ``monitor`` (``val_loss`` unless ``fit_kwargs`` say
    otherwise), which the per-class report and :attr:`LossComparison.runs` use.

    Args:
        make_net: builds the net, e.g. ``lambda: nn.Linear(64, 10)``. It is called once
            per seed for the start, then once per run, in order (with ``workers > 1``
            the runs' calls happen in the worker processes).
        losses: name -> loss function, e.g. ``{"ce": nn.CrossEntropyLoss(), ...}``.
        train_data: as for ``fit``.
        val_data: as for ``fit`` (required); also used for the per-class report.
        epochs: epochs per run. Defaults to 10.
        metrics_dict: as for ``KerasModel``; copied per run. Defaults to None.
        optimizer_fn: ``optimizer_fn(parameters)`` -> optimizer; None is Adam(lr=1e-3).
            Defaults to None.
        seed: the first seed. Defaults to 0.
        seeds: an int N runs seeds ``seed, seed + 1, ..., seed + N - 1``; a list of ints
            runs those (then ``seed`` must stay 0). Defaults to 1.
        batch_size: as for ``fit`` when the data are ``(X, y)`` pairs. Defaults to 32.
        quiet: passed to ``fit``. Defaults to True.
        workers: processes that train runs at once; 1 trains here, one run after the
            other. More are forked where the platform allows (so ``make_net`` may be a
            lambda), each training with ``torch.set_num_threads(1)``: the results then
            equal a ``workers=1`` experiment run under ``torch.set_num_threads(1)``. The
            nets of the runs stay in the workers. Defaults to 1.
        log_dir: a fixed folder for the experiment (not timestamped): ``experiment.json``
            (the definition), one file per finished run, and at the end ``history.csv``,
            ``runs.csv``, ``report.csv``, ``summary.csv``, ``summary.md``,
            ``curves.png`` and ``final.png``. Called again after Ctrl-C or a kill, only
            the missing runs train. Callbacks, ``quiet`` and ``plot`` are not part of
            the definition. Needs scipy and matplotlib. None writes nothing.
            Defaults to None.
        baseline: the loss the summary compares the others with; None is the first.
            Defaults to None.
        **fit_kwargs: anything else ``fit`` takes (``ckpt_path`` defaults to None here;
            ``resume`` and ``state_path`` are refused: use ``log_dir``).

    Returns:
        A :class:`LossComparison`: ``history``, ``report``, ``runs``, ``baseline``,
        ``summary()`` and ``plot()``; ``history, report = compare_losses(...)`` unpacks.

    Raises:
        TypeError, ValueError: bad arguments, before any training, or what ``fit``
            raises; a ``log_dir`` holding another experiment.
        KeyboardInterrupt: a run was interrupted (Ctrl-C, or a callback raised it);
            with ``log_dir`` the finished runs are kept for the next call.
        ImportError: ``log_dir`` without scipy or matplotlib installed.

    Example:
        >>> from torch import nn
        >>> X, y = torch.randn(60, 4), torch.randint(0, 3, (60,))
        >>> history, report = compare_losses(
        ...     lambda: nn.Linear(4, 3),
        ...     {"ce": nn.CrossEntropyLoss(), "smoothed": nn.CrossEntropyLoss(label_smoothing=0.1)},
        ...     (X, y), (X, y), epochs=2)
        >>> history["loss"].tolist(), history["seed"].tolist()
        (['ce', 'ce', 'smoothed', 'smoothed'], [0, 0, 0, 0])
        >>> sorted(report["class"].unique().tolist())
        [0, 1, 2]
        >>> result = compare_losses(lambda: nn.Linear(4, 3), {"ce": nn.CrossEntropyLoss()},
        ...                         (X, y), (X, y), epochs=2, seeds=3)
        >>> print(result.runs[["loss", "seed", "best_epoch", "epochs_run"]].to_string(index=False))
        loss  seed  best_epoch  epochs_run
          ce     0           2           2
          ce     1           2           2
          ce     2           2           2
    """
    seed_list = _check_arguments(make_net, losses, epochs, metrics_dict, optimizer_fn, seed,
                                 seeds, batch_size, quiet, workers, log_dir, baseline,
                                 fit_kwargs)
    baseline = next(iter(losses)) if baseline is None else baseline
    train_loader = as_dataloader(train_data, batch_size=batch_size, shuffle=False,
                                 name="train_data")
    if val_data is None:
        raise ValueError("val_data is required: the per-class report and the runs table are "
                         "read on it; pass compare_losses(..., train_data, val_data)")
    val_loader = as_dataloader(val_data, batch_size=batch_size, shuffle=False, name="val_data")
    fit_kwargs.setdefault("ckpt_path", None)
    if workers > 1 and fit_kwargs["ckpt_path"] is not None:
        raise ValueError("ckpt_path must be None with workers > 1: the runs would write one "
                         f"file at once; received ckpt_path={fit_kwargs['ckpt_path']!r}")
    plan = ExperimentPlan(
        make_net=make_net, losses=losses, train_data=train_data, val_data=val_data,
        epochs=epochs, metrics_dict=metrics_dict,
        optimizer_fn=optimizer_fn or (lambda p: torch.optim.Adam(p, lr=1e-3)),
        batch_size=batch_size, quiet=quiet, fit_kwargs=fit_kwargs,
        monitor=fit_kwargs.get("monitor", "val_loss"), mode=fit_kwargs.get("mode", "min"))
    starts = {}
    for s in seed_list:
        torch.manual_seed(s)
        starts[s] = make_net()
        plan.initial[s] = copy.deepcopy(starts[s].state_dict())
    tasks = [(name, s) for s in seed_list for name in losses]
    folder, records = None, {}
    if log_dir is not None:
        check_writable(os.path.join(log_dir, "experiment.json"), "log_dir")
        folder = ExperimentFolder(log_dir)
        folder.claim(_definition(plan, seed_list, starts[seed_list[0]], train_loader,
                                 val_loader))
        records = {task: folder.load(*task) for task in tasks}
        records = {task: record for task, record in records.items() if record is not None}
        plan.save = folder.save
    _train_missing(plan, tasks, records, workers, log_dir)
    ordered = [records[(name, s)] for name in losses for s in seed_list]
    result = LossComparison(*assemble_tables(ordered), baseline=baseline)
    if folder is not None:
        folder.write_results(result)
    return result


def _train_missing(plan: ExperimentPlan, tasks: list, records: dict, workers: int,
                   log_dir) -> None:
    """Train the tasks that ``records`` lacks, adding their records to it."""
    missing = [task for task in tasks if task not in records]
    if workers > 1 and missing:  # even one run: one thread, as the finished runs had
        try:
            for record in run_in_workers(plan, missing, workers):
                records[(record["loss"], record["seed"])] = record
        except KeyboardInterrupt as exc:
            raise KeyboardInterrupt(f"{exc or 'compare_losses was interrupted'}; "
                                    f"{_kept(log_dir)}") from None
        return
    for name, seed in missing:
        record = train_one(plan, name, seed)
        if record is None:
            raise KeyboardInterrupt(f"compare_losses was interrupted in the run (loss {name!r}, "
                                    f"seed {seed}); {len(records)} of {len(tasks)} runs "
                                    f"finished; {_kept(log_dir)}")
        records[(name, seed)] = record


def _kept(log_dir) -> str:
    if log_dir is None:
        return "pass log_dir= to keep finished runs across calls"
    return (f"the finished runs are kept in {os.fspath(log_dir)!r}: call compare_losses again "
            "with the same arguments to run only the missing ones")


def _check_arguments(make_net, losses, epochs, metrics_dict, optimizer_fn, seed, seeds,
                     batch_size, quiet, workers, log_dir, baseline, fit_kwargs) -> List[int]:
    """The list of seeds, after every check that needs no data (see compare_losses)."""
    if not callable(make_net):
        raise TypeError(f"make_net must be a callable that builds the net; received "
                        f"{type(make_net).__name__}")
    if not isinstance(losses, dict) or not losses:
        raise TypeError(f"losses must be a non-empty dict of name -> loss; received "
                        f"{type(losses).__name__} {losses!r}"[:200])
    for name, loss_fn in losses.items():
        if not isinstance(name, str) or not callable(loss_fn):
            raise TypeError(f"losses must map str names to callable losses; received "
                            f"{name!r}: {type(loss_fn).__name__}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; received {value!r}")
    if metrics_dict is not None and not isinstance(metrics_dict, dict):
        raise TypeError(f"metrics_dict must be None or a dict of name -> metric; received "
                        f"{type(metrics_dict).__name__}")
    if optimizer_fn is not None and not callable(optimizer_fn):
        raise TypeError(f"optimizer_fn must be None or optimizer_fn(parameters) -> optimizer; "
                        f"received {type(optimizer_fn).__name__}")
    check_bool("quiet", quiet)
    if not _is_int(workers):
        raise TypeError(f"workers must be an int >= 1; received {type(workers).__name__} "
                        f"{workers!r}")
    if workers < 1:
        raise ValueError(f"workers must be an int >= 1 (1 trains in this process); received "
                         f"{workers!r}")
    if workers > 1 and start_method() == "fork" and torch.cuda.is_initialized():
        raise ValueError("workers > 1 forks processes, and a forked process cannot use CUDA "
                         "once this one has; pass workers=1")
    if check_path("log_dir", log_dir) is not None:
        _require_folder_dependencies()
    if baseline is not None and baseline not in losses:
        raise ValueError(f"baseline must be one of the losses {list(losses)}; received "
                         f"{baseline!r}")
    _check_fit_kwargs(fit_kwargs)
    return _seed_list(seed, seeds)


def _require_folder_dependencies() -> None:
    """Fail before the training, not after it, when log_dir's files cannot be made."""
    import_scipy_stats()
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError('log_dir writes pictures, which need matplotlib: '
                          'pip install "kerastorch[plots]"')


def _seed_list(seed, seeds) -> List[int]:
    if not _is_int(seed):
        raise TypeError(f"seed must be an int; received {type(seed).__name__} {seed!r}")
    if _is_int(seeds):
        if seeds < 1:
            raise ValueError(f"seeds must be an int >= 1 or a list of ints; received {seeds!r}")
        return list(range(int(seed), int(seed) + int(seeds)))
    if not isinstance(seeds, (list, tuple, range)) or not seeds or not all(map(_is_int, seeds)):
        raise TypeError(f"seeds must be an int >= 1 or a non-empty list of ints; received "
                        f"{seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat a seed; received {list(seeds)}")
    if seed != 0:
        raise ValueError(f"pass either seeds as a list or seed, not both; received seed={seed} "
                         f"and seeds={list(seeds)}")
    return [int(s) for s in seeds]


def _check_fit_kwargs(fit_kwargs: dict) -> None:
    known = set(inspect.signature(KerasModel.fit).parameters) - {
        "self", "train_data", "val_data", "epochs", "batch_size", "quiet", "log_dir", "unknown"}
    for name in fit_kwargs:
        if name in _REFUSED_FIT_KEYWORDS:
            raise ValueError(f"compare_losses does not take {name}=: pass log_dir= to keep "
                             "finished runs and run only the missing ones when called again")
        if name not in known:
            raise TypeError(f"compare_losses() got an unexpected keyword argument {name!r}; "
                            f"it passes these on to fit: {sorted(known)}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _definition(plan: ExperimentPlan, seeds: List[int], start: torch.nn.Module,
                train_loader, val_loader) -> dict:
    """What decides the runs' results (see ``ExperimentFolder.claim``)."""
    return {
        "format": 1,
        "losses": {name: describe(loss) for name, loss in plan.losses.items()},
        "seeds": seeds,
        "epochs": plan.epochs,
        "batch_size": plan.batch_size,
        "train_data": data_fingerprint(train_loader),
        "val_data": data_fingerprint(val_loader),
        "metrics": {name: describe(m) for name, m in (plan.metrics_dict or {}).items()},
        "net": repr(start),
        "initial_weights": {str(s): tensor_digest(plan.initial[s]) for s in seeds},
        "optimizer": repr(plan.optimizer_fn(start.parameters())),
        "fit": {name: repr(value) for name, value in sorted(plan.fit_kwargs.items())
                if name not in UNRECORDED_FIT_KEYWORDS},
    }
