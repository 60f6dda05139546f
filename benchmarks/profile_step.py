"""Where kerastorch's own time goes in one steady-state epoch, per training step.

Each workload of ``overhead.py`` (the tiny MLP and the small CNN, with a
validation set a sixth of the training size) is trained by ``fit`` for three
epochs with the real ProgressBar into os.devnull: the first warms up, the second
is timed plainly (CPU time), the third runs under cProfile. The profile is read
two ways, both divided by the epoch's training steps (the validation pass is in
the epoch, so its share is included):

- ``own``: every function defined in a kerastorch/ file, with its calls per step
  and its self time per step (time in its own lines, not in what it calls);
- ``called``: what kerastorch's frames call directly outside kerastorch (the
  net, backward, the optimizer, Accelerate's contexts, torchmetrics, tqdm), with
  the cumulative time per step of those calls.

A third fit is profiled from the call to ``fit`` to the net's first training
forward pass (time to first batch): the functions with the largest cumulative
time there, in ms.

cProfile adds a few microseconds to every Python call, so the profiled figures
are inflated, small frequent functions most; compare them between runs of this
script, not with the plain epoch. A new line in ``own``, or a function whose
calls per step grow, is the regression to look at.

    python benchmarks/profile_step.py                        # both workloads and paths
    python benchmarks/profile_step.py --workloads mlp --paths dataloader --top 20
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overhead  # the workloads and loaders of the overhead benchmark

import kerastorch
from kerastorch import KerasModel, ProgressBar
from kerastorch.callbacks import Callback

PACKAGE = os.path.dirname(os.path.abspath(kerastorch.__file__)) + os.sep


class EpochSwitch(Callback):
    """Runs ``action("begin"/"end", epoch_index)`` at epoch begins (placed first in the
    callback list) or ends (placed last), so the other callbacks' hooks are inside."""

    def __init__(self, action, hook: str):
        self.action, self.hook, self.count = action, hook, 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.hook == "begin":
            self.count += 1
            self.action("begin", self.count)

    def on_epoch_end(self, epoch, logs=None):
        if self.hook == "end":
            self.count += 1
            self.action("end", self.count)


def _model_and_data(work: dict, path: str) -> tuple:
    net, optimizer, loss_fn, metric = overhead.fresh(work)
    model = KerasModel(net, loss_fn, metrics_dict={"acc": metric}, optimizer=optimizer)
    if path == "fast":
        return net, model, (work["x"], work["y"]), (work["val_x"], work["val_y"])
    return net, model, overhead.make_loader(work), overhead.val_loader(work)


def profile_fit(work: dict, path: str) -> tuple[pstats.Stats, dict]:
    """Fit three epochs; time the second, profile the third."""
    _net, model, train, val = _model_and_data(work, path)
    # CPU time of this thread: on a shared machine, wall time would charge whatever
    # function was running when the process lost its core
    profiler, marks = cProfile.Profile(time.thread_time), {}

    def action(what: str, epoch: int) -> None:
        marks[(what, epoch)] = time.process_time()
        if epoch == 3:
            (profiler.enable if what == "begin" else profiler.disable)()

    callbacks = [EpochSwitch(action, "begin"), ProgressBar(file=overhead.SINK),
                 EpochSwitch(action, "end")]
    model.fit(train, val, epochs=3, batch_size=work["batch_size"], shuffle=True,
              ckpt_path=None, quiet=True, callbacks=callbacks, fast_data=path == "fast")
    steps = -(-len(work["x"]) // work["batch_size"])
    info = {"workload": work["name"], "path": path, "train_steps": steps,
            "val_steps": -(-len(work["val_x"]) // work["batch_size"]),
            "plain_epoch_cpu_us_per_step": (marks[("end", 2)] - marks[("begin", 2)]) / steps * 1e6,
            "profiled_epoch_cpu_us_per_step":
                (marks[("end", 3)] - marks[("begin", 3)]) / steps * 1e6}
    return pstats.Stats(profiler), info


def profile_setup(work: dict, path: str) -> tuple[pstats.Stats, float]:
    """Profile one fit from its call to the net's first training forward pass."""
    net, model, train, val = _model_and_data(work, path)
    profiler = cProfile.Profile(time.thread_time)

    def first_forward(module, args):
        if module.training and torch.is_grad_enabled():
            profiler.disable()
            handle.remove()

    handle = net.register_forward_pre_hook(first_forward)
    start = time.thread_time()
    profiler.enable()
    model.fit(train, val, epochs=1, batch_size=work["batch_size"], shuffle=True,
              ckpt_path=None, quiet=True, callbacks=[ProgressBar(file=overhead.SINK)],
              fast_data=path == "fast")
    stats = pstats.Stats(profiler)
    return stats, max(row[3] for row in stats.stats.values()) if stats.stats else \
        time.thread_time() - start


def print_setup(stats: pstats.Stats, total_s: float, top: int) -> None:
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][3])
    print(f"time to first batch, profiled: {total_s * 1e3:.1f} ms CPU; the top {top} "
          f"functions by cumulative time")
    print(f"{'cum ms':>8} {'self ms':>8} {'calls':>6}  function")
    for func, (_cc, calls, self_s, cum_s, _callers) in rows[:top]:
        print(f"{cum_s * 1e3:8.2f} {self_s * 1e3:8.2f} {calls:6d}  {_name(func)}")


