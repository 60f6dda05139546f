"""Where kerastorch's per-step time goes: each piece of the step path, timed alone.

overhead.py measures whole epochs, where a few percent drown in a shared
machine's noise. This script times the per-step calls kerastorch makes through
Accelerate next to the plain torch calls they stand for, on a net so small that
the calls themselves dominate, and a whole kerastorch step against a raw step
on the same batches. Each figure is the fastest of several trials of CPU time
per call (load from other processes only ever adds time).

    python benchmarks/step_overhead.py
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from accelerate import Accelerator
from accelerate.utils import imports as accelerate_imports
from torch import nn

from kerastorch import EpochRunner, StepRunner
from kerastorch.data import TensorBatches
from overhead import accelerate_lookups_cached  # this script's folder is on sys.path


def per_call_us(fn, calls: int, trials: int) -> float:
    """The fastest trial's CPU microseconds per call of ``fn()``."""
    fn()
    best = float("inf")
    for _ in range(trials):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - start)
    return best / calls * 1e6


def accelerate_pieces(calls: int, trials: int) -> list:
    """Accelerate's per-step calls against the plain torch calls they wrap."""
    acc = Accelerator(cpu=True)
    net = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: the weights stay put
    prepared_net, prepared_opt = acc.prepare(net, optimizer)
    x = torch.randn(8, 4)

    def autocast():
        with acc.autocast():
            pass

    def accumulate():
        with acc.accumulate(prepared_net):
            pass

    pairs = [
        ("optimizer.step", lambda: prepared_opt.step(), lambda: optimizer.step()),
        ("optimizer.zero_grad", lambda: prepared_opt.zero_grad(), lambda: optimizer.zero_grad()),
        ("backward (with forward)", lambda: acc.backward(prepared_net(x).sum()),
         lambda: prepared_net(x).sum().backward()),
        ("autocast context", autocast, lambda: None),
        ("accumulate context", accumulate, lambda: None),
        ("is_lomo_available (inside step)", accelerate_imports.is_lomo_available, lambda: None),
    ]
    rows = []
    for name, wrapped, plain in pairs:
        a, b = per_call_us(wrapped, calls, trials), per_call_us(plain, calls, trials)
        rows.append({"kind": "piece", "call": name, "accelerate_us": a, "torch_us": b,
                     "extra_us": a - b})
    return rows


def whole_step(steps: int, trials: int) -> dict:
    """kerastorch's EpochRunner+StepRunner against a raw loop, per step, same batches."""
    acc = Accelerator(cpu=True)
    x, y = torch.randn(steps * 32, 16), torch.randint(0, 4, (steps * 32,))
    batches = list(TensorBatches((x, y), batch_size=32))
    net = nn.Linear(16, 4)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
    loss_fn = nn.CrossEntropyLoss()
    prepared_net, prepared_opt = acc.prepare(net, optimizer)
    runner = EpochRunner(StepRunner(prepared_net, loss_fn, acc, stage="train",
                                    optimizer=prepared_opt))

    def raw_epoch():
        total = torch.zeros((), dtype=torch.float64)
        for inputs, labels in batches:
            loss = loss_fn(net(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(labels)
        return total.item()

    kt = per_call_us(lambda: runner(batches), 1, trials) / steps
    raw = per_call_us(raw_epoch, 1, trials) / steps
    with accelerate_lookups_cached():
        cached = per_call_us(lambda: runner(batches), 1, trials) / steps
    return {"kind": "step", "kerastorch_us": kt, "raw_us": raw, "extra_us": kt - raw,
            "kerastorch_cached_us": cached, "extra_cached_us": cached - raw}


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--trials", type=int, default=15)
    p.add_argument("--steps", type=int, default=500)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    records = accelerate_pieces(args.calls, args.trials) + [whole_step(args.steps, args.trials)]
    for record in records:
        print(json.dumps(record))
    print(f"\n{'call':34} {'via Accelerate':>14} {'plain torch':>11} {'extra':>8}  (CPU us)")
    for r in records[:-1]:
        print(f"{r['call']:34} {r['accelerate_us']:14.1f} {r['torch_us']:11.1f} "
              f"{r['extra_us']:8.1f}")
    step = records[-1]
    print(f"{'whole train step (tiny net)':34} {step['kerastorch_us']:14.1f} "
          f"{step['raw_us']:11.1f} {step['extra_us']:8.1f}  (kerastorch vs raw loop)")
    print(f"{'  the same, lookups cached':34} {step['kerastorch_cached_us']:14.1f} "
          f"{step['raw_us']:11.1f} {step['extra_cached_us']:8.1f}  (--simulate-fix's patch)")
    return records


if __name__ == "__main__":
    main()
