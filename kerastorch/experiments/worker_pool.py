"""Run the (loss, seed) runs of a loss experiment in worker processes.

Workers are forked where the platform can fork, so the plan (``make_net`` may be a
lambda, the data may be large) reaches them without pickling; elsewhere they are
spawned and the plan must pickle. Each worker trains with one thread: two
single-threaded runs on two cores beat one run on two threads for the small nets
these experiments train, and the results then equal a sequential experiment run
under ``torch.set_num_threads(1)`` bit for bit.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import warnings
from typing import Iterable, List, Optional, Tuple

import torch

from .run_record import ExperimentPlan, train_one

__all__ = ["run_in_workers", "start_method"]

_PLAN: Optional[ExperimentPlan] = None  # the plan, in a worker process


def start_method() -> str:
    """``"fork"`` where the platform has it, else its default start method."""
    methods = multiprocessing.get_all_start_methods()
    return "fork" if "fork" in methods else methods[0]


def run_in_workers(plan: ExperimentPlan, tasks: Iterable[Tuple[str, int]],
                   workers: int) -> List[dict]:
    """Records of ``tasks`` ((loss, seed) pairs), trained in ``workers`` processes.

    Records arrive in the order runs finish. A run interrupted inside a worker, or
    Ctrl-C here, stops the pool: the workers are terminated and KeyboardInterrupt is
    raised; every run that finished before has already been handed to ``plan.save``
    (in its worker), so an experiment folder keeps it.

    Raises:
        KeyboardInterrupt: a run was interrupted.
        Exception: whatever a run raised, re-raised here.
    """
    tasks = list(tasks)
    method = start_method()
    if method != "fork":
        _check_picklable(plan, method)
    records = []
    with warnings.catch_warnings():
        # Python 3.12+ warns that fork() in a multi-threaded process may deadlock: the other
        # threads are torch's intra-op pool, which the workers never enter (one thread each)
        warnings.filterwarnings("ignore", message=".*multi-threaded.*fork",
                                category=DeprecationWarning)
        pool = multiprocessing.get_context(method).Pool(
            min(workers, len(tasks)), initializer=_start_worker, initargs=(plan,))
    with pool:  # leaving the block, also by an exception or Ctrl-C, terminates the workers
        for record in pool.imap_unordered(_run_task, tasks):
            if record is None:
                raise KeyboardInterrupt("a run was interrupted in a worker process")
            records.append(record)
    return records


def _check_picklable(plan: ExperimentPlan, method: str) -> None:
    try:
        pickle.dumps(plan)
    except Exception as exc:
        raise TypeError(
            f"workers > 1 starts processes by {method!r} here (no fork), which must pickle "
            f"make_net, the losses, the data and optimizer_fn; one does not pickle "
            f"({type(exc).__name__}: {exc}). Define them at module level (no lambdas), or "
            "pass workers=1") from exc


def _start_worker(plan: ExperimentPlan) -> None:
    global _PLAN
    _PLAN = plan
    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group; the parent alone decides, and terminates us
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_task(task: Tuple[str, int]) -> Optional[dict]:
    name, seed = task
    return train_one(_PLAN, name, seed)
