"""compare_losses, workers=1 against workers=2: one experiment, timed, and the results compared.

The experiment: scikit-learn's digits (1257 training, 540 validation images), a
64-64-10 MLP, two losses (cross entropy, and cross entropy with label smoothing
0.1) by four seeds, a few epochs each, no early stopping. The sequential run
uses ``torch.set_num_threads(1)``, as each worker does, so the two results must
be equal to the last bit; the script checks that and says so.

After a warm-up (imports, the first fit's one-off costs), the two variants
alternate ``--repeats`` times and the median wall time of each is reported, so
load from other processes on a shared machine hits both alike. The goal on two
cores is a ratio (workers=2 / workers=1) of 0.6 or less; it needs both cores
free: the script also reports the CPU seconds each variant used (this process
and its workers), the load average, and the ratio a pure-Python job of fixed size
gets in the same number of processes right then (``machine_ratio``), so a ratio
near 1 on a busy machine can be told from overhead. Output: one JSON line, then a summary line.

    python benchmarks/compare_losses_workers.py              # ~1 minute on 2 cores
    python benchmarks/compare_losses_workers.py --smoke      # one short repeat
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
import warnings

import pandas as pd
import torch
from torch import nn

from kerastorch import compare_losses


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="1 repeat of 2 epochs")
    return parser.parse_args(argv)


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.3,
                                                      random_state=0, stratify=y)
    return (x_train, y_train), (x_val, y_val)


def make_net():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


LOSSES = {"ce": nn.CrossEntropyLoss(), "smoothed": nn.CrossEntropyLoss(label_smoothing=0.1)}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished (joined) children: the work done."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def experiment(train, val, args, workers):
    start, cpu = time.perf_counter(), cpu_seconds()
    result = compare_losses(make_net, LOSSES, train, val, epochs=args.epochs, seeds=args.seeds,
                            patience=None, workers=workers)
    return time.perf_counter() - start, cpu_seconds() - cpu, result


def _spin(_) -> int:
    total = 0
    for i in range(3_000_000):
        total += i
    return total


def machine_ratio(workers: int) -> float:
    """The best ratio this machine allows right now: a fixed pure-Python job (4 parts) in
    ``workers`` forked processes over the same job in this one. About 1/workers on idle
    cores; near 1 when other processes hold the cores."""
    start = time.perf_counter()
    [_spin(i) for i in range(4)]
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_spin, range(4))
    return (time.perf_counter() - start) / sequential


def same_results(a, b) -> bool:
    try:
        for name in ("history", "report", "runs"):
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    except AssertionError:
        return False
    return True


def main(argv=None):
    args = parse_args(argv)
    if args.smoke:
        args.epochs, args.repeats = 2, 1
    torch.set_num_threads(1)  # what each worker does; the results must then be equal
    warnings.filterwarnings("ignore", category=UserWarning)
    train, val = digits()
    compare_losses(make_net, LOSSES, train, val, epochs=1, patience=None)  # warm-up
    times = {1: [], args.workers: []}
    cpu = {1: [], args.workers: []}
    results = {}
    for _ in range(args.repeats):
        for workers in times:
            seconds, cpu_used, results[workers] = experiment(train, val, args, workers)
            times[workers].append(seconds)
            cpu[workers].append(cpu_used)
    sequential, parallel = (statistics.median(times[w]) for w in times)
    available = machine_ratio(args.workers)
    record = {
        "kind": "compare_losses_workers", "losses": len(LOSSES), "seeds": args.seeds,
        "epochs": args.epochs, "train_size": len(train[1]), "val_size": len(val[1]),
        "workers": args.workers, "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "times_workers_1": [round(t, 3) for t in times[1]],
        f"times_workers_{args.workers}": [round(t, 3) for t in times[args.workers]],
        "median_workers_1": round(sequential, 3),
        f"median_workers_{args.workers}": round(parallel, 3),
        "cpu_seconds_workers_1": round(statistics.median(cpu[1]), 3),
        f"cpu_seconds_workers_{args.workers}": round(statistics.median(cpu[args.workers]), 3),
        "ratio": round(parallel / sequential, 3), "goal_ratio": 0.6,
        "machine_ratio": round(available, 3),
        "equal_results": same_results(results[1], results[args.workers]),
        "torch": torch.__version__, "python": sys.version.split()[0],
    }
    print(json.dumps(record))
    print(f"{len(LOSSES)} losses x {args.seeds} seeds x {args.epochs} epochs on digits: "
          f"workers=1 {sequential:.2f} s, workers={args.workers} {parallel:.2f} s "
          f"(median of {args.repeats}); ratio {record['ratio']:.2f} (goal <= 0.6); "
          f"results equal: {record['equal_results']}; CPU seconds (work done, all processes) "
          f"{record['cpu_seconds_workers_1']:.2f} vs "
          f"{record[f'cpu_seconds_workers_{args.workers}']:.2f}; a pure-Python job gets "
          f"{available:.2f} on this machine now (load average {record['load_average_1min']:.2f})")
    return record


if __name__ == "__main__":
    main()
