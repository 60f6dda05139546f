"""What the EMA callback costs: its share of a small-CNN epoch on the CPU (target <= 3 %).

The workload is overhead.py's small CNN (MnistNet on synthetic 28x28 digits, batch 32,
SGD), trained by ``fit`` on the in-memory fast path with and without
``EMA(validate_with_ema=False)`` (no validation data: the cost measured is the update
after every optimizer step). Runs alternate (plain, EMA, EMA, plain, ...) after a warm-up
and the median CPU time (time.process_time) per epoch of each is compared, so load from
other processes hits both alike. A second, low-noise figure times ``EMA.update()`` alone
(fastest of several trials of CPU time per call) and multiplies by the steps per epoch.
Both runs train identically (EMA only reads the weights): the final losses are compared.

Output: one JSON line, then a short table.

    python benchmarks/ema_cost.py            # 6000 samples, 2 epochs x 5 repeats each
    python benchmarks/ema_cost.py --smoke    # tiny: checks the script in seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import overhead  # this script's folder is on sys.path
from kerastorch import KerasModel
from kerastorch.callbacks.ema import EMA

TARGET = 0.03


def run(work: dict, epochs: int, with_ema: bool) -> dict:
    """One fit; the CPU seconds of each epoch and the final loss."""
    net, optimizer, loss_fn, _ = overhead.fresh(work)
    model = KerasModel(net, loss_fn, optimizer=optimizer)
    marks = overhead.EpochMarks()
    callbacks = [overhead.EpochClock(marks, "begin")]
    ema = EMA(decay=0.999, validate_with_ema=False) if with_ema else None
    if ema is not None:
        callbacks.append(ema)
    callbacks.append(overhead.EpochClock(marks, "end"))
    history = model.fit((work["x"], work["y"]), epochs=epochs, batch_size=work["batch_size"],
                        ckpt_path=None, quiet=True, callbacks=callbacks)
    cpu = [end[1] - begin[1] for begin, end in zip(marks.begins, marks.ends)]
    return {"epoch_cpu": cpu, "final_loss": float(history["train_loss"].iloc[-1]),
            "steps": ema.optimizer_steps if ema is not None else None}


def update_us(work: dict, calls: int, trials: int) -> float:
    """The fastest trial's CPU microseconds per ``EMA.update()`` on the workload's net."""
    net = overhead.fresh(work)[0]
    ema = EMA()
    ema.begin(net)
    ema.update()
    best = float("inf")
    for _ in range(trials):
        start = time.process_time()
        for _ in range(calls):
            ema.update()
        best = min(best, time.process_time() - start)
    return best / calls * 1e6


def measure(args) -> dict:
    work = overhead.make_workload("cnn", args.samples)
    run(work, 1, True)  # warm-up: first-call costs of both paths
    times: dict = {"plain": [], "ema": []}
    losses: dict = {}
    steps = None
    for repeat in range(args.repeats):
        order = ("plain", "ema") if repeat % 2 == 0 else ("ema", "plain")
        for name in order:
            result = run(work, args.epochs, name == "ema")
            times[name] += result["epoch_cpu"]
            losses[name] = result["final_loss"]
            steps = result["steps"] or steps
    plain, ema = statistics.median(times["plain"]), statistics.median(times["ema"])
    per_update = update_us(work, args.update_calls, 5)
    return {"kind": "ema_cost", "workload": "cnn", "samples": args.samples,
            "steps_per_epoch": steps // args.epochs, "epochs": args.epochs,
            "repeats": args.repeats, "plain_cpu_s_per_epoch": plain,
            "ema_cpu_s_per_epoch": ema, "epoch_overhead": ema / plain - 1.0,
            "update_us": per_update,
            "update_fraction": per_update * 1e-6 * steps / args.epochs / plain,
            "same_training": losses["plain"] == losses["ema"], "target": TARGET,
            "plain_epoch_cpu": times["plain"], "ema_epoch_cpu": times["ema"],
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": overhead._cpu_model(), "smoke": args.smoke}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny data, one epoch, one repeat")
    p.add_argument("--samples", type=int, default=6000, help="CNN samples (28x28)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run")
    p.add_argument("--repeats", type=int, default=5, help="runs of each, alternating")
    p.add_argument("--update-calls", type=int, default=200, help="EMA.update() calls per trial")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    if args.smoke:
        args.samples, args.epochs, args.repeats, args.update_calls = 256, 1, 1, 20
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    record = measure(args)
    print(json.dumps(record), flush=True)
    print(f"\nsmall CNN, {record['samples']} samples, {record['steps_per_epoch']} steps/epoch, "
          f"{record['threads']} thread(s), {record['cpu']}")
    print(f"plain {record['plain_cpu_s_per_epoch']:.3f} CPU s/epoch, with EMA "
          f"{record['ema_cpu_s_per_epoch']:.3f}: {record['epoch_overhead']:+.1%} (medians)")
    print(f"EMA.update() {record['update_us']:.1f} us/step: {record['update_fraction']:.2%} "
          f"of an epoch (target <= {TARGET:.0%}); same training: {record['same_training']}")
    return record


if __name__ == "__main__":
    main()