def _name(func: tuple) -> str:
    filename, line, name = func
    if filename.startswith(PACKAGE):
        return f"kerastorch/{filename[len(PACKAGE):]}:{line}({name})"
    if filename == "~":  # a C function: pstats keeps its repr as the name
        return name
    parts = filename.split(os.sep)
    short = os.sep.join(parts[parts.index("site-packages") + 1:]) if "site-packages" in parts \
        else os.path.basename(filename)
    return f"{short}:{line}({name})"


def _own(func: tuple) -> bool:
    return func[0].startswith(PACKAGE)


def read_profile(stats: pstats.Stats, info: dict) -> list:
    """Records: kerastorch's functions (self time) and their direct outside callees."""
    steps, records = info["train_steps"], []
    called: dict = {}
    for func, (_cc, calls, self_s, cum_s, callers) in stats.stats.items():
        if _own(func):
            records.append({"kind": "own", **_head(info), "function": _name(func),
                            "calls_per_step": calls / steps,
                            "self_us_per_step": self_s / steps * 1e6,
                            "cum_us_per_step": cum_s / steps * 1e6})
            continue
        # edge values are (primitive calls, calls, self time, cumulative time) per caller
        edges = [edge for caller, edge in callers.items() if _own(caller)]
        if edges:
            called[func] = (sum(e[1] for e in edges), sum(e[3] for e in edges))
    for func, (calls, cum_s) in called.items():
        records.append({"kind": "called", **_head(info), "function": _name(func),
                        "calls_per_step": calls / steps, "cum_us_per_step": cum_s / steps * 1e6})
    return records


def _head(info: dict) -> dict:
    return {"workload": info["workload"], "path": info["path"]}


def print_report(info: dict, records: list, top: int) -> None:
    own = sorted((r for r in records if r["kind"] == "own"),
                 key=lambda r: -r["self_us_per_step"])
    called = sorted((r for r in records if r["kind"] == "called"),
                    key=lambda r: -r["cum_us_per_step"])
    total_own = sum(r["self_us_per_step"] for r in own)
    print(f"\n== {info['workload']}, {info['path']} path: {info['train_steps']} training steps "
          f"+ {info['val_steps']} validation steps per epoch; CPU per training step "
          f"{info['plain_epoch_cpu_us_per_step']:.0f} us plain, "
          f"{info['profiled_epoch_cpu_us_per_step']:.0f} us profiled")
    print(f"kerastorch's own functions, self time: {total_own:.1f} us per step in all "
          f"({len(own)} functions; the top {min(top, len(own))})")
    print(f"{'self us/step':>12} {'us/call':>8} {'calls/step':>10}  function")
    for r in own[:top]:
        per_call = r["self_us_per_step"] / r["calls_per_step"]
        print(f"{r['self_us_per_step']:12.2f} {per_call:8.2f} {r['calls_per_step']:10.2f}  "
              f"{r['function']}")
    print(f"called from kerastorch's frames (outside kerastorch), cumulative: the top {top}")
    print(f"{'cum us/step':>12} {'calls/step':>10}  function")
    for r in called[:top]:
        print(f"{r['cum_us_per_step']:12.2f} {r['calls_per_step']:10.2f}  {r['function']}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="mlp,cnn", help="comma-separated: mlp, cnn")
    p.add_argument("--paths", default="fast,dataloader",
                   help="comma-separated: fast (fit((X, y))), dataloader (fit(DataLoader, "
                        "fast_data=False))")
    p.add_argument("--samples", type=int, default=6000, help="CNN samples (28x28)")
    p.add_argument("--mlp-samples", type=int, default=60000, help="MLP samples")
    p.add_argument("--top", type=int, default=12, help="rows per table")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return p.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    all_records = []
    for name in filter(None, args.workloads.split(",")):
        samples = args.mlp_samples if name == "mlp" else args.samples
        work = overhead.make_workload(name, samples, samples // 6)
        for path in filter(None, args.paths.split(",")):
            stats, info = profile_fit(work, path)
            records = read_profile(stats, info)
            for record in [{"kind": "epoch", **info}, *records]:
                print(json.dumps(record), flush=True)
            print_report(info, records, args.top)
            setup, total_s = profile_setup(work, path)
            print(json.dumps({"kind": "setup", "workload": name, "path": path,
                              "ttfb_cpu_ms_profiled": total_s * 1e3}), flush=True)
            print_setup(setup, total_s, args.top)
            all_records += [{"kind": "epoch", **info}, *records]
    return all_records


if __name__ == "__main__":
    main()
